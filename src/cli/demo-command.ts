/** `livemig demo`: both ends on this host, an agent in a second process, the guest checked against its oracle. */

import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ConnectToAgentOptions } from '../agent/agent-client.js';
import { writeKeyFile } from '../agent/key-file.js';
import { asMigrationError, InvalidArgumentError, MigrationError } from '../errors.js';
import { stopChild } from '../util/child.js';
import { parse } from './args.js';
import { DEMO_POOL_HELP, demoPool } from './demo-pool-command.js';
import { EXIT_STATUS_HELP, exitCode } from './exit-status.js';
import { RUN_FLAGS } from './migrate-command.js';
import { spawnLivemig } from './node-flags.js';
import { checkAgainstOracle } from './oracle-check.js';
import { engineOptionsFromFlags, GUEST_AND_ENGINE_HELP, guestConfigFromFlags } from './options.js';
import { qemuDemo } from './qemu-demo.js';
import { runSource } from './source-run.js';
import { parseDuration } from './units.js';

/** How long the demo's agent may take to exit after SIGTERM before it is killed, in milliseconds. */
const DEMO_AGENT_STOP_TIMEOUT_MS = 3000;

export const DEMO_HELP = `usage: livemig demo [flags]

Starts a target agent in a second process, boots a guest here, migrates it live to the agent,
lets it run there, and checks it against its replay oracle. Both ends share a fresh pool key.

  --backend KIND         sim (default) or qemu: livemig's test guest under QEMU, checked by its
                         own memory check on the target instead of an oracle (needs
                         qemu-system-x86_64 and gcc; takes --memory, default 256MiB, and
                         --dirty-rate, default 20MB/s, of the guest flags; warmup 2s, run-after 3s)
  --pool                 the pool demo instead: three hosts, six guests, A evacuated (below)
  --warmup DUR           let the guest run this long before migrating (default 1s)
  --run-after DUR        let the guest run on the target this long before the check (default 1s)
${GUEST_AND_ENGINE_HELP}

${DEMO_POOL_HELP}
${EXIT_STATUS_HELP}
`;

export async function demo(args: string[]): Promise<number> {
  if (args.includes('--pool')) return demoPool(args.filter((a) => a !== '--pool'));
  const { values } = parse(args, { ...RUN_FLAGS, backend: { type: 'string' } } as const);
  const backend = values.backend ?? 'sim';
  if (backend !== 'sim' && backend !== 'qemu') throw new InvalidArgumentError(`--backend "${backend}" is not sim or qemu`);
  if (values['key-file'] !== undefined || values['tls-ca'] !== undefined || values.to !== undefined) {
    throw new InvalidArgumentError('demo runs both ends itself, with a fresh pool key: it takes no --to, --key-file or --tls-ca');
  }
  if (values.calibration !== undefined) throw new InvalidArgumentError('--calibration is for migrate, whose runs share it; demo starts afresh');
  if (backend === 'qemu') return qemuDemo(values);
  const config = guestConfigFromFlags(values);
  const engine = engineOptionsFromFlags(values);
  const warmupMs = parseDuration(values.warmup ?? '1s', '--warmup');
  const runAfterMs = parseDuration(values['run-after'] ?? '1s', '--run-after');
  const json = values.json ?? false;
  const say = (line: string): void => {
    if (!json) process.stdout.write(`${line}\n`);
  };

  // A fresh pool key shared by both ends, so the demo authenticates as a real pool does.
  const keyDir = await mkdtemp(join(tmpdir(), 'livemig-demo-'));
  const keyFile = join(keyDir, 'pool.key');
  const connect: ConnectToAgentOptions = { key: await writeKeyFile(keyFile) };
  // The target agent is a second process, as it would be on another host.
  const child = spawnLivemig(['listen', '--port', '0', '--json', '--supervised', '--key-file', keyFile]);
  try {
    const url = await agentUrl(child);
    say(`target agent listening on ${url} (pid ${child.pid}), pool key in ${keyFile}`);
    const report = await runSource(config, engine, url, warmupMs, say, connect, json);
    if (report.outcome === 'completed') {
      say(`letting the guest run on the target for ${runAfterMs} ms, then checking it against its replay oracle...`);
      await sleep(runAfterMs);
      try {
        report.oracle = await checkAgainstOracle(url, report.migrationId, config, connect);
      } catch (err) {
        // The migration completed all the same: a check that cannot be made is exit status 4.
        const error = asMigrationError(err);
        report.oracle = { steps: [], memoryMatches: false, registersMatch: false, matches: false, state: 'unknown', error: error.toJSON() };
      }
      const o = report.oracle;
      say(
        o.error
          ? `oracle: the guest on the target could not be checked (${o.error.code}: ${o.error.message})`
          : o.matches
            ? `oracle: the guest on the target matches its replay after ${o.steps.join('+')} steps`
            : `oracle: MISMATCH after ${o.steps.join('+')} steps (memory ${o.memoryMatches}, registers ${o.registersMatch})`,
      );
    }
    if (json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    return exitCode(report);
  } finally {
    await stopChild(child, DEMO_AGENT_STOP_TIMEOUT_MS);
    await rm(keyDir, { recursive: true, force: true });
  }
}

/** Reads the agent's first JSON line to learn where it listens. */
async function agentUrl(child: ChildProcess): Promise<string> {
  const lines = createInterface({ input: child.stdout! });
  const exited = once(child, 'exit').then(([code]) => {
    throw new MigrationError('ERR_CONNECT_FAILED', `the target agent exited with status ${code} before listening`);
  });
  const first = (async () => {
    for await (const line of lines) {
      const event = JSON.parse(line) as { type: string; url?: string };
      if (event.type === 'listening' && event.url) return event.url;
    }
    throw new MigrationError('ERR_CONNECT_FAILED', 'the target agent closed its output before listening');
  })();
  return Promise.race([first, exited]);
}
