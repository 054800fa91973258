// Delta encoding on and off, in one run, alternating: live migrations of a hot-set guest behind a
// bandwidth cap (1 Gbit/s by default) to a target agent in a second process, reporting per mode
// the wire bytes, total time, pause and pages sent as deltas, with the load average beside them
// (the machine may be shared). Usage:
//   node bench/delta.js [--memory 1GiB] [--hot-set 64MiB] [--dirty-rate 200MB/s] [--link 1Gbit/s|none]
//                       [--mode on|auto] [--runs 3] [--json]
// --mode is what is compared with off (default on; auto turns deltas off again when the guest's
// working set outgrows the cache).
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { connectToAgent, migrate, SimulatedGuest } from 'livemig';
import { parseInteger, parseRate, parseSize } from '#cli/units';
import { median } from '#util/stats';
import { TargetHost } from '../dist/bench/target-host.js';

const { values } = parseArgs({
  options: {
    memory: { type: 'string' },
    'hot-set': { type: 'string' },
    'dirty-rate': { type: 'string' },
    link: { type: 'string' },
    runs: { type: 'string' },
    mode: { type: 'string' },
    json: { type: 'boolean' },
  },
});
const memoryBytes = parseSize(values.memory ?? '1GiB', '--memory');
const hotSetBytes = parseSize(values['hot-set'] ?? '64MiB', '--hot-set');
const dirtyRateBytesPerSec = parseRate(values['dirty-rate'] ?? '200MB/s', '--dirty-rate');
const link = values.link ?? '1Gbit/s';
const cap = link === 'none' ? undefined : parseRate(link, '--link');
const runs = parseInteger(values.runs ?? '3', '--runs', 1, 100);
const mode = values.mode ?? 'on';
if (mode !== 'on' && mode !== 'auto') throw new Error(`--mode "${mode}" is not on or auto`);
const log = (line) => {
  if (!values.json) process.stderr.write(`${line}\n`);
};

const config = { memoryBytes, vcpus: 1, workload: 'hotset', dirtyRateBytesPerSec, hotSetBytes, seed: 1 };
const host = await TargetHost.start();

async function migration(delta) {
  const guest = await SimulatedGuest.boot(config, `delta-${delta}`);
  try {
    await new Promise((r) => setTimeout(r, 500));
    const load = loadavg()[0];
    const report = await migrate(guest, await connectToAgent(host.url), { delta, maxBandwidthBytesPerSec: cap, verify: false });
    if (report.outcome !== 'completed') throw new Error(`migration ${report.outcome}: ${report.error?.code} ${report.error?.message}`);
    return {
      delta,
      load: Math.round(load * 100) / 100,
      on: report.delta.on,
      why: report.delta.why,
      totalMs: report.totalMs,
      bytesWire: report.bytesWire,
      bytesRaw: report.bytesRaw,
      laterRoundsWire: report.rounds.slice(1).reduce((n, r) => n + r.bytesWire, 0),
      laterRoundsRaw: report.rounds.slice(1).reduce((n, r) => n + r.bytesRaw, 0),
      downtimeMs: report.downtimeMs,
      predictedDowntimeMs: report.predictedDowntimeMs,
      rounds: report.rounds.length,
      deltaPages: report.delta.pages,
      wholePages: report.delta.wholePages,
      cacheBytes: report.delta.cacheBytes,
      sourceMemoryShare: report.memory.peakShare,
    };
  } finally {
    await guest.destroy();
  }
}

const samples = [];
try {
  for (let run = 0; run < runs; run++) {
    // Alternating, the order swapped every run, so drift on a shared machine falls on both.
    for (const delta of run % 2 === 0 ? ['off', mode] : [mode, 'off']) {
      const s = await migration(delta);
      samples.push(s);
      log(
        `run ${run + 1} delta ${delta}: total ${(s.totalMs / 1000).toFixed(2)} s, wire ${(s.bytesWire / 2 ** 20).toFixed(0)} MiB ` +
          `(rounds after the first ${(s.laterRoundsWire / 2 ** 20).toFixed(1)} of ${(s.laterRoundsRaw / 2 ** 20).toFixed(1)} MiB), pause ${s.downtimeMs?.toFixed(1)} ms (predicted ${s.predictedDowntimeMs?.toFixed(1)}), ` +
          `${s.rounds} rounds, ${s.deltaPages} delta pages${s.why ? ` (off: ${s.why})` : ''}, load ${s.load}`,
      );
    }
  }
} finally {
  await host.stop();
}

const spread = (xs) => `${median(xs).toFixed(2)} [${Math.min(...xs).toFixed(2)}-${Math.max(...xs).toFixed(2)}]`;
const rows = ['off', mode].map((delta) => {
  const s = samples.filter((x) => x.delta === delta);
  return {
    delta,
    totalS: spread(s.map((x) => x.totalMs / 1000)),
    wireMiB: spread(s.map((x) => x.bytesWire / 2 ** 20)),
    laterWireMiB: spread(s.map((x) => x.laterRoundsWire / 2 ** 20)),
    pauseMs: spread(s.map((x) => x.downtimeMs ?? NaN)),
    rounds: spread(s.map((x) => x.rounds)),
    deltaPages: spread(s.map((x) => x.deltaPages)),
    srcMemPct: spread(s.map((x) => x.sourceMemoryShare * 100)),
    load: spread(s.map((x) => x.load)),
  };
});
if (values.json) {
  process.stdout.write(`${JSON.stringify({ config, link, runs, samples, rows })}\n`);
} else {
  console.log(`\n${memoryBytes / 2 ** 20} MiB guest, hot set ${hotSetBytes / 2 ** 20} MiB at ${dirtyRateBytesPerSec / 1e6} MB/s, link ${link}, ${runs} runs each, median [range]`);
  console.log('| delta | total s | wire MiB | wire after round 0, MiB | pause ms | rounds | delta pages | src mem % RAM | load avg |');
  console.log('|---|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const r of rows) console.log(`| ${r.delta} | ${r.totalS} | ${r.wireMiB} | ${r.laterWireMiB} | ${r.pauseMs} | ${r.rounds} | ${r.deltaPages} | ${r.srcMemPct} | ${r.load} |`);
}
