#!/usr/bin/env node
// The import rules of .dependency-cruiser.cjs, applied to type-only imports as well. The checker
// reads the build in dist/, where the compiler has erased every `import type`, and it cannot parse
// this TypeScript version's sources. So this writes src's whole import graph (value and type-only
// imports alike) as plain JavaScript at the paths the build has, one `import 'specifier';` per
// import, into a temporary directory, and runs the same rules over it there. Exits with the
// checker's status.

import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const src = join(root, 'src');

/** Every `from '...'` of an import or export statement, and every bare `import '...'`. */
const FROM = /^\s*(?:import|export)\b[^;'"]*?\bfrom\s+'([^']+)'/gm;
const BARE = /^\s*import\s+'([^']+)'/gm;

function sources(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sources(path);
    return entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts') ? [path] : [];
  });
}

const view = mkdtempSync(join(tmpdir(), 'livemig-imports-'));
try {
  for (const file of sources(src)) {
    const text = readFileSync(file, 'utf8');
    const specifiers = new Set([...text.matchAll(FROM), ...text.matchAll(BARE)].map((m) => m[1]));
    const target = join(view, 'dist', relative(src, file).replace(/\.ts$/, '.js'));
    mkdirSync(dirname(target), { recursive: true });
    writeFileSync(target, [...specifiers].map((s) => `import '${s}';\n`).join(''));
  }
  // Packages resolve as they do from the project, so the rules about `ws` apply here too.
  const modules = join(view, 'node_modules');
  symlinkSync(join(root, 'node_modules'), modules, 'dir');
  const checker = join(root, 'node_modules', 'dependency-cruiser', 'bin', 'dependency-cruise.mjs');
  const run = spawnSync(process.execPath, [checker, 'dist', '--config', join(root, '.dependency-cruiser.cjs')], { cwd: view, stdio: 'inherit' });
  process.exitCode = run.status ?? 1;
  unlinkSync(modules);
} finally {
  rmSync(view, { recursive: true, force: true });
}
