import { expect, test } from 'vitest';
import { parseDuration, parsePositiveDuration, parseRate, parseSize, parseInteger } from '../dist/cli/units.js';

test('sizes', () => {
  expect(parseSize('1GiB')).toBe(2 ** 30);
  expect(parseSize('256MiB')).toBe(256 * 2 ** 20);
  expect(parseSize('256M')).toBe(256 * 2 ** 20);
  expect(parseSize('1GB')).toBe(1e9);
  expect(parseSize('4096')).toBe(4096);
  expect(parseSize('1.5 KiB')).toBe(1536);
});

test('rates', () => {
  expect(parseRate('100MB/s')).toBe(100e6);
  expect(parseRate('50MiB/s')).toBe(50 * 2 ** 20);
  expect(parseRate('1Gbit/s')).toBe(125e6);
  expect(parseRate('10Gbit/s')).toBe(1.25e9);
  expect(parseRate('0')).toBe(0);
});

test('durations', () => {
  expect(parseDuration('300ms')).toBe(300);
  expect(parseDuration('2s')).toBe(2000);
  expect(parseDuration('1.5s')).toBe(1500);
  expect(parseDuration('250')).toBe(250);
  expect(parseDuration('0ms')).toBe(0);
});

test('a duration no timer can hold, or a deadline of zero, is refused rather than firing at once', () => {
  // 1000 h would overflow Node's 32-bit timer and fire after 1 ms.
  expect(() => parseDuration('1000h', '--record-timeout')).toThrow(/--record-timeout "1000h" is longer than/);
  expect(parseDuration('24h')).toBe(86_400_000);
  expect(() => parsePositiveDuration('0', '--run-timeout')).toThrow(/--run-timeout "0" must be at least 1ms/);
  expect(() => parsePositiveDuration('0.5ms', '--stall-timeout')).toThrow(/at least 1ms/);
  expect(parsePositiveDuration('1ms')).toBe(1);
});

test('bad values say what is wrong', () => {
  expect(() => parseSize('12XB', '--memory')).toThrow(/--memory "12XB" has an unknown unit "xb"/);
  expect(() => parseSize('-1', '--memory')).toThrow(/--memory "-1" is negative/);
  expect(() => parseRate('fast', '--dirty-rate')).toThrow(/not a number/);
  expect(() => parseDuration('3 weeks', '--warmup')).toThrow(/unknown unit "weeks"/);
  expect(() => parseInteger('0', '--vcpus', 1, 64)).toThrow(/between 1 and 64/);
  expect(() => parseSize('x')).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }));
});
