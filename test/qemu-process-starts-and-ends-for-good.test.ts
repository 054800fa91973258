import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, statSync } from 'node:fs';
import { afterEach, expect, test } from 'vitest';
import { QemuProcess, qemuArguments, queryQemuIdentity } from '../dist/domain/qemu/qemu-process.js';
import { buildTestGuest } from '../dist/domain/qemu/test-guest.js';
import { qemuTest, startTestGuest, waitFor, type TestGuest } from './helpers/qemu.js';

let guest: TestGuest | undefined;

afterEach(async () => {
  await guest?.stop();
  guest = undefined;
});

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The QEMU processes this process started that still exist (zombies included). */
function qemuChildren(): string[] {
  const out = execFileSync('ps', ['-o', 'pid=,comm=', '--ppid', String(process.pid)], { encoding: 'utf8' }).trim();
  return out.split('\n').filter((l) => l.includes('qemu'));
}

const definition = { memoryMiB: 64, ramPath: '/dev/shm/livemig-test-unused', kernel: '/k.elf', serialPath: '/tmp/serial.log' };

test('the command line shares RAM through a file backend, suppresses vmdesc, and escapes commas', () => {
  const args = qemuArguments({ ...definition, ramPath: '/dev/shm/a,b', append: 'rate=5' }, { incoming: true, paused: true }, '/run/q.sock');
  const after = (flag: string): string | undefined => args[args.indexOf(flag) + 1];
  expect(after('-accel')).toBe('tcg');
  expect(after('-machine')).toBe('q35,memory-backend=mem,suppress-vmdesc=on');
  expect(after('-object')).toBe('memory-backend-file,id=mem,size=64M,mem-path=/dev/shm/a,,b,share=on');
  expect(after('-incoming')).toBe('defer');
  expect(after('-append')).toBe('rate=5');
  expect(args).toContain('-S');
  expect(args).toContain('-nodefaults');
  const plain = qemuArguments(definition, {}, '/run/q.sock');
  expect(plain).not.toContain('-S');
  expect(plain).not.toContain('-incoming');
});

test('a bad definition is refused with ERR_INVALID_ARGUMENT', () => {
  expect(() => qemuArguments({ ...definition, ramPath: 'relative' }, {}, '/q.sock')).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }));
  expect(() => qemuArguments({ ...definition, memoryMiB: 0.5 }, {}, '/q.sock')).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }));
});

test('a missing QEMU binary is said plainly, with ERR_DOMAIN_FAILED', async () => {
  await expect(QemuProcess.start(definition, { binary: '/nonexistent/qemu-system-x86_64' })).rejects.toMatchObject({
    code: 'ERR_DOMAIN_FAILED',
    message: expect.stringContaining('not found') as unknown,
  });
});

qemuTest('a started QEMU answers on QMP and tells its version, resolved machine type and RAM backend', async () => {
  guest = await startTestGuest(64, {}, { paused: true });
  const { qemu } = guest;
  expect(alive(qemu.pid)).toBe(true);
  expect(qemu.running).toBe(true);
  expect(qemu.argv[0]).toMatch(/qemu-system-x86_64$/);
  expect(statSync(qemu.definition.ramPath).size).toBe(64 * 1024 * 1024);
  expect(await qemu.qmp.execute('query-status')).toMatchObject({ status: 'prelaunch' });

  const identity = await queryQemuIdentity(qemu.qmp);
  const greeted = qemu.qmp.version!.qemu;
  expect(identity.version).toBe(`${greeted.major}.${greeted.minor}.${greeted.micro}`);
  expect(identity.machine).toMatch(/^pc-q35-\d+\.\d+$/);
  expect(identity.memoryBackends).toEqual([{ id: 'mem', size: 64 * 1024 * 1024, share: true }]);
});

qemuTest('a target started with -incoming defer waits for the migration', async () => {
  guest = await startTestGuest(64, {}, { incoming: true });
  expect(await guest.qemu.qmp.execute('query-status')).toMatchObject({ status: 'inmigrate', running: false });
});

qemuTest('stop ends QEMU for good and removes its RAM file and QMP socket, and may be called again', async () => {
  guest = await startTestGuest(64);
  const { qemu } = guest;
  await qemu.stop();
  expect(alive(qemu.pid)).toBe(false);
  expect(qemu.running).toBe(false);
  expect(qemu.qmp.isClosed).toBe(true);
  expect(existsSync(qemu.definition.ramPath)).toBe(false);
  expect(existsSync(qemu.qmpSocketPath)).toBe(false);
  await qemu.stop();
  expect(qemuChildren()).toEqual([]);
});

qemuTest('a QEMU killed from outside closes QMP, and stop still cleans up', async () => {
  guest = await startTestGuest(64);
  const { qemu } = guest;
  process.kill(qemu.pid, 'SIGKILL');
  await qemu.exited;
  expect(await qemu.qmp.closed).toMatchObject({ code: 'ERR_CONNECTION_CLOSED' });
  await qemu.stop();
  expect(existsSync(qemu.definition.ramPath)).toBe(false);
});

qemuTest('a QEMU that refuses its command line is reported with its own words, and nothing is left running', async () => {
  const kernel = await buildTestGuest();
  const ramPath = `/dev/shm/livemig-test-${process.pid}-bad-machine`;
  const start = QemuProcess.start({ ...definition, kernel, ramPath, machine: 'pc-q35-0.1' });
  await expect(start).rejects.toMatchObject({ code: 'ERR_DOMAIN_FAILED', message: expect.stringMatching(/exited while starting.*machine/s) as unknown });
  await waitFor('no QEMU child left', async () => (qemuChildren().length === 0 ? true : undefined), 5000);
});

qemuTest('a QEMU that cannot load its kernel leaves no RAM file behind', async () => {
  const ramPath = `/dev/shm/livemig-test-${process.pid}-no-kernel`;
  const start = QemuProcess.start({ ...definition, kernel: '/nonexistent/guest.elf', ramPath });
  await expect(start).rejects.toMatchObject({ code: 'ERR_DOMAIN_FAILED', message: expect.stringContaining('/nonexistent/guest.elf') as unknown });
  expect(existsSync(ramPath)).toBe(false);
});

qemuTest('a QEMU whose owner exits without stopping it is killed, and its RAM file removed', async () => {
  const kernel = await buildTestGuest();
  const ramPath = `/dev/shm/livemig-test-${process.pid}-orphan`;
  const module = new URL('../dist/domain/qemu/qemu-process.js', import.meta.url).href;
  const code = `
    const { QemuProcess } = await import(${JSON.stringify(module)});
    const q = await QemuProcess.start({ memoryMiB: 64, ramPath: ${JSON.stringify(ramPath)}, kernel: ${JSON.stringify(kernel)}, serialPath: '/dev/null' });
    console.log(q.pid);
    process.exit(0);`;
  const owner = spawn(process.execPath, ['--input-type=module', '-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  owner.stdout!.on('data', (chunk: Buffer) => (out += chunk.toString()));
  await once(owner, 'close');
  const pid = Number(out.trim());
  expect(pid).toBeGreaterThan(0);
  await waitFor('the orphaned QEMU to be gone', async () => (alive(pid) ? undefined : true), 10_000);
  expect(existsSync(ramPath)).toBe(false);
});
