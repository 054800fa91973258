// What the tarball holds, read as an embedder would: the licence the manifest names, the
// sources every source map points to, and, importable by name, every constant that a public
// option names as its default.
import { readFile } from 'node:fs/promises';
import { dirname, join, normalize } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { installPackedPackage, runNode, type PackedProject } from './helpers/packed-package.js';

let project: PackedProject;
beforeAll(async () => {
  project = await installPackedPackage();
});
afterAll(async () => project?.remove());

test('the MIT licence ships, and the manifest says MIT', async () => {
  expect(project.files).toContain('LICENSE');
  const licence = await readFile(join(project.packageDir, 'LICENSE'), 'utf8');
  expect(licence).toMatch(/^MIT License/);
  expect(licence).toContain('Copyright (c) the livemig authors');
  const manifest = JSON.parse(await readFile(join(project.packageDir, 'package.json'), 'utf8')) as { license: string };
  expect(manifest.license).toBe('MIT');
});

test('every source a shipped source map names ships too', async () => {
  const maps = project.files.filter((f) => f.endsWith('.map'));
  expect(maps.length).toBeGreaterThan(10);
  const shipped = new Set(project.files.map((f) => normalize(f)));
  const missing: string[] = [];
  for (const map of maps) {
    const { sources, sourceRoot } = JSON.parse(await readFile(join(project.packageDir, map), 'utf8')) as { sources: string[]; sourceRoot?: string };
    for (const source of sources) {
      const path = normalize(join(dirname(map), sourceRoot ?? '', source));
      if (!shipped.has(path)) missing.push(`${map} -> ${path}`);
    }
  }
  expect(missing).toEqual([]);
});

/**
 * The declarations the package's entry re-exports, as `[name, declaration file]`: read from
 * the shipped index.d.ts, whose export lists tsc writes one to a line.
 */
async function publicDeclarations(): Promise<Array<[string, string]>> {
  const dist = join(project.packageDir, 'dist');
  const index = await readFile(join(dist, 'index.d.ts'), 'utf8');
  const found: Array<[string, string]> = [];
  for (const [, names, from] of index.matchAll(/^export (?:type )?\{([^}]*)\} from '([^']+)';$/gm)) {
    const file = join(dist, from!.replace(/\.js$/, '.d.ts'));
    for (const entry of names!.split(',')) {
      const name = entry.trim().replace(/^type /, '').split(' as ')[0]!;
      if (name) found.push([name, file]);
    }
  }
  for (const [, from] of index.matchAll(/^export \* from '([^']+)';$/gm)) {
    const file = join(dist, from!.replace(/\.js$/, '.d.ts'));
    const text = await readFile(file, 'utf8');
    for (const [, name] of text.matchAll(/^export (?:declare )?(?:abstract )?(?:class|interface|type|function|const) (\w+)/gm)) found.push([name!, file]);
  }
  return found;
}

/** The constants named in the `@default` tags of the declaration of `name` in `file`. */
async function defaultsNamedBy(name: string, file: string): Promise<string[]> {
  const lines = (await readFile(file, 'utf8')).split('\n');
  const start = lines.findIndex((l) => new RegExp(`^export (?:declare )?(?:abstract )?(?:class|interface|type|function|const) ${name}\\b`).test(l));
  if (start < 0) throw new Error(`${name} is not declared in ${file}`);
  // A declaration runs until the next top-level one (tsc indents everything inside it).
  let end = start + 1;
  while (end < lines.length && !/^(export|\/\*\*|declare|interface|type|import|class)\b|^\/\*\*/.test(lines[end]!)) end++;
  const named: string[] = [];
  for (const line of lines.slice(start, end)) {
    const tag = /@default\s+(.*)$/.exec(line);
    if (tag) named.push(...(tag[1]!.match(/\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b/g) ?? []));
  }
  return named;
}

test('every constant a public option names as its default can be imported from the package', async () => {
  const declarations = await publicDeclarations();
  const named = new Set<string>();
  for (const [name, file] of declarations) for (const c of await defaultsNamedBy(name, file)) named.add(c);
  // The options of the agent, the engine, the transports and the limits all name theirs.
  expect(named.size).toBeGreaterThan(25);
  const { stdout, code, stderr } = await runNode(['--input-type=module', '-e', "console.log(JSON.stringify(Object.keys(await import('livemig'))))"], project.dir);
  expect(stderr).toBe('');
  expect(code).toBe(0);
  const exported = new Set(JSON.parse(stdout) as string[]);
  expect([...named].filter((c) => !exported.has(c)).sort()).toEqual([]);
});
