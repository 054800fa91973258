// The target's QEMU starts while the first pages are written into its RAM file: `create`
// resolves before QEMU answers, the pages written meanwhile are what QEMU then holds, a later
// round waits for QEMU, and a QEMU that fails to start fails the migration, leaving no file behind. QEMU is started through a
// wrapper that holds an incoming QEMU back until the test opens a gate.
import { existsSync } from 'node:fs';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, expect } from 'vitest';
import { qemuDescriptor, readQemuHostFacts } from '../dist/domain/qemu/qemu-config.js';
import { findQemuBinary } from '../dist/domain/qemu/qemu-process.js';
import { QemuTargetBackend, type QemuTargetDomain } from '../dist/domain/qemu/target-backend.js';
import { testGuestSourceHash } from '../dist/domain/qemu/test-guest.js';
import { qemuTest } from './helpers/qemu.js';

const PAGE = 4096;
let work: string;
let domain: QemuTargetDomain | undefined;

beforeEach(async () => {
  work = await mkdtemp(join(tmpdir(), 'livemig-qemu-gate-'));
});

afterEach(async () => {
  await domain?.destroy();
  domain = undefined;
  await rm(work, { recursive: true, force: true });
});

/** A QEMU binary that runs at once to answer questions, but starts an incoming QEMU only once `gate` exists (or, with `fail`, exits 1). */
async function gatedQemu(gate: string, fail = false): Promise<string> {
  const path = join(work, 'qemu-gated');
  const incoming = fail ? 'exit 1' : `while [ ! -e '${gate}' ]; do sleep 0.02; done`;
  await writeFile(path, `#!/bin/sh\ncase "$*" in *-incoming*) ${incoming} ;; esac\nexec '${findQemuBinary()}' "$@"\n`);
  await chmod(path, 0o755);
  return path;
}

async function descriptorFor(binary: string, memoryMiB: number): Promise<ReturnType<typeof qemuDescriptor>> {
  const facts = await readQemuHostFacts(binary);
  const machine = [...facts.machines].filter((m) => /^pc-q35-\d+\.\d+$/.test(m)).sort().at(-1)!;
  return qemuDescriptor('gated', { qemuVersion: facts.version, machine, memoryMiB, ramBackendId: 'mem', kernel: { kind: 'test-guest', hash: await testGuestSourceHash() } });
}

qemuTest('pages written before the incoming QEMU has started are what it holds once it has; a later round waits for it', async () => {
  const gate = join(work, 'open');
  const binary = await gatedQemu(gate);
  const backend = new QemuTargetBackend({ binary, dir: '/dev/shm' });
  // With the gate closed QEMU cannot answer: create resolving proves it did not wait for it.
  domain = (await backend.create(await descriptorFor(binary, 32))) as QemuTargetDomain;
  expect(() => domain!.qemu).toThrow(expect.objectContaining({ code: 'ERR_DOMAIN_FAILED' }));

  const pfns = Uint32Array.from([1000, 1001, 1002, 4000]);
  const pages = Buffer.alloc(pfns.length * PAGE);
  for (let i = 0; i < pages.length; i++) pages[i] = (i * 7 + 3) & 0xff;
  expect(domain.writePages(pfns, pages)).toBeUndefined();
  // Pages below those written begin a later round: it waits for QEMU, so the source cannot pause
  // before QEMU could load the device state.
  const again = Buffer.alloc(PAGE, 0x5a);
  let laterWritten = false;
  const later = Promise.resolve(domain.writePages(Uint32Array.from([7]), again)).then(() => (laterWritten = true));
  await new Promise((resolve) => setTimeout(resolve, 300));
  expect(laterWritten).toBe(false);

  await writeFile(gate, '');
  await later;
  const qemu = await domain.started();
  expect(domain.qemu).toBe(qemu);
  expect(await qemu.qmp.execute('query-status')).toMatchObject({ status: 'inmigrate' });
  // QEMU's own view of guest memory, not the file's.
  const saved = join(work, 'pmem');
  for (const [i, pfn] of pfns.entries()) {
    await qemu.qmp.execute('pmemsave', { val: pfn * PAGE, size: PAGE, filename: saved });
    expect((await readFile(saved)).equals(pages.subarray(i * PAGE, (i + 1) * PAGE)), `page ${pfn}`).toBe(true);
  }
  await qemu.qmp.execute('pmemsave', { val: 7 * PAGE, size: PAGE, filename: saved });
  expect((await readFile(saved)).equals(again)).toBe(true);
  const ramPath = qemu.definition.ramPath;
  await domain.destroy();
  domain = undefined;
  expect(qemu.running).toBe(false);
  expect(existsSync(ramPath)).toBe(false);
}, 60_000);

qemuTest('an incoming QEMU that fails to start fails the next round and loadState, and destroy leaves no file behind', async () => {
  const binary = await gatedQemu(join(work, 'never'), true);
  const backend = new QemuTargetBackend({ binary, dir: '/dev/shm' });
  domain = (await backend.create(await descriptorFor(binary, 32))) as QemuTargetDomain;
  const ramPath = domain.memory();
  domain.writePages(Uint32Array.from([5]), Buffer.alloc(PAGE, 1));
  // A later round's first batch already says why.
  await expect(domain.writePages(Uint32Array.from([5]), Buffer.alloc(PAGE, 2))).rejects.toMatchObject({ code: 'ERR_DOMAIN_FAILED' });
  await expect(domain.loadState(new Uint8Array(16))).rejects.toMatchObject({ code: 'ERR_DOMAIN_FAILED', message: expect.stringContaining('QEMU exited while starting') as unknown });
  await domain.destroy();
  domain = undefined;
  expect(ramPath.kind === 'file' && existsSync(ramPath.path)).toBe(false);
}, 60_000);
