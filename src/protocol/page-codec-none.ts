/** Page payload codec `none` (docs/protocol.md §5): the payload is the page data unchanged. */

import { MalformedRecordError } from '../errors.js';
import type { PagePayloadCodec } from './page-codec.js';

export const noneCodec: PagePayloadCodec = {
  name: 'none',
  payloadIsRaw: true,
  maxPayloadBytes: (rawLength) => rawLength,
  encode(raw, out) {
    return Promise.resolve(this.encodeSync(raw, out));
  },
  encodeSync(raw, out) {
    out.set(raw);
    return raw.length;
  },
  checkPayload(payload, rawLength) {
    if (payload.length !== rawLength) {
      throw new MalformedRecordError(
        `malformed pages record: codec none needs a payload of rawLength (${rawLength}) bytes, got ${payload.length}`,
      );
    }
  },
  decode: (payload) => Promise.resolve(payload),
};
