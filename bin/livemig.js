#!/usr/bin/env node
// The livemig command. The TypeScript sources are compiled to dist/ by `npm install` (prepare).
import { existsSync } from 'node:fs';

const main = new URL('../dist/cli/main.js', import.meta.url);
if (!existsSync(main)) {
  process.stderr.write('livemig: dist/ is missing; run "npm install" (or "npm run build") in the livemig folder first\n');
  process.exit(2);
}
await import(main.href);
