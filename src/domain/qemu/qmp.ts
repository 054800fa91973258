/**
 * A client of QEMU's machine protocol (QMP) over a unix socket: one JSON object per line each
 * way. Commands carry an `id` that QEMU echoes in its reply, so replies are matched to requests
 * whatever order they come in; events (objects with `event`) go to listeners. Every promise this
 * client hands out settles: with the reply, at its deadline, or when the socket closes.
 */

import { createConnection, type Socket } from 'node:net';
import { ConnectionClosedError, DomainFailedError, LimitExceededError, QmpCommandError, TimeoutError } from '../../errors.js';
import { withDeadline } from '../../util/deadline.js';

/** How long a command, or connecting and negotiating, may take by default, in milliseconds. */
export const DEFAULT_QMP_TIMEOUT_MS = 10_000;

/**
 * The longest line accepted from QEMU, in bytes. The largest replies (`query-machines`,
 * `query-qmp-schema`) are a few hundred KiB; a longer line means something is wrong, and the
 * buffer must not grow without bound.
 */
export const MAX_QMP_LINE_BYTES = 16 * 1024 * 1024;

/** An asynchronous event from QEMU (`STOP`, `RESUME`, `MIGRATION`, `SHUTDOWN`, ...). */
export interface QmpEvent {
  event: string;
  data?: Record<string, unknown>;
  timestamp?: { seconds: number; microseconds: number };
}

/** QEMU's version as its greeting states it. */
export interface QmpGreetingVersion {
  qemu: { major: number; minor: number; micro: number };
  package: string;
}

/** Options of {@link QmpClient.connect}. */
export interface QmpConnectOptions {
  /** Deadline for connecting, the greeting and capability negotiation, in ms. @default 10000 */
  timeoutMs?: number;
}

interface Pending {
  command: string;
  resolve(value: unknown): void;
  reject(err: Error): void;
}

/** One QMP connection, capabilities negotiated. */
export class QmpClient {
  readonly #socket: Socket;
  readonly #pending = new Map<number, Pending>();
  readonly #listeners = new Set<(event: QmpEvent) => void>();
  readonly #closers = new Set<(err: Error) => void>();
  #nextId = 1;
  #buffer = '';
  #closeError: Error | undefined;
  #greeting: ((version: QmpGreetingVersion) => void) | undefined;

  /** QEMU's version from the greeting; set once connected. */
  version: QmpGreetingVersion | undefined;

  /** Resolves with the reason once the connection has closed, for whatever reason. */
  readonly closed: Promise<Error>;

  private constructor(socket: Socket) {
    this.#socket = socket;
    let settle!: (err: Error) => void;
    this.closed = new Promise((resolve) => {
      settle = resolve;
    });
    this.#closers.add((err) => settle(err));
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => this.#receive(chunk));
    socket.on('error', (err) => this.#fail(new ConnectionClosedError(`QMP connection failed: ${err.message}`, { cause: err })));
    socket.on('close', () => this.#fail(new ConnectionClosedError('QEMU closed the QMP connection')));
  }

  /**
   * Connects to the QMP socket at `path`, reads QEMU's greeting and negotiates capabilities.
   * @throws ConnectionClosedError if the socket cannot be reached or closes; TimeoutError at
   *   the deadline (the socket is then closed).
   */
  static async connect(path: string, options: QmpConnectOptions = {}): Promise<QmpClient> {
    const timeoutMs = options.timeoutMs ?? DEFAULT_QMP_TIMEOUT_MS;
    const client = new QmpClient(createConnection(path));
    const greeted = new Promise<QmpGreetingVersion>((resolve) => {
      client.#greeting = resolve;
    });
    const negotiate = async (): Promise<QmpClient> => {
      client.version = await Promise.race([greeted, client.closed.then((err) => Promise.reject(err))]);
      await client.execute('qmp_capabilities', undefined, { timeoutMs: Infinity });
      return client;
    };
    try {
      return await withDeadline(negotiate(), timeoutMs, () => new TimeoutError(`QMP at ${path}: no greeting and negotiation within ${timeoutMs} ms`));
    } catch (err) {
      client.close();
      throw err;
    }
  }

  /** Whether the connection has closed. */
  get isClosed(): boolean {
    return this.#closeError !== undefined;
  }

  /**
   * Runs `command` with `args` and resolves with QEMU's `return` value.
   * @throws QmpCommandError if QEMU answers with an error; TimeoutError if it has not answered
   *   within `timeoutMs` (a later answer is ignored); ConnectionClosedError if the connection
   *   closes first, or had closed.
   */
  execute<T = unknown>(command: string, args?: Record<string, unknown>, options: { timeoutMs?: number } = {}): Promise<T> {
    if (this.#closeError) return Promise.reject(this.#closeError);
    const id = this.#nextId++;
    const reply = new Promise<T>((resolve, reject) => {
      this.#pending.set(id, { command, resolve: resolve as (value: unknown) => void, reject });
    });
    const message: Record<string, unknown> = { execute: command, id };
    if (args !== undefined) message.arguments = args;
    this.#socket.write(`${JSON.stringify(message)}\n`);
    const timeoutMs = options.timeoutMs ?? DEFAULT_QMP_TIMEOUT_MS;
    return withDeadline(reply, timeoutMs, () => {
      this.#pending.delete(id);
      return new TimeoutError(`QEMU did not answer QMP command "${command}" within ${timeoutMs} ms`);
    });
  }

  /** Calls `listener` with each event QEMU sends. Returns a function that stops it. It must not throw. */
  onEvent(listener: (event: QmpEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Resolves with the next event named `name` (and accepted by `filter`, if given).
   * @throws TimeoutError at the deadline; ConnectionClosedError if the connection closes first.
   */
  waitForEvent(name: string, options: { timeoutMs?: number; filter?: (event: QmpEvent) => boolean } = {}): Promise<QmpEvent> {
    if (this.#closeError) return Promise.reject(this.#closeError);
    let stop = (): void => undefined;
    const seen = new Promise<QmpEvent>((resolve, reject) => {
      const off = this.onEvent((event) => {
        if (event.event === name && (options.filter?.(event) ?? true)) resolve(event);
      });
      const closer = (err: Error): void => reject(err);
      this.#closers.add(closer);
      stop = () => {
        off();
        this.#closers.delete(closer);
      };
    });
    const timeoutMs = options.timeoutMs ?? DEFAULT_QMP_TIMEOUT_MS;
    return withDeadline(seen, timeoutMs, () => new TimeoutError(`no QMP event ${name} within ${timeoutMs} ms`)).finally(stop);
  }

  /** Closes the connection; whatever still waits rejects with ConnectionClosedError. */
  close(): void {
    this.#fail(new ConnectionClosedError('the QMP connection was closed by this side'));
    this.#socket.destroy();
  }

  #receive(chunk: string): void {
    this.#buffer += chunk;
    let end: number;
    while ((end = this.#buffer.indexOf('\n')) !== -1) {
      const line = this.#buffer.slice(0, end).trim();
      this.#buffer = this.#buffer.slice(end + 1);
      if (line !== '') this.#dispatch(line);
      if (this.#closeError) return;
    }
    if (this.#buffer.length > MAX_QMP_LINE_BYTES) {
      this.#fail(new LimitExceededError(`a QMP line from QEMU exceeds ${MAX_QMP_LINE_BYTES} bytes`));
      this.#socket.destroy();
    }
  }

  #dispatch(line: string): void {
    let message: Record<string, unknown>;
    try {
      message = JSON.parse(line) as Record<string, unknown>;
    } catch (err) {
      this.#fail(new DomainFailedError(`QEMU sent a QMP line that is not JSON: ${line.slice(0, 200)}`, { cause: err }));
      this.#socket.destroy();
      return;
    }
    if ('QMP' in message) {
      const greeting = message.QMP as { version: QmpGreetingVersion };
      this.#greeting?.(greeting.version);
      this.#greeting = undefined;
      return;
    }
    if (typeof message.event === 'string') {
      for (const listener of [...this.#listeners]) listener(message as unknown as QmpEvent);
      return;
    }
    const pending = typeof message.id === 'number' ? this.#pending.get(message.id) : undefined;
    if (!pending) return; // the answer to a command that timed out
    this.#pending.delete(message.id as number);
    if ('error' in message) {
      const error = message.error as { class?: string; desc?: string };
      pending.reject(new QmpCommandError(pending.command, error.class ?? 'GenericError', error.desc ?? '(no description)'));
    } else {
      pending.resolve(message.return);
    }
  }

  #fail(err: Error): void {
    if (this.#closeError) return;
    this.#closeError = err;
    for (const pending of this.#pending.values()) pending.reject(err);
    this.#pending.clear();
    for (const closer of [...this.#closers]) closer(err);
    this.#closers.clear();
    this.#listeners.clear();
  }
}
