/**
 * A host of the evacuation benchmark (bench/evacuate.js), run as `livemig bench --pool-host
 * NAME CAPACITY POOL_FILE STATE_DIR`: a host agent that evacuates itself over the pool, as
 * `livemig host --pool` runs one, plus a sink for raw frames and, on a command line on its
 * standard input, a raw-link measurement from this process to another host's sink. The raw link
 * between the very processes that carry the guests is the evacuation's baseline.
 *
 * Prints `{"type":"listening","url":...,"sinkUrl":...}`, then one
 * `{"type":"raw","bytesPerSec":...}` (or `{"type":"raw","error":...}`) per
 * `{"type":"raw","sinkUrl":...,"bytes":N}` it reads.
 */

import { createInterface } from 'node:readline';
import { asMigrationError, FilePoolStore, HostAgent, HostEvacuations, listenWebSocket } from 'livemig';
import { stopWithParent } from '#util/child';
import { drainRawFrames, measureRawLink } from './target-host.js';

/** The hidden flag that turns `livemig bench` into a host of the evacuation benchmark. */
export const POOL_HOST_FLAG = '--pool-host';

export async function servePoolHost(args: string[]): Promise<number> {
  const [name, capacity, poolFile, stateDir] = args;
  if (name === undefined || capacity === undefined || poolFile === undefined || stateDir === undefined) {
    process.stderr.write(`usage: livemig bench ${POOL_HOST_FLAG} NAME CAPACITY_BYTES POOL_FILE STATE_DIR\n`);
    return 2;
  }
  const evacuations = new HostEvacuations({ store: new FilePoolStore(poolFile), stateDir });
  const host = await HostAgent.start({
    host: '127.0.0.1',
    port: 0,
    name,
    capacityBytes: Number(capacity),
    onEvacuate: (request, h) => evacuations.start(request, h),
    onEvacuationStatus: (id) => evacuations.status(id),
    onEvacuationCancel: (id) => evacuations.cancel(id),
  });
  const sink = await listenWebSocket({ host: '127.0.0.1', port: 0 }, (transport) => void drainRawFrames(transport));
  const say = (event: Record<string, unknown>): void => void process.stdout.write(`${JSON.stringify(event)}\n`);
  say({ type: 'listening', url: host.url, sinkUrl: sink.url });
  createInterface({ input: process.stdin }).on('line', (line) => {
    const command = JSON.parse(line) as { type?: string; sinkUrl?: string; bytes?: number };
    if (command.type !== 'raw' || command.sinkUrl === undefined || command.bytes === undefined) return;
    measureRawLink(command.sinkUrl, command.bytes).then(
      (bytesPerSec) => say({ type: 'raw', bytesPerSec }),
      (err: unknown) => say({ type: 'raw', error: asMigrationError(err).toJSON() }),
    );
  });
  stopWithParent(async () => {
    await host.close();
    await sink.close();
    process.exit(0);
  });
  await new Promise(() => undefined);
  return 0;
}
