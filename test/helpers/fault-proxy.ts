// A record-aware relay between a migration source and a target agent that injects one fault at
// one point of the protocol, as a failing network, a dying host or a corrupting NIC would.
//
//   source ──tcp──> front gate ──tcp──> relay (WebSocket, decodes every frame) ──tcp──> back gate ──tcp──> agent
//
// The relay is built on livemig's own WebSocket transport: it accepts the source's connection,
// opens one to the agent, and forwards every frame both ways, in order and with backpressure,
// decoding each one so that it knows where the migration stands. The two gates are plain TCP
// pass-throughs; they exist so that a stall can be a real partition: once frozen they forward no
// byte either way (no frame, and no WebSocket ping or pong either, so each end's own keepalive
// must notice) and pass on no close, and a new connection through them is accepted but never
// answered.
//
// Closes travel through the proxy faithfully otherwise: a clean close on one side closes the
// other side cleanly, a broken connection breaks the other one.
import net from 'node:net';
import { decodeFrame, encodeRecord } from '../../dist/protocol/codec.js';
import type { MigrationRecord } from '../../dist/protocol/records.js';
import type { Transport } from '../../dist/transport/transport.js';
import { connectWebSocket } from '../../dist/transport/ws-connect.js';
import { listenWebSocket, type WebSocketListener } from '../../dist/transport/ws-listener.js';

/** Where a fault strikes: at the first record of that kind (see `FIRST_ROUND_BATCH`). */
export const FAULT_POINTS = [
  'hello',
  'first-pages',
  'later-round',
  'stop-and-copy',
  'device-state',
  'complete',
  'prepared',
  'go',
  'resumed',
] as const;
export type FaultPoint = (typeof FAULT_POINTS)[number];

/**
 * - `cut`: both connections of the migration are destroyed.
 * - `stall`: nothing is relayed any more and nothing is closed: a partition, queries included.
 * - `corrupt`: the record is relayed with one deliberate change (see {@link corruptRecord}).
 * - `kill-target`, `kill-source`: the proxy calls the arming's `kill`, and relays nothing more on
 *   that migration's connections; the dead side's connection then closes as its host's kernel
 *   closes it, and that close is passed on.
 */
export const FAULTS = ['cut', 'stall', 'corrupt', 'kill-target', 'kill-source'] as const;
export type Fault = (typeof FAULTS)[number];

/** Round 0 is cut into batches; `first-pages` strikes at this one, so the target holds a few already. */
export const FIRST_ROUND_BATCH = 3;

export interface FaultArming {
  at: FaultPoint;
  fault: Fault;
  /**
   * Relay the record intact first, wait until its last byte has been handed to the receiver's
   * socket, then strike; otherwise the fault strikes instead of relaying it. Not for `corrupt`.
   * @default false
   */
  deliver?: boolean;
  /** Kills the side named by a `kill-target` or `kill-source` fault. */
  kill?: () => void;
}

/** What the fault struck. */
export interface StruckFault {
  at: FaultPoint;
  fault: Fault;
  delivered: boolean;
  record: MigrationRecord['type'];
  round?: number;
  seq?: number;
  /** For `corrupt`: what was changed. */
  corruption?: string;
}

export interface FaultProxyOptions {
  /** The target agent, `ws://127.0.0.1:PORT`. */
  targetUrl: string;
  /**
   * The stop-and-copy round is the first round from this one on that sends pages, which the proxy
   * cannot tell from the stream alone: the test's pre-copy policy makes it so (rounds before it
   * run while the guest runs; from it on, a round runs only if no page is dirty, and sends none).
   */
  finalRound: number;
}

export interface FaultProxy {
  /** Where the source connects, and asks, instead of the agent. */
  readonly url: string;
  /** Arms the one fault of this proxy. */
  arm(arming: FaultArming): void;
  /** The fault, once it struck. */
  readonly struck: StruckFault | undefined;
  /** Records relayed (or struck at) so far, by direction and type, e.g. `to-target pages: 31`. */
  readonly seen: Readonly<Record<string, number>>;
  close(): Promise<void>;
}

type Direction = 'to-target' | 'to-source';

interface Link {
  readonly down: Transport;
  readonly up: Transport;
  /** False once a fault struck this migration: frames are dropped, closes still pass. */
  relaying: boolean;
  firstRoundBatches: number;
}

export async function startFaultProxy(options: FaultProxyOptions): Promise<FaultProxy> {
  const target = new URL(options.targetUrl);
  const backGate = await TcpGate.start(Number(target.port));
  const links = new Set<Link>();
  const seen: Record<string, number> = {};
  let arming: FaultArming | undefined;
  let struck: StruckFault | undefined;
  let stalled = false;
  // Assigned below, before any connection can arrive.
  let frontGate: TcpGate;

  const matches = (link: Link, direction: Direction, record: MigrationRecord): boolean => {
    if (!arming || struck) return false;
    if (direction === 'to-source') return record.type === arming.at;
    switch (arming.at) {
      case 'first-pages':
        return record.type === 'pages' && record.round === 0 && record.payload.length > 0 && ++link.firstRoundBatches === FIRST_ROUND_BATCH;
      case 'later-round':
        return record.type === 'pages' && record.round >= 1 && record.round < options.finalRound && record.payload.length > 0;
      case 'stop-and-copy':
        return record.type === 'pages' && record.round >= options.finalRound && record.payload.length > 0;
      default:
        return record.type === arming.at;
    }
  };

  const strike = async (link: Link, direction: Direction, frame: Uint8Array, record: MigrationRecord, to: Transport): Promise<void> => {
    const armed = arming!;
    const delivered = armed.deliver === true && armed.fault !== 'corrupt';
    struck = {
      at: armed.at,
      fault: armed.fault,
      delivered,
      record: record.type,
      round: record.type === 'pages' ? record.round : undefined,
      seq: record.type === 'pages' ? record.seq : undefined,
    };
    if (armed.fault === 'corrupt') {
      const { frame: bad, what } = corruptRecord(frame, record);
      struck.corruption = what;
      await to.send(bad).catch(() => undefined);
      return;
    }
    // Nothing of this migration passes any more, either way, but the struck record if delivered:
    // a reply to it must not slip through before the fault.
    link.relaying = false;
    if (delivered) {
      // Every earlier byte this way has long passed the gate (the record is a reply to the
      // peer's last one), so the gate's count is exact up to this frame.
      const gate = direction === 'to-target' ? backGate : frontGate;
      const mark = gate.forwarded(direction);
      await to.send(frame).catch(() => undefined);
      await gate.whenForwarded(direction, mark + wireLength(frame.length, direction === 'to-target'));
    }
    switch (armed.fault) {
      case 'cut':
        link.down.destroy();
        link.up.destroy();
        return;
      case 'stall':
        stalled = true;
        frontGate.freeze();
        backGate.freeze();
        return;
      case 'kill-target':
      case 'kill-source':
        if (!armed.kill) throw new Error(`a ${armed.fault} fault needs a kill function`);
        armed.kill();
        return;
    }
  };

  const pump = async (link: Link, direction: Direction): Promise<void> => {
    const from = direction === 'to-target' ? link.down : link.up;
    const to = direction === 'to-target' ? link.up : link.down;
    for (;;) {
      let frame: Uint8Array | undefined;
      try {
        frame = await from.receive();
      } catch {
        to.destroy();
        return;
      }
      if (frame === undefined) {
        void to.close();
        return;
      }
      if (!link.relaying || stalled) continue;
      let record: MigrationRecord | undefined;
      try {
        record = decodeFrame(frame);
      } catch {
        // Not ours to judge: the receiver rejects it with its own code.
      }
      const key = `${direction} ${record?.type ?? 'undecodable'}`;
      seen[key] = (seen[key] ?? 0) + 1;
      if (record && matches(link, direction, record)) {
        await strike(link, direction, frame, record, to);
        continue;
      }
      try {
        await to.send(frame);
      } catch {
        // The other side is gone; its own pump passes the close on.
      }
    }
  };

  // The relay itself never gives up on a connection (no keepalive of its own): a stalled link
  // stays open until an end's keepalive notices.
  const relay: WebSocketListener = await listenWebSocket({ host: '127.0.0.1', port: 0, idleTimeoutMs: 0, maxConnections: 64 }, (down) => {
    void (async () => {
      let up: Transport;
      try {
        up = await connectWebSocket(`ws://127.0.0.1:${backGate.port}`, { idleTimeoutMs: 0, connectTimeoutMs: 5000 });
      } catch {
        down.destroy();
        return;
      }
      const link: Link = { down, up, relaying: true, firstRoundBatches: 0 };
      links.add(link);
      void pump(link, 'to-target');
      void pump(link, 'to-source');
    })();
  });
  frontGate = await TcpGate.start(relay.port);

  return {
    url: `ws://127.0.0.1:${frontGate.port}`,
    arm(a) {
      if (a.fault === 'corrupt' && a.deliver) throw new Error('a corrupted record is delivered corrupted; "deliver" means intact');
      arming = a;
    },
    get struck() {
      return struck;
    },
    seen,
    async close() {
      for (const link of links) {
        link.down.destroy();
        link.up.destroy();
      }
      await Promise.all([frontGate.close(), backGate.close(), relay.close()]);
    },
  };
}

/**
 * Bytes a WebSocket binary message of `payloadBytes` takes on the wire, framing included: a
 * client masks (4 bytes of key), a server does not (RFC 6455 §5.2).
 */
function wireLength(payloadBytes: number, masked: boolean): number {
  const extended = payloadBytes < 126 ? 0 : payloadBytes < 65536 ? 2 : 8;
  return 2 + extended + (masked ? 4 : 0) + payloadBytes;
}

/**
 * One deliberate change to a record, chosen so that the change survives the framing checks where
 * the record has content a receiver must check itself:
 * - `pages`: the lowest bit of the payload's last byte (with lz4, the last bytes of a block are
 *   always literals, so the block still decompresses, to different page contents);
 * - `device-state`: the lowest bit of the state's last byte (for the simulated guest, the low
 *   byte of the last register: the blob still decodes, to a different register value);
 * - `complete`, `prepared`: one digit of the memory digest;
 * - any other record: the header's first byte becomes 0xc1, the byte msgpack never uses.
 */
export function corruptRecord(frame: Uint8Array, record: MigrationRecord): { frame: Uint8Array; what: string } {
  switch (record.type) {
    case 'pages': {
      const bad = Uint8Array.from(frame);
      bad[bad.length - 1]! ^= 1;
      return { frame: bad, what: 'lowest bit of the last payload byte flipped' };
    }
    case 'device-state': {
      const state = Uint8Array.from(record.state);
      state[state.length - 1]! ^= 1;
      return { frame: encodeRecord({ type: 'device-state', state }), what: 'lowest bit of the last state byte flipped' };
    }
    case 'complete':
    case 'prepared': {
      const digest = `${record.digest[0] === '0' ? '1' : '0'}${record.digest.slice(1)}`;
      return { frame: encodeRecord({ ...record, digest }), what: 'first digit of the digest changed' };
    }
    default: {
      const bad = Uint8Array.from(frame);
      bad[4] = 0xc1;
      return { frame: bad, what: 'first header byte replaced by 0xc1' };
    }
  }
}

/**
 * A TCP pass-through to a port on loopback. Frozen, it is a partition: it forwards no byte and
 * passes on no close either way, and answers no new connection.
 */
class TcpGate {
  private readonly sockets = new Set<net.Socket>();
  private readonly counts = { 'to-target': 0, 'to-source': 0 };
  private readonly waiters = new Set<() => void>();
  private frozen = false;

  private constructor(
    private readonly server: net.Server,
    readonly port: number,
  ) {}

  static async start(toPort: number): Promise<TcpGate> {
    let gate: TcpGate | undefined;
    const server = net.createServer((client) => gate!.accept(client, toPort));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    gate = new TcpGate(server, (server.address() as net.AddressInfo).port);
    return gate;
  }

  /** Bytes written onwards so far in `direction` (the accepting side is the source's). */
  forwarded(direction: Direction): number {
    return this.counts[direction];
  }

  /** Resolves once at least `bytes` have been written onwards in `direction`. */
  whenForwarded(direction: Direction, bytes: number): Promise<void> {
    return new Promise((resolve) => {
      const check = (): void => {
        if (this.counts[direction] < bytes) return;
        this.waiters.delete(check);
        resolve();
      };
      this.waiters.add(check);
      check();
    });
  }

  freeze(): void {
    this.frozen = true;
    for (const socket of this.sockets) socket.pause();
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private track(socket: net.Socket): void {
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', () => undefined);
  }

  private accept(client: net.Socket, toPort: number): void {
    this.track(client);
    if (this.frozen) {
      client.pause();
      return;
    }
    const server = net.connect(toPort, '127.0.0.1');
    this.track(server);
    this.wire(client, server, 'to-target');
    this.wire(server, client, 'to-source');
  }

  private wire(from: net.Socket, to: net.Socket, direction: Direction): void {
    from.on('data', (chunk: Buffer) => {
      if (this.frozen) return;
      const fits = to.write(chunk, (err) => {
        if (err) return;
        this.counts[direction] += chunk.length;
        for (const check of [...this.waiters]) check();
      });
      if (!fits) {
        from.pause();
        to.once('drain', () => {
          if (!this.frozen) from.resume();
        });
      }
    });
    from.on('end', () => {
      if (!this.frozen) to.end();
    });
    from.on('close', () => {
      // After a clean end the other side was ended already and finishes on its own.
      if (!this.frozen && !to.writableEnded) to.destroy();
    });
  }
}
