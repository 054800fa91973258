// docs/protocol.md §14 as another implementation reads it: hex is tried before base64, only
// spaces, tabs, line feeds and carriage returns are trimmed and only at the ends, and base64 with
// a dangling character or incomplete padding is refused rather than decoded to a shorter key.
import { randomBytes } from 'node:crypto';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';

import { readKeyFile } from '../dist/agent/key-file.js';

let dir: string;
let files = 0;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'livemig-key-spec-'));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** The key read from a fresh mode-0600 file holding `contents`, as hex; or the refusal's code. */
async function read(contents: string): Promise<string> {
  const path = join(dir, `k${files++}.key`);
  await writeFile(path, contents, { mode: 0o600 });
  await chmod(path, 0o600);
  return readKeyFile(path).then(
    (key) => Buffer.from(key).toString('hex'),
    (err: { code?: string }) => `refused ${err.code}`,
  );
}

it('64 hex digits are 32 bytes of hex, never the 48 bytes they also are as base64', async () => {
  const key = randomBytes(32);
  // Digits only: as base64 the same text would decode to 48 other bytes.
  const digits = Buffer.from('0123456789012345678901234567890123456789012345678901234567890123', 'hex');
  expect(await read(key.toString('hex'))).toBe(key.toString('hex'));
  expect(await read(digits.toString('hex'))).toBe(digits.toString('hex'));
});

it('spaces, tabs, line feeds and carriage returns are trimmed at both ends, and nothing inside', async () => {
  const key = randomBytes(32);
  const hex = key.toString('hex');
  expect(await read(` \t\r\n${hex}\r\n\t `)).toBe(hex);
  expect(await read(`${key.toString('base64')}\n`)).toBe(hex);
  expect(await read(`${hex.slice(0, 32)} ${hex.slice(32)}`)).toBe('refused ERR_INVALID_ARGUMENT');
  const wrapped = key.toString('base64');
  expect(await read(`${wrapped.slice(0, 20)}\n${wrapped.slice(20)}`)).toBe('refused ERR_INVALID_ARGUMENT');
});

it('base64 decodes by RFC 4648, unpadded or fully padded, and is refused with a dangling character or partial padding', async () => {
  const key = randomBytes(40); // 54 characters and two '=' make 56
  const padded = key.toString('base64');
  expect(padded).toMatch(/^[^=]{54}==$/);
  expect(await read(padded)).toBe(key.toString('hex'));
  expect(await read(padded.replace(/=+$/, ''))).toBe(key.toString('hex'));
  // One '=' where two belong: the length is no multiple of 4.
  expect(await read(padded.slice(0, -1))).toBe('refused ERR_INVALID_ARGUMENT');
  // A character beyond the last whole group of 4 carries no whole byte, padded or not.
  const groups = randomBytes(33).toString('base64'); // 44 characters, no padding
  expect(await read(`${groups}A`)).toBe('refused ERR_INVALID_ARGUMENT');
  expect(await read(`${groups}A==`)).toBe('refused ERR_INVALID_ARGUMENT');
});
