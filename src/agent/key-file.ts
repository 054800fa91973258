/**
 * Pool key files. Every agent and every source of a pool reads the same key from a file of its
 * own; `livemig keygen` makes one.
 *
 * A key file holds at least {@link MIN_POOL_KEY_BYTES} random bytes, in one of three forms,
 * recognised in this order:
 *
 * 1. hex text: hex digits only (either case), an even number of them, surrounding whitespace
 *    ignored. `livemig keygen` writes 32 random bytes this way (`openssl rand -hex 32` does too);
 * 2. base64 text: standard or URL-safe alphabet, padding optional (but complete if present),
 *    surrounding whitespace ignored (`openssl rand -base64 32`);
 * 3. raw bytes: anything that is not printable text (`head -c 32 /dev/urandom`).
 *
 * Printable text that is neither hex nor base64 is refused: it is a passphrase, and a key must be
 * random. A 64-digit hex string is also valid base64; hex wins, as it is what keygen writes.
 *
 * On POSIX systems the file must be a regular file that nobody outside its owner and group can
 * access and that its group cannot write (like `chmod 600` or `640`): a key others can read is
 * no longer a secret, and one others can write lets them choose it.
 */

import { randomBytes } from 'node:crypto';
import { open, readFile, stat } from 'node:fs/promises';

import { InvalidArgumentError } from '../errors.js';
import { checkPoolKey, MAX_POOL_KEY_BYTES, MIN_POOL_KEY_BYTES } from '../protocol/auth.js';

/** Bytes of a key made by {@link generateKey}. */
export const GENERATED_KEY_BYTES = 32;

/** Largest key file read, in bytes; enough for {@link MAX_POOL_KEY_BYTES} in any of the three forms. */
export const MAX_KEY_FILE_BYTES = 4 * MAX_POOL_KEY_BYTES;

/** Permission bits a key file may not have: group write, and anything for others. */
const FORBIDDEN_MODE_BITS = 0o027;

const HEX = /^[0-9a-fA-F]+$/;
/** Base64 in one alphabet, standard or URL-safe; group 1 is the text before its padding. */
const BASE64 = /^([A-Za-z0-9+/]+|[A-Za-z0-9_-]+)(={0,2})$/;
/** What the key file's text is trimmed of: the whitespace a text file may hold. */
const KEY_TEXT_SPACE = /^[ \t\r\n]+|[ \t\r\n]+$/g;

/** A new random pool key of {@link GENERATED_KEY_BYTES} bytes. */
export function generateKey(): Uint8Array {
  return new Uint8Array(randomBytes(GENERATED_KEY_BYTES));
}

/**
 * Reads a pool key from `path` (see the module comment for the formats).
 *
 * @throws InvalidArgumentError if the file is missing or unreadable, not a regular file,
 *   accessible to others or writable by its group, not in one of the three forms, or holds fewer
 *   than {@link MIN_POOL_KEY_BYTES} or more than {@link MAX_POOL_KEY_BYTES} bytes of key.
 */
export async function readKeyFile(path: string): Promise<Uint8Array> {
  if (typeof path !== 'string' || path === '') throw new InvalidArgumentError('a key file path must be a non-empty string');
  let info: Awaited<ReturnType<typeof stat>>;
  try {
    info = await stat(path);
  } catch (err) {
    throw new InvalidArgumentError(`cannot read the key file ${path}: ${fileError(err)}; make one with "livemig keygen ${path}"`);
  }
  if (!info.isFile()) throw new InvalidArgumentError(`the key file ${path} is not a regular file`);
  if (process.platform !== 'win32' && (info.mode & FORBIDDEN_MODE_BITS) !== 0) {
    throw new InvalidArgumentError(
      `the key file ${path} has mode ${(info.mode & 0o777).toString(8).padStart(3, '0')}: others may read or change it, ` +
        `so the key is no longer secret; run "chmod 600 ${path}" (and make a new key if others could read it)`,
    );
  }
  if (info.size > MAX_KEY_FILE_BYTES) {
    throw new InvalidArgumentError(`the key file ${path} is ${info.size} bytes, more than a key file holds (at most ${MAX_KEY_FILE_BYTES})`);
  }
  let contents: Buffer;
  try {
    contents = await readFile(path);
  } catch (err) {
    throw new InvalidArgumentError(`cannot read the key file ${path}: ${fileError(err)}`);
  }
  return parseKeyFile(contents, path);
}

/**
 * Writes a new random key to `path` as hex text, creating the file with mode 0600. Refuses to
 * overwrite an existing file, which may be a pool's key in use.
 *
 * @returns The key written.
 * @throws InvalidArgumentError if the file exists or cannot be created.
 */
export async function writeKeyFile(path: string, key: Uint8Array = generateKey()): Promise<Uint8Array> {
  checkPoolKey(key);
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(path, 'wx', 0o600);
  } catch (err) {
    const exists = (err as { code?: unknown }).code === 'EEXIST';
    throw new InvalidArgumentError(
      exists
        ? `${path} already exists; a key file is never overwritten (remove it first if you mean to replace the pool key)`
        : `cannot create the key file ${path}: ${fileError(err)}`,
    );
  }
  try {
    await handle.writeFile(`${Buffer.from(key).toString('hex')}\n`);
  } finally {
    await handle.close();
  }
  return key;
}

/** Decodes a key file's contents; `source` names the file in errors. */
function parseKeyFile(contents: Uint8Array, source: string): Uint8Array {
  const bytes = Buffer.from(contents.buffer, contents.byteOffset, contents.length);
  let key: Uint8Array;
  let form: string;
  if (isPrintableText(bytes)) {
    const text = bytes.toString('latin1').replace(KEY_TEXT_SPACE, '');
    if (text === '') throw new InvalidArgumentError(`the key file ${source} is empty; make a key with "livemig keygen PATH"`);
    if (HEX.test(text) && text.length % 2 === 0) {
      key = new Uint8Array(Buffer.from(text, 'hex'));
      form = 'hex';
    } else if (isBase64(text)) {
      key = new Uint8Array(Buffer.from(text, text.includes('-') || text.includes('_') ? 'base64url' : 'base64'));
      form = 'base64';
    } else {
      throw new InvalidArgumentError(
        `the key file ${source} holds text that is neither hex nor base64; a pool key is ${MIN_POOL_KEY_BYTES} or more ` +
          'random bytes, not a passphrase; make one with "livemig keygen PATH"',
      );
    }
  } else {
    key = new Uint8Array(bytes);
    form = 'raw';
  }
  if (key.length < MIN_POOL_KEY_BYTES) {
    throw new InvalidArgumentError(
      `the key file ${source} holds ${key.length} bytes of key (${form}); a pool key needs at least ${MIN_POOL_KEY_BYTES}; ` +
        'make one with "livemig keygen PATH"',
    );
  }
  return checkPoolKey(key, `the key in ${source}`);
}

/**
 * Whether `text` is base64 as docs/protocol.md §14 reads it: its characters before the padding
 * do not number 1 more than a multiple of 4 (such a last character holds no whole byte), and
 * padding, where there is any, makes the whole a multiple of 4.
 */
function isBase64(text: string): boolean {
  const match = BASE64.exec(text);
  if (!match) return false;
  const [, digits, padding] = match as unknown as [string, string, string];
  if (digits.length % 4 === 1) return false;
  return padding === '' || text.length % 4 === 0;
}

/** True if every byte is printable ASCII or whitespace (tab, line feed, carriage return, space). */
function isPrintableText(bytes: Uint8Array): boolean {
  for (const b of bytes) {
    if (!((b >= 0x20 && b < 0x7f) || b === 0x09 || b === 0x0a || b === 0x0d)) return false;
  }
  return true;
}

function fileError(err: unknown): string {
  const code = (err as { code?: unknown }).code;
  if (code === 'ENOENT') return 'no such file';
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied';
  if (code === 'EISDIR') return 'it is a directory';
  return err instanceof Error ? err.message : String(err);
}
