/** Small JSON files that must never be seen half written: the pool file and evacuation ledgers. */

import { randomBytes } from 'node:crypto';
import { open, readFile, rename, rm } from 'node:fs/promises';

import { InvalidArgumentError } from '../errors.js';

/**
 * Writes `value` as JSON to `path` so that a reader, or a process that dies mid-way, sees either
 * the old file or the new one: it writes a temporary file beside it, flushes it to disk, and
 * renames it over `path`.
 */
export async function writeJsonAtomically(path: string, value: unknown): Promise<void> {
  const temporary = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  const file = await open(temporary, 'w', 0o600);
  try {
    await file.writeFile(`${JSON.stringify(value, null, 2)}\n`);
    await file.sync();
  } catch (err) {
    await file.close();
    await rm(temporary, { force: true });
    throw err;
  }
  await file.close();
  await rename(temporary, path);
}

/**
 * The JSON in `path`, or undefined if there is no such file.
 * @throws InvalidArgumentError if it cannot be read or is not JSON.
 */
export async function readJsonFile(path: string, what: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new InvalidArgumentError(`cannot read the ${what} ${path}: ${(err as Error).message}`);
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new InvalidArgumentError(`the ${what} ${path} is not valid JSON: ${(err as Error).message}`);
  }
}
