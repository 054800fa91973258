/**
 * The incoming side every transport shares: a bounded queue of received frames, the `receive()`
 * calls waiting for one, and the end of the stream. The transport decides when to stop reading
 * (`full`) and when to read again (`belowHalf`); the queue only keeps the frames in order.
 */

interface PendingReceive {
  resolve(frame: Uint8Array | undefined): void;
  reject(error: Error): void;
}

/** Received frames waiting for `receive()`, with bounds on their count and bytes. */
export class FrameQueue {
  #frames: Uint8Array[] = [];
  #bytes = 0;
  readonly #waiters: PendingReceive[] = [];
  #ended = false;
  #endError: Error | undefined;

  constructor(
    private readonly maxFrames: number,
    private readonly maxBytes: number,
  ) {}

  /** Frames waiting. */
  get frames(): number {
    return this.#frames.length;
  }

  /** Bytes of the frames waiting. */
  get bytes(): number {
    return this.#bytes;
  }

  /** True once the stream's end is known; nothing is queued after that. */
  get ended(): boolean {
    return this.#ended;
  }

  /** Why the stream ended; `undefined` for a clean end (or while it goes on). */
  get endError(): Error | undefined {
    return this.#endError;
  }

  /** True while a `receive()` waits, so a frame arriving now would not be queued. */
  get hasWaiter(): boolean {
    return this.#waiters.length > 0;
  }

  /** At either bound: the transport should stop reading. */
  get full(): boolean {
    return this.#frames.length >= this.maxFrames || this.#bytes >= this.maxBytes;
  }

  /** Under half of both bounds: a transport that stopped reading may read again. */
  get belowHalf(): boolean {
    return this.#frames.length < this.maxFrames / 2 && this.#bytes < this.maxBytes / 2;
  }

  /** Hands `frame` to a waiting `receive()`, or queues it. */
  push(frame: Uint8Array): void {
    const waiter = this.#waiters.shift();
    if (waiter) {
      waiter.resolve(frame);
      return;
    }
    this.#frames.push(frame);
    this.#bytes += frame.byteLength;
  }

  /** The next frame; `undefined` after a clean end; the end's error after a failed one. */
  take(): Promise<Uint8Array | undefined> {
    const frame = this.#frames.shift();
    if (frame) {
      this.#bytes -= frame.byteLength;
      return Promise.resolve(frame);
    }
    if (this.#ended) return this.#endError ? Promise.reject(this.#endError) : Promise.resolve(undefined);
    return new Promise((resolve, reject) => {
      this.#waiters.push({ resolve, reject });
    });
  }

  /** Drops every queued frame (the connection failed here: they will never be read). */
  clear(): void {
    this.#frames = [];
    this.#bytes = 0;
  }

  /**
   * Marks the end, cleanly (`error` undefined) or not. Queued frames stay readable; waiting
   * `receive()`s, which exist only while the queue is empty, see the end now.
   */
  end(error?: Error): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#endError = error;
    for (const waiter of this.#waiters.splice(0)) {
      if (error) waiter.reject(error);
      else waiter.resolve(undefined);
    }
  }
}
