// Codec auto turns lz4 on only on evidence that lasts: a drain that dips for a few batches, a
// measured link only a little slower than lz4, or a rule that holds for fewer batches than
// AUTO_CODEC_ENTER_BATCHES leave it off; once on, lz4 stays while it is no slower than none.
import { describe, expect, test } from 'vitest';
import { AUTO_CODEC_DRAIN_WINDOW, AUTO_CODEC_ENTER_BATCHES, CodecChooser } from '../dist/precopy/codec-choice.js';

const MiB = 1024 * 1024;

/** lz4 measured encoding 1 MiB batches at `bytesPerSec` down to `ratio` of their size, eight times. */
function encodes(chooser: CodecChooser, bytesPerSec: number, ratio = 0.58): void {
  for (let i = 0; i < 8; i++) chooser.observeEncode(MiB, ratio * MiB, (MiB / bytesPerSec) * 1000);
}

/** The transport drained a 1 MiB batch at `bytesPerSec`. */
function drain(chooser: CodecChooser, bytesPerSec: number): void {
  chooser.observeDrain(MiB, (MiB / bytesPerSec) * 1000);
}

describe('codec auto on loopback', () => {
  test('a drain that dips for a few batches does not turn lz4 on', () => {
    const chooser = new CodecChooser();
    encodes(chooser, 0.6e9);
    for (let i = 0; i < AUTO_CODEC_DRAIN_WINDOW; i++) drain(chooser, 1.5e9);
    const codecs: string[] = [];
    // The target stalls for six batches (faulting in fresh memory): each drains at 40 MB/s.
    for (let i = 0; i < 6; i++) {
      drain(chooser, 40e6);
      codecs.push(chooser.next().codec);
    }
    for (let i = 0; i < 2 * AUTO_CODEC_ENTER_BATCHES; i++) {
      drain(chooser, 1.5e9);
      codecs.push(chooser.next().codec);
    }
    expect(codecs.every((c) => c === 'none')).toBe(true);
    expect(chooser.linkBytesPerSec()).toBeGreaterThan(1e9);
  });

  test('a measured link only a little slower than lz4 keeps it off; a cap as slow turns it on', () => {
    // The drain (0.4 GB/s) is slower than lz4 (0.6 GB/s) by more than the margin, not twofold.
    const measured = new CodecChooser();
    encodes(measured, 0.6e9);
    const codecs: string[] = [];
    for (let i = 0; i < 4 * AUTO_CODEC_ENTER_BATCHES; i++) {
      drain(measured, 0.4e9);
      codecs.push(measured.next().codec);
    }
    expect(codecs.every((c) => c === 'none')).toBe(true);
    // The same pace as a cap is known, not estimated: lz4 goes on.
    const capped = new CodecChooser({ capBytesPerSec: 0.4e9 });
    encodes(capped, 0.6e9);
    const picks = Array.from({ length: 2 * AUTO_CODEC_ENTER_BATCHES }, () => capped.next().codec);
    expect(picks.at(-1)).toBe('lz4');
  });

  test('a link slower than lz4 twofold, measured steadily, turns it on', () => {
    const chooser = new CodecChooser();
    encodes(chooser, 0.6e9);
    for (let i = 0; i < AUTO_CODEC_DRAIN_WINDOW; i++) drain(chooser, 0.1e9);
    const picks = Array.from({ length: 2 * AUTO_CODEC_ENTER_BATCHES }, () => chooser.next().codec);
    expect(picks.at(-1)).toBe('lz4');
  });
});

describe('codec auto switching', () => {
  test('lz4 goes on after AUTO_CODEC_ENTER_BATCHES batches in a row that want it, counted again after a break', () => {
    const chooser = new CodecChooser({ capBytesPerSec: 0.125e9 });
    encodes(chooser, 0.6e9);
    const first = Array.from({ length: AUTO_CODEC_ENTER_BATCHES - 1 }, () => chooser.next().codec);
    expect(first.every((c) => c === 'none')).toBe(true);
    // The pages stop shrinking for a batch: the run starts over.
    encodes(chooser, 0.6e9, 1.004);
    expect(chooser.next().codec).toBe('none');
    encodes(chooser, 0.6e9);
    const second = Array.from({ length: AUTO_CODEC_ENTER_BATCHES }, () => chooser.next().codec);
    expect(second.slice(0, -1).every((c) => c === 'none')).toBe(true);
    expect(second.at(-1)).toBe('lz4');
  });

  test('once on, lz4 stays while no slower than none, and goes off when slower', () => {
    const chooser = new CodecChooser({ capBytesPerSec: 0.125e9 });
    encodes(chooser, 0.6e9);
    for (let i = 0; i < AUTO_CODEC_ENTER_BATCHES; i++) chooser.next();
    expect(chooser.decide()).toBe('lz4');
    // 130 MB/s: inside the margin (it would not turn lz4 on), but still faster than the cap.
    encodes(chooser, 0.13e9);
    expect(Array.from({ length: AUTO_CODEC_ENTER_BATCHES }, () => chooser.next().codec).every((c) => c === 'lz4')).toBe(true);
    encodes(chooser, 0.1e9);
    expect(chooser.next().codec).toBe('none');
  });

  test('lz4 stays on for AUTO_CODEC_ENTER_BATCHES batches after it went on, however slow its first encodes', () => {
    const chooser = new CodecChooser({ capBytesPerSec: 0.125e9 });
    encodes(chooser, 0.6e9);
    for (let i = 0; i < AUTO_CODEC_ENTER_BATCHES; i++) chooser.next();
    expect(chooser.decide()).toBe('lz4');
    // The pool's first encodes, cold, measure at 40 MB/s.
    encodes(chooser, 40e6);
    expect(Array.from({ length: AUTO_CODEC_ENTER_BATCHES }, () => chooser.next().codec).every((c) => c === 'lz4')).toBe(true);
    expect(chooser.next().codec).toBe('none');
  });
});
