// Wraps a transport and lets a test tamper with frames on their way out, as a faulty link or
// NIC would: change them, or drop them (return null).
import type { Transport } from '../../dist/transport/transport.js';

export function tamperingTransport(inner: Transport, tamper: (frame: Uint8Array, index: number) => Uint8Array | null): Transport {
  let index = 0;
  return {
    send: (frame) => {
      const out = tamper(frame, index++);
      return out === null ? Promise.resolve() : inner.send(out);
    },
    get bufferedBytes() {
      return inner.bufferedBytes;
    },
    receive: () => inner.receive(),
    ping: () => inner.ping(),
    close: () => inner.close(),
    destroy: (reason) => inner.destroy(reason),
    get closed() {
      return inner.closed;
    },
    get bytesSent() {
      return inner.bytesSent;
    },
    get bytesReceived() {
      return inner.bytesReceived;
    },
  };
}
