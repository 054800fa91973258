/** `livemig keygen PATH`: a new random pool key. */

import { parseArgs } from 'node:util';
import { writeKeyFile } from '../agent/key-file.js';
import { InvalidArgumentError } from '../errors.js';

export const KEYGEN_HELP = `usage: livemig keygen PATH

Writes a new random pool key to PATH (mode 0600). Copy it to every host of the pool and pass it
with --key-file to listen, migrate and status.
`;

export async function keygen(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args, options: {}, strict: true, allowPositionals: true });
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
  const [path, ...extra] = parsed.positionals;
  if (path === undefined || extra.length > 0) throw new InvalidArgumentError('keygen needs exactly one argument: the path of the key file to create');
  await writeKeyFile(path);
  process.stdout.write(`wrote a new pool key to ${path} (mode 0600); copy it to every host of the pool and pass it with --key-file\n`);
  return 0;
}
