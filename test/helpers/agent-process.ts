// A target agent in a separate process, started the way a user starts one: `livemig listen`.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll } from 'vitest';

export const BIN = fileURLToPath(new URL('../../bin/livemig.js', import.meta.url));

export interface AgentProcess {
  url: string;
  child: ChildProcess;
  /** Every JSON event line the agent printed so far. */
  events: Array<Record<string, unknown>>;
  /** Resolves once the agent's output has ended: every line it printed is in `events`. */
  closed: Promise<void>;
  /** Resolves with the first event matching `pred`. */
  waitFor(pred: (e: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
  stop(): Promise<void>;
}

/**
 * Starts `livemig listen --port 0 --json --no-warm-up ...extraArgs` in a new process. The warm-up
 * changes how fast an agent's first migrations run, not what they do, and takes a second or two
 * of both cores: agents in tests skip it (agent-warms-up-before-it-serves covers it).
 */
export async function startAgentProcess(extraArgs: string[] = []): Promise<AgentProcess> {
  const child = spawn(process.execPath, [BIN, 'listen', '--port', '0', '--json', '--no-warm-up', ...extraArgs], { stdio: ['ignore', 'pipe', 'inherit'] });
  const events: Array<Record<string, unknown>> = [];
  const listeners = new Set<() => void>();
  const lines = createInterface({ input: child.stdout! });
  const closed = once(lines, 'close').then(() => undefined);
  lines.on('line', (line) => {
    events.push(JSON.parse(line) as Record<string, unknown>);
    for (const l of listeners) l();
  });
  const waitFor = (pred: (e: Record<string, unknown>) => boolean, timeoutMs = 30_000): Promise<Record<string, unknown>> =>
    new Promise((resolve, reject) => {
      const check = (): boolean => {
        const hit = events.find(pred);
        if (hit) {
          listeners.delete(check);
          clearTimeout(timer);
          resolve(hit);
          return true;
        }
        return false;
      };
      const timer = setTimeout(() => {
        listeners.delete(check);
        reject(new Error(`agent event not seen within ${timeoutMs} ms; saw ${JSON.stringify(events)}`));
      }, timeoutMs);
      if (!check()) listeners.add(check);
    });
  const listening = await waitFor((e) => e.type === 'listening', 15_000);
  return {
    url: listening.url as string,
    child,
    events,
    closed,
    waitFor,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      await Promise.race([once(child, 'exit'), new Promise((r) => setTimeout(r, 5000))]);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
  };
}

/**
 * One agent process shared by the tests of a file: started before the first test and stopped
 * after the last. The handle reads through to that process, so use it only inside tests and hooks.
 */
export function agentProcessForFile(extraArgs: string[] = []): AgentProcess {
  let agent: AgentProcess | undefined;
  beforeAll(async () => {
    agent = await startAgentProcess(extraArgs);
  });
  afterAll(async () => {
    await agent?.stop();
  });
  const started = (): AgentProcess => {
    if (!agent) throw new Error('the agent process of this file is used before its beforeAll ran');
    return agent;
  };
  return {
    get url() {
      return started().url;
    },
    get child() {
      return started().child;
    },
    get events() {
      return started().events;
    },
    get closed() {
      return started().closed;
    },
    waitFor: (pred, timeoutMs) => started().waitFor(pred, timeoutMs),
    stop: () => started().stop(),
  };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
