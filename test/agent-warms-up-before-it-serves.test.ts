// A long-lived agent warms its data path before it serves: `livemig listen` and `livemig host`
// migrate a few small simulated guests to themselves, say so on their listening line, and then
// serve a migration that completes true to its oracle; `--no-warm-up` skips it. The library's
// warmUp leaves nothing running behind it, reports a failure instead of throwing, and a stranger
// that connects to its loopback port and sends garbage changes nothing.
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { connect } from 'node:net';
import { createInterface } from 'node:readline';
import { expect, test } from 'vitest';
import { connectToAgent } from '../dist/agent/agent-client.js';
import { WARM_UP_MIGRATIONS, warmUp } from '../dist/agent/warm-up.js';
import type { SimGuestConfig } from '../dist/domain/sim/config.js';
import { SimulatedGuest } from '../dist/domain/sim/guest.js';
import { migrate } from '../dist/precopy/migration.js';
import { BIN } from './helpers/agent-process.js';
import { expectAgentGuestMatchesOracle } from './helpers/target-memory.js';

const MiB = 1024 * 1024;

/** Starts `livemig ARGS --port 0 --json --supervised` and resolves with its listening event. */
async function listening(args: string[]): Promise<{ event: Record<string, unknown>; stop: () => Promise<number | null> }> {
  const child = spawn(process.execPath, [BIN, ...args, '--port', '0', '--json', '--supervised'], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout! });
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  const event = await new Promise<Record<string, unknown>>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${args[0]} did not start listening within 30 s`)), 30_000);
    void exited.then((code) => reject(new Error(`${args[0]} exited with ${code} before listening`)));
    lines.on('line', (line) => {
      const e = JSON.parse(line) as Record<string, unknown>;
      if (e.type !== 'listening') return;
      clearTimeout(timer);
      resolve(e);
    });
  });
  return {
    event,
    stop: async () => {
      child.stdin!.end();
      return exited;
    },
  };
}

test('listen warms up with a few migrations before it serves, and then receives a guest true to its oracle', async () => {
  const agent = await listening(['listen']);
  try {
    const warm = agent.event.warmUp as { migrations: number; ms: number; error?: unknown };
    expect(warm.error).toBeUndefined();
    expect(warm.migrations).toBe(WARM_UP_MIGRATIONS);
    expect(warm.ms).toBeGreaterThan(0);
    const url = agent.event.url as string;
    const config: SimGuestConfig = { memoryBytes: 64 * MiB, vcpus: 1, workload: 'hotset', dirtyRateBytesPerSec: 20e6, hotSetBytes: 8 * MiB, seed: 17 };
    const guest = await SimulatedGuest.boot(config, 'after-warm-up');
    try {
      const report = await migrate(guest, await connectToAgent(url), { destroySource: false, targetName: url });
      expect(report.error).toBeUndefined();
      expect(report.outcome).toBe('completed');
      await expectAgentGuestMatchesOracle(url, report, guest, config);
    } finally {
      await guest.destroy();
    }
  } finally {
    expect(await agent.stop()).toBe(0);
  }
}, 90_000);

test('--no-warm-up serves at once, and host warms up as listen does', async () => {
  const cold = await listening(['listen', '--no-warm-up']);
  expect(cold.event.warmUp).toBeUndefined();
  expect(await cold.stop()).toBe(0);
  const host = await listening(['host', '--name', 'warm-host']);
  expect(host.event.warmUp).toMatchObject({ migrations: WARM_UP_MIGRATIONS });
  expect((host.event.warmUp as { error?: unknown }).error).toBeUndefined();
  expect(await host.stop()).toBe(0);
}, 90_000);

test('warmUp completes its migrations and leaves no thread, socket or timer behind; a failure is reported, not thrown', async () => {
  // What keeps the event loop alive, by kind: the warm-up may add none.
  const held = (): Map<string, number> => {
    const counts = new Map<string, number>();
    for (const kind of process.getActiveResourcesInfo()) counts.set(kind, (counts.get(kind) ?? 0) + 1);
    return counts;
  };
  const before = held();
  const report = await warmUp({ migrations: 2, memoryBytes: 16 * MiB });
  expect(report).toMatchObject({ migrations: 2 });
  expect(report.error).toBeUndefined();
  // Closed sockets and exited threads leave the list on the next turn of the loop.
  await new Promise((r) => setTimeout(r, 200));
  const added = [...held()].filter(([kind, n]) => n > (before.get(kind) ?? 0));
  expect(added).toEqual([]);

  // Memory that is not a whole number of pages cannot be a guest: the warm-up stops at once.
  const failed = await warmUp({ migrations: 2, memoryBytes: 1000 });
  expect(failed.migrations).toBe(0);
  expect(failed.error?.code).toBe('ERR_INVALID_ARGUMENT');
}, 60_000);

/** TCP ports this process listens on, from the kernel's socket table and this process's descriptors. */
function listeningPorts(): Set<number> {
  const inodes = new Set<string>();
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/self/fd/${fd}`));
      if (m) inodes.add(m[1]!);
    } catch {
      // Closed meanwhile.
    }
  }
  const ports = new Set<number>();
  for (const line of readFileSync('/proc/net/tcp', 'latin1').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    // local address, state 0A (listening), inode
    if (f.length > 9 && f[3] === '0A' && inodes.has(f[9]!)) ports.add(parseInt(f[1]!.split(':')[1]!, 16));
  }
  return ports;
}

test('a stranger that connects to the warm-up and sends garbage neither stops it nor takes the process down', async () => {
  const before = listeningPorts();
  const warming = warmUp({ migrations: 3, memoryBytes: 16 * MiB });
  let port: number | undefined;
  for (let i = 0; i < 200 && port === undefined; i++) {
    port = [...listeningPorts()].find((p) => !before.has(p));
    if (port === undefined) await new Promise((r) => setTimeout(r, 5));
  }
  expect(port).toBeDefined();
  // A WebSocket upgrade, then a binary frame that is no record at all.
  const socket = connect(port!, '127.0.0.1');
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  socket.on('error', () => undefined);
  socket.write(
    'GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
      'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
  );
  await new Promise((r) => setTimeout(r, 50));
  // FIN, binary, masked (with a zero mask), 4 bytes of garbage.
  socket.write(Buffer.from([0x82, 0x84, 0, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef]));
  const report = await warming;
  socket.destroy();
  expect(report.error).toBeUndefined();
  expect(report.migrations).toBe(3);
}, 60_000);

