/**
 * The far end of `livemig bench`: a target agent and a raw sink in a second process (`livemig
 * bench --target-host`), the raw link to it, the baseline each run is compared with, and which
 * far end each run takes.
 */

import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { ConnectFailedError, ConnectionClosedError, connectWebSocket, listenWebSocket, SimTargetBackend, TargetAgent, warmUp, type AgentEvent, type Transport } from 'livemig';
import { spawnLivemig } from '#cli/node-flags';
import { stopChild, stopWithParent } from '#util/child';
import { exposedGc } from '#util/gc';
import type { BenchAgentMode } from './plan.js';

/** Frame size of the raw-link baseline, as the loopback benchmark uses. */
export const BASELINE_FRAME_BYTES = 2 ** 20;

/** Frames of the baseline in flight at once. */
export const BASELINE_IN_FLIGHT_FRAMES = 8;

/** How long the far end may take to start listening, in milliseconds. */
export const TARGET_HOST_START_TIMEOUT_MS = 15_000;

/** How long the far end may take to exit after SIGTERM before it is killed, in milliseconds. */
export const TARGET_HOST_STOP_TIMEOUT_MS = 5_000;

/** The hidden flag that turns `livemig bench` into the far end of the benchmark. */
export const TARGET_HOST_FLAG = '--target-host';

/**
 * Runs the far end of the benchmark until SIGTERM or until its parent goes away (stdin ends):
 * prints one JSON line `{"type":"listening","url":...,"sinkUrl":...}`, then serves.
 */
export async function serveTargetHost(): Promise<number> {
  // Warmed up and with threads kept started for the next guest, as `livemig listen` is.
  await warmUp();
  const agent = await TargetAgent.start({ host: '127.0.0.1', port: 0, backends: [new SimTargetBackend({ spareThreads: true })] });
  // A guest that resumed here has served its purpose: destroying it at once keeps its vCPU
  // threads from competing with the next migration for the machine's cores. Its memory goes at
  // the next collection: take one as the next migration starts, not the one before its pause,
  // where unmapping a gigabyte took a core from the switchover (a shared far end).
  agent.on('event', (e: AgentEvent) => {
    if (e.type === 'migration-started') exposedGc()?.();
    if (e.type !== 'migration-resumed') return;
    void agent.release(e.migrationId).then((domain) => domain?.destroy().catch(() => undefined));
  });
  const sink = await listenWebSocket({ host: '127.0.0.1', port: 0 }, (transport) => void drainRawFrames(transport));
  process.stdout.write(`${JSON.stringify({ type: 'listening', url: agent.url, sinkUrl: sink.url })}\n`);
  // Ctrl-C at the terminal reaches this host as well as the benchmark, which records the run
  // under way as cancelled and then stops this host itself.
  stopWithParent(async () => {
    await agent.close();
    await sink.close();
    process.exit(0);
  });
  await new Promise(() => undefined);
  return 0;
}

/** The sink: the first frame announces a byte count in decimal; once that many arrived, it answers with the count seen. */
export async function drainRawFrames(transport: Transport): Promise<void> {
  try {
    const first = await transport.receive();
    if (first === undefined) return;
    const expected = Number(Buffer.from(first).toString());
    let seen = 0;
    while (seen < expected) {
      const frame = await transport.receive();
      if (frame === undefined) break;
      seen += frame.length;
    }
    await transport.send(Buffer.from(String(seen)));
    await transport.close();
  } catch {
    transport.destroy();
  }
}

/** The far end as seen from here. */
export class TargetHost {
  private constructor(
    private readonly child: ChildProcess,
    readonly url: string,
    readonly sinkUrl: string,
  ) {}

  static async start(): Promise<TargetHost> {
    const child = spawnLivemig(['bench', TARGET_HOST_FLAG]);
    const lines = createInterface({ input: child.stdout! });
    let timer: NodeJS.Timeout | undefined;
    try {
      const first = await Promise.race([
        (async () => {
          for await (const line of lines) {
            const event = JSON.parse(line) as { type?: string; url?: string; sinkUrl?: string };
            if (event.type === 'listening' && event.url && event.sinkUrl) return { url: event.url, sinkUrl: event.sinkUrl };
          }
          throw new ConnectFailedError('the benchmark target host closed its output before listening');
        })(),
        once(child, 'exit').then(([code]) => {
          throw new ConnectFailedError(`the benchmark target host exited with status ${code} before listening`);
        }),
        new Promise<never>((_, reject) => {
          const late = new ConnectFailedError(`the benchmark target host did not listen within ${TARGET_HOST_START_TIMEOUT_MS} ms`);
          timer = setTimeout(() => reject(late), TARGET_HOST_START_TIMEOUT_MS);
        }),
      ]);
      // Keep reading so that nothing it prints later can fill the pipe and stall it.
      child.stdout!.resume();
      return new TargetHost(child, first.url, first.sinkUrl);
    } catch (err) {
      child.kill('SIGKILL');
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /**
   * CPU time the far end's process has used so far, user and system, in milliseconds, from
   * `/proc` (undefined where there is none). Every thread counts: the agent's, the guests'
   * vCPUs and pre-fault walks, the workers of page channels.
   */
  cpuMs(): { user: number; system: number } | undefined {
    try {
      // Fields after the command name, which may hold spaces: utime and stime are the 12th and
      // 13th, in clock ticks (100 a second on Linux).
      const fields = readFileSync(`/proc/${this.child.pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
      return { user: Number(fields[11]) * 10, system: Number(fields[12]) * 10 };
    } catch {
      return undefined;
    }
  }

  async stop(): Promise<void> {
    await stopChild(this.child, TARGET_HOST_STOP_TIMEOUT_MS);
  }
}

/**
 * The far ends of a matrix: a fresh one for each migration, or with `--agent shared` one for all
 * of them (started again if it died), as a pool's long-lived agents are.
 */
export class FarEnds {
  private shared: TargetHost | undefined;

  constructor(private readonly mode: BenchAgentMode) {}

  async acquire(): Promise<TargetHost> {
    if (this.mode === 'fresh') return TargetHost.start();
    if (!this.shared?.alive) {
      await this.shared?.stop();
      this.shared = await TargetHost.start();
    }
    return this.shared;
  }

  async release(host: TargetHost): Promise<void> {
    if (host !== this.shared) await host.stop();
  }

  async close(): Promise<void> {
    await this.shared?.stop();
  }
}

/** Sends `bytes` in 1 MiB frames to the sink and returns the rate the sink confirmed, in bytes per second. */
export async function measureRawLink(sinkUrl: string, bytes: number): Promise<number> {
  const transport = await connectWebSocket(sinkUrl);
  try {
    const frame = Buffer.alloc(BASELINE_FRAME_BYTES, 0x5a);
    const frames = Math.max(1, Math.ceil(bytes / frame.length));
    const total = frames * frame.length;
    await transport.send(Buffer.from(String(total)));
    const started = performance.now();
    const inFlight: Array<Promise<void>> = [];
    for (let i = 0; i < frames; i++) {
      // The same buffer is sent again and again: it is never written, so reuse is safe.
      inFlight.push(transport.send(frame));
      if (inFlight.length >= BASELINE_IN_FLIGHT_FRAMES) await inFlight.shift();
    }
    await Promise.all(inFlight);
    const answer = await transport.receive();
    const ms = performance.now() - started;
    const seen = answer === undefined ? NaN : Number(Buffer.from(answer).toString());
    if (seen !== total) throw new ConnectionClosedError(`the raw sink confirmed ${seen} bytes of the ${total} sent`);
    return (total * 1000) / ms;
  } finally {
    await transport.close();
  }
}
