import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, test } from 'vitest';
import { parseTestGuestLine, readTestGuestLog, testGuestAppend } from '../dist/domain/qemu/test-guest.js';

test('the kernel command line carries the rate and region, and refuses what the guest cannot take', () => {
  expect(testGuestAppend()).toBe('rate=1000');
  expect(testGuestAppend({ ratePagesPerSecond: 0, regionMiB: 32 })).toBe('rate=0 mib=32');
  for (const bad of [{ ratePagesPerSecond: -1 }, { ratePagesPerSecond: 1.5 }, { ratePagesPerSecond: 2 ** 32 }, { regionMiB: 0 }, { regionMiB: 4097 }]) {
    expect(() => testGuestAppend(bad)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }));
  }
});

test('each kind of guest line parses, and other text is passed over', () => {
  expect(parseTestGuestLine('guest: running pages=15824 first=0x00210000 table=0x00200000 rate=2000 tsc_hz=2100012160')).toEqual({
    kind: 'start', pages: 15824, firstPageAddress: 0x210000, tableAddress: 0x200000, ratePagesPerSecond: 2000, tscHz: 2100012160,
  });
  expect(parseTestGuestLine('t=3 writes=6000 checked=970133 passes=61 errors=0')).toEqual({
    kind: 'report', seconds: 3, writes: 6000, checked: 970133, passes: 61, errors: 0,
  });
  expect(parseTestGuestLine('check failed: page=4945 version=3 word=100 want=0x5a0c77e1 got=0x5a0c77a1')).toEqual({
    kind: 'check-failed', page: 4945, version: 3, word: 100, want: 0x5a0c77e1, got: 0x5a0c77a1,
  });
  expect(parseTestGuestLine('SeaBIOS (version 1.16.2-debian-1.16.2-1)')).toBeUndefined();
  expect(parseTestGuestLine('t=3 writes=6000')).toBeUndefined();
});

test('the log reader keeps complete lines only: a line still being written is left for later', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'livemig-guest-log-'));
  try {
    const log = join(dir, 'serial.log');
    expect(await readTestGuestLog(log)).toEqual([]);
    await writeFile(log, '\x1b[2JSeaBIOS\r\nBooting from ROM..\nguest: running pages=1 first=0x1000 table=0x0 rate=1 tsc_hz=1\nt=1 writes=1 checked=2 passes=2 errors=0\nt=2 wri');
    expect((await readTestGuestLog(log)).map((l) => l.kind)).toEqual(['start', 'report']);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
