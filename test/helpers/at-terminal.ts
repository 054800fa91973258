// A livemig command run at a terminal: `script` (util-linux, part of every Debian system) gives
// it one, so it shows its progress line, and a ^C typed into the terminal reaches the command's
// whole foreground process group, as a user's Ctrl-C does.
import { spawn } from 'node:child_process';
import { BIN } from './agent-process.js';

/** The progress line of a first pass that has sent pages: the migration is under way. */
export const FIRST_PASS_SENT_PAGES = /precopy\s+round\s+0\s+sent\s+[0-9.]+ [KMG]iB/;

export interface TerminalRun {
  /** Everything the command wrote to the terminal so far (its standard output and error). */
  readonly output: string;
  /** The command's exit status. */
  exited: Promise<number | null>;
  /** Resolves once `pattern` appears in the output, or after `timeoutMs` either way. */
  until(pattern: string | RegExp, timeoutMs: number): Promise<void>;
  /** Types Ctrl-C. */
  ctrlC(): void;
}

/** Starts `livemig ...args` at a terminal of its own. */
export function atTerminal(args: string[]): TerminalRun {
  const quoted = [BIN, ...args].map((a) => `'${a.replaceAll("'", "'\\''")}'`).join(' ');
  // `exec`: the shell `script` starts (dash where SHELL is unset) must not stay in the foreground
  // group, where the ^C would kill it and `script` would report 130 whatever livemig did.
  const child = spawn('script', ['-qec', `exec ${quoted}`, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.resume();
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const found = (pattern: string | RegExp): boolean => (typeof pattern === 'string' ? output.includes(pattern) : pattern.test(output));
  return {
    get output() {
      return output;
    },
    exited,
    async until(pattern, timeoutMs) {
      const deadline = Date.now() + timeoutMs;
      while (!found(pattern) && Date.now() < deadline && child.exitCode === null) await new Promise((r) => setTimeout(r, 50));
    },
    ctrlC: () => void child.stdin.write('\x03'),
  };
}
