// A prepared target waits for "go" at most goTimeoutMs from entering `prepared` (protocol.md §11).
// Records that change nothing, unknown optional ones, do not restart that wait: a peer sending
// them cannot keep the target holding a copy of the guest.
import { expect, test } from 'vitest';
import { acceptMigration } from '../dist/precopy/incoming.js';
import { encodeRecord } from '../dist/protocol/codec.js';
import { createMemoryTransportPair } from '../dist/transport/memory-transport.js';
import { driveToPrepared, next, StubBackend, stubHello, unknownOptionalFrame } from './helpers/scripted-source.js';

const GO_TIMEOUT_MS = 300;
const CHATTER_INTERVAL_MS = 50;
/** How long the peer keeps sending, were the target to listen: ten go timeouts. */
const CHATTER_MS = 10 * GO_TIMEOUT_MS;

test('a peer that keeps sending unknown optional records after "prepared" does not hold the target past goTimeoutMs', async () => {
  const backend = new StubBackend();
  const [source, target] = createMemoryTransportPair();
  const incoming = acceptMigration(target, { backends: new Map([[backend.kind, backend]]), goTimeoutMs: GO_TIMEOUT_MS, collectGarbage: null });
  await source.send(encodeRecord(stubHello()));
  expect((await next(source)).type).toBe('ready');
  await driveToPrepared(source);
  const prepared = performance.now();

  const chatter = setInterval(() => void source.send(unknownOptionalFrame()).catch(() => undefined), CHATTER_INTERVAL_MS);
  const stopChatter = setTimeout(() => clearInterval(chatter), CHATTER_MS);
  try {
    const result = await incoming;
    const waitedMs = performance.now() - prepared;
    expect(result.outcome).toBe('discarded');
    expect(result.error?.code).toBe('ERR_TIMEOUT');
    expect(result.error?.message).toMatch(/no "go" within 300 ms/);
    expect(waitedMs).toBeGreaterThanOrEqual(GO_TIMEOUT_MS - 5);
    // Restarted with each record, the wait would outlast the chatter (3 s); half of it tells the
    // two apart with room for a loaded machine.
    expect(waitedMs).toBeLessThan(CHATTER_MS / 2);
    expect(backend.domains[0]!.calls).toContain('destroy');
    expect(backend.domains[0]!.calls).not.toContain('resume');
  } finally {
    clearInterval(chatter);
    clearTimeout(stopChatter);
    source.destroy();
  }
});
