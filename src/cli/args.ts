/** Reading a command line: flags, negative values, the agent URL, the pool key and TLS trust. */

import { readFile } from 'node:fs/promises';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import type { ConnectToAgentOptions } from '../agent/agent-client.js';
import { readKeyFile } from '../agent/key-file.js';
import { InvalidArgumentError } from '../errors.js';

/** The flags that reach an agent: the pool key and the CA to trust for wss://. */
export const CONNECT_FLAGS = { 'key-file': { type: 'string' }, 'tls-ca': { type: 'string' } } as const;

/** Help text of {@link CONNECT_FLAGS}. */
export const CONNECT_HELP = `  --key-file PATH        the pool key: prove it to the agent and demand the agent's proof
  --tls-ca PATH          trust this CA (or self-signed) certificate for a wss:// agent`;

/** parseArgs, strict, with its errors as usage errors. */
export function parse<const T extends NonNullable<ParseArgsConfig['options']>>(
  args: string[],
  options: T,
): ReturnType<typeof parseArgs<{ args: string[]; options: T; strict: true; allowPositionals: false }>> {
  try {
    return parseArgs({ args: joinNegativeValues(args, options), options, strict: true, allowPositionals: false } as const);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
}

/**
 * `--memory -64MiB` as `--memory=-64MiB`: parseArgs takes a value that starts with a dash for a
 * flag, and would call the option ambiguous, where the value's own parser says what is wrong.
 */
function joinNegativeValues(args: string[], options: NonNullable<ParseArgsConfig['options']>): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    const next = args[i + 1];
    const name = arg.startsWith('--') ? arg.slice(2) : undefined;
    if (name !== undefined && options[name]?.type === 'string' && next !== undefined && /^-[0-9.]/.test(next)) {
      out.push(`${arg}=${next}`);
      i++;
    } else {
      out.push(arg);
    }
  }
  return out;
}

/**
 * The agent URL of `--to`, checked before anything starts: `ws://` or `wss://`, a host, and a
 * port if not the scheme's own.
 */
export function agentUrlFlag(text: string | undefined, command: string): string {
  if (text === undefined) throw new InvalidArgumentError(`${command} needs --to ws://HOST:PORT (the target agent)`);
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new InvalidArgumentError(`--to "${text}" is not a URL; give the target agent as ws://HOST:PORT or wss://HOST:PORT`);
  }
  if (url.protocol !== 'ws:' && url.protocol !== 'wss:') {
    throw new InvalidArgumentError(`--to "${text}" is not a ws:// or wss:// URL; give the target agent as ws://HOST:PORT or wss://HOST:PORT`);
  }
  if (url.hostname === '') throw new InvalidArgumentError(`--to "${text}" names no host; give the target agent as ws://HOST:PORT`);
  return text;
}


/**
 * The pool key and TLS trust that `--key-file` and `--tls-ca` ask for, for the agent at `url`;
 * both files are read now, so that a wrong path or a CA without wss:// is a usage error before
 * anything starts.
 */
export async function connectOptionsFromFlags(values: { 'key-file'?: string; 'tls-ca'?: string }, url: string): Promise<ConnectToAgentOptions> {
  const key = values['key-file'] === undefined ? undefined : await readKeyFile(values['key-file']);
  const caPath = values['tls-ca'];
  if (caPath === undefined) return { key };
  if (new URL(url).protocol !== 'wss:') {
    throw new InvalidArgumentError(`--tls-ca is for a wss:// agent, but --to is ${JSON.stringify(url)}; give it as wss://HOST:PORT or leave out --tls-ca`);
  }
  let ca: Uint8Array;
  try {
    ca = await readFile(caPath);
  } catch (err) {
    throw new InvalidArgumentError(`cannot read the CA certificate of --tls-ca ${caPath}: ${(err as Error).message}`);
  }
  return { key, tls: { ca } };
}
