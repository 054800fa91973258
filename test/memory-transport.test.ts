import { describe, expect, it } from 'vitest';
import { createMemoryTransportPair } from '../dist/transport/memory-transport.js';

function frame(...bytes: number[]): Uint8Array {
  return Uint8Array.from(bytes);
}

/** Lets every promise callback that is already due run. */
async function flushMicrotasks(): Promise<void> {
  for (let i = 0; i < 5; i++) await Promise.resolve();
}

function track(promise: Promise<unknown>): { settled: boolean } {
  const state = { settled: false };
  promise.then(
    () => (state.settled = true),
    () => (state.settled = true),
  );
  return state;
}

describe('memory transport pair', () => {
  it('delivers frames in order in both directions, including empty ones', async () => {
    const [a, b] = createMemoryTransportPair();
    await a.send(frame(1));
    await a.send(frame());
    await b.send(frame(9, 9));
    await a.send(frame(2, 3));
    expect(Array.from((await b.receive())!)).toEqual([1]);
    expect((await b.receive())!.byteLength).toBe(0);
    expect(Array.from((await b.receive())!)).toEqual([2, 3]);
    expect(Array.from((await a.receive())!)).toEqual([9, 9]);
    expect([a.bytesSent, b.bytesReceived, b.bytesSent, a.bytesReceived]).toEqual([3, 3, 2, 2]);
  });

  it('hands a frame to a receive that was already waiting', async () => {
    const [a, b] = createMemoryTransportPair();
    const waiting = b.receive();
    await a.send(frame(7));
    expect(Array.from((await waiting)!)).toEqual([7]);
  });

  it('copies each frame on send so the sender may reuse its buffer', async () => {
    const [a, b] = createMemoryTransportPair();
    const buffer = frame(1, 1, 1);
    await a.send(buffer);
    buffer.fill(2);
    expect(Array.from((await b.receive())!)).toEqual([1, 1, 1]);
  });

  it('holds sends until the peer queue has room, never letting it pass its bound', async () => {
    const [a, b] = createMemoryTransportPair({ maxQueuedFrames: 2, maxQueuedBytes: 1000 });
    const sends = Array.from({ length: 6 }, (_, i) => track(a.send(frame(i))));
    await flushMicrotasks();
    expect(sends.map((s) => s.settled)).toEqual([true, true, false, false, false, false]);
    expect(b.queuedFrames).toBe(2);
    expect(a.bufferedBytes).toBe(4);

    for (let i = 0; i < 6; i++) {
      expect(b.queuedFrames).toBeLessThanOrEqual(2);
      expect(Array.from((await b.receive())!)).toEqual([i]);
    }
    await flushMicrotasks();
    expect(sends.every((s) => s.settled)).toBe(true);
    expect(a.bufferedBytes).toBe(0);
  });

  it('bounds the queue by bytes, letting one frame take it past the bound', async () => {
    const [a, b] = createMemoryTransportPair({ maxQueuedBytes: 10 });
    const first = track(a.send(new Uint8Array(8)));
    const second = track(a.send(new Uint8Array(8)));
    const third = track(a.send(new Uint8Array(8)));
    await flushMicrotasks();
    expect([first.settled, second.settled, third.settled]).toEqual([true, true, false]);
    expect(b.queuedBytes).toBe(16);
    // 8 bytes left is below the bound: room again.
    await b.receive();
    await flushMicrotasks();
    expect(third.settled).toBe(true);
    expect(b.queuedBytes).toBe(16);
  });

  it('ends with undefined on both sides after a clean close, once queued frames are read', async () => {
    const [a, b] = createMemoryTransportPair({ maxQueuedFrames: 1 });
    await a.send(frame(1));
    const held = a.send(frame(2));
    const closing = track(a.close());
    expect(a.closed).toBe(true);
    await flushMicrotasks();
    expect(closing.settled).toBe(false);
    expect(Array.from((await b.receive())!)).toEqual([1]);
    await held;
    expect(Array.from((await b.receive())!)).toEqual([2]);
    expect(await b.receive()).toBeUndefined();
    expect(await b.receive()).toBeUndefined();
    await flushMicrotasks();
    expect(closing.settled).toBe(true);
    expect(await a.receive()).toBeUndefined();
    expect(b.closed).toBe(true);
    await expect(b.send(frame(3))).rejects.toMatchObject({ code: 'ERR_CONNECTION_CLOSED' });
    await expect(a.send(frame(3))).rejects.toMatchObject({ code: 'ERR_CONNECTION_CLOSED' });
    await a.close();
    await b.close();
  });

  it('delivers what the peer sent before it closed, and refuses sends after its close arrived', async () => {
    const [a, b] = createMemoryTransportPair();
    await b.send(frame(5));
    await a.close();
    expect(Array.from((await a.receive())!)).toEqual([5]);
    expect(await a.receive()).toBeUndefined();
    await expect(b.send(frame(6))).rejects.toMatchObject({ code: 'ERR_CONNECTION_CLOSED' });
  });

  it('drops frames that reach a closing end with a full queue, and says so at the end', async () => {
    const [a, b] = createMemoryTransportPair({ maxQueuedFrames: 1 });
    await b.send(frame(1));
    const held = b.send(frame(2));
    await a.close();
    await held;
    expect(Array.from((await a.receive())!)).toEqual([1]);
    await expect(a.receive()).rejects.toMatchObject({ code: 'ERR_CONNECTION_CLOSED', message: /1 frames/ });
  });

  it('destroys the connection when the peer does not read within closeTimeoutMs', async () => {
    const [a, b] = createMemoryTransportPair({ maxQueuedFrames: 1, closeTimeoutMs: 50 });
    await a.send(frame(1));
    const held = a.send(frame(2));
    await a.close();
    await expect(held).rejects.toMatchObject({ code: 'ERR_CONNECTION_CLOSED' });
    expect(Array.from((await b.receive())!)).toEqual([1]);
    await expect(b.receive()).rejects.toMatchObject({ code: 'ERR_CONNECTION_CLOSED' });
  });

  it('on destroy, rejects local operations with the reason and the peer after its queued frames', async () => {
    const [a, b] = createMemoryTransportPair({ maxQueuedFrames: 1 });
    await b.send(frame(4));
    const stalled = b.send(frame(5));
    await a.send(frame(8));
    const reason = new Error('stop');
    a.destroy(reason);
    a.destroy();
    // The failure is local, so a's queued frame is dropped and the reason comes at once.
    await expect(a.receive()).rejects.toBe(reason);
    await expect(a.send(frame(1))).rejects.toBe(reason);
    await expect(stalled).rejects.toMatchObject({ code: 'ERR_CONNECTION_CLOSED' });
    expect(Array.from((await b.receive())!)).toEqual([8]);
    await expect(b.receive()).rejects.toMatchObject({ code: 'ERR_CONNECTION_CLOSED' });
    await expect(b.send(frame(1))).rejects.toMatchObject({ code: 'ERR_CONNECTION_CLOSED' });
    expect(a.closed && b.closed).toBe(true);
    await a.close();
  });

  it('rejects a waiting receive on both ends when one end is destroyed', async () => {
    const [a, b] = createMemoryTransportPair();
    const waitingA = a.receive();
    const waitingB = b.receive();
    const reason = new Error('stop');
    a.destroy(reason);
    await expect(waitingA).rejects.toBe(reason);
    await expect(waitingB).rejects.toMatchObject({ code: 'ERR_CONNECTION_CLOSED' });
  });

  it('rejects invalid options with ERR_INVALID_ARGUMENT', () => {
    expect(() => createMemoryTransportPair({ maxQueuedFrames: 0 })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }));
  });
});
