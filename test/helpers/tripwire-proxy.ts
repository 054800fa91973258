// A TCP relay between a migration source and a target agent that reads the WebSocket frames going
// by, byte for byte as they are, and strikes once at the first frame a test names: it cuts both
// connections, or kills the agent's process, before that frame is relayed or right after it left.
// Unlike the fault proxy it terminates nothing: pings, pongs and closes are the two ends' own, so
// a strike between a ping and its pong is exactly what a dying host does to the source.
import net from 'node:net';
import { decodeFrame } from '../../dist/protocol/codec.js';
import type { MigrationRecord } from '../../dist/protocol/records.js';

/** What goes by, as the tripwire sees it. */
export type Passing =
  | { kind: 'upgrade-request' }
  | { kind: 'record'; from: 'source' | 'agent'; record: MigrationRecord }
  | { kind: 'ping'; from: 'source' | 'agent' };

export interface Tripwire {
  /** The first thing going by that this returns true for is where the strike lands. */
  at: (p: Passing) => boolean;
  /** `cut` destroys both connections; `kill` calls {@link kill} and relays nothing more. */
  action: 'cut' | 'kill';
  /** Relay the frame, wait until it left, then strike; otherwise strike instead of relaying it. */
  after: boolean;
  kill?: () => void;
}

export interface TripwireProxy {
  url: string;
  /** Whether the strike happened, and at what. */
  readonly struck: Passing | undefined;
  close(): Promise<void>;
}

const OPCODE_CONTINUATION = 0x0;
const OPCODE_BINARY = 0x2;
const OPCODE_PING = 0x9;

/** One WebSocket frame at the start of `buf`: its length and what it carries, or undefined if incomplete. */
function parseFrame(buf: Buffer): { length: number; opcode: number; fin: boolean; payload: Buffer } | undefined {
  if (buf.length < 2) return undefined;
  const fin = (buf[0]! & 0x80) !== 0;
  const opcode = buf[0]! & 0x0f;
  const masked = (buf[1]! & 0x80) !== 0;
  let len = buf[1]! & 0x7f;
  let offset = 2;
  if (len === 126) {
    if (buf.length < 4) return undefined;
    len = buf.readUInt16BE(2);
    offset = 4;
  } else if (len === 127) {
    if (buf.length < 10) return undefined;
    len = Number(buf.readBigUInt64BE(2));
    offset = 10;
  }
  const maskAt = offset;
  if (masked) offset += 4;
  if (buf.length < offset + len) return undefined;
  const payload = Buffer.from(buf.subarray(offset, offset + len));
  if (masked) for (let i = 0; i < len; i++) payload[i]! ^= buf[maskAt + (i % 4)]!;
  return { length: offset + len, opcode, fin, payload };
}

export async function startTripwireProxy(targetUrl: string, wire: Tripwire): Promise<TripwireProxy> {
  const target = new URL(targetUrl);
  const sockets = new Set<net.Socket>();
  let struck: Passing | undefined;
  const cutAll = (): void => {
    for (const s of sockets) s.destroy();
    sockets.clear();
  };
  const strike = (p: Passing): void => {
    struck = p;
    if (wire.action === 'kill') {
      wire.kill!();
    } else {
      cutAll();
    }
  };

  // After the strike, later connections (a source asking what became of the migration) pass
  // untouched: to the same agent after a cut, to whatever listens on its port after a kill.
  const server = net.createServer((client) => {
    let dead = false;
    const agent = net.connect(Number(target.port), target.hostname);
    sockets.add(client);
    sockets.add(agent);
    const end = (): void => {
      client.destroy();
      agent.destroy();
    };
    client.on('error', end).on('close', end);
    agent.on('error', end).on('close', end);

    // One reader per direction: the HTTP head first, then frames.
    const relay = (from: 'source' | 'agent', input: net.Socket, output: net.Socket): void => {
      let pending = Buffer.alloc(0);
      let inHead = true;
      let fragments: Buffer[] = [];
      input.on('data', (chunk: Buffer) => {
        if (dead) return;
        pending = Buffer.concat([pending, chunk]);
        for (;;) {
          if (dead) return;
          if (inHead) {
            const endOfHead = pending.indexOf('\r\n\r\n');
            if (endOfHead < 0) return;
            const head = pending.subarray(0, endOfHead + 4);
            pending = pending.subarray(endOfHead + 4);
            inHead = false;
            if (from === 'source' && !struck && wire.at({ kind: 'upgrade-request' })) {
              handle({ kind: 'upgrade-request' }, head, output);
              continue;
            }
            output.write(head);
            continue;
          }
          const frame = parseFrame(pending);
          if (!frame) return;
          const bytes = pending.subarray(0, frame.length);
          pending = pending.subarray(frame.length);
          let passing: Passing | undefined;
          if (frame.opcode === OPCODE_PING) passing = { kind: 'ping', from };
          if (frame.opcode === OPCODE_BINARY || frame.opcode === OPCODE_CONTINUATION) {
            fragments.push(frame.payload);
            if (frame.fin) {
              const message = Buffer.concat(fragments);
              fragments = [];
              try {
                passing = { kind: 'record', from, record: decodeFrame(message) };
              } catch {
                passing = undefined;
              }
            }
          }
          if (passing && !struck && wire.at(passing)) {
            handle(passing, bytes, output);
            continue;
          }
          output.write(bytes);
        }
      });
    };
    const handle = (p: Passing, bytes: Buffer, output: net.Socket): void => {
      dead = true;
      if (!wire.after) {
        strike(p);
        return;
      }
      output.write(bytes, () => strike(p));
    };
    relay('source', client, agent);
    relay('agent', agent, client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    url: `ws://127.0.0.1:${port}`,
    get struck() {
      return struck;
    },
    async close() {
      cutAll();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
