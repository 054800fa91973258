// Pool key files: what keygen writes reads back; hex, base64 and raw keys are recognised; a
// missing, short, passphrase-like or exposed file is refused with a message that says why.
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { generateKey, readKeyFile, writeKeyFile } from '../dist/agent/key-file.js';

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'livemig-keys-'));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Writes `contents` to a fresh file with `mode` and returns its path. */
async function keyFile(name: string, contents: string | Uint8Array, mode = 0o600): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, contents, { mode });
  await chmod(path, mode);
  return path;
}

async function refusal(path: string): Promise<{ code: string; message: string }> {
  const err = (await readKeyFile(path).then(
    () => ({ code: 'no error', message: '' }),
    (e: unknown) => e,
  )) as { code: string; message: string };
  return err;
}

describe('keys that are accepted', () => {
  it('what writeKeyFile writes: 32 random bytes as hex, mode 0600', async () => {
    const path = join(dir, 'generated.key');
    const key = await writeKeyFile(path);
    expect(key).toHaveLength(32);
    expect(((await stat(path)).mode & 0o777).toString(8)).toBe('600');
    expect(Buffer.from(await readKeyFile(path)).equals(Buffer.from(key))).toBe(true);
  });

  it('hex in either case, with surrounding whitespace', async () => {
    const key = generateKey();
    const path = await keyFile('hex.key', `  ${Buffer.from(key).toString('hex').toUpperCase()}\r\n`);
    expect(Buffer.from(await readKeyFile(path)).equals(Buffer.from(key))).toBe(true);
  });

  it('base64, standard and URL-safe', async () => {
    const key = randomBytes(48);
    const standard = await keyFile('b64.key', `${key.toString('base64')}\n`);
    const urlSafe = await keyFile('b64url.key', key.toString('base64url'));
    expect(Buffer.from(await readKeyFile(standard)).equals(key)).toBe(true);
    expect(Buffer.from(await readKeyFile(urlSafe)).equals(key)).toBe(true);
  });

  it('raw random bytes', async () => {
    // A byte no text holds makes it unmistakably binary.
    const key = Buffer.concat([Buffer.from([0x00, 0xff]), randomBytes(40)]);
    const path = await keyFile('raw.key', key);
    expect(Buffer.from(await readKeyFile(path)).equals(key)).toBe(true);
  });

  it('a file its group may read', async () => {
    const path = await keyFile('group.key', Buffer.from(generateKey()).toString('hex'), 0o640);
    expect(await readKeyFile(path)).toHaveLength(32);
  });
});

describe('keys that are refused with ERR_INVALID_ARGUMENT', () => {
  it('a missing file, naming keygen', async () => {
    const err = await refusal(join(dir, 'absent.key'));
    expect(err.code).toBe('ERR_INVALID_ARGUMENT');
    expect(err.message).toMatch(/no such file.*livemig keygen/);
  });

  it('a directory', async () => {
    const path = join(dir, 'a-directory');
    await mkdir(path);
    expect(await refusal(path)).toMatchObject({ code: 'ERR_INVALID_ARGUMENT', message: expect.stringMatching(/not a regular file/) });
  });

  it('fewer than 32 bytes of key, in any form', async () => {
    const short = randomBytes(31);
    for (const [name, contents] of [
      ['short-hex.key', short.toString('hex')],
      ['short-b64.key', short.toString('base64')],
      ['short-raw.key', Buffer.concat([Buffer.from([0]), short.subarray(1)])],
    ] as const) {
      const err = await refusal(await keyFile(name, contents));
      expect(err.code).toBe('ERR_INVALID_ARGUMENT');
      expect(err.message).toMatch(/31 bytes of key.*at least 32/);
    }
  });

  it('an empty file and a passphrase', async () => {
    expect((await refusal(await keyFile('empty.key', ''))).message).toMatch(/is empty/);
    const err = await refusal(await keyFile('passphrase.key', 'correct horse battery staple, twice over!\n'));
    expect(err.code).toBe('ERR_INVALID_ARGUMENT');
    expect(err.message).toMatch(/neither hex nor base64.*not a passphrase/);
  });

  it('a file others may read, or its group may write (where file modes say who may)', async () => {
    const hex = Buffer.from(generateKey()).toString('hex');
    // Windows keeps no such bits (its ACLs decide), so there the same files are read as keys.
    const modesGuardFiles = process.platform !== 'win32';
    for (const mode of [0o644, 0o604, 0o660, 0o606]) {
      const outcome = await readKeyFile(await keyFile(`exposed-${mode.toString(8)}.key`, hex, mode)).then(
        (read) => ({ read: Buffer.from(read).toString('hex') }),
        (error: unknown) => ({ error }),
      );
      expect(outcome).toEqual(
        modesGuardFiles
          ? { error: expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT', message: expect.stringMatching(new RegExp(`mode ${mode.toString(8)}.*chmod 600`)) }) }
          : { read: hex },
      );
    }
  });

  it('overwriting an existing key file', async () => {
    const path = await keyFile('existing.key', Buffer.from(generateKey()).toString('hex'));
    await expect(writeKeyFile(path)).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT', message: expect.stringMatching(/already exists/) });
  });
});
