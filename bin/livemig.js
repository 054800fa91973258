#!/usr/bin/env node
// The livemig command. The TypeScript sources are compiled to dist/ by `npm install` (prepare).
import { existsSync } from 'node:fs';
import v8 from 'node:v8';
import vm from 'node:vm';

// The engine collects garbage just before a guest is likely to pause, on both sides, so that no
// collection lands in the pause. Node offers the collector only with --expose-gc, which a
// command installed as a script cannot pass to node: turn it on here, for this process alone.
v8.setFlagsFromString('--expose-gc');
globalThis.gc ??= vm.runInNewContext('gc');

const main = new URL('../dist/cli/main.js', import.meta.url);
if (!existsSync(main)) {
  process.stderr.write('livemig: dist/ is missing; run "npm install" (or "npm run build") in the livemig folder first\n');
  process.exit(2);
}
await import(main.href);
