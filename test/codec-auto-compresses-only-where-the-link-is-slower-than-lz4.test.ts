// Codec auto's rule, on measures given to it: lz4 only when the link sets the pace and the
// pages shrink, and a probe every so often while it sends uncompressed.
import { describe, expect, test } from 'vitest';
import { AUTO_CODEC_ENTER_BATCHES, AUTO_CODEC_MIN_DRAINS, AUTO_CODEC_PROBE_INTERVAL, CodecChooser } from '../dist/precopy/codec-choice.js';

const MiB = 1024 * 1024;

/** A chooser that has seen lz4 encode 1 MiB batches at `encodeBytesPerSec` down to `ratio` of their size. */
function measured(options: { capBytesPerSec?: number; drainBytesPerSec?: number; encodeBytesPerSec: number; ratio: number }): CodecChooser {
  const chooser = new CodecChooser({ capBytesPerSec: options.capBytesPerSec });
  for (let i = 0; i < 8; i++) {
    chooser.observeEncode(MiB, options.ratio * MiB, (MiB / options.encodeBytesPerSec) * 1000);
    if (options.drainBytesPerSec !== undefined) chooser.observeDrain(MiB, (MiB / options.drainBytesPerSec) * 1000);
  }
  settle(chooser);
  return chooser;
}

/** Names AUTO_CODEC_ENTER_BATCHES batches, enough for the rule to turn lz4 on; returns their codecs. */
function settle(chooser: CodecChooser): string[] {
  return Array.from({ length: AUTO_CODEC_ENTER_BATCHES }, () => chooser.next().codec);
}

describe('codec auto picks', () => {
  test('none when the link drains faster than lz4 encodes, however well the pages compress', () => {
    const chooser = measured({ drainBytesPerSec: 1.2e9, encodeBytesPerSec: 0.22e9, ratio: 0.3 });
    expect(chooser.linkBytesPerSec()).toBeCloseTo(1.2e9, -3);
    expect(chooser.decide()).toBe('none');
    // A cap above the link does not make it slower; one below it does.
    expect(measured({ capBytesPerSec: 10e9, drainBytesPerSec: 1.2e9, encodeBytesPerSec: 0.22e9, ratio: 0.3 }).decide()).toBe('none');
    expect(measured({ capBytesPerSec: 0.125e9, drainBytesPerSec: 1.2e9, encodeBytesPerSec: 0.22e9, ratio: 0.3 }).decide()).toBe('lz4');
  });

  test('lz4 behind a slow link when the pages compress, measured or capped', () => {
    expect(measured({ capBytesPerSec: 0.125e9, encodeBytesPerSec: 0.22e9, ratio: 0.58 }).decide()).toBe('lz4');
    // A measured link must be slower than lz4 twofold (AUTO_CODEC_ENTER_FACTOR).
    expect(measured({ drainBytesPerSec: 0.05e9, encodeBytesPerSec: 0.22e9, ratio: 0.58 }).decide()).toBe('lz4');
  });

  test('none behind a slow link when the pages do not compress, or lz4 saves less than the margin', () => {
    expect(measured({ capBytesPerSec: 0.125e9, encodeBytesPerSec: 0.22e9, ratio: 1.004 }).decide()).toBe('none');
    expect(measured({ capBytesPerSec: 0.125e9, encodeBytesPerSec: 0.22e9, ratio: 0.95 }).decide()).toBe('none');
    // Compressible, but the encoder only just keeps up with the link: no time saved.
    expect(measured({ capBytesPerSec: 0.125e9, encodeBytesPerSec: 0.13e9, ratio: 0.3 }).decide()).toBe('none');
  });

  test('none until the link and lz4 are both measured', () => {
    const chooser = new CodecChooser();
    expect(settle(chooser)).not.toContain('lz4');
    chooser.observeEncode(MiB, 0.3 * MiB, 2);
    expect(settle(chooser)).not.toContain('lz4');
    // A slow link, but measured by fewer drains than the least: it still counts as fast.
    for (let i = 1; i < AUTO_CODEC_MIN_DRAINS; i++) chooser.observeDrain(MiB, 10);
    expect(chooser.linkBytesPerSec()).toBeUndefined();
    expect(settle(chooser)).not.toContain('lz4');
    chooser.observeDrain(MiB, 10);
    expect(settle(chooser).at(-1)).toBe('lz4');
  });

  test('follows the pages: a run of incompressible batches turns lz4 off', () => {
    const chooser = measured({ capBytesPerSec: 0.125e9, encodeBytesPerSec: 0.22e9, ratio: 0.4 });
    expect(chooser.decide()).toBe('lz4');
    for (let i = 0; i < 8; i++) chooser.observeEncode(MiB, 1.004 * MiB, 4);
    expect(chooser.ratio()).toBeCloseTo(1.004, 6);
    // Once lz4 has been on for its first AUTO_CODEC_ENTER_BATCHES batches.
    expect([...settle(chooser), chooser.next().codec].at(-1)).toBe('none');
  });

  test('probes one batch in AUTO_CODEC_PROBE_INTERVAL while sending uncompressed, none while compressing', () => {
    const fast = measured({ drainBytesPerSec: 1.2e9, encodeBytesPerSec: 0.22e9, ratio: 0.5 });
    const picks = Array.from({ length: 4 * AUTO_CODEC_PROBE_INTERVAL }, () => fast.next());
    expect(picks.every((p) => p.codec === 'none')).toBe(true);
    const probes = picks.flatMap((p, i) => (p.probe ? [i] : []));
    expect(probes).toHaveLength(4);
    expect(probes.slice(1).map((at, k) => at - probes[k]!)).toEqual([1, 2, 3].map(() => AUTO_CODEC_PROBE_INTERVAL));
    const slow = measured({ capBytesPerSec: 0.125e9, encodeBytesPerSec: 0.22e9, ratio: 0.5 });
    const compressed = Array.from({ length: 2 * AUTO_CODEC_PROBE_INTERVAL }, () => slow.next());
    expect(compressed.every((p) => p.codec === 'lz4' && !p.probe)).toBe(true);
  });
});
