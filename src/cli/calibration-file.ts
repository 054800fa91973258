/** `--calibration PATH`: the pause prediction's calibration kept in a file across runs, per codec. */

import { constants as fsConstants } from 'node:fs';
import { access, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { InvalidArgumentError } from '../errors.js';
import { SwitchoverCalibration } from '../precopy/switchover-calibration.js';
import { CODEC_CHOICES, type CodecChoice } from '../precopy/codec-choice.js';

/** The calibrations saved in `path`, by codec; none if the file does not exist yet. */
export async function readCalibrations(path: string): Promise<Map<CodecChoice, SwitchoverCalibration>> {
  // Checked before the guest boots, so that a typo is a usage error and not a lost save afterwards.
  if (path.trim() === '') throw new InvalidArgumentError('--calibration needs a file path (for example calibration.json)');
  try {
    await access(dirname(path), fsConstants.W_OK | fsConstants.X_OK);
  } catch (err) {
    throw new InvalidArgumentError(`cannot keep the calibration in ${path}: its directory is missing or not writable (${(err as Error).message})`);
  }
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return new Map();
    throw new InvalidArgumentError(`cannot read the calibration file ${path}: ${(err as Error).message}`);
  }
  const out = new Map<CodecChoice, SwitchoverCalibration>();
  try {
    const saved: unknown = JSON.parse(text);
    if (typeof saved !== 'object' || saved === null || Array.isArray(saved)) throw new Error('not a JSON object of codecs');
    for (const [codec, samples] of Object.entries(saved)) {
      if (!(CODEC_CHOICES as readonly string[]).includes(codec)) throw new Error(`unknown codec "${codec}"`);
      out.set(codec as CodecChoice, SwitchoverCalibration.fromJSON(samples));
    }
  } catch (err) {
    throw new InvalidArgumentError(`the calibration file ${path} is not one livemig wrote: ${(err as Error).message}`);
  }
  return out;
}

/** Writes `calibrations` to `path` in one step, so a crash leaves the old file or the new one. */
export async function writeCalibrations(path: string, calibrations: Map<CodecChoice, SwitchoverCalibration>): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  try {
    await writeFile(tmp, `${JSON.stringify(Object.fromEntries(calibrations), null, 2)}\n`);
    await rename(tmp, path);
  } catch (err) {
    // A save that failed leaves nothing behind but the old file.
    await rm(tmp, { force: true }).catch(() => undefined);
    throw err;
  }
}
