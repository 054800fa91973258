/**
 * The write-protect dirty log of a QEMU guest, read from outside QEMU: a reader process
 * (`wp/wp-reader.c`) walks the page tables of QEMU's RAM mapping with PAGEMAP_SCAN, reports the
 * pages written since they were last protected, and protects them again. QEMU registered that
 * mapping for asynchronous write-protection itself, through the preloaded `wp/wp-preload.c`
 * (see qemu-process.ts); this file only reads.
 *
 * One command is in flight at a time; later ones queue behind it in order.
 */

import { spawn, type ChildProcess } from 'node:child_process';
import { DomainFailedError } from '../../errors.js';

/** How long one command may take to be answered, in milliseconds. */
export const DEFAULT_WRITE_PROTECT_COMMAND_TIMEOUT_MS = 10_000;

/** Where QEMU's RAM is mapped in QEMU, as its preload reported it. */
export interface WriteProtectRange {
  /** The mapping's first address, in QEMU's address space. */
  start: bigint;
  /** The mapping's length in bytes. */
  length: number;
}

/** Options of {@link WriteProtectLog.open}. */
export interface WriteProtectLogOptions {
  /** How long one command may take to be answered, in ms. @default DEFAULT_WRITE_PROTECT_COMMAND_TIMEOUT_MS */
  timeoutMs?: number;
  /**
   * The most runs of written pages one PAGEMAP_SCAN call returns; a walk that finds more goes on
   * in further calls. Small values exercise that path. @default 4096
   */
  runsPerCall?: number;
}

const HEADER_BYTES = 8;

interface Pending {
  command: 't' | 'a' | 'p';
  resolve: (value: Uint32Array | number) => void;
  reject: (err: Error) => void;
}

/** A running reader over one QEMU's RAM mapping. */
export class WriteProtectLog {
  readonly #child: ChildProcess;
  readonly #timeoutMs: number;
  readonly #queue: Pending[] = [];
  #buffered: Buffer[] = [];
  #bufferedBytes = 0;
  #timer: NodeJS.Timeout | undefined;
  #failure: DomainFailedError | undefined;
  #stderr = '';

  private constructor(child: ChildProcess, timeoutMs: number) {
    this.#child = child;
    this.#timeoutMs = timeoutMs;
    child.stdout!.on('data', (chunk: Buffer) => this.#received(chunk));
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (text: string) => (this.#stderr = (this.#stderr + text).slice(-1024)));
    child.stdin!.on('error', () => undefined);
    child.once('error', (err) => this.#fail(`could not run: ${err.message}`));
    // 'close' rather than 'exit': by then its standard error has been read, and says why.
    child.once('close', (code, signal) => this.#fail(`exited (${signal ?? `status ${code}`})`));
    this.#idle();
  }

  /**
   * Starts the reader `binary` over `range` of process `pid` and checks it can read the log (a
   * peek, which fails unless the range is registered for asynchronous write-protection).
   * @throws DomainFailedError if the reader cannot run or the kernel refuses the scan.
   */
  static async open(binary: string, pid: number, range: WriteProtectRange, pageSize: number, options: WriteProtectLogOptions = {}): Promise<WriteProtectLog> {
    const args = [String(pid), range.start.toString(16), range.length.toString(16), String(pageSize)];
    if (options.runsPerCall !== undefined) args.push(String(options.runsPerCall));
    const child = spawn(binary, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const log = new WriteProtectLog(child, options.timeoutMs ?? DEFAULT_WRITE_PROTECT_COMMAND_TIMEOUT_MS);
    try {
      await log.peek();
    } catch (err) {
      log.close();
      throw err;
    }
    return log;
  }

  /** The pages written since the previous take or arm, ascending, each once; protects them again. */
  take(): Promise<Uint32Array> {
    return this.#send('t') as Promise<Uint32Array>;
  }

  /** Protects every page written so far, forgetting them; resolves with how many there were. */
  arm(): Promise<number> {
    return this.#send('a') as Promise<number>;
  }

  /** How many pages are written now; protects nothing. */
  peek(): Promise<number> {
    return this.#send('p') as Promise<number>;
  }

  /** Ends the reader; commands still queued reject. Idempotent. */
  close(): void {
    this.#fail('was closed');
    this.#child.stdin!.destroy();
    if (this.#child.exitCode === null && this.#child.signalCode === null) this.#child.kill('SIGKILL');
  }

  #send(command: Pending['command']): Promise<Uint32Array | number> {
    if (this.#failure) return Promise.reject(this.#failure);
    return new Promise((resolve, reject) => {
      this.#queue.push({ command, resolve, reject });
      if (this.#queue.length === 1) this.#busy();
      this.#child.stdin!.write(command);
    });
  }

  /** Keeps this process alive and the deadline running while a command is answered. */
  #busy(): void {
    this.#child.ref();
    (this.#child.stdout as unknown as { ref?: () => void }).ref?.();
    this.#timer = setTimeout(() => this.#fail(`did not answer within ${this.#timeoutMs} ms`), this.#timeoutMs);
  }

  /** An idle reader does not keep this process alive. */
  #idle(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#child.unref();
    (this.#child.stdout as unknown as { unref?: () => void }).unref?.();
    (this.#child.stderr as unknown as { unref?: () => void }).unref?.();
    (this.#child.stdin as unknown as { unref?: () => void }).unref?.();
  }

  #received(chunk: Buffer): void {
    this.#buffered.push(chunk);
    this.#bufferedBytes += chunk.length;
    while (this.#queue.length > 0 && this.#bufferedBytes >= HEADER_BYTES) {
      const head = this.#peekBytes(HEADER_BYTES);
      const status = head.readInt32LE(0);
      const count = head.readUInt32LE(4);
      const pending = this.#queue[0]!;
      const bodyBytes = pending.command === 't' && status === 0 ? count * 4 : 0;
      if (this.#bufferedBytes < HEADER_BYTES + bodyBytes) return;
      const all = this.#consume(HEADER_BYTES + bodyBytes);
      this.#queue.shift();
      clearTimeout(this.#timer);
      if (this.#queue.length > 0) this.#busy();
      else this.#idle();
      if (status !== 0) {
        pending.reject(new DomainFailedError(`the write-protect dirty log could not be read: the kernel refused PAGEMAP_SCAN (errno ${-status})`));
      } else if (pending.command === 't') {
        // A copy of its own, 4-byte aligned, that the caller owns.
        const pages = new Uint32Array(count);
        new Uint8Array(pages.buffer).set(all.subarray(HEADER_BYTES));
        pending.resolve(pages);
      } else {
        pending.resolve(count);
      }
    }
  }

  #peekBytes(n: number): Buffer {
    if (this.#buffered[0]!.length < n) this.#buffered = [Buffer.concat(this.#buffered)];
    return this.#buffered[0]!.subarray(0, n);
  }

  #consume(n: number): Buffer {
    const all = this.#buffered.length === 1 ? this.#buffered[0]! : Buffer.concat(this.#buffered);
    const rest = all.subarray(n);
    this.#buffered = rest.length > 0 ? [rest] : [];
    this.#bufferedBytes = rest.length;
    return all.subarray(0, n);
  }

  #fail(why: string): void {
    if (this.#failure) return;
    const stderr = this.#stderr.trim();
    this.#failure = new DomainFailedError(`the write-protect dirty log reader ${why}${stderr ? `: ${stderr}` : ''}`);
    clearTimeout(this.#timer);
    for (const pending of this.#queue.splice(0)) pending.reject(this.#failure);
    if (this.#child.exitCode === null && this.#child.signalCode === null) this.#child.kill('SIGKILL');
  }
}
