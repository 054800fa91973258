import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, expect, test } from 'vitest';
import { QmpClient } from '../dist/domain/qemu/qmp.js';
import { qemuTest, startTestGuest, type TestGuest } from './helpers/qemu.js';

let guest: TestGuest | undefined;
let server: { server: Server; dir: string } | undefined;

afterEach(async () => {
  if (guest?.qemu.running) {
    try {
      process.kill(guest.qemu.pid, 'SIGCONT'); // a test may have left it stopped
    } catch {
      // it has just died
    }
  }
  await guest?.stop();
  guest = undefined;
  if (server) {
    server.server.close();
    await rm(server.dir, { recursive: true, force: true });
    server = undefined;
  }
});

/** A unix socket server that does `onConnection` with each client, in place of QEMU. */
async function fakeQemu(onConnection: (socket: Socket) => void): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'livemig-qmp-'));
  const path = join(dir, 'qmp.sock');
  const s = createServer(onConnection);
  await new Promise<void>((resolve) => s.listen(path, resolve));
  server = { server: s, dir };
  return path;
}

qemuTest('concurrent commands each get their own reply, and events reach listeners', async () => {
  guest = await startTestGuest(64, {}, { paused: true });
  const qmp = guest.qemu.qmp;
  expect(qmp.version?.qemu.major).toBeGreaterThanOrEqual(7);
  const [status, version, memdev] = await Promise.all([
    qmp.execute<{ status: string }>('query-status'),
    qmp.execute<{ qemu: { major: number } }>('query-version'),
    qmp.execute<Array<{ id: string }>>('query-memdev'),
  ]);
  expect(status.status).toBe('prelaunch');
  expect(version.qemu.major).toBe(qmp.version!.qemu.major);
  expect(memdev.map((m) => m.id)).toEqual(['mem']);

  const seen: string[] = [];
  const off = qmp.onEvent((e) => seen.push(e.event));
  const resumed = qmp.waitForEvent('RESUME');
  await qmp.execute('cont');
  expect((await resumed).event).toBe('RESUME');
  const stopped = qmp.waitForEvent('STOP');
  await qmp.execute('stop');
  await stopped;
  off();
  expect(seen).toEqual(['RESUME', 'STOP']);
});

qemuTest('an error reply rejects with ERR_DOMAIN_FAILED and QEMU\'s error class; the connection goes on', async () => {
  guest = await startTestGuest(64, {}, { paused: true });
  const qmp = guest.qemu.qmp;
  await expect(qmp.execute('no-such-command')).rejects.toMatchObject({ name: 'QmpCommandError', code: 'ERR_DOMAIN_FAILED', qmpClass: 'CommandNotFound', command: 'no-such-command' });
  await expect(qmp.execute('qom-get', { path: '/machine' })).rejects.toMatchObject({ code: 'ERR_DOMAIN_FAILED', qmpClass: 'GenericError' });
  expect(await qmp.execute('query-status')).toMatchObject({ status: 'prelaunch' });
});

qemuTest('a command QEMU does not answer in time times out, and its late reply is not taken for the next one', async () => {
  guest = await startTestGuest(64, {}, { paused: true });
  const qmp = guest.qemu.qmp;
  process.kill(guest.qemu.pid, 'SIGSTOP');
  await expect(qmp.execute('query-version', undefined, { timeoutMs: 300 })).rejects.toMatchObject({ code: 'ERR_TIMEOUT' });
  process.kill(guest.qemu.pid, 'SIGCONT');
  // QEMU now answers query-version too; the reply to this command is the status, by its id.
  expect(await qmp.execute('query-status')).toMatchObject({ status: 'prelaunch' });
});

qemuTest('when QEMU dies mid-wait, every pending command and event wait rejects with ERR_CONNECTION_CLOSED', async () => {
  guest = await startTestGuest(64, {}, { paused: true });
  const qmp = guest.qemu.qmp;
  process.kill(guest.qemu.pid, 'SIGSTOP');
  const pending = qmp.execute('query-status', undefined, { timeoutMs: 60_000 });
  const event = qmp.waitForEvent('SHUTDOWN', { timeoutMs: 60_000 });
  process.kill(guest.qemu.pid, 'SIGKILL');
  await expect(pending).rejects.toMatchObject({ code: 'ERR_CONNECTION_CLOSED' });
  await expect(event).rejects.toMatchObject({ code: 'ERR_CONNECTION_CLOSED' });
  expect(await qmp.closed).toMatchObject({ code: 'ERR_CONNECTION_CLOSED' });
  expect(qmp.isClosed).toBe(true);
  await expect(qmp.execute('query-status')).rejects.toMatchObject({ code: 'ERR_CONNECTION_CLOSED' });
});

qemuTest('closing the client settles a command still waiting for its reply', async () => {
  guest = await startTestGuest(64, {}, { paused: true });
  const qmp = guest.qemu.qmp;
  process.kill(guest.qemu.pid, 'SIGSTOP');
  const pending = qmp.execute('query-status', undefined, { timeoutMs: 60_000 });
  qmp.close();
  await expect(pending).rejects.toMatchObject({ code: 'ERR_CONNECTION_CLOSED' });
});

test('connecting where nothing listens fails with ERR_CONNECTION_CLOSED', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'livemig-qmp-'));
  try {
    await expect(QmpClient.connect(join(dir, 'absent.sock'))).rejects.toMatchObject({ code: 'ERR_CONNECTION_CLOSED' });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a peer that never greets makes connect time out with ERR_TIMEOUT', async () => {
  const path = await fakeQemu(() => undefined);
  await expect(QmpClient.connect(path, { timeoutMs: 200 })).rejects.toMatchObject({ code: 'ERR_TIMEOUT' });
});

test('a peer that sends something other than JSON fails the connection with ERR_DOMAIN_FAILED', async () => {
  const path = await fakeQemu((socket) => socket.write('this is not QMP\r\n'));
  await expect(QmpClient.connect(path, { timeoutMs: 5000 })).rejects.toMatchObject({ code: 'ERR_DOMAIN_FAILED' });
});

test('a peer that greets but closes before negotiating fails with ERR_CONNECTION_CLOSED', async () => {
  const greeting = { QMP: { version: { qemu: { major: 7, minor: 2, micro: 0 }, package: '' }, capabilities: [] } };
  const path = await fakeQemu((socket) => {
    socket.write(`${JSON.stringify(greeting)}\r\n`);
    socket.once('data', () => socket.destroy());
  });
  await expect(QmpClient.connect(path, { timeoutMs: 5000 })).rejects.toMatchObject({ code: 'ERR_CONNECTION_CLOSED' });
});
