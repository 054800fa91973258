/**
 * Codec `auto`: lz4 or none for each batch, whichever moves it sooner (docs/convergence.md,
 * "Codec auto"). A batch of R raw bytes takes R/B on a link of B bytes/s uncompressed; with lz4
 * it takes the longer of encoding it, R/C at the encoder's measured pace C, and sending its
 * wire bytes, r·R/B at lz4's recent wire/raw ratio r. So lz4 goes only when
 * max(1/C, r/B) < (1 − margin)/B: the link, not the CPU, sets the pace, and the pages shrink.
 *
 * B is the bandwidth cap when one is set, or the pace at which the transport drained batches that
 * queued behind one another (a backlog: then the link or the target sets the pace, not the
 * sender), whichever is lower. While lz4 is in use, C counts the time at least one batch was
 * being encoded (on libuv's pool, beside the main thread gathering the next ones), so it is the
 * encoders' pace as this machine's cores give it. While none is chosen, one batch in
 * `probeInterval` is a probe: a run of its pages is compressed on the main thread (a few hundred
 * microseconds, nothing waits for the pool), and C is that one core's pace times the encoders
 * that could run at once; the batch goes uncompressed.
 */

import { PAGE_CODECS, type PageCodec } from '../protocol/page-codecs.js';

/** What `codec` may be set to: a codec of the wire, or `auto`, which picks one per batch. */
export type CodecChoice = PageCodec | 'auto';

/** Every codec choice, in the order a user is offered them. */
export const CODEC_CHOICES: readonly CodecChoice[] = ['auto', ...PAGE_CODECS];

/** The codec a migration uses unless told otherwise. */
export const DEFAULT_CODEC: CodecChoice = 'auto';

/** The share of a batch's time lz4 must save before `auto` uses it: measurements wobble. */
export const AUTO_CODEC_MARGIN = 0.1;

/** While `auto` sends uncompressed, one batch in this many is compressed to measure lz4. */
export const AUTO_CODEC_PROBE_INTERVAL = 16;

/** Batches each measure of `auto` is summed over: recent enough to follow pages that change. */
export const AUTO_CODEC_WINDOW = 8;

/** Options of a {@link CodecChooser}. */
export interface CodecChooserOptions {
  /** The bandwidth cap, in bytes per second: the link is no faster than this. */
  capBytesPerSec?: number;
  /** @default AUTO_CODEC_MARGIN */
  margin?: number;
  /** @default AUTO_CODEC_PROBE_INTERVAL */
  probeInterval?: number;
}

/** Sums of two quantities over the latest AUTO_CODEC_WINDOW samples. */
class Window {
  private readonly a: number[] = [];
  private readonly b: number[] = [];
  private sumA = 0;
  private sumB = 0;

  add(a: number, b: number): void {
    this.a.push(a);
    this.b.push(b);
    this.sumA += a;
    this.sumB += b;
    if (this.a.length > AUTO_CODEC_WINDOW) {
      this.sumA -= this.a.shift()!;
      this.sumB -= this.b.shift()!;
    }
  }

  /** sum(a) / sum(b), undefined before any sample or while sum(b) is 0. */
  ratio(): number | undefined {
    return this.sumB > 0 ? this.sumA / this.sumB : undefined;
  }
}

/** Picks the codec of each batch of one migration from what its sender measures. */
export class CodecChooser {
  private batches = 0;
  private readonly encoded = new Window();
  private readonly ratios = new Window();
  private readonly drained = new Window();
  private readonly margin: number;
  private readonly probeInterval: number;

  constructor(private readonly options: CodecChooserOptions = {}) {
    this.margin = options.margin ?? AUTO_CODEC_MARGIN;
    this.probeInterval = options.probeInterval ?? AUTO_CODEC_PROBE_INTERVAL;
  }

  /**
   * The codec of the next batch with data pages, the rule's, and whether the sender should also
   * compress it (without sending the result) to measure lz4: a probe.
   */
  next(): { codec: PageCodec; probe: boolean } {
    const codec = this.decide();
    const probe = codec === 'none' && this.batches++ % this.probeInterval === 0;
    return { codec, probe };
  }

  /**
   * What the rule says now, probes aside: lz4 once the encoder's pace, lz4's ratio and the link
   * are known and lz4 saves at least the margin; none otherwise (a link not measured yet counts
   * as fast).
   */
  decide(): PageCodec {
    const b = this.linkBytesPerSec();
    const c = this.encodeBytesPerSec();
    const r = this.ratio();
    if (b === undefined || c === undefined || r === undefined) return 'none';
    return Math.max(1 / c, r / b) < (1 - this.margin) / b ? 'lz4' : 'none';
  }

  /**
   * lz4 turned `rawBytes` into `wireBytes` of payload in `busyMs` of encoder time, with
   * `parallel` encoders able to run at once: a probe on one core counts for each of them.
   */
  observeEncode(rawBytes: number, wireBytes: number, busyMs: number, parallel = 1): void {
    if (!(rawBytes > 0)) return;
    this.ratios.add(wireBytes, rawBytes);
    if (busyMs > 0) this.encoded.add(rawBytes * parallel, busyMs / 1000);
  }

  /** The transport drained `wireBytes` in `ms` while batches were queued behind one another. */
  observeDrain(wireBytes: number, ms: number): void {
    if (wireBytes > 0 && ms > 0) this.drained.add(wireBytes, ms / 1000);
  }

  /** The link's pace in bytes per second: the cap or the measured drain, the lower; undefined while unknown. */
  linkBytesPerSec(): number | undefined {
    const drained = this.drained.ratio();
    const cap = this.options.capBytesPerSec;
    if (cap === undefined) return drained;
    return drained === undefined ? cap : Math.min(cap, drained);
  }

  /** lz4's encoding pace in raw bytes per second, undefined before a batch was encoded. */
  encodeBytesPerSec(): number | undefined {
    return this.encoded.ratio();
  }

  /** lz4's recent wire/raw ratio on these pages, undefined before a batch was encoded. */
  ratio(): number | undefined {
    return this.ratios.ratio();
  }
}
