// The pool file: hosts by name with their control URLs, kept across processes, rewritten
// atomically, and refused with a code when a change or the file itself is not acceptable.
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, expect, test } from 'vitest';
import { FilePoolStore } from '../dist/pool/pool-store.js';

const dirs: string[] = [];
afterEach(async () => {
  while (dirs.length) await rm(dirs.pop()!, { recursive: true, force: true });
});

async function poolPath(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'livemig-poolfile-'));
  dirs.push(dir);
  return join(dir, 'pool.json');
}

test('hosts added are listed in order by another store on the same file, and removed by name', async () => {
  const path = await poolPath();
  const store = new FilePoolStore(path);
  expect(await store.list()).toEqual([]);
  await store.add({ name: 'a', url: 'http://10.0.0.1:7070' });
  await store.add({ name: 'b', url: 'https://10.0.0.2:7070', extra: 'dropped' } as never);
  expect(await new FilePoolStore(path).list()).toEqual([
    { name: 'a', url: 'http://10.0.0.1:7070' },
    { name: 'b', url: 'https://10.0.0.2:7070' },
  ]);
  await store.remove('a');
  expect(JSON.parse(await readFile(path, 'utf8'))).toEqual({ hosts: [{ name: 'b', url: 'https://10.0.0.2:7070' }] });
});

test('changes made at once from one store all land, and no temporary file is left', async () => {
  const path = await poolPath();
  const store = new FilePoolStore(path);
  await Promise.all(Array.from({ length: 8 }, (_, i) => store.add({ name: `h${i}`, url: `http://10.0.0.${i}:7070` })));
  expect((await store.list()).map((h) => h.name).sort()).toEqual(['h0', 'h1', 'h2', 'h3', 'h4', 'h5', 'h6', 'h7']);
  expect(await readdir(join(path, '..'))).toEqual(['pool.json']);
});

test('a taken name or URL, an unknown host, a bad name or URL and a malformed file are refused with codes', async () => {
  const path = await poolPath();
  const store = new FilePoolStore(path);
  await store.add({ name: 'a', url: 'http://10.0.0.1:7070' });
  await expect(store.add({ name: 'a', url: 'http://10.0.0.9:7070' })).rejects.toMatchObject({ code: 'ERR_CONFLICT' });
  await expect(store.add({ name: 'z', url: 'http://10.0.0.1:7070' })).rejects.toMatchObject({ code: 'ERR_CONFLICT' });
  await expect(store.remove('nope')).rejects.toMatchObject({ code: 'ERR_NOT_FOUND' });
  await expect(store.add({ name: '-bad', url: 'http://x:1' })).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
  await expect(store.add({ name: 'c', url: 'ws://x:1' })).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
  await expect(store.add({ name: 'c', url: 'not a url' })).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
  expect((await store.list()).map((h) => h.name)).toEqual(['a']);
  await writeFile(path, '{"hosts": [{"name": "a", "url": "http://x:1"}, {"name": "a", "url": "http://y:1"}]}');
  await expect(store.list()).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT', message: expect.stringContaining('names a twice') });
  await writeFile(path, '[1, 2');
  await expect(store.list()).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
  await writeFile(path, '{"members": []}');
  await expect(store.list()).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
});
