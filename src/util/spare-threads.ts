/**
 * Worker threads of one script, started before they are needed. A thread costs 25-50 ms of wall
 * time to start (Node's bootstrap, then the script's imports); a target that keeps a spare of
 * each kind it needs builds a domain without that wait, so it answers "ready" sooner. A script
 * started here takes its input as its first message ({@link threadInput}), spare or not, so that
 * it has one way in.
 */

import { Worker, parentPort } from 'node:worker_threads';

/** Threads of one script: spares kept started, and new ones when none is left. */
export class ThreadKind {
  readonly #script: URL;
  readonly #spareCount: number;
  readonly #spares: Worker[] = [];
  #closed = false;

  /**
   * @param script The worker's module, which calls {@link threadInput} to get its input.
   * @param spareCount Threads {@link fill} keeps started; 0 starts each thread when asked for.
   */
  constructor(script: URL, spareCount = 0) {
    this.#script = script;
    this.#spareCount = spareCount;
  }

  /** A kind of the same script that keeps `spareCount` spares of its own. */
  withSpares(spareCount: number): ThreadKind {
    return new ThreadKind(this.#script, spareCount);
  }

  /** Spares started and waiting for their input. */
  get spares(): number {
    return this.#spares.length;
  }

  /**
   * Starts threads until `spareCount` spares wait; returns at once. Spares keep no process alive
   * and are dropped if they fail or exit.
   */
  fill(): void {
    while (!this.#closed && this.#spares.length < this.#spareCount) {
      const worker = this.#spawn();
      const ignore = (): void => {};
      worker.on('error', ignore);
      worker.once('exit', () => {
        const at = this.#spares.indexOf(worker);
        if (at >= 0) this.#spares.splice(at, 1);
      });
      this.#spares.push(worker);
    }
  }

  /**
   * A thread running the script with `input` as its first message: a spare if one waits, else a
   * new one. The caller owns it, as if it had started it: it listens for errors and its exit and
   * decides whether it keeps the process alive (a spare comes unreferenced, a new one referenced).
   */
  start(input: unknown): Worker {
    const worker = this.#spares.shift() ?? this.#spawn(true);
    worker.removeAllListeners('error').removeAllListeners('exit');
    worker.postMessage(input);
    return worker;
  }

  /** Ends the spares; threads already handed out are their owners' to end. Idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    const spares = this.#spares.splice(0);
    await Promise.all(spares.map((worker) => worker.terminate()));
  }

  #spawn(referenced = false): Worker {
    // The threads need none of the process's Node options, several of which (-e, --input-type,
    // --trace-gc, ...) a worker refuses and would fail to start with.
    const worker = new Worker(this.#script, { execArgv: [] });
    if (!referenced) worker.unref();
    return worker;
  }
}

/**
 * In a thread started by a {@link ThreadKind}: its input, the first message it is sent. The port
 * then no longer keeps the thread alive, so a script that returns ends its thread.
 */
export function threadInput<T>(): Promise<T> {
  const port = parentPort;
  if (port === null) return Promise.reject(new Error('threadInput() runs only in a worker thread'));
  return new Promise<T>((resolve) => {
    port.once('message', (input: T) => {
      port.unref();
      resolve(input);
    });
  });
}
