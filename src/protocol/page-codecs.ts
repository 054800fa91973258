/**
 * The page payload codecs of version 2, by name. Adding a codec means writing its
 * {@link PagePayloadCodec} in a file of its own and listing it here.
 */

import { MalformedRecordError } from '../errors.js';
import type { PagePayloadCodec } from './page-codec.js';
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

/** Whether `name` is a codec of version 2. */
export function isPageCodec(name: unknown): name is PageCodec {
  return typeof name === 'string' && Object.hasOwn(CODECS, name);
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
 * @throws MalformedRecordError if the payload does not decode, or decodes to the wrong length.
 */
export async function decodePagesPayload(record: {
  readonly codec: PageCodec;
  readonly rawLength: number;
  readonly seq: number;
  readonly payload: Uint8Array;
}): Promise<Uint8Array> {
  if (record.rawLength === 0) return record.payload;
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
