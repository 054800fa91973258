// Evacuation benchmark. Three hosts (A, B, C) in processes of their own on loopback, each a host
// agent that evacuates itself over the pool (`livemig bench --pool-host`). For each window, N
// guests are started on A and A is evacuated to B and C, that many migrations at once (and as many
// into one host). In the same run, between the same processes, the raw link from A to B is
// measured just before each evacuation. Reported per window: the evacuation's total time against
// the sum of the single migrations (window 1's migrations each ran alone) and against the
// link-bound time (guest bytes / raw link), and the pauses, max and median, against the budget.
// The results go to bench/results/evacuate-TIME.json, with two charts beside them (-time.svg and
// -pauses.svg); `--from a.json,b.json --out PREFIX` draws the charts of saved runs instead,
// each run a colour named by its `--label`.
//
// Usage: node bench/evacuate.js [--guests 8] [--memory 256MiB] [--windows 1,2,4]
//          [--workload idle] [--dirty-rate 0] [--downtime-budget 300ms] [--compress lz4|none]
//          [--busy N] [--busy-rate 120MB/s] [--busy-hot-set 64MiB] [--no-pause-order]
//          [--runs 1] [--label NAME] [--json]
//        node bench/evacuate.js --from a.json,b.json [--out PREFIX]
// --busy N makes the last N guests hotset guests at --busy-rate over --busy-hot-set (a mix of
// calm and busy guests); --no-pause-order evacuates without ordering by expected pause.
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, loadavg } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { ControlClient } from 'livemig';
import { spawnLivemig } from '#cli/node-flags';
import { parseInteger, parsePositiveDuration, parseRate, parseSize } from '#cli/units';
import { stopChild } from '#util/child';
import { median } from '#util/stats';
import { evacuationCharts } from '../dist/bench/evacuation-chart.js';

const { values } = parseArgs({
  options: {
    guests: { type: 'string' },
    memory: { type: 'string' },
    windows: { type: 'string' },
    workload: { type: 'string' },
    'dirty-rate': { type: 'string' },
    'downtime-budget': { type: 'string' },
    compress: { type: 'string' },
    busy: { type: 'string' },
    'busy-rate': { type: 'string' },
    'busy-hot-set': { type: 'string' },
    'no-pause-order': { type: 'boolean' },
    runs: { type: 'string' },
    label: { type: 'string' },
    json: { type: 'boolean' },
    from: { type: 'string' },
    out: { type: 'string' },
  },
});

/** Writes the two charts of `runs` to PREFIX-time.svg and PREFIX-pauses.svg; returns their paths. */
function writeCharts(runs, prefix) {
  const { timeSvg, pausesSvg } = evacuationCharts(runs);
  writeFileSync(`${prefix}-time.svg`, timeSvg);
  writeFileSync(`${prefix}-pauses.svg`, pausesSvg);
  return [`${prefix}-time.svg`, `${prefix}-pauses.svg`];
}

if (values.from !== undefined) {
  const runs = values.from.split(',').map((file) => JSON.parse(readFileSync(file, 'utf8')));
  for (const file of writeCharts(runs, values.out ?? 'evacuation')) process.stdout.write(`${file}\n`);
  process.exit(0);
}
const guests = parseInteger(values.guests ?? '8', '--guests', 1, 64);
const memoryBytes = parseSize(values.memory ?? '256MiB', '--memory');
const windows = (values.windows ?? '1,2,4').split(',').map((w) => parseInteger(w, '--windows', 1, 64));
const workload = values.workload ?? 'idle';
const dirtyRateBytesPerSec = values['dirty-rate'] === undefined ? 0 : parseRate(values['dirty-rate'], '--dirty-rate');
const budgetMs = parsePositiveDuration(values['downtime-budget'] ?? '300ms', '--downtime-budget');
const codec = values.compress ?? 'lz4';
const runs = parseInteger(values.runs ?? '1', '--runs', 1, 20);
const busy = parseInteger(values.busy ?? '0', '--busy', 0, guests);
const busyConfig = { workload: 'hotset', dirtyRateBytesPerSec: parseRate(values['busy-rate'] ?? '120MB/s', '--busy-rate'), hotSetBytes: parseSize(values['busy-hot-set'] ?? '64MiB', '--busy-hot-set') };
const orderByPause = !values['no-pause-order'];
const log = (line) => {
  if (!values.json) process.stdout.write(`${line}\n`);
};

/** One host process: its control client, its sink, and a raw-link measurement from it. */
async function startHost(name, capacityBytes, poolFile, stateDir) {
  const child = spawnLivemig(['bench', '--pool-host', name, String(capacityBytes), poolFile, stateDir]);
  const lines = createInterface({ input: child.stdout });
  const waiting = [];
  let listening;
  const ready = new Promise((resolve) => (listening = resolve));
  lines.on('line', (line) => {
    const event = JSON.parse(line);
    if (event.type === 'listening') listening(event);
    else if (event.type === 'raw') waiting.shift()?.(event);
  });
  const exited = once(child, 'exit').then(([code]) => {
    throw new Error(`host ${name} exited with status ${code}`);
  });
  exited.catch(() => undefined);
  const { url, sinkUrl } = await Promise.race([ready, exited]);
  return {
    name,
    url,
    sinkUrl,
    client: new ControlClient(url, { timeoutMs: 60_000 }),
    async rawLinkTo(other, bytes) {
      const answer = new Promise((resolve) => waiting.push(resolve));
      child.stdin.write(`${JSON.stringify({ type: 'raw', sinkUrl: other.sinkUrl, bytes })}\n`);
      const event = await answer;
      if (event.error) throw new Error(`raw link ${name} -> ${other.name}: ${event.error.message}`);
      return event.bytesPerSec;
    },
    stop: () => stopChild(child, 10_000),
  };
}

async function startGuests(a) {
  for (let i = 0; i < guests; i++) {
    const busyOne = i >= guests - busy;
    const config = busyOne ? busyConfig : { workload, dirtyRateBytesPerSec };
    await a.client.startGuest({ name: busyOne ? `busy${i}` : `g${i}`, memoryBytes, config: { ...config, seed: i + 1 } });
  }
}

async function evacuateA(a, window) {
  const started = await a.client.evacuate({ to: ['B', 'C'], parallel: window, perTarget: window, downtimeBudgetMs: budgetMs, codec, orderByPause });
  let info = started;
  while (info.endedAt === undefined) {
    await new Promise((r) => setTimeout(r, 100));
    info = await a.client.evacuation(started.evacuationId);
  }
  if (!info.hostEmpty) throw new Error(`window ${window}: A is not empty: ${JSON.stringify(info.guests.filter((g) => g.outcome !== 'completed'))}`);
  return info;
}

/** Puts the guests back on A: stopped where they landed, started afresh on A. */
async function reset(hosts) {
  for (const h of [hosts.B, hosts.C]) for (const g of await h.client.guests()) await h.client.stopGuest(g.id);
  await hosts.A.client.setMaintenance(false);
  await startGuests(hosts.A);
  await new Promise((r) => setTimeout(r, 1000));
}

const dir = mkdtempSync(join(tmpdir(), 'livemig-bench-evacuate-'));
const poolFile = join(dir, 'pool.json');
const capacity = guests * memoryBytes + 64 * 2 ** 20;
const hosts = {};
const results = { label: values.label, guests, memoryBytes, codec, workload, dirtyRateBytesPerSec, busy, busyConfig: busy > 0 ? busyConfig : undefined, orderByPause, budgetMs, loadAverage: loadavg(), windows: {} };
try {
  for (const name of ['A', 'B', 'C']) hosts[name] = await startHost(name, capacity, poolFile, join(dir, name));
  writeFileSync(poolFile, JSON.stringify({ hosts: ['A', 'B', 'C'].map((n) => ({ name: n, url: hosts[n].url })) }));
  const totalBytes = guests * memoryBytes;
  for (let run = 0; run < runs; run++) {
    for (const window of windows) {
      await reset(hosts);
      const raw = await hosts.A.rawLinkTo(hosts.B, Math.min(totalBytes, 1024 * 2 ** 20));
      const info = await evacuateA(hosts.A, window);
      const totalMs = Date.parse(info.endedAt) - Date.parse(info.startedAt);
      const entry = {
        totalMs,
        rawLinkBytesPerSec: raw,
        linkBoundMs: (totalBytes / raw) * 1000,
        guestTotalsMs: info.guests.map((g) => g.totalMs),
        downtimesMs: info.guests.map((g) => g.downtimeMs),
        targets: info.guests.map((g) => g.runsOn),
        names: info.guests.map((g) => g.guestName),
        plan: info.plan.map((m) => ({ guestName: m.guestName, expectedPauseMs: m.expectedPauseMs, expectedTotalMs: m.expectedTotalMs, alone: m.alone ?? false, overBudget: m.overBudget ?? false })),
        loadAverage: loadavg(),
      };
      (results.windows[window] ??= []).push(entry);
      log(`run ${run + 1}, window ${window}: ${(totalMs / 1000).toFixed(2)} s, raw link ${(raw / 1e9).toFixed(2)} GB/s, load ${entry.loadAverage[0].toFixed(2)}`);
      const row = (g) => `${g.guestName} ${g.alone ? 'alone' : 'shared'} expected ${g.expectedPauseMs ?? '?'} ms, paused ${entry.downtimesMs[entry.names.indexOf(g.guestName)]?.toFixed(1) ?? '-'} ms`;
      if (busy > 0) log(`  start order: ${entry.plan.map(row).join('; ')}`);
    }
  }
} finally {
  await Promise.all(Object.values(hosts).map((h) => h.stop()));
  rmSync(dir, { recursive: true, force: true });
}

// Window 1 runs its migrations one at a time: their sum is the "one after another" baseline.
const singles = median((results.windows[1] ?? results.windows[windows[0]]).map((e) => e.guestTotalsMs.reduce((s, t) => s + t, 0)));
const table = [['window', 'total s', 'sum of singles s', 'total / singles', 'link-bound s', 'total / link-bound', 'pause max ms', 'pause median ms', `over ${budgetMs} ms`]];
for (const window of windows) {
  const entries = results.windows[window];
  const total = median(entries.map((e) => e.totalMs));
  const linkBound = median(entries.map((e) => e.linkBoundMs));
  const pauses = entries.flatMap((e) => e.downtimesMs);
  table.push([
    String(window),
    (total / 1000).toFixed(2),
    (singles / 1000).toFixed(2),
    (total / singles).toFixed(2),
    (linkBound / 1000).toFixed(2),
    (total / linkBound).toFixed(2),
    Math.max(...pauses).toFixed(1),
    median(pauses).toFixed(1),
    String(pauses.filter((p) => p > budgetMs).length),
  ]);
}
results.singlesMs = singles;
const resultsDir = new URL('./results/', import.meta.url);
mkdirSync(resultsDir, { recursive: true });
const stem = new URL(`./evacuate-${new Date().toISOString().replace(/[:.]/g, '-')}`, resultsDir).pathname;
writeFileSync(`${stem}.json`, `${JSON.stringify(results, null, 2)}\n`);
const charts = writeCharts([results], stem);
if (values.json) {
  process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
} else {
  const widths = table[0].map((_, i) => Math.max(...table.map((row) => row[i].length)));
  log(`\n${guests} guests x ${memoryBytes / 2 ** 20} MiB (${workload}${dirtyRateBytesPerSec ? `, ${dirtyRateBytesPerSec / 1e6} MB/s` : ''}, ${codec}), A -> B, C; load average ${results.loadAverage.map((l) => l.toFixed(2)).join(' ')}`);
  for (const row of table) log(row.map((cell, i) => cell.padStart(widths[i])).join('  '));
  log(`\nresults ${stem}.json, charts ${charts.join(', ')}`);
}
