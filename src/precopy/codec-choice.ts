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
 *
 * On loopback the drain is the target's pace, not a wire's, and it dips for a few batches when
 * the target faults in fresh memory or the machine is busy; a probe on one core is also kinder
 * than the pool under load. So turning lz4 on asks more than keeping it: B from the drain is the
 * median of many batches, the rule must hold for `enterBatches` batches in a row, and a measured
 * link must be slower than lz4's pace by `enterFactor`, not just the margin. A cap is a fact,
 * not an estimate, so behind one the margin and the run of batches suffice. lz4 then stays on
 * until it is measured slower than none, margin or not, so a pace near the line does not flap,
 * and for at least `enterBatches` batches, so its first, cold encodes do not turn it off.
 */

import { debuglog } from 'node:util';
import { PAGE_CODECS, type PageCodec } from '../protocol/page-codecs.js';

/** `NODE_DEBUG=livemig-codec` prints each switch of `auto` with the measures behind it. */
const trace = debuglog('livemig-codec');

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

/** Drains the link's pace is the median of: a dip of a few batches must not move it. */
export const AUTO_CODEC_DRAIN_WINDOW = 32;

/** Drains measured, at least, before the link counts as measured (it counts as fast until then). */
export const AUTO_CODEC_MIN_DRAINS = 8;

/** Batches in a row the rule must pick lz4 for before `auto` turns it on. */
export const AUTO_CODEC_ENTER_BATCHES = 8;

/** How many times the pace lz4 needs a measured link must be slower than lz4 to turn it on. */
export const AUTO_CODEC_ENTER_FACTOR = 2;

/** Options of a {@link CodecChooser}. */
export interface CodecChooserOptions {
  /** The bandwidth cap, in bytes per second: the link is no faster than this. */
  capBytesPerSec?: number;
  /** @default AUTO_CODEC_MARGIN */
  margin?: number;
  /** @default AUTO_CODEC_PROBE_INTERVAL */
  probeInterval?: number;
  /** @default AUTO_CODEC_ENTER_BATCHES */
  enterBatches?: number;
  /** @default AUTO_CODEC_ENTER_FACTOR */
  enterFactor?: number;
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

/** The median of the latest `size` samples. */
class Median {
  private readonly samples: number[] = [];

  constructor(private readonly size: number) {}

  add(v: number): void {
    this.samples.push(v);
    if (this.samples.length > this.size) this.samples.shift();
  }

  get count(): number {
    return this.samples.length;
  }

  /** The middle sample (the mean of the two middle ones), undefined before any. */
  value(): number | undefined {
    const n = this.samples.length;
    if (n === 0) return undefined;
    const sorted = [...this.samples].sort((a, b) => a - b);
    return n % 2 === 1 ? sorted[(n - 1) / 2] : (sorted[n / 2 - 1]! + sorted[n / 2]!) / 2;
  }
}

/** Picks the codec of each batch of one migration from what its sender measures. */
export class CodecChooser {
  private batches = 0;
  /** Batches named so far: for the trace. */
  private picked = 0;
  private readonly encoded = new Window();
  private readonly ratios = new Window();
  private readonly drained = new Median(AUTO_CODEC_DRAIN_WINDOW);
  private readonly margin: number;
  private readonly probeInterval: number;
  private readonly enterBatches: number;
  private readonly enterFactor: number;
  /** The codec batches go with now. */
  private current: PageCodec = 'none';
  /** While none is in use, for how many batches in a row the rule has wanted lz4. */
  private streak = 0;
  /** Batches lz4 stays on for whatever it measures, after it went on: its first encodes run cold. */
  private dwell = 0;

  constructor(private readonly options: CodecChooserOptions = {}) {
    this.margin = options.margin ?? AUTO_CODEC_MARGIN;
    this.probeInterval = options.probeInterval ?? AUTO_CODEC_PROBE_INTERVAL;
    this.enterBatches = options.enterBatches ?? AUTO_CODEC_ENTER_BATCHES;
    this.enterFactor = options.enterFactor ?? AUTO_CODEC_ENTER_FACTOR;
  }

  /**
   * The codec of the next batch with data pages, and whether the sender should also compress it
   * (without sending the result) to measure lz4: a probe. lz4 goes on once the rule has said so
   * for `enterBatches` batches in a row, and off when the rule says so after as many more: the
   * first encodes on the pool (buffers and threads not yet warm) understate its pace.
   */
  next(): { codec: PageCodec; probe: boolean } {
    if (this.current === 'lz4') {
      if (this.dwell > 0) this.dwell--;
      else if (!this.rule(false)) this.switchTo('none');
    } else if (!this.rule(true)) {
      this.streak = 0;
    } else if (++this.streak >= this.enterBatches) {
      this.switchTo('lz4');
    }
    this.picked++;
    const codec = this.current;
    const probe = codec === 'none' && this.batches++ % this.probeInterval === 0;
    return { codec, probe };
  }

  /** The codec batches go with now, probes aside. */
  decide(): PageCodec {
    return this.current;
  }

  /**
   * Whether lz4 moves a batch sooner, once the encoder's pace, lz4's ratio and the link are known
   * (a link not measured yet counts as fast). To turn lz4 on (`entering`) it must save the margin,
   * and a link measured by its drain must be slower than lz4's pace by `enterFactor`; to keep it
   * on, it need only not be slower: between the two, the codec in use stays.
   */
  private rule(entering: boolean): boolean {
    const b = this.linkBytesPerSec();
    const c = this.encodeBytesPerSec();
    const r = this.ratio();
    if (b === undefined || c === undefined || r === undefined) return false;
    const cap = this.options.capBytesPerSec;
    const pace = entering && (cap === undefined || b < cap) ? c / this.enterFactor : c;
    return Math.max(1 / pace, r / b) < (entering ? 1 - this.margin : 1) / b;
  }

  private switchTo(codec: PageCodec): void {
    this.current = codec;
    this.streak = 0;
    this.dwell = codec === 'lz4' ? this.enterBatches : 0;
    if (trace.enabled) this.traceSwitch(codec);
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
    if (wireBytes > 0 && ms > 0) this.drained.add(wireBytes / (ms / 1000));
  }

  /**
   * The link's pace in bytes per second: the cap or the measured drain (the median of the latest
   * AUTO_CODEC_DRAIN_WINDOW, once AUTO_CODEC_MIN_DRAINS were measured), the lower; undefined while unknown.
   */
  linkBytesPerSec(): number | undefined {
    const drained = this.drainBytesPerSec();
    const cap = this.options.capBytesPerSec;
    if (cap === undefined) return drained;
    return drained === undefined ? cap : Math.min(cap, drained);
  }

  /** The median drain pace, undefined until AUTO_CODEC_MIN_DRAINS were measured. */
  drainBytesPerSec(): number | undefined {
    return this.drained.count >= AUTO_CODEC_MIN_DRAINS ? this.drained.value() : undefined;
  }

  /** lz4's encoding pace in raw bytes per second, undefined before a batch was encoded. */
  encodeBytesPerSec(): number | undefined {
    return this.encoded.ratio();
  }

  /** lz4's recent wire/raw ratio on these pages, undefined before a batch was encoded. */
  ratio(): number | undefined {
    return this.ratios.ratio();
  }

  private traceSwitch(codec: PageCodec): void {
    const mbps = (v: number | undefined) => (v === undefined ? '-' : (v / 1e6).toFixed(0));
    trace('batch %d: %s (link %s MB/s, drain %s, cap %s, lz4 %s MB/s, ratio %s)', this.picked, codec, mbps(this.linkBytesPerSec()), mbps(this.drainBytesPerSec()), mbps(this.options.capBytesPerSec), mbps(this.encodeBytesPerSec()), this.ratio()?.toFixed(3) ?? '-');
  }
}
