// A receive deadline on a transport: the wait for a frame fails with ERR_TIMEOUT, reading is
// over from then on (the abandoned receive would swallow the next frame), and sending still
// works so that the peer can be told why.
import { expect, test } from 'vitest';
import { DeadlineTransport } from '../dist/transport/deadline-transport.js';
import { createMemoryTransportPair } from '../dist/transport/memory-transport.js';

test('a frame in time passes; after a missed deadline every receive fails the same way, and sends still go', async () => {
  const [a, b] = createMemoryTransportPair();
  const paced = new DeadlineTransport(b, 50, () => 'the test frame');
  await a.send(Uint8Array.of(1));
  expect(await paced.receive()).toEqual(Uint8Array.of(1));

  const missed = await paced.receive().catch((err: { code?: string; message: string }) => err);
  expect(missed).toMatchObject({ code: 'ERR_TIMEOUT' });
  expect((missed as Error).message).toContain('the test frame');

  await a.send(Uint8Array.of(2));
  const later = await paced.receive().catch((err: unknown) => err);
  expect(later).toBe(missed);

  await paced.send(Uint8Array.of(3));
  expect(await a.receive()).toEqual(Uint8Array.of(3));
  a.destroy();
  b.destroy();
});

test('refuses a deadline that is not a positive number', () => {
  const [a, b] = createMemoryTransportPair();
  for (const ms of [0, -1, Number.NaN]) {
    expect(() => new DeadlineTransport(b, ms, () => 'x')).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }));
  }
  a.destroy();
  b.destroy();
});
