// Loopback migration benchmark. In one run, between the same two processes:
//   1. the raw link: 1 MiB WebSocket frames through livemig's transport, as fast as they go;
//   2. live migrations of an idle guest (codec none and lz4) and of a busy one.
// Figures are reported as ratios to the raw link, because absolute speeds drift on a shared
// machine; each migration's CPU, source and target process, says how near the cores' limit it
// ran. Usage: node bench/loopback.js [--memory 1GiB] [--runs 3] [--json]
import { mkdirSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import { connectToAgent, migrate, SimulatedGuest } from 'livemig';
import { parseInteger, parseSize } from '#cli/units';
import { median } from '#util/stats';
import { TargetHost, measureRawLink } from '../dist/bench/target-host.js';

const { values } = parseArgs({
  options: { memory: { type: 'string' }, runs: { type: 'string' }, json: { type: 'boolean' } },
});
const memoryBytes = parseSize(values.memory ?? '1GiB', '--memory');
const runs = parseInteger(values.runs ?? '3', '--runs', 1, 100);
const log = (line) => {
  if (!values.json) process.stdout.write(`${line}\n`);
};

// The far end: `livemig bench --target-host`, a target agent and a raw sink in one process.
const host = await TargetHost.start();
const agentUrl = host.url;

async function migration(config, codec) {
  const guest = await SimulatedGuest.boot(config, 'bench');
  await new Promise((r) => setTimeout(r, 300));
  const sourceBefore = process.cpuUsage();
  const targetBefore = host.cpuMs();
  const report = await migrate(guest, await connectToAgent(agentUrl), { codec, verify: false });
  const source = process.cpuUsage(sourceBefore);
  const targetAfter = host.cpuMs();
  if (report.outcome !== 'completed') throw new Error(`migration ${report.outcome}: ${report.error?.message}`);
  if (report.guestRunningOn !== 'target') await guest.destroy();
  const first = report.rounds[0];
  return {
    firstPassMemoryBytesPerSec: (memoryBytes * 1000) / first.durationMs,
    firstPassDataBytesPerSec: (first.bytesRaw * 1000) / first.durationMs,
    wireRatio: report.bytesWire / report.bytesRaw,
    zeroPages: first.zeroPages,
    downtimeMs: report.downtimeMs,
    totalMs: report.totalMs,
    rounds: report.rounds.length,
    bytesWire: report.bytesWire,
    // Extra memory the source held beyond the guest, at its peak, as a share of guest RAM.
    sourceMemoryShare: report.memory?.peakShare,
    sourceMemoryParts: report.memory?.atPeak,
    // CPU each process used during the migration, every thread counted (the guest's vCPUs on
    // the source): on a machine where both ends share the cores, how close they came to its limit.
    sourceCpuMs: (source.user + source.system) / 1000,
    targetCpuMs: targetBefore && targetAfter ? targetAfter.user + targetAfter.system - targetBefore.user - targetBefore.system : undefined,
  };
}

const results = { memoryBytes, runs, rawLinkBytesPerSec: [], cases: {} };
const idle = { memoryBytes, vcpus: 1, workload: 'idle', dirtyRateBytesPerSec: 0, hotSetBytes: 64 << 20, seed: 1 };
const busy = { ...idle, workload: 'hotset', dirtyRateBytesPerSec: 100e6 };
const cases = [
  ['idle, none', idle, 'none'],
  ['idle, lz4', idle, 'lz4'],
  ['hotset 100MB/s, none', busy, 'none'],
  ['hotset 100MB/s, lz4', busy, 'lz4'],
];
try {
  for (let run = 0; run < runs; run++) {
    results.rawLinkBytesPerSec.push(await measureRawLink(host.sinkUrl, memoryBytes));
    for (const [name, config, codec] of cases) {
      (results.cases[name] ??= []).push(await migration(config, codec));
    }
    log(`run ${run + 1}/${runs} done`);
  }
} finally {
  await host.stop();
}

const raw = median(results.rawLinkBytesPerSec);
const table = [['case', 'first pass / raw link', 'first pass (data) / raw', 'wire/raw bytes', 'downtime ms', 'total ms', 'rounds', 'src mem % RAM', 'src CPU ms', 'tgt CPU ms', 'CPU / cores x total']];
const cores = availableParallelism();
for (const [name, samples] of Object.entries(results.cases)) {
  table.push([
    name,
    (median(samples.map((s) => s.firstPassMemoryBytesPerSec)) / raw).toFixed(2),
    (median(samples.map((s) => s.firstPassDataBytesPerSec)) / raw).toFixed(2),
    median(samples.map((s) => s.wireRatio)).toFixed(3),
    median(samples.map((s) => s.downtimeMs)).toFixed(1),
    median(samples.map((s) => s.totalMs)).toFixed(0),
    String(median(samples.map((s) => s.rounds))),
    (Math.max(...samples.map((s) => s.sourceMemoryShare ?? 0)) * 100).toFixed(2),
    median(samples.map((s) => s.sourceCpuMs)).toFixed(0),
    samples.every((s) => s.targetCpuMs !== undefined) ? median(samples.map((s) => s.targetCpuMs)).toFixed(0) : '-',
    samples.every((s) => s.targetCpuMs !== undefined) ? median(samples.map((s) => (s.sourceCpuMs + s.targetCpuMs) / (cores * s.totalMs))).toFixed(2) : '-',
  ]);
}
const widths = table[0].map((_, i) => Math.max(...table.map((row) => row[i].length)));
log(`\nraw link: ${(raw / 1e9).toFixed(2)} GB/s (median of ${runs}), guest ${memoryBytes / 2 ** 20} MiB`);
for (const row of table) log(row.map((c, i) => c.padEnd(widths[i])).join('  '));
mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
const file = new URL(`./results/loopback-${new Date().toISOString().replace(/[:.]/g, '-')}.json`, import.meta.url);
writeFileSync(file, JSON.stringify(results, null, 2));
if (values.json) process.stdout.write(`${JSON.stringify(results)}\n`);
else log(`\nraw samples written to ${file.pathname}`);
