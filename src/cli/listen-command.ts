/** `livemig listen`: a target agent that accepts migrations, printing its events. */

import { readKeyFile } from '../agent/key-file.js';
import { TargetAgent, type AgentEvent } from '../agent/target-agent.js';
import { InvalidArgumentError } from '../errors.js';
import { parse } from './args.js';
import { prefaultFromFlags, targetBackendsFromFlag } from './backend-flags.js';
import { eventPrinter, serveUntilStopped } from './serve-until-stopped.js';
import { parseDuration, parseInteger, parsePositiveDuration } from './units.js';
import { WARM_UP_HELP, warmUpUnless, warmUpWords } from './warm-up-flag.js';

export const LISTEN_HELP = `usage: livemig listen [flags]

Runs a target agent that accepts migrations and keeps the guests it receives.

  --host ADDR            address to listen on (default 127.0.0.1)
  --port N               port (default 7070; 0 picks a free one)
  --key-file PATH        serve only peers that prove they hold this pool key
  --tls-cert PATH        serve wss:// with this certificate (PEM), with --tls-key
  --tls-key PATH         the certificate's private key (PEM)
  --insecure             allow a non-loopback --host without --key-file (trusted networks only)
  --go-timeout DUR       a prepared migration waits this long for "go", then discards (default 10s)
  --record-timeout DUR   a migration silent this long between records is dropped (default 60s)
  --idle-timeout DUR     a connection silent this long, pings included, is dropped: how a
                         partitioned source is noticed (default 30s; 0 turns this off)
  --supervised           run as another process's child: stop when standard input closes, and
                         leave Ctrl-C at the terminal to that process, which stops this agent
  --backend LIST         kinds of guest received: sim, qemu or sim,qemu (default sim);
                         qemu needs qemu-system-x86_64 and starts QEMU for each incoming guest
  --qemu-dir DIR         where incoming QEMU guests keep their RAM file and serial log, a
                         folder each; must be tmpfs (default /dev/shm)
  --no-prefault          do not fault a simulated guest's fresh memory in from a worker thread
                         while the first pass arrives (the default does, from 64 MiB: a faster
                         first pass, and all of the guest's memory resident at once)
${WARM_UP_HELP}
  --json                 one JSON event per line on stdout
`;

export async function listen(args: string[]): Promise<number> {
  const { values } = parse(args, {
    host: { type: 'string' },
    port: { type: 'string' },
    json: { type: 'boolean' },
    'key-file': { type: 'string' },
    'tls-cert': { type: 'string' },
    'tls-key': { type: 'string' },
    insecure: { type: 'boolean' },
    'go-timeout': { type: 'string' },
    'record-timeout': { type: 'string' },
    'idle-timeout': { type: 'string' },
    supervised: { type: 'boolean' },
    backend: { type: 'string' },
    'qemu-dir': { type: 'string' },
    prefault: { type: 'boolean' },
    'no-prefault': { type: 'boolean' },
    'no-warm-up': { type: 'boolean' },
  } as const);
  const backends = targetBackendsFromFlag(values.backend ?? 'sim', { qemuDir: values['qemu-dir'], prefault: prefaultFromFlags(values), spareThreads: true });
  const port = parseInteger(values.port ?? '7070', '--port', 0, 65535);
  const goTimeoutMs = values['go-timeout'] === undefined ? undefined : parsePositiveDuration(values['go-timeout'], '--go-timeout');
  const recordIdleTimeoutMs = values['record-timeout'] === undefined ? undefined : parsePositiveDuration(values['record-timeout'], '--record-timeout');
  if (goTimeoutMs === 0 || recordIdleTimeoutMs === 0) throw new InvalidArgumentError('--go-timeout and --record-timeout must be above zero');
  const idleTimeoutMs = values['idle-timeout'] === undefined ? undefined : parseDuration(values['idle-timeout'], '--idle-timeout');
  const cert = values['tls-cert'];
  const tlsKey = values['tls-key'];
  if ((cert === undefined) !== (tlsKey === undefined)) throw new InvalidArgumentError('--tls-cert and --tls-key go together');
  const json = values.json ?? false;
  const print = eventPrinter(json);
  const key = values['key-file'] === undefined ? undefined : await readKeyFile(values['key-file']);
  // Before the port opens, so that no migration meets the warm-up on the same cores.
  const warm = await warmUpUnless(values['no-warm-up']);
  const agent = await TargetAgent.start({
    host: values.host ?? '127.0.0.1',
    port,
    key,
    tls: cert !== undefined && tlsKey !== undefined ? { cert, key: tlsKey } : undefined,
    insecure: values.insecure ?? false,
    goTimeoutMs,
    recordIdleTimeoutMs,
    idleTimeoutMs,
    backends,
  });
  const access = agent.requiresKey ? 'pool key required' : 'no pool key: any peer that reaches it is served';
  agent.on('event', (e: AgentEvent) => print(e, describeEvent(e)));
  return serveUntilStopped(() => agent.close(), print, values.supervised ?? false, 'agent', () =>
    print(
      { type: 'listening', url: agent.url, port: agent.port, keyRequired: agent.requiresKey, ...(warm ? { warmUp: warm } : {}) },
      `livemig agent listening on ${agent.url} (${access})${warmUpWords(warm)}`,
    ),
  );
}

function describeEvent(e: AgentEvent): string {
  switch (e.type) {
    case 'migration-started':
      return `${e.migrationId}: receiving ${e.domainName} (${e.memoryBytes / 2 ** 20} MiB) from ${e.from}`;
    case 'migration-resumed':
      return `${e.migrationId}: resumed here after ${e.pages} pages (${(e.bytesWire / 2 ** 20).toFixed(1)} MiB on the wire)${e.console ? `; console in ${e.console}` : ''}`;
    case 'migration-discarded':
      return `${e.migrationId}: discarded (${e.error?.code}: ${e.error?.message}); the guest stays on its source`;
    case 'connection-refused':
      return `refused ${e.from}: ${e.error.code}: ${e.error.message}`;
  }
}
