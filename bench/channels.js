// Page-channel benchmark. In one run, between the same two processes, alternating:
//   1. the raw link: 1 MiB WebSocket frames through livemig's transport, as fast as they go;
//   2. live migrations of an idle guest (seed 1: 40% zero pages) with 1, 2 and 4 page channels,
//      codec none and lz4.
// It reports the first pass's rate of non-zero page data as a share of the raw link measured in
// the same run, and the total time; and the machine's load, which on a shared machine moves
// every figure. Usage: node bench/channels.js [--memory 1GiB] [--runs 3] [--channels 1,2,4] [--json]
import { mkdirSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { connectToAgent, migrate, SimulatedGuest } from 'livemig';
import { parseInteger, parseSize } from '#cli/units';
import { median } from '#util/stats';
import { TargetHost, measureRawLink } from '../dist/bench/target-host.js';

const { values } = parseArgs({
  options: { memory: { type: 'string' }, runs: { type: 'string' }, channels: { type: 'string' }, json: { type: 'boolean' } },
});
const memoryBytes = parseSize(values.memory ?? '1GiB', '--memory');
const runs = parseInteger(values.runs ?? '3', '--runs', 1, 100);
const channelCounts = (values.channels ?? '1,2,4').split(',').map((c) => parseInteger(c, '--channels', 1, 8));
const log = (line) => {
  if (!values.json) process.stdout.write(`${line}\n`);
};

const host = await TargetHost.start();
const url = host.url;
const idle = { memoryBytes, vcpus: 1, workload: 'idle', dirtyRateBytesPerSec: 0, hotSetBytes: 64 << 20, seed: 1 };

async function migration(codec, channels) {
  const guest = await SimulatedGuest.boot(idle, 'bench');
  await new Promise((r) => setTimeout(r, 300));
  const report = await migrate(guest, await connectToAgent(url), { codec, channels, openChannel: () => connectToAgent(url), verify: false });
  if (report.outcome !== 'completed') throw new Error(`migration ${report.outcome}: ${report.error?.message}`);
  if (report.guestRunningOn !== 'target') await guest.destroy();
  const first = report.rounds[0];
  return {
    firstPassDataBytesPerSec: (first.bytesRaw * 1000) / first.durationMs,
    firstPassMs: first.durationMs,
    totalMs: report.totalMs,
    downtimeMs: report.downtimeMs,
    channelsUsed: report.channels ?? 1,
  };
}

const results = { memoryBytes, runs, loadBefore: loadavg(), rawLinkBytesPerSec: [], cases: {} };
const cases = ['none', 'lz4'].flatMap((codec) => channelCounts.map((channels) => [`${codec}, ${channels} channel${channels > 1 ? 's' : ''}`, codec, channels]));
try {
  for (let run = 0; run < runs; run++) {
    results.rawLinkBytesPerSec.push(await measureRawLink(host.sinkUrl, memoryBytes));
    for (const [name, codec, channels] of cases) (results.cases[name] ??= []).push(await migration(codec, channels));
    log(`run ${run + 1}/${runs} done (load ${loadavg()[0].toFixed(1)})`);
  }
} finally {
  await host.stop();
}
results.loadAfter = loadavg();

const raw = median(results.rawLinkBytesPerSec);
const table = [['case', 'first pass data / raw link', 'first pass ms', 'total ms', 'downtime ms']];
for (const [name, samples] of Object.entries(results.cases)) {
  const range = (f) => `${median(samples.map(f)).toFixed(0)} [${Math.min(...samples.map(f)).toFixed(0)}-${Math.max(...samples.map(f)).toFixed(0)}]`;
  table.push([
    name,
    (median(samples.map((s) => s.firstPassDataBytesPerSec)) / raw).toFixed(2),
    range((s) => s.firstPassMs),
    range((s) => s.totalMs),
    median(samples.map((s) => s.downtimeMs)).toFixed(1),
  ]);
}
const widths = table[0].map((_, i) => Math.max(...table.map((row) => row[i].length)));
log(`\nraw link: ${(raw / 1e9).toFixed(2)} GB/s (median of ${runs}), guest ${memoryBytes / 2 ** 20} MiB`);
log(`load average (1 min) ${results.loadBefore[0].toFixed(1)} before, ${results.loadAfter[0].toFixed(1)} after`);
for (const row of table) log(row.map((c, i) => c.padEnd(widths[i])).join('  '));
mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
const file = new URL(`./results/channels-${new Date().toISOString().replace(/[:.]/g, '-')}.json`, import.meta.url);
writeFileSync(file, JSON.stringify(results, null, 2));
if (values.json) process.stdout.write(`${JSON.stringify(results)}\n`);
else log(`\nraw samples written to ${file.pathname}`);
