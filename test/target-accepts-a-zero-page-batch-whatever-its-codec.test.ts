// A batch of zero pages only has an empty payload whatever its codec (protocol.md §4). The target
// writes it like any other batch: an empty lz4 payload is not an lz4 block to unpack.
import { expect, test } from 'vitest';
import { acceptMigration } from '../dist/precopy/incoming.js';
import { encodePages, encodeRecord } from '../dist/protocol/codec.js';
import { writePageNumbers } from '../dist/protocol/page-list.js';
import { batchChecksum } from '../dist/protocol/page-digest.js';
import { createMemoryTransportPair } from '../dist/transport/memory-transport.js';
import { next, StubBackend, stubHello } from './helpers/scripted-source.js';

test.each(['lz4', 'none'] as const)('a batch of zero pages only, with codec %s, is written and acknowledged', async (codec) => {
  const backend = new StubBackend();
  const [source, target] = createMemoryTransportPair();
  const incoming = acceptMigration(target, { backends: new Map([[backend.kind, backend]]), collectGarbage: null });
  await source.send(encodeRecord(stubHello()));
  expect((await next(source)).type).toBe('ready');

  const batch = encodePages(
    { round: 0, pages: new Uint8Array(0), zeros: writePageNumbers([0, 3]), codec, rawLength: 0, checksum: batchChecksum(new Uint32Array(0), 0), seq: 0 },
    new Uint8Array(0),
  );
  await source.send(batch);
  await source.send(encodeRecord({ type: 'round-end', round: 0, pages: 2 }));
  expect(await next(source)).toEqual({ type: 'round-ack', round: 0, batches: 1 });

  await source.send(encodeRecord({ type: 'abort', code: 'ERR_CANCELLED', message: 'test over' }));
  const result = await incoming;
  expect(result).toMatchObject({ outcome: 'discarded', pages: 2, batches: 1, error: { code: 'ERR_PEER_ABORTED' } });
  source.destroy();
});
