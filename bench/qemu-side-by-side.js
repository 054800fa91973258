// QEMU side by side. In one run, alternating, the same TCG test guest (src/domain/qemu/guest)
// writing the same rate of pages, with each memory size, migrates on this host:
//   1. by livemig: `livemig demo --backend qemu`, the guest moving to an agent in a second process
//      (livemig moves RAM, QEMU only the device state), checked by the guest itself on the target;
//   2. by QEMU's own pre-copy over loopback TCP;
//   3. by QEMU with multifd, 2 channels.
// QEMU runs with max-bandwidth lifted and the same downtime-limit as livemig's budget; its figures
// are its own (query-migrate total-time and downtime). After each QEMU migration the guest runs
// on the target and its serial log must show reports and no page found wrong.
// It prints medians and ranges, ratios against QEMU, the load average, and writes a JSON file
// and an SVG chart. Usage:
//   node bench/qemu-side-by-side.js [--memory 256MiB,1GiB] [--runs 3] [--dirty-rate 50MB/s]
//     [--budget 300] [--out docs/bench] [--json]
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { buildTestGuest, QemuProcess, readTestGuestLog, testGuestAppend } from 'livemig';
import { parseInteger, parseRate, parseSize } from '#cli/units';
import { median } from '#util/stats';
import { PALETTE, renderSvgChart } from '../dist/bench/svg-chart.js';

const { values } = parseArgs({
  options: {
    memory: { type: 'string' },
    runs: { type: 'string' },
    'dirty-rate': { type: 'string' },
    budget: { type: 'string' },
    out: { type: 'string' },
    json: { type: 'boolean' },
  },
});
const MiB = 1024 * 1024;
const sizes = (values.memory ?? '256MiB,1GiB').split(',').map((s) => parseSize(s, '--memory'));
const runs = parseInteger(values.runs ?? '3', '--runs', 1, 50);
const rateText = values['dirty-rate'] ?? '50MB/s';
const dirtyRate = parseRate(rateText, '--dirty-rate');
const budgetMs = parseInteger(values.budget ?? '300', '--budget', 1, 60_000);
const outDir = values.out ?? 'docs/bench';
const PAGE = 4096;
/** How long the guest runs before a migration, and on the target after one (as the demo does). */
const WARMUP_MS = 2000;
const RUN_AFTER_MS = 3000;
/** A QEMU migration still going after this long is cancelled and counted as not converging. */
const QEMU_TIMEOUT_MS = 300_000;
/** QEMU's max-bandwidth, lifted: 100 GiB/s in bytes per second. */
const NO_BANDWIDTH_CAP = 100 * 1024 * MiB;
const METHODS = ['livemig', 'qemu-precopy', 'qemu-multifd-2'];

const log = (line) => {
  if (!values.json) process.stdout.write(`${line}\n`);
};

function run(cmd, args) {
  return new Promise((resolve) => {
    execFile(cmd, args, { maxBuffer: 64 * MiB }, (error, stdout, stderr) => resolve({ code: error ? (error.code ?? 1) : 0, stdout, stderr }));
  });
}

/** One livemig migration: the demo, which boots the guest, migrates it and checks it on the target. */
async function livemig(memoryBytes) {
  const args = ['--v8-pool-size=1', '--initial-old-space-size=128', 'bin/livemig.js', 'demo', '--backend', 'qemu', '--memory', `${memoryBytes / MiB}MiB`];
  const r = await run(process.execPath, [...args, '--dirty-rate', rateText, '--downtime-budget', `${budgetMs}ms`, '--json']);
  let report;
  try {
    report = JSON.parse(r.stdout);
  } catch {
    return { ok: false, error: `no report (exit ${r.code}): ${r.stderr.slice(-400)}` };
  }
  const ok = report.outcome === 'completed' && report.verified === true && report.guestCheck?.ok === true;
  return {
    ok,
    totalMs: report.totalMs,
    downtimeMs: report.downtimeMs,
    predictedMs: report.predictedDowntimeMs,
    findDirtyMs: report.switchover?.findDirtyMs,
    rounds: report.rounds?.length,
    error: ok ? undefined : `${report.outcome} ${report.error?.code ?? ''} verified=${report.verified} guestCheck=${JSON.stringify(report.guestCheck)}`,
  };
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** Waits until the guest's serial log at `path` holds `reports` once-a-second reports. */
async function reportsIn(path, reports, deadlineMs) {
  const until = performance.now() + deadlineMs;
  for (;;) {
    const lines = await readTestGuestLog(path).catch(() => []);
    if (lines.filter((l) => l.kind === 'report').length >= reports || performance.now() > until) return lines;
    await sleep(100);
  }
}

/** One migration by QEMU itself, pre-copy or multifd with `channels` channels. */
async function qemu(memoryBytes, kernel, channels) {
  const dir = mkdtempSync(join(tmpdir(), 'livemig-qemu-bench-'));
  const tag = `livemig-qemu-bench-${process.pid}`;
  const def = (side) => ({
    memoryMiB: memoryBytes / MiB,
    ramPath: `/dev/shm/${tag}-${side}`,
    kernel,
    append: testGuestAppend({ ratePagesPerSecond: Math.round(dirtyRate / PAGE) }),
    serialPath: join(dir, `${side}.log`),
  });
  let source;
  let target;
  try {
    source = await QemuProcess.start(def('src'));
    target = await QemuProcess.start(def('dst'), { incoming: true });
    await reportsIn(def('src').serialPath, WARMUP_MS / 1000, 30_000);
    for (const q of [source, target]) {
      if (channels > 1) {
        await q.qmp.execute('migrate-set-capabilities', { capabilities: [{ capability: 'multifd', state: true }] });
        await q.qmp.execute('migrate-set-parameters', { 'multifd-channels': channels });
      }
    }
    await source.qmp.execute('migrate-set-parameters', { 'max-bandwidth': NO_BANDWIDTH_CAP, 'downtime-limit': budgetMs });
    const port = await freePort();
    await target.qmp.execute('migrate-incoming', { uri: `tcp:127.0.0.1:${port}` });
    await source.qmp.execute('migrate', { uri: `tcp:127.0.0.1:${port}` });
    const started = performance.now();
    let info;
    for (;;) {
      info = await source.qmp.execute('query-migrate');
      if (['completed', 'failed', 'cancelled'].includes(info.status)) break;
      if (performance.now() - started > QEMU_TIMEOUT_MS) await source.qmp.execute('migrate_cancel').catch(() => undefined);
      await sleep(20);
    }
    if (info.status !== 'completed') return { ok: false, error: `QEMU migration ${info.status}${info['error-desc'] ? `: ${info['error-desc']}` : ''}` };
    const before = (await readTestGuestLog(def('dst').serialPath).catch(() => [])).length;
    await sleep(RUN_AFTER_MS);
    const status = await target.qmp.execute('query-status');
    const lines = (await readTestGuestLog(def('dst').serialPath)).slice(before);
    const reports = lines.filter((l) => l.kind === 'report');
    const wrong = lines.filter((l) => l.kind === 'check-failed').length + (reports.at(-1)?.errors ?? 0);
    const ok = status.status === 'running' && reports.length >= 2 && wrong === 0;
    return {
      ok,
      totalMs: info['total-time'],
      downtimeMs: info.downtime,
      rounds: info.ram?.['dirty-sync-count'],
      error: ok ? undefined : `target ${status.status}, ${reports.length} reports, ${wrong} pages wrong`,
    };
  } catch (err) {
    return { ok: false, error: err.message };
  } finally {
    await Promise.allSettled([source?.stop(), target?.stop()]);
    rmSync(dir, { recursive: true, force: true });
  }
}

const kernel = await buildTestGuest();
const startedAt = new Date().toISOString();
const loadBefore = loadavg();
const results = [];
log(`QEMU side by side: ${sizes.map((s) => `${s / MiB} MiB`).join(', ')}, guest writing ${rateText}, budget/downtime-limit ${budgetMs} ms, ${runs} runs`);
log(`load average at start: ${loadBefore.map((l) => l.toFixed(2)).join(' ')} (${cpus().length} CPUs)`);
for (let r = 0; r < runs; r++) {
  for (const memoryBytes of sizes) {
    // Each run starts with another method, so that none always follows the same one.
    const order = METHODS.map((_, i) => METHODS[(i + r) % METHODS.length]);
    for (const method of order) {
      const load = loadavg()[0];
      const res = method === 'livemig' ? await livemig(memoryBytes) : await qemu(memoryBytes, kernel, method === 'qemu-precopy' ? 1 : 2);
      results.push({ run: r + 1, memoryBytes, method, load1: load, ...res });
      log(
        `run ${r + 1} ${memoryBytes / MiB} MiB ${method.padEnd(14)} ` +
          (res.ok ? `total ${(res.totalMs / 1000).toFixed(2)} s  downtime ${Math.round(res.downtimeMs)} ms` : `FAILED: ${res.error}`) +
          `  (load ${load.toFixed(2)})`,
      );
    }
  }
}
const loadAfter = loadavg();

/** Median, min and max of `key` over the successful runs of a method and size. */
function spread(method, memoryBytes, key) {
  const xs = results.filter((x) => x.ok && x.method === method && x.memoryBytes === memoryBytes).map((x) => x[key]).filter((v) => typeof v === 'number');
  if (xs.length === 0) return undefined;
  return { median: median(xs), min: Math.min(...xs), max: Math.max(...xs), n: xs.length };
}

const summary = [];
for (const memoryBytes of sizes) {
  for (const method of METHODS) {
    const runsOf = results.filter((x) => x.method === method && x.memoryBytes === memoryBytes);
    summary.push({
      memoryMiB: memoryBytes / MiB,
      method,
      completed: `${runsOf.filter((x) => x.ok).length}/${runsOf.length}`,
      totalMs: spread(method, memoryBytes, 'totalMs'),
      downtimeMs: spread(method, memoryBytes, 'downtimeMs'),
    });
  }
}
const find = (mib, method) => summary.find((s) => s.memoryMiB === mib && s.method === method);
const ratio = (a, b) => (a && b ? a.median / b.median : undefined);
log('');
log('| guest | method | completed | total time, median (range) | downtime, median (range) | total vs QEMU multifd | downtime vs QEMU pre-copy |');
log('|---|---|---|---|---|---|---|');
const fmtS = (s) => (s ? `${(s.median / 1000).toFixed(1)} s (${(s.min / 1000).toFixed(1)}-${(s.max / 1000).toFixed(1)})` : 'n/a');
const fmtMs = (s) => (s ? `${Math.round(s.median)} ms (${Math.round(s.min)}-${Math.round(s.max)})` : 'n/a');
const fmtX = (x) => (x === undefined ? 'n/a' : `${x.toFixed(2)}x`);
for (const s of summary) {
  const multifd = find(s.memoryMiB, 'qemu-multifd-2');
  const precopy = find(s.memoryMiB, 'qemu-precopy');
  log(
    `| ${s.memoryMiB} MiB | ${s.method} | ${s.completed} | ${fmtS(s.totalMs)} | ${fmtMs(s.downtimeMs)} | ` +
      `${fmtX(ratio(s.totalMs, multifd.totalMs))} | ${fmtX(ratio(s.downtimeMs, precopy.downtimeMs))} |`,
  );
}
log('');
log(`load average at end: ${loadAfter.map((l) => l.toFixed(2)).join(' ')}`);

const names = { livemig: 'livemig', 'qemu-precopy': 'QEMU pre-copy', 'qemu-multifd-2': 'QEMU multifd, 2 channels' };
const panel = (title, key, scale) => ({
  title,
  series: METHODS.map((method, i) => {
    const points = sizes.flatMap((memoryBytes, xi) => {
      const s = spread(method, memoryBytes, key);
      return s ? [{ x: xi, y: s.median / scale, low: s.min / scale, high: s.max / scale }] : [];
    });
    return { label: names[method], color: PALETTE[i], points };
  }),
  references: key === 'downtimeMs' ? [{ y: budgetMs, label: `budget ${budgetMs} ms` }] : [],
});
const common = {
  xLabel: 'guest memory',
  xScale: 'category',
  xFormat: (x) => `${sizes[x] / MiB} MiB`,
  dodge: true,
  yScale: 'linear',
  subtitle: `guest writing ${rateText}; ${runs} runs, median, bars min to max; ${cpus().length} CPUs, load ${loadBefore[0].toFixed(1)}-${loadAfter[0].toFixed(1)}; ${startedAt.slice(0, 10)}`,
};
const svg = renderSvgChart({
  ...common,
  title: 'livemig and QEMU migrating the same TCG guest',
  yLabel: 'downtime (ms) / total time (s)',
  yFormat: (y) => String(Number(y.toPrecision(3))),
  columns: 2,
  panels: [panel('downtime (ms)', 'downtimeMs', 1), panel('total time (s)', 'totalMs', 1000)],
});
mkdirSync(outDir, { recursive: true });
writeFileSync(join(outDir, 'qemu-side-by-side.svg'), svg);
const record = { startedAt, machine: { cpus: cpus().length, node: process.version, loadBefore, loadAfter }, dirtyRate: rateText, budgetMs, runs, summary, results };
writeFileSync(join(outDir, 'qemu-side-by-side.json'), `${JSON.stringify(record, null, 2)}\n`);
if (values.json) process.stdout.write(`${JSON.stringify(record)}\n`);
log(`wrote ${join(outDir, 'qemu-side-by-side.svg')} and qemu-side-by-side.json`);
