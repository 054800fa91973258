#!/usr/bin/env -S node --v8-pool-size=1 --initial-old-space-size=128
// The livemig command. The TypeScript sources are compiled to dist/ by `npm install` (prepare).
// The first line gives Node the options of NODE_FLAGS in src/cli/node-flags.ts (why: there); run
// as `node bin/livemig.js`, pass them yourself.
import { existsSync } from 'node:fs';

const dist = new URL('../dist/', import.meta.url);
if (!existsSync(new URL('cli/main.js', dist))) {
  process.stderr.write('livemig: dist/ is missing; run "npm install" (or "npm run build") in the livemig folder first\n');
  process.exit(2);
}
await import(new URL('cli/expose-gc.js', dist).href);
await import(new URL('cli/main.js', dist).href);
