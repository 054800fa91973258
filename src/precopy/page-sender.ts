/**
 * Gathers guest pages into `pages` records and puts them on the wire: the source's hot path.
 *
 * Pages are read in batches (`SourceDomain.readPages`) straight into the frame buffers that go to
 * the socket (the header is written in front of them afterwards). Zero pages are recognised there
 * and sent as page numbers only, the data pages after them moved down over them: by the page
 * hasher's module in one call per read (`PageHasher.compactRegion`), or page by page where it
 * does not run. With a compressing codec the payload of a batch is encoded (a large one on
 * libuv's thread pool, while the next batch is gathered) into a second buffer of the slot, which
 * the frame header is then written in front of. With codec `auto` a {@link CodecChooser} names
 * each batch's codec from what this sender measures: the encoder's pace, lz4's ratio, and how
 * fast the transport drains.
 * At most `maxInFlight` batches are unresolved at any time; that bound is the sender's
 * backpressure, and the transport's own queue is the next one.
 */

import { availableParallelism } from 'node:os';
import type { SourceDomain } from '../domain/backend.js';
import { InvalidArgumentError } from '../errors.js';
import { encodePagesInPlace, PAGES_HEADER_RESERVE_BYTES } from '../protocol/codec.js';
import { DEFAULT_MAX_DATA_PAGES_PER_BATCH, DEFAULT_MAX_ZERO_PAGES_PER_BATCH } from '../protocol/limits.js';
import type { PagePayloadCodec } from '../protocol/page-codec.js';
import { deltaMaxPayloadBytes, writeDeltaEntry } from '../protocol/page-codec-delta.js';
import { pagePayloadCodec, type PageCodec } from '../protocol/page-codecs.js';
import { PageHasher } from '../protocol/page-hasher.js';
import { batchChecksum, type PageDigest } from '../protocol/page-digest.js';
import { writePageNumbers } from '../protocol/page-list.js';
import type { Transport } from '../transport/transport.js';
import type { SendPacer } from './bandwidth-cap.js';
import { CodecChooser, type CodecChoice } from './codec-choice.js';
import { type DeltaCache, type DeltaSlots, deltaSlots } from './delta-cache.js';
import { anyBase, encodeDeltaBatch, storeInSlots } from './delta-batch.js';

/** Data pages per batch: 1 MiB of 4 KiB pages, the message size the link moves best. */
export const DEFAULT_DATA_PAGES_PER_BATCH = 256;

/** Batches gathered but not yet handed to the operating system, at most. */
export const DEFAULT_MAX_IN_FLIGHT_BATCHES = 4;

/** The most `maxInFlight` may be: each batch in flight holds a buffer of about 1-4 MiB. */
export const MAX_IN_FLIGHT_BATCHES = 64;

/**
 * Runs of pages, and pages per run, that {@link PageSender.wireShare} compresses: four runs of
 * lz4's 64 KiB window, about half a millisecond of work.
 */
export const WIRE_SAMPLE_RUNS = 4;
export const WIRE_SAMPLE_RUN_PAGES = 16;

/** Threads of libuv's pool unless UV_THREADPOOL_SIZE says otherwise. */
const LIBUV_DEFAULT_POOL_THREADS = 4;

/** Options of a {@link PageSender}. */
export interface PageSenderOptions {
  /** Payload codec, or `auto` to pick one per batch. */
  codec: CodecChoice;
  /** The bandwidth cap the `cap` pacer enforces, in bytes per second: `auto` weighs the link by it. */
  capBytesPerSec?: number;
  /** @default DEFAULT_DATA_PAGES_PER_BATCH */
  dataPagesPerBatch?: number;
  /** @default DEFAULT_MAX_IN_FLIGHT_BATCHES */
  maxInFlight?: number;
  /** Holds each frame back until it may go: a cap on the sending rate (wire bytes), the host's switchover gate. @default none */
  cap?: SendPacer;
}

/** Counters of what a sender put on the wire. */
export interface SenderCounters {
  /** Pages sent, data and zero. */
  pages: number;
  /** Pages sent as page numbers only. */
  zeroPages: number;
  /** Bytes of page data before compression (data pages x page size). */
  bytesRaw: number;
  /** Frame bytes handed to the transport, headers included. */
  bytesWire: number;
}

/** Counters of the `delta` encoding: what went as deltas, and what went whole though cached. */
export interface DeltaCounters {
  /** Batches sent with the `delta` encoding. */
  batches: number;
  /** Pages sent as deltas. */
  pages: number;
  /** Bytes of those pages before encoding (pages x page size). */
  bytesRaw: number;
  /** Pages of `delta` batches that went whole: not cached yet, or changed too much. */
  wholePages: number;
}

interface Slot {
  /** Reserve for the header, then page data: the frame itself when the payload is the raw pages. */
  readonly buffer: Buffer;
  /** Where `buffer` lies in the hasher's region: its pages are hashed there. */
  readonly offset: number;
  /** Reserve for the header, then the encoded payload; allocated when the slot first encodes. */
  out: Buffer | undefined;
  /** Settles when the buffer may be reused. */
  busy: Promise<void>;
}

/** Sends pages of one domain over one transport, numbering batches from 0. */
export class PageSender {
  /** Sequence number of the next batch. */
  seq = 0;
  readonly counters: SenderCounters = { pages: 0, zeroPages: 0, bytesRaw: 0, bytesWire: 0 };
  /** Batches with data pages sent, by the codec of their payload. */
  readonly batchesByCodec: Record<PageCodec, number> = { lz4: 0, none: 0 };
  /** Picks each batch's codec under `auto`; undefined for a fixed codec. */
  readonly chooser: CodecChooser | undefined;
  readonly deltaCounters: DeltaCounters = { batches: 0, pages: 0, bytesRaw: 0, wholePages: 0 };
  /** The cache pages sent again are encoded against, once {@link useDelta} gave one. */
  private delta: { cache: DeltaCache; slots: DeltaSlots } | undefined;

  private readonly pageSize: number;
  /** The fixed codec, or lz4 (the one that encodes) under `auto`. */
  private readonly codecName: PageCodec;
  private readonly codec: PagePayloadCodec;
  /** Batches being encoded now, and since when the encoder has been busy: `auto`'s measure of its pace. */
  private encoding = 0;
  private encoderBusyFrom = 0;
  /** When the latest batch's write completed: the start of the next one's drain if it was queued by then. */
  private lastWrittenAt = Number.NEGATIVE_INFINITY;
  /**
   * How many batches lz4 may encode at once: one per batch in flight, per thread of libuv's pool
   * and per core, whichever is fewest. A probe's pace on one core is multiplied by it.
   */
  private readonly encoders: number;
  private readonly dataPagesPerBatch: number;
  private readonly slots: Slot[];
  private nextSlot = 0;
  /** Settles once the previous batch was handed to the transport: keeps batches in order. */
  private issued: Promise<void> = Promise.resolve();
  /** The first failure of a send; later calls rethrow it. */
  private failure: unknown;
  private readonly zeroPage: Buffer;
  private readonly dataPfns: Uint32Array;
  /** The hash of each data page gathered, in order: the batch's checksum is made of them. */
  private readonly dataHashes: Uint32Array;
  private readonly hasher: PageHasher;
  private readonly zeroPfns: Uint32Array;
  private readonly cap: SendPacer | undefined;
  /** Where {@link wireShare} gathers and encodes its sample, allocated on first use. */
  private sample: { raw: Buffer; out: Buffer } | undefined;
  /** Where {@link wireShare} writes the deltas it measures, allocated on first use. */
  private deltaScratch: Buffer | undefined;
  /** Bytes of a slot's `out` buffer (0 for a codec whose payload is the raw pages). */
  private readonly outBytes: number;

  constructor(
    private readonly domain: SourceDomain,
    private readonly transport: Transport,
    private readonly digest: PageDigest,
    options: PageSenderOptions,
  ) {
    this.pageSize = domain.descriptor.pageSize;
    this.chooser = options.codec === 'auto' ? new CodecChooser({ capBytesPerSec: options.capBytesPerSec }) : undefined;
    this.codecName = options.codec === 'auto' ? 'lz4' : options.codec;
    this.codec = pagePayloadCodec(this.codecName);
    this.dataPagesPerBatch = options.dataPagesPerBatch ?? DEFAULT_DATA_PAGES_PER_BATCH;
    if (!Number.isInteger(this.dataPagesPerBatch) || this.dataPagesPerBatch < 1 || this.dataPagesPerBatch > DEFAULT_MAX_DATA_PAGES_PER_BATCH) {
      throw new InvalidArgumentError(`dataPagesPerBatch must be a whole number from 1 to ${DEFAULT_MAX_DATA_PAGES_PER_BATCH}, got ${String(this.dataPagesPerBatch)}`);
    }
    const inFlight = options.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT_BATCHES;
    if (!Number.isInteger(inFlight) || inFlight < 1 || inFlight > MAX_IN_FLIGHT_BATCHES) {
      throw new InvalidArgumentError(`maxInFlight must be a whole number from 1 to ${MAX_IN_FLIGHT_BATCHES}, got ${String(inFlight)}`);
    }
    this.encoders = Math.max(1, Math.min(inFlight, availableParallelism(), Number(process.env.UV_THREADPOOL_SIZE) || LIBUV_DEFAULT_POOL_THREADS));
    const rawBytes = this.dataPagesPerBatch * this.pageSize;
    this.outBytes = this.codec.payloadIsRaw ? 0 : PAGES_HEADER_RESERVE_BYTES + this.codec.maxPayloadBytes(rawBytes);
    // The slots lie in the hasher's memory, so a batch's pages are hashed where they were gathered.
    const slotBytes = PAGES_HEADER_RESERVE_BYTES + rawBytes;
    this.hasher = new PageHasher(this.pageSize, { regionBytes: inFlight * slotBytes });
    this.slots = Array.from({ length: inFlight }, (_, i) => ({
      buffer: this.hasher.region.subarray(i * slotBytes, (i + 1) * slotBytes),
      offset: i * slotBytes,
      out: undefined,
      busy: Promise.resolve(),
    }));
    this.zeroPage = Buffer.alloc(this.pageSize);
    this.dataPfns = new Uint32Array(this.dataPagesPerBatch);
    this.dataHashes = new Uint32Array(this.dataPagesPerBatch);
    this.zeroPfns = new Uint32Array(DEFAULT_MAX_ZERO_PAGES_PER_BATCH);
    this.cap = options.cap;
  }

  /**
   * From now on, batches of round 1 and later go as `delta` batches when a page of theirs is
   * cached: the target has agreed to version 4 or 5.
   */
  useDelta(cache: DeltaCache): void {
    this.delta = { cache, slots: deltaSlots(cache.data, cache.hashes) };
  }

  /**
   * Bytes this sender's buffers hold now: every slot's page buffer, the encoding buffers of the
   * slots that have encoded, and the sample buffers once used (the page-number scratch is small
   * and left out).
   */
  get bufferBytes(): number {
    let n = 0;
    for (const s of this.slots) n += s.buffer.length + (s.out?.length ?? 0);
    if (this.sample) n += this.sample.raw.length + this.sample.out.length;
    return n + (this.deltaScratch?.length ?? 0);
  }

  /**
   * The most {@link bufferBytes} may come to without deltas: every slot encoding, and the sample
   * buffers in use (deltas add a byte a page to the encoding buffers, and a page of scratch).
   */
  get mostBufferBytes(): number {
    const sample = WIRE_SAMPLE_RUN_PAGES * this.pageSize;
    return this.slots.length * (this.slots[0]!.buffer.length + this.outBytes) + sample + this.codec.maxPayloadBytes(sample);
  }

  /**
   * Sends the pages `pfns` as part of `round`. Resolves when every batch has been
   * queued (not necessarily written); `flush` waits for the writes.
   */
  async sendPages(round: number, pfns: Uint32Array): Promise<void> {
    const pageSize = this.pageSize;
    const maxZeros = DEFAULT_MAX_ZERO_PAGES_PER_BATCH;
    let slot: Slot | undefined;
    let dataCount = 0;
    let zeroCount = 0;
    for (let i = 0; i < pfns.length; ) {
      // A slot is taken only when a page needs one, so the last batch does not wait for a
      // buffer it will not use.
      slot ??= await this.acquireSlot();
      // As many pages as the batch has room for, read behind the data pages gathered so far;
      // zero pages among them then give their room to the data pages after them.
      const count = Math.min(this.dataPagesPerBatch - dataCount, maxZeros - zeroCount, pfns.length - i);
      const chunk = pfns.subarray(i, i + count);
      const at = PAGES_HEADER_RESERVE_BYTES + dataCount * pageSize;
      const read = this.domain.readPages(chunk, slot.buffer.subarray(at, at + count * pageSize));
      if (read !== undefined) await read;
      // The hasher's module sorts the pages in one call where it runs; else page by page here.
      const sorted = this.hasher.compactRegion(slot.offset + at, count);
      if (sorted) {
        const flags = sorted.zeroFlags;
        for (let k = 0; k < count; k++) {
          const pfn = chunk[k]!;
          if (flags[k] === 0) {
            this.dataPfns[dataCount++] = pfn;
            continue;
          }
          this.zeroPfns[zeroCount++] = pfn;
          this.noteZeroPage(pfn);
        }
      } else for (let k = 0; k < count; k++) {
        const pfn = chunk[k]!;
        const from = at + k * pageSize;
        if (slot.buffer.compare(this.zeroPage, 0, pageSize, from, from + pageSize) === 0) {
          this.zeroPfns[zeroCount++] = pfn;
          this.noteZeroPage(pfn);
          continue;
        }
        const to = PAGES_HEADER_RESERVE_BYTES + dataCount * pageSize;
        if (to !== from) slot.buffer.copyWithin(to, from, from + pageSize);
        this.dataPfns[dataCount++] = pfn;
      }
      i += count;
      if (dataCount === this.dataPagesPerBatch || zeroCount === maxZeros) {
        this.dispatch(slot, round, dataCount, zeroCount);
        dataCount = 0;
        zeroCount = 0;
        slot = undefined;
      }
    }
    if (slot && (dataCount > 0 || zeroCount > 0)) this.dispatch(slot, round, dataCount, zeroCount);
  }

  /** A page read as zeros: the digest records it so, and no delta can be based on it. */
  private noteZeroPage(pfn: number): void {
    this.digest.zero(pfn);
    this.delta?.cache.drop(pfn);
  }

  /**
   * The share of their size that `pfns` would take on the wire, estimated from a few runs of
   * consecutive entries spread over the list, gathered and compressed as a batch is: zero pages
   * count as nothing, data pages as their compressed size (their size with codec none).
   * Undefined for an empty list. The pages a guest dirties may compress quite differently from
   * its memory as a whole, hence a sample of these very pages. With deltas, a cached page counts
   * as its delta against the cache now (or whole, if it changed too much).
   */
  async wireShare(pfns: Uint32Array): Promise<number | undefined> {
    if (pfns.length === 0) return undefined;
    const pageSize = this.pageSize;
    const runPages = Math.min(WIRE_SAMPLE_RUN_PAGES, pfns.length);
    this.sample ??= this.allocateSample();
    const buffer = this.sample.raw;
    // Under `auto`, the pages would go with the codec in use now.
    const raw = this.codec.payloadIsRaw || this.chooser?.decide() === 'none';
    const runs = Math.min(WIRE_SAMPLE_RUNS, Math.ceil(pfns.length / runPages));
    let sampled = 0;
    let wire = 0;
    for (let run = 0; run < runs; run++) {
      // A run centred in its share of the list, kept inside it.
      const first = Math.max(0, Math.min(pfns.length - runPages, Math.floor(((run + 0.5) * pfns.length) / runs - runPages / 2)));
      const read = this.domain.readPages(pfns.subarray(first, first + runPages), buffer);
      if (read !== undefined) await read;
      let data = 0;
      for (let i = 0; i < runPages; i++) {
        const from = i * pageSize;
        if (buffer.compare(this.zeroPage, 0, pageSize, from, from + pageSize) === 0) continue;
        const cached = this.delta ? this.delta.cache.slotFor(pfns[first + i]!) : -1;
        if (cached >= 0) {
          wire += this.deltaSize(cached, buffer, from);
          continue;
        }
        if (data !== i) buffer.copyWithin(data * pageSize, from, from + pageSize);
        data++;
      }
      sampled += runPages * pageSize;
      if (data === 0) continue;
      const pages = buffer.subarray(0, data * pageSize);
      wire += raw ? pages.length : this.codec.encodeSync(pages, this.sample.out);
    }
    return wire / sampled;
  }

  /** Wire bytes the page at `from` of `buffer` would take as a delta against cache slot `slot`. */
  private deltaSize(slot: number, buffer: Uint8Array, from: number): number {
    const { slots } = this.delta!;
    const base = slot * this.pageSize;
    this.deltaScratch ??= Buffer.allocUnsafe(this.pageSize + 1);
    const end = writeDeltaEntry(slots.data, base, 0, buffer, from, this.deltaScratch, 0, this.pageSize);
    return end >= 0 ? end : this.pageSize + 1;
  }

  /**
   * Resolves when every batch queued so far has been passed to the transport, so a record sent
   * after this follows them on the wire; they may not be written yet (`flush` waits for that).
   */
  async handedOver(): Promise<void> {
    await this.issued;
    this.throwIfFailed();
  }

  /** Resolves when every batch queued so far has been handed to the operating system. */
  async flush(): Promise<void> {
    await Promise.all(this.slots.map((s) => s.busy));
    this.throwIfFailed();
  }

  private async acquireSlot(): Promise<Slot> {
    const slot = this.slots[this.nextSlot]!;
    this.nextSlot = (this.nextSlot + 1) % this.slots.length;
    await slot.busy;
    this.throwIfFailed();
    return slot;
  }

  private throwIfFailed(): void {
    if (this.failure !== undefined) throw this.failure;
  }

  /**
   * Compresses a run of WIRE_SAMPLE_RUN_PAGES pages from the middle of `raw` on this thread, timed
   * to the microsecond, for the chooser: lz4's ratio on these pages and one core's pace, which
   * the pool's encoders would multiply. Takes a few hundred microseconds, and sends nothing.
   */
  private probe(raw: Buffer): void {
    const runBytes = Math.min(raw.length, WIRE_SAMPLE_RUN_PAGES * this.pageSize);
    const from = Math.floor((raw.length - runBytes) / 2 / this.pageSize) * this.pageSize;
    this.sample ??= this.allocateSample();
    const started = performance.now();
    const wire = this.codec.encodeSync(raw.subarray(from, from + runBytes), this.sample.out);
    this.chooser?.observeEncode(runBytes, wire, performance.now() - started, this.encoders);
  }

  private allocateSample(): { raw: Buffer; out: Buffer } {
    const bytes = WIRE_SAMPLE_RUN_PAGES * this.pageSize;
    return { raw: Buffer.allocUnsafe(bytes), out: Buffer.allocUnsafe(this.codec.maxPayloadBytes(bytes)) };
  }

  /** Counts an encode in; returns when it started. */
  private encoderStarts(): number {
    const now = performance.now();
    if (this.encoding++ === 0) this.encoderBusyFrom = now;
    return now;
  }

  /**
   * Counts an encode out and tells the chooser: the time it adds to the encoder's busy time is
   * from its start or the previous encode's end, the later, so encodes that overlap on the pool
   * are not counted twice.
   */
  private encoderEnds(started: number, rawBytes: number, wireBytes: number): void {
    const now = performance.now();
    this.chooser?.observeEncode(rawBytes, wireBytes, now - Math.max(started, this.encoderBusyFrom), 1);
    this.encoderBusyFrom = now;
    this.encoding--;
  }

  /**
   * Under `auto`, tells the chooser how long `written` took to drain when it queued behind the
   * previous frame: from that frame's completion to its own, the link's (or the target's) pace.
   */
  private timeDrain(written: Promise<void>, wireBytes: number): Promise<void> {
    if (!this.chooser) return written;
    const chooser = this.chooser;
    const queuedAt = performance.now();
    return written.then(() => {
      const now = performance.now();
      if (queuedAt < this.lastWrittenAt) chooser.observeDrain(wireBytes, now - this.lastWrittenAt);
      this.lastWrittenAt = now;
    });
  }

  /** Turns the gathered pages in `slot` into a frame and queues it behind the previous batch. */
  private dispatch(slot: Slot, round: number, dataCount: number, zeroCount: number): void {
    this.hasher.hashRegion(slot.offset + PAGES_HEADER_RESERVE_BYTES, dataCount, this.dataHashes);
    for (let k = 0; k < dataCount; k++) this.digest.set(this.dataPfns[k]!, this.dataHashes[k]!);
    const seq = this.seq++;
    const rawLength = dataCount * this.pageSize;
    const pages = writePageNumbers(this.dataPfns, dataCount);
    const zeros = writePageNumbers(this.zeroPfns, zeroCount);
    const checksum = batchChecksum(this.dataHashes.subarray(0, dataCount), seq);
    if (this.delta && dataCount > 0 && round > 0 && this.dispatchDelta(slot, { round, seq, pages, zeros, rawLength, checksum }, dataCount, zeroCount)) return;
    // A batch without data pages has an empty payload whatever its codec; it is labelled none (protocol.md §4).
    const choice = dataCount === 0 ? { codec: 'none' as const, probe: false } : (this.chooser?.next() ?? { codec: this.codecName, probe: false });
    const codec = choice.codec;
    if (dataCount > 0) this.batchesByCodec[codec]++;
    const raw = slot.buffer.subarray(PAGES_HEADER_RESERVE_BYTES, PAGES_HEADER_RESERVE_BYTES + rawLength);
    const header = { round, seq, pages, zeros, codec, rawLength, checksum };
    this.countBatch(dataCount, zeroCount);

    // The frame is ready now (raw pages) or once the codec has encoded them, perhaps on the
    // thread pool while the next batch is gathered. Either way it goes out after the previous one.
    let frame: Promise<Uint8Array>;
    if (codec !== 'none' && this.outBytes > 0) slot.out ??= Buffer.allocUnsafe(this.outBytes);
    const out = slot.out;
    if (choice.probe) this.probe(raw);
    if (codec === 'none' || out === undefined) {
      frame = Promise.resolve(encodePagesInPlace(header, slot.buffer, PAGES_HEADER_RESERVE_BYTES, rawLength));
    } else {
      const started = this.encoderStarts();
      frame = this.codec.encode(raw, out.subarray(PAGES_HEADER_RESERVE_BYTES)).then((length) => {
        this.encoderEnds(started, rawLength, length);
        return encodePagesInPlace(header, out, PAGES_HEADER_RESERVE_BYTES, length);
      });
    }
    this.queue(slot, frame);
  }

  private countBatch(dataCount: number, zeroCount: number): void {
    this.counters.pages += dataCount + zeroCount;
    this.counters.zeroPages += zeroCount;
    this.counters.bytesRaw += dataCount * this.pageSize;
  }

  /**
   * Sends the gathered batch as a `delta` batch if any of its pages is cached, and returns true;
   * else stores its pages in the slots the cache gave them and returns false, for the batch to go
   * with its codec. The encoding runs here, on this thread: a page takes a few microseconds.
   */
  private dispatchDelta(
    slot: Slot,
    header: { round: number; seq: number; pages: Uint8Array; zeros: Uint8Array; rawLength: number; checksum: string },
    dataCount: number,
    zeroCount: number,
  ): boolean {
    const { cache, slots } = this.delta!;
    const codes = cache.assign(header.round, this.dataPfns.subarray(0, dataCount));
    if (!anyBase(codes, dataCount)) {
      storeInSlots(slot.buffer, PAGES_HEADER_RESERVE_BYTES, dataCount, codes, this.dataHashes, slots, this.pageSize);
      return false;
    }
    const need = PAGES_HEADER_RESERVE_BYTES + deltaMaxPayloadBytes(this.dataPagesPerBatch * this.pageSize);
    if (!slot.out || slot.out.length < need) slot.out = Buffer.allocUnsafe(Math.max(need, this.outBytes));
    const out = slot.out;
    const encoded = encodeDeltaBatch(slot.buffer, PAGES_HEADER_RESERVE_BYTES, dataCount, codes, this.dataHashes, slots, out, PAGES_HEADER_RESERVE_BYTES, this.pageSize);
    const d = this.deltaCounters;
    d.batches++;
    d.pages += encoded.deltas;
    d.bytesRaw += encoded.deltas * this.pageSize;
    d.wholePages += dataCount - encoded.deltas;
    this.countBatch(dataCount, zeroCount);
    this.queue(slot, Promise.resolve(encodePagesInPlace({ ...header, codec: 'delta' }, out, PAGES_HEADER_RESERVE_BYTES, encoded.length)));
    return true;
  }

  /** Queues a batch's frame behind the previous batch's; the slot is busy until it is written. */
  private queue(slot: Slot, frame: Promise<Uint8Array>): void {
    // A batch that failed must stop every later one, or the target would see a gap in `seq`:
    // `issued` records the failure before the next batch's turn comes.
    const handedOver = this.issued
      .then(() => frame)
      .then(async (f) => {
        if (this.cap) await this.cap.take(f.length);
        this.throwIfFailed();
        this.counters.bytesWire += f.length;
        return { written: this.timeDrain(this.transport.send(f), f.length) };
      });
    this.issued = handedOver.then(
      () => undefined,
      (err: unknown) => {
        this.failure ??= err;
      },
    );
    slot.busy = handedOver
      .then((h) => h.written)
      .catch((err: unknown) => {
        this.failure ??= err;
      });
  }
}
