/**
 * Parsing of the sizes, rates and durations people type on a command line. Binary units
 * (KiB, MiB, GiB) are powers of 1024, decimal ones (KB, MB, GB) powers of 1000; a bare K, M or G
 * is binary for sizes, as memory sizes usually are. Bit rates (Mbit/s, Gbit/s) are decimal.
 */

import { InvalidArgumentError } from '../errors.js';

const SIZE_UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1024,
  kib: 1024,
  kb: 1000,
  m: 1024 ** 2,
  mib: 1024 ** 2,
  mb: 1000 ** 2,
  g: 1024 ** 3,
  gib: 1024 ** 3,
  gb: 1000 ** 3,
  t: 1024 ** 4,
  tib: 1024 ** 4,
  tb: 1000 ** 4,
};

const BIT_UNITS: Record<string, number> = {
  bit: 1 / 8,
  kbit: 1000 / 8,
  mbit: 1000 ** 2 / 8,
  gbit: 1000 ** 3 / 8,
};

const DURATION_UNITS: Record<string, number> = { '': 1, ms: 1, s: 1000, m: 60_000, min: 60_000, h: 3_600_000 };

function split(text: string, what: string, example: string): [number, string] {
  if (/^\s*-/.test(text)) throw new InvalidArgumentError(`${what} "${text}" is negative; it takes a value of 0 or more (for example ${example})`);
  const m = /^\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  if (!m) throw new InvalidArgumentError(`${what} "${text}" is not a number with an optional unit (for example ${example})`);
  return [Number(m[1]), m[2]!.toLowerCase()];
}

/** Bytes in a size such as `1GiB`, `512M`, `4096`. */
export function parseSize(text: string, what = 'size'): number {
  const [n, unit] = split(text, what, '1GiB, 256MiB, 4096');
  const factor = SIZE_UNITS[unit];
  if (factor === undefined) throw new InvalidArgumentError(`${what} "${text}" has an unknown unit "${unit}" (use B, KiB, MiB, GiB, KB, MB or GB)`);
  return Math.round(n * factor);
}

/** Bytes per second in a rate such as `100MB/s`, `1Gbit/s`, `50MiB/s`. */
export function parseRate(text: string, what = 'rate'): number {
  // Said of the value as typed, before its unit is taken apart.
  if (/^\s*-/.test(text)) throw new InvalidArgumentError(`${what} "${text}" is negative; it takes a rate of 0 or more (for example 100MB/s, 1Gbit/s)`);
  const m = /^(.*?)(?:\/s|ps)?\s*$/i.exec(text.trim());
  const body = m ? m[1]! : text;
  const unitMatch = /([a-zA-Z]*)\s*$/.exec(body);
  const unit = (unitMatch?.[1] ?? '').toLowerCase();
  if (BIT_UNITS[unit] !== undefined) {
    const [n] = split(body.slice(0, body.length - unit.length), what, '100MB/s, 1Gbit/s');
    return Math.round(n * BIT_UNITS[unit]!);
  }
  return parseSize(body, what);
}

/** The longest duration a flag may give: what a Node timer holds (about 24.8 days), in ms. */
export const MAX_DURATION_MS = 2 ** 31 - 1;

/**
 * Milliseconds in a duration such as `300ms`, `2s`, `1.5s`, `250` (ms), at most MAX_DURATION_MS
 * (a longer one would fire a timer after 1 ms instead).
 */
export function parseDuration(text: string, what = 'duration'): number {
  const [n, unit] = split(text, what, '300ms, 2s');
  const factor = DURATION_UNITS[unit];
  if (factor === undefined) throw new InvalidArgumentError(`${what} "${text}" has an unknown unit "${unit}" (use ms, s, min or h)`);
  const ms = n * factor;
  if (!(ms <= MAX_DURATION_MS)) throw new InvalidArgumentError(`${what} "${text}" is longer than the ${MAX_DURATION_MS} ms a timer can wait`);
  return ms;
}

/** A duration as {@link parseDuration}, of at least one millisecond: for deadlines and budgets, where 0 means nothing useful. */
export function parsePositiveDuration(text: string, what = 'duration'): number {
  const ms = parseDuration(text, what);
  if (!(ms >= 1)) throw new InvalidArgumentError(`${what} "${text}" must be at least 1ms`);
  return ms;
}

/** A whole number within bounds. */
export function parseInteger(text: string, what: string, min: number, max: number): number {
  if (/^\s*-/.test(text)) throw new InvalidArgumentError(`${what} "${text}" is negative; it takes a whole number from ${min} to ${max}`);
  if (!/^\s*[0-9]+\s*$/.test(text)) throw new InvalidArgumentError(`${what} "${text}" is not a whole number`);
  const n = Number(text);
  if (n < min || n > max) throw new InvalidArgumentError(`${what} must be between ${min} and ${max}, not ${n}`);
  return n;
}

/** `1073741824` -> `1.00 GiB`. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = bytes;
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${v} B` : `${v.toFixed(2)} ${units[i]}`;
}

/** Bytes per second as `MB/s` (decimal, as link speeds are quoted). */
export function formatRate(bytesPerSec: number): string {
  return `${(bytesPerSec / 1e6).toFixed(1)} MB/s`;
}
