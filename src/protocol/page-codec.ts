/**
 * The seam for page payload codecs (docs/protocol.md §5). A codec turns the data pages of one
 * batch into the payload of a `pages` record and back; each one lives in its own file
 * (`page-codec-none.ts`, `page-codec-lz4.ts`) and is listed once in `page-codecs.ts`, which is
 * all a new codec touches besides the command-line choices.
 *
 * A batch without data pages has an empty payload whatever its codec: the frame codec enforces
 * that, so no codec is ever asked to encode or decode nothing.
 *
 * Nothing here does I/O.
 */

/** One page payload codec. Implementations hold no per-batch state and may be shared. */
export interface PagePayloadCodec {
  /** The name a `hello` and a `pages` record carry. */
  readonly name: string;

  /**
   * True when the payload is the page data itself. A sender then frames the pages where it
   * gathered them (`encodePagesInPlace`) and never calls {@link encode}.
   */
  readonly payloadIsRaw: boolean;

  /**
   * The most payload bytes {@link encode} writes for `rawLength` bytes of pages: the size of an
   * output buffer that always fits.
   */
  maxPayloadBytes(rawLength: number): number;

  /**
   * Encodes `raw` (a whole number of pages, at least one) into `out` from its start and resolves
   * with the payload's length. Large inputs may be encoded on libuv's thread pool, so `raw` and
   * `out` must stay untouched until the promise settles; small ones settle on this turn of the
   * event loop.
   *
   * @param out At least {@link maxPayloadBytes}(`raw.length`) bytes; owned by the caller.
   */
  encode(raw: Uint8Array, out: Uint8Array): Promise<number>;

  /** {@link encode} on this thread, for estimates (`PageSender.wireShare`). */
  encodeSync(raw: Uint8Array, out: Uint8Array): number;

  /**
   * Checks what can be checked of a payload without decoding it, so that decoding never
   * allocates more than `rawLength` bytes. Called by the frame decoder and encoder for every
   * batch with data pages.
   *
   * @throws MalformedRecordError naming what is wrong.
   */
  checkPayload(payload: Uint8Array, rawLength: number): void;

  /**
   * Decodes a payload that passed {@link checkPayload} into the batch's page data. The result
   * may share memory with `payload` (codec `none`) or be a fresh buffer (lz4-napi allocates its
   * output and cannot write into a caller's buffer, so a destination parameter would only add a
   * copy). The caller checks its length against `rawLength`.
   *
   * @throws any error for a payload the codec cannot decode; the caller reports it as
   *   `ERR_MALFORMED_RECORD`.
   */
  decode(payload: Uint8Array, rawLength: number): Promise<Uint8Array>;
}
