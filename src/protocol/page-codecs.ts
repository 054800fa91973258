/**
 * The page payload codecs of version 2, by name. Adding a codec means writing its
 * {@link PagePayloadCodec} in a file of its own and listing it here.
 */

import { MalformedRecordError } from '../errors.js';
import type { PagePayloadCodec } from './page-codec.js';
import { checkDeltaPayload, decodeDeltaPayload } from './page-codec-delta.js';
import type { ReadPages } from './page-digest.js';
import { lz4Codec } from './page-codec-lz4.js';
import { noneCodec } from './page-codec-none.js';

const CODECS = {
  lz4: lz4Codec,
  none: noneCodec,
} as const satisfies Record<string, PagePayloadCodec>;

/** Payload codecs of a `pages` record. */
export type PageCodec = keyof typeof CODECS;

/** Every codec name, in the order a user is offered them. */
export const PAGE_CODECS: readonly PageCodec[] = Object.keys(CODECS) as PageCodec[];

/**
 * What a `pages` record's `codec` may name: a payload codec, or the page encoding `delta`
 * (page-codec-delta.ts), which only a target that offered it in `page-encodings` takes.
 */
export type BatchCodec = PageCodec | 'delta';

/** Every name a `pages` record's `codec` may carry. */
export const BATCH_CODECS: readonly BatchCodec[] = [...PAGE_CODECS, 'delta'];

/** Whether `name` is a codec of version 2. */
export function isPageCodec(name: unknown): name is PageCodec {
  return typeof name === 'string' && Object.hasOwn(CODECS, name);
}

/** Checks a payload of codec `codec` for `rawLength` bytes of pages without decoding it (§5). */
export function checkBatchPayload(codec: BatchCodec, payload: Uint8Array, rawLength: number): void {
  if (codec === 'delta') checkDeltaPayload(payload, rawLength);
  else CODECS[codec].checkPayload(payload, rawLength);
}

/** The codec named `name`. */
export function pagePayloadCodec(name: PageCodec): PagePayloadCodec {
  return CODECS[name];
}

/**
 * The page data of a decoded `pages` record: its payload decoded with its codec and checked to be
 * `rawLength` bytes. A batch without data pages has an empty payload whatever its codec. The
 * frame decoder has already run the codec's `checkPayload`, so decoding never allocates more
 * than `rawLength` bytes.
 *
 * A `delta` batch needs `bases`: its pages' numbers and how to read what this side holds of them.
 *
 * @throws MalformedRecordError if the payload does not decode, or decodes to the wrong length;
 *   DeltaBaseMismatchError for a delta against a page this side does not hold as the source had it.
 */
export async function decodePagesPayload(
  record: {
    readonly codec: BatchCodec;
    readonly rawLength: number;
    readonly seq: number;
    readonly payload: Uint8Array;
  },
  bases?: { pfns: Uint32Array; readPages: ReadPages },
): Promise<Uint8Array> {
  if (record.rawLength === 0) return record.payload;
  if (record.codec === 'delta') {
    if (!bases) throw new MalformedRecordError(`page batch ${record.seq} is delta-encoded, which this side did not offer`);
    return decodeDeltaPayload(record.payload, record.rawLength, bases.pfns, bases.readPages, record.seq);
  }
  let raw: Uint8Array;
  try {
    raw = await CODECS[record.codec].decode(record.payload, record.rawLength);
  } catch (err) {
    throw new MalformedRecordError(`page batch ${record.seq} is not valid ${record.codec}`, { cause: err });
  }
  if (raw.length !== record.rawLength) {
    throw new MalformedRecordError(`page batch ${record.seq} decompressed to ${raw.length} bytes; its header says ${record.rawLength}`);
  }
  return raw;
}
