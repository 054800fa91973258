// Before its hello, a migration-only transport follows the same rules as every other state
// (protocol.md §7, §10): unknown optional records pass, and a peer's abort ends it without an
// abort sent back.
import { expect, test } from 'vitest';
import { acceptMigration } from '../dist/precopy/incoming.js';
import { decodeFrame, encodeRecord } from '../dist/protocol/codec.js';
import { createMemoryTransportPair } from '../dist/transport/memory-transport.js';
import { next, StubBackend, stubHello, unknownOptionalFrame } from './helpers/scripted-source.js';

test('unknown optional records before the hello are skipped, and the migration starts', async () => {
  const backend = new StubBackend();
  const [source, target] = createMemoryTransportPair();
  const incoming = acceptMigration(target, { backends: new Map([[backend.kind, backend]]), collectGarbage: null });
  await source.send(unknownOptionalFrame());
  await source.send(unknownOptionalFrame());
  await source.send(encodeRecord(stubHello()));
  expect(await next(source)).toMatchObject({ type: 'ready', migrationId: 'scripted' });

  await source.send(encodeRecord({ type: 'abort', code: 'ERR_CANCELLED', message: 'test over' }));
  expect((await incoming).outcome).toBe('discarded');
  source.destroy();
});

test('an abort as the first record ends it with ERR_PEER_ABORTED and is not answered with an abort', async () => {
  const [source, target] = createMemoryTransportPair();
  const incoming = acceptMigration(target, { backends: new Map([['stub', new StubBackend()]]), collectGarbage: null });
  await source.send(encodeRecord({ type: 'abort', code: 'ERR_CANCELLED', message: 'changed my mind' }));
  await expect(incoming).rejects.toMatchObject({ code: 'ERR_PEER_ABORTED', peerCode: 'ERR_CANCELLED' });

  const sentBack: string[] = [];
  for (let frame = await source.receive(); frame !== undefined; frame = await source.receive()) sentBack.push(decodeFrame(frame).type);
  expect(sentBack).toEqual([]);
  source.destroy();
});
