/**
 * The `livemig` command: it reads the command line and hands it to one command's room
 * (`demo`, `listen`, `migrate`, `status`, `keygen`, `estimate`, `bench`, `host`, `vm`, `pool`), and it makes sure the
 * process never ends without saying how: exit statuses are one table ({@link EXIT_STATUS_HELP}).
 */

import { readFileSync } from 'node:fs';
import { InvalidArgumentError, MigrationError, UnsettledError, asMigrationError } from '../errors.js';
import { runBench } from './bench-harness.js';
import { DEMO_HELP, demo } from './demo-command.js';
import { ESTIMATE_HELP, runEstimate } from './estimate-command.js';
import { armLoopGuard } from '../util/loop-guard.js';
import { EXIT_STATUS_HELP } from './exit-status.js';
import { HOST_HELP, hostCommand } from './host-command.js';
import { KEYGEN_HELP, keygen } from './keygen-command.js';
import { LISTEN_HELP, listen } from './listen-command.js';
import { MIGRATE_HELP, migrateCommand } from './migrate-command.js';
import { POOL_HELP, poolCommand } from './pool-command.js';
import { missingNodeFlags, missingNodeFlagsNote } from './node-flags.js';
import { STATUS_HELP, status } from './status-command.js';
import { VM_HELP, vmCommand } from './vm-command.js';

const USAGE = `usage: livemig <command> [flags]

Commands:
  demo                     start a target agent in a second process, boot a guest here,
                           migrate it live to the agent, check it against its replay oracle
  listen --port N          run a target agent that accepts migrations
  migrate --to URL         boot a guest here and migrate it live to the agent at URL
  status --to URL --id ID  ask an agent what became of a migration
  keygen PATH              write a new random pool key to PATH (mode 0600)
  estimate                 watch a guest for a moment and predict its migration
  bench [flags]            latency benchmark: a matrix of migrations to an agent in a second
                           process, with charts and tables
  host --port N            run a host agent: it keeps guests, receives and sends migrations,
                           and answers its control API (docs/api.md)
  host status|enable|disable --host URL
                           ask a host about itself; leave or enter maintenance
  host evacuate A --pool FILE [--to B,C] [--parallel N] [--dry-run]
                           empty host A: move every guest to other hosts of the pool
  pool status --pool FILE  every host of a pool with its memory, maintenance and guests
  vm start|list|migrate|stop --host URL
                           guests on a host, through its control API

livemig <command> --help shows a command's flags; livemig --version its version.

${EXIT_STATUS_HELP}
`;

/** Each command's own page, for `livemig <command> --help`. */
const HELP: Record<string, string> = {
  demo: DEMO_HELP,
  listen: LISTEN_HELP,
  migrate: MIGRATE_HELP,
  status: STATUS_HELP,
  keygen: KEYGEN_HELP,
  estimate: ESTIMATE_HELP,
  host: HOST_HELP,
  vm: VM_HELP,
  pool: POOL_HELP,
};

/** The package's version, from its package.json. */
function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === '--version' || command === '-v' || command === 'version') {
    process.stdout.write(`livemig ${version()}\n`);
    return 0;
  }
  // host and vm read their own --help, after their subcommand.
  if (command !== undefined && !['bench', 'host', 'vm'].includes(command) && (rest.includes('--help') || rest.includes('-h'))) {
    const page = HELP[command];
    if (page === undefined) throw new InvalidArgumentError(`unknown command "${command}"; run "livemig --help"`);
    process.stdout.write(page);
    return 0;
  }
  // The commands that pause guests say so when Node runs without the command's options; to a
  // person at a terminal only, so that scripts reading the output see what they always did.
  const runsHost = command === 'host' && (rest[0] === undefined || rest[0].startsWith('-'));
  if ((command === 'demo' || command === 'listen' || command === 'migrate' || runsHost) && process.stderr.isTTY) {
    for (const line of missingNodeFlagsNote(command, missingNodeFlags())) process.stderr.write(`${line}\n`);
  }
  switch (command) {
    case 'demo':
      return demo(rest);
    case 'listen':
      return listen(rest);
    case 'migrate':
      return migrateCommand(rest);
    case 'status':
      return status(rest);
    case 'keygen':
      return keygen(rest);
    case 'estimate':
      return runEstimate(rest);
    case 'bench':
      return runBench(rest);
    case 'host':
      return hostCommand(rest);
    case 'vm':
      return vmCommand(rest);
    case 'pool':
      return poolCommand(rest);
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(USAGE);
      return command === undefined ? 2 : 0;
    default:
      throw new InvalidArgumentError(`unknown command "${command}"; run "livemig --help"`);
  }
}

const argv = process.argv.slice(2);
/** With `--json`, every end of the command prints one JSON object, failures included. */
const jsonOut = argv.includes('--json') && argv[0] !== 'listen' && !(argv[0] === 'host' && (argv[1] ?? '-').startsWith('-'));

function fail(error: MigrationError, status: number): void {
  process.stderr.write(`livemig: ${error.code}: ${error.message}\n`);
  if (jsonOut) process.stdout.write(`${JSON.stringify({ outcome: 'failed', error: error.toJSON() }, null, 2)}\n`);
  process.exitCode = status;
}

let settled = false;
// Every wait in the command settles when its peer goes away; should one ever not, the process
// would run out of work and exit 0 in silence. This turns that into a failure with a code. A
// migration under way has its own guard, which answers first and ends it with a report.
const guard = armLoopGuard(
  () => new UnsettledError('the command was left waiting on something nothing could settle any more (the process ran out of work); this is a bug in livemig, please report it'),
  { outermost: true },
);
guard.emptied.catch((err: UnsettledError) => {
  if (!settled) fail(err, 1);
});
main(argv).then(
  (code) => {
    settled = true;
    guard.disarm();
    process.exitCode = code;
  },
  (err: unknown) => {
    settled = true;
    guard.disarm();
    const error = asMigrationError(err);
    fail(error, error instanceof InvalidArgumentError ? 2 : 1);
  },
);
