/** Views of bytes. */

/**
 * `bytes` as a Buffer over the same memory (itself if it is one). Buffer's `fill` with a source
 * as long as the range is Node's memcpy, where `set` and `copy` take V8's element-wise copy for
 * shared memory: the fast copies in the engine go through such a view.
 */
export function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
