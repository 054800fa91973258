// A host agent in a separate process, started the way a user starts one: `livemig host`, and
// what a test needs to talk to it and to check its guests against their replay oracle.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { expect } from 'vitest';
import { ControlClient } from '../../dist/agent/control-client.js';
import type { SimGuestConfig } from '../../dist/domain/sim/config.js';
import { oracleDigest } from '../../dist/domain/sim/oracle.js';
import { decodeSimState } from '../../dist/domain/sim/state-codec.js';
import { BIN } from './agent-process.js';

export interface HostProcess {
  name: string;
  url: string;
  child: ChildProcess;
  client: ControlClient;
  /** Every JSON line the host printed so far. */
  events: Array<Record<string, unknown>>;
  stop(): Promise<void>;
}

/**
 * Starts `livemig host --port 0 --json --name NAME --no-warm-up ...extraArgs` (a test's hosts skip
 * the warm-up, as its agents do: see agent-process.ts); `key` signs the client's requests.
 */
export async function startHostProcess(name: string, extraArgs: string[], key?: Uint8Array): Promise<HostProcess> {
  const child = spawn(process.execPath, ['--v8-pool-size=1', BIN, 'host', '--port', '0', '--json', '--name', name, '--no-warm-up', ...extraArgs], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const events: Array<Record<string, unknown>> = [];
  const lines = createInterface({ input: child.stdout! });
  const listening = new Promise<Record<string, unknown>>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`host ${name} did not start listening within 15 s`)), 15_000);
    child.once('exit', (code) => reject(new Error(`host ${name} exited with ${code} before listening`)));
    lines.on('line', (line) => {
      const event = JSON.parse(line) as Record<string, unknown>;
      events.push(event);
      if (event.type === 'listening') {
        clearTimeout(timer);
        resolve(event);
      }
    });
  });
  const url = (await listening).url as string;
  return {
    name,
    url,
    child,
    events,
    client: new ControlClient(url, { key }),
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      await Promise.race([once(child, 'exit'), new Promise((r) => setTimeout(r, 5000))]);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
  };
}

/**
 * Inspects guest `id` on `client`'s host and expects its memory and registers to be what
 * replaying `config` for the steps it has run gives. Returns the steps of each vCPU.
 */
export async function expectHostGuestMatchesOracle(client: ControlClient, id: string, config: SimGuestConfig): Promise<number[]> {
  const inspection = await client.inspectGuest(id);
  const vcpus = decodeSimState(Buffer.from(inspection.domainState, 'base64'));
  const steps = vcpus.map((v) => v.steps);
  const oracle = oracleDigest(config, steps);
  expect(inspection.digest, `the memory of guest ${id} after ${steps.join(', ')} steps`).toBe(oracle.digest);
  expect(vcpus).toEqual(oracle.vcpus);
  return steps;
}

/** Runs `livemig ...args` to its end; returns its exit status and output. */
export function runLivemig(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const run = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 30_000 });
  return { status: run.status, stdout: run.stdout, stderr: run.stderr };
}
