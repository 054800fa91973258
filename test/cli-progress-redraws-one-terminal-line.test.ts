// What the command draws while a migration runs: on a terminal, one line that each sample
// redraws in place (carriage return, erase line, no newline), cleared by done() so the report
// starts on a clean line; anywhere else, nothing at all.
import { expect, test } from 'vitest';
import { progressLine, terminalProgress } from '../dist/cli/render.js';
import type { MigrationProgress } from '../dist/precopy/report.js';

const REDRAW = '\r\x1b[2K';

/** A stream that records what is written to it; `isTTY` as a terminal or a pipe says. */
function fakeStream(isTTY: boolean): { stream: NodeJS.WriteStream; writes: string[] } {
  const writes: string[] = [];
  const stream = {
    isTTY,
    columns: 200,
    write(chunk: string | Uint8Array): boolean {
      writes.push(typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString());
      return true;
    },
  } as unknown as NodeJS.WriteStream;
  return { stream, writes };
}

function sample(round: number, bytesRaw: number): MigrationProgress {
  return {
    migrationId: 'm-1',
    phase: 'precopy',
    round,
    roundPagesSent: 10,
    roundPages: 100,
    bytesRaw,
    bytesWire: bytesRaw / 2,
    remainingBytes: 4 * 1024 * 1024,
    bandwidthBytesPerSec: 250e6,
    dirtyRateBytesPerSec: 30e6,
    dirtyPagesPerSec: 7324,
    expectedDowntimeMs: 42,
    downtimeBudgetMs: 300,
    throttlePercent: 20,
    elapsedMs: 1500 + round * 100,
  };
}

test('on a terminal each sample redraws the same line in place, and done() clears it', () => {
  const { stream, writes } = fakeStream(true);
  const show = terminalProgress(stream);
  const samples = [sample(0, 1024 * 1024), sample(1, 3 * 1024 * 1024), sample(2, 5 * 1024 * 1024)];
  for (const p of samples) show(p);
  expect(writes).toEqual(samples.map((p) => REDRAW + progressLine(p)));
  // One line: nothing drawn so far moved the cursor down.
  expect(writes.join('')).not.toContain('\n');
  expect(progressLine(samples[2]!)).toMatch(/precopy\s+round\s+2 .*sent\s+5\.00 MiB.*pause\s+42\/300 ms.*throttle 20%.*1\.7 s$/);

  show.done();
  // The cursor is left at the start of an empty line, where the report begins.
  expect(writes.slice(samples.length)).toEqual([REDRAW]);
  // Once cleared, done() again draws nothing; a new sample draws afresh.
  show.done();
  expect(writes).toHaveLength(samples.length + 1);
  show(samples[0]!);
  expect(writes.at(-1)).toBe(REDRAW + progressLine(samples[0]!));
});

test('done() with nothing drawn writes nothing', () => {
  const { stream, writes } = fakeStream(true);
  terminalProgress(stream).done();
  expect(writes).toEqual([]);
});

test('on a stream that is not a terminal (a pipe, a file) nothing is drawn', () => {
  const { stream, writes } = fakeStream(false);
  const show = terminalProgress(stream);
  show(sample(0, 1024));
  show(sample(1, 2048));
  show.done();
  expect(writes).toEqual([]);
});
