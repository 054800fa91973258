/** The flags of the commands that talk to a host's control API: which host, the pool key, TLS trust. */

import { ControlClient } from '../agent/control-client.js';
import { readKeyFile } from '../agent/key-file.js';
import { InvalidArgumentError } from '../errors.js';

/** parseArgs options of every control command. */
export const CONTROL_FLAGS = {
  host: { type: 'string' },
  'key-file': { type: 'string' },
  'tls-ca': { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** Help text of {@link CONTROL_FLAGS}. */
export const CONTROL_HELP = `  --host URL             the host agent: http://HOST:PORT (https:// with TLS)
  --key-file PATH        the pool key: sign requests with it and check the host's answers
  --tls-ca PATH          trust this CA (or self-signed) certificate for an https:// host
  --json                 print JSON on stdout instead of words`;

/** A client of the host that `--host`, `--key-file` and `--tls-ca` name. */
export async function clientFromFlags(values: { host?: string; 'key-file'?: string; 'tls-ca'?: string }, command: string): Promise<ControlClient> {
  if (values.host === undefined) throw new InvalidArgumentError(`${command} needs --host http://HOST:PORT (the host agent)`);
  const key = values['key-file'] === undefined ? undefined : await readKeyFile(values['key-file']);
  const tls = values['tls-ca'] === undefined ? undefined : { ca: values['tls-ca'] };
  return new ControlClient(values.host, { key, tls });
}

/** Writes `value` as JSON, or `words` for people. */
export function print(json: boolean | undefined, value: unknown, words: string): void {
  process.stdout.write(json ? `${JSON.stringify(value, null, 2)}\n` : `${words}\n`);
}
