/**
 * `livemig host evacuate A`: asks host A's agent to empty A (the coordinator runs there, so the
 * evacuation goes on if this command goes away), prints the plan, follows it with one progress
 * line per guest on a terminal, and ends with a table per guest. Ctrl-C cancels: no new
 * migrations, those in flight are cancelled and their guests stay on A. The exit status says
 * whether A is empty.
 */

import { setTimeout as sleep } from 'node:timers/promises';
import { ControlClient } from '../agent/control-client.js';
import type { EvacuatedGuest, EvacuateRequest, EvacuationInfo } from '../agent/control-types.js';
import { readKeyFile } from '../agent/key-file.js';
import { InvalidArgumentError, NotFoundError } from '../errors.js';
import { FilePoolStore } from '../pool/pool-store.js';
import { parse } from './args.js';
import { CONTROL_FLAGS } from './control-flags.js';
import { formatMs, formatSeconds } from './pause-cells.js';
import { formatTable } from './table.js';
import { formatBytes, parseInteger, parsePositiveDuration, parseRate } from './units.js';

export const EVACUATE_HELP = `Evacuating a host (its agent runs with --pool FILE and coordinates it):
  livemig host evacuate A [--to B,C] [--parallel N] [--dry-run] [--pool FILE] [flags]
  A                      the host to empty: its name in --pool FILE, or its URL (or --host URL)
  --pool FILE            the pool file, to find A by name
  --to B,C               move guests only to these hosts (default: every enabled host)
  --parallel N           migrations at once (default 2)
  --per-target N         migrations at once into one host (default 1)
  --dry-run              print the plan, with the reason of each guest that cannot be placed
  --move-what-fits       move the guests that fit even if some cannot be placed
  --no-pause-order       start guests by priority then size, all sharing the window, instead
                         of ordering them by expected pause and moving busy ones alone
  --downtime-budget DUR  longest pause to aim for in each migration, e.g. 50ms
  --max-bandwidth RATE   never send one migration faster, e.g. 1Gbit/s
  --compress CODEC       auto | lz4 | none, for every migration
  Exit status: 0 A is empty (with --dry-run: every guest has a place); 1 it is not (the table
  says, per guest, why); 2 usage error. Ctrl-C cancels: guests in flight stay on A.`;

const EVACUATE_FLAGS = {
  ...CONTROL_FLAGS,
  pool: { type: 'string' },
  to: { type: 'string' },
  parallel: { type: 'string' },
  'per-target': { type: 'string' },
  'dry-run': { type: 'boolean' },
  'move-what-fits': { type: 'boolean' },
  'no-pause-order': { type: 'boolean' },
  'downtime-budget': { type: 'string' },
  'max-bandwidth': { type: 'string' },
  compress: { type: 'string' },
} as const;

type Values = ReturnType<typeof parse<typeof EVACUATE_FLAGS>>['values'];

/** How often the command asks how the evacuation stands, in milliseconds. */
const POLL_INTERVAL_MS = 250;

/** Questions in a row that may go unanswered before the command gives up following. */
const MAX_POLL_FAILURES = 40;

export async function evacuateCommand(args: string[]): Promise<number> {
  const positional = args[0] !== undefined && !args[0].startsWith('-') ? args[0] : undefined;
  const { values } = parse(positional === undefined ? args : args.slice(1), EVACUATE_FLAGS);
  if (values.help) {
    process.stdout.write(`${EVACUATE_HELP}\n`);
    return 0;
  }
  const client = await sourceClient(positional ?? values.host, values);
  const json = values.json ?? false;
  const out = (line: string): void => {
    if (!json) process.stdout.write(`${line}\n`);
  };
  // Ctrl-C from the first moment: once the evacuation has an id, it is cancelled.
  const interrupt = new Interrupt();
  try {
    const started = await client.evacuate(evacuateRequest(values));
    out(describePlan(started));
    if (started.dryRun) {
      if (json) process.stdout.write(`${JSON.stringify(started, null, 2)}\n`);
      return started.plan.every((m) => m.to !== undefined) ? 0 : 1;
    }
    const info = await follow(client, started, json, out, interrupt);
    if (json) process.stdout.write(`${JSON.stringify(info, null, 2)}\n`);
    else out(describeResult(info));
    return info.hostEmpty ? 0 : 1;
  } finally {
    interrupt.close();
  }
}

/** Counts Ctrl-C presses, and hands the first to whoever can act on it. */
export class Interrupt {
  presses = 0;
  #listener: (() => void) | undefined;
  readonly #onSignal = (): void => {
    this.presses += 1;
    if (this.presses > 1) process.exit(1);
    this.#listener?.();
  };

  constructor() {
    process.on('SIGINT', this.#onSignal);
  }

  /** Calls `listener` on the first Ctrl-C, now if it came already. */
  listen(listener: () => void): void {
    this.#listener = listener;
    if (this.presses > 0) listener();
  }

  close(): void {
    process.off('SIGINT', this.#onSignal);
  }
}

/** A client of host A, named by URL or by its name in the pool file. */
async function sourceClient(host: string | undefined, values: Values): Promise<ControlClient> {
  if (host === undefined) throw new InvalidArgumentError('host evacuate needs the host to empty: its name (with --pool FILE) or its URL');
  let url = host;
  if (!/^[a-z]+:\/\//i.test(host)) {
    if (values.pool === undefined) throw new InvalidArgumentError(`"${host}" is not a URL; give --pool FILE to find it by name, or its http://HOST:PORT`);
    const members = await new FilePoolStore(values.pool).list();
    const member = members.find((m) => m.name === host);
    if (member === undefined) throw new NotFoundError(`the pool file ${values.pool} has no host named "${host}"; it has ${members.map((m) => m.name).join(', ') || 'none'}`);
    url = member.url;
  }
  const key = values['key-file'] === undefined ? undefined : await readKeyFile(values['key-file']);
  return new ControlClient(url, { key, tls: values['tls-ca'] === undefined ? undefined : { ca: values['tls-ca'] } });
}

function evacuateRequest(values: Values): EvacuateRequest {
  const request: EvacuateRequest = {};
  if (values.to !== undefined) request.to = values.to.split(',').map((h) => h.trim()).filter((h) => h !== '');
  if (values.parallel !== undefined) request.parallel = parseInteger(values.parallel, '--parallel', 1, 64);
  if (values['per-target'] !== undefined) request.perTarget = parseInteger(values['per-target'], '--per-target', 1, 64);
  if (values['dry-run']) request.dryRun = true;
  if (values['move-what-fits']) request.moveWhatFits = true;
  if (values['no-pause-order']) request.orderByPause = false;
  if (values['downtime-budget'] !== undefined) request.downtimeBudgetMs = parsePositiveDuration(values['downtime-budget'], '--downtime-budget');
  if (values['max-bandwidth'] !== undefined) request.maxBandwidthBytesPerSec = parseRate(values['max-bandwidth'], '--max-bandwidth');
  if (values.compress !== undefined) {
    if (values.compress !== 'auto' && values.compress !== 'lz4' && values.compress !== 'none') throw new InvalidArgumentError(`--compress "${values.compress}" is not auto, lz4 or none`);
    request.codec = values.compress;
  }
  return request;
}

/** Asks how the evacuation stands until it has ended; Ctrl-C cancels it. */
export async function follow(client: ControlClient, started: EvacuationInfo, json: boolean, out: (line: string) => void, interrupt: Interrupt): Promise<EvacuationInfo> {
  const id = started.evacuationId;
  const lines = new GuestLines(process.stderr.isTTY && !json ? process.stderr : undefined, json ? () => undefined : out);
  interrupt.listen(() => {
    lines.note(`cancelling evacuation ${id}: no new migrations; those in flight are cancelled and their guests stay on ${started.host} (Ctrl-C again to stop waiting)`);
    void client.cancelEvacuation(id).catch(() => undefined);
  });
  let info = started;
  let failures = 0;
  try {
    lines.draw(info);
    while (info.endedAt === undefined) {
      await sleep(POLL_INTERVAL_MS);
      try {
        info = await client.evacuation(id);
        failures = 0;
      } catch (err) {
        failures += 1;
        if (failures >= MAX_POLL_FAILURES) throw err;
        continue;
      }
      lines.draw(info);
    }
  } finally {
    lines.done();
  }
  return info;
}

/**
 * One progress line per guest: on a terminal, redrawn in place; elsewhere, a line each time a
 * guest's outcome or target changes.
 */
class GuestLines {
  #shown = 0;
  readonly #last = new Map<string, string>();

  constructor(
    private readonly tty: NodeJS.WriteStream | undefined,
    private readonly out: (line: string) => void,
  ) {}

  draw(info: EvacuationInfo): void {
    if (this.tty === undefined) {
      for (const g of info.guests) {
        const key = `${g.outcome} ${g.to ?? ''} ${g.runsOn ?? ''}`;
        if (this.#last.get(g.guestId) !== key) this.out(progressLine(g));
        this.#last.set(g.guestId, key);
      }
      return;
    }
    let text = this.#shown > 0 ? `\x1b[${this.#shown}A` : '';
    for (const g of info.guests) text += `\r\x1b[2K${progressLine(g)}\n`;
    this.tty.write(text);
    this.#shown = info.guests.length;
  }

  note(line: string): void {
    if (this.tty !== undefined) {
      this.tty.write(`${line}\n`);
      this.#shown = 0;
    } else {
      this.out(line);
    }
  }

  done(): void {
    if (this.tty !== undefined && this.#shown > 0) this.tty.write(`\x1b[${this.#shown}A\x1b[0J`);
    this.#shown = 0;
  }
}

function progressLine(g: EvacuatedGuest): string {
  const name = g.guestName.padEnd(16);
  switch (g.outcome) {
    case 'pending':
      return `${name} pending${g.to ? `, planned for ${g.to}` : ''}${g.error ? ` (${g.error.code})` : ''}`;
    case 'migrating': {
      const left = g.remainingBytes !== undefined ? `, ${formatBytes(g.remainingBytes)} left` : '';
      return `${name} migrating to ${g.to}: ${g.phase ?? 'starting'}${left}`;
    }
    default:
      return `${name} ${g.outcome}${g.runsOn ? `, runs on ${g.runsOn}` : ''}${g.error ? ` (${g.error.code})` : ''}`;
  }
}

export function describePlan(info: EvacuationInfo): string {
  const targets = [...new Set(info.plan.flatMap((m) => (m.to === undefined ? [] : [m.to])))];
  const head = info.dryRun
    ? `plan to evacuate ${info.host} (dry run: nothing moves):`
    : `evacuating ${info.host} (evacuation ${info.evacuationId}): ${info.plan.length} guests${targets.length > 0 ? ` to ${targets.join(', ')}` : ''}`;
  if (info.plan.length === 0) return `${head}\n  no guests to move`;
  const rows = [['GUEST', 'MEMORY', 'PRIORITY', 'TO', 'PAUSE', 'TOTAL', 'MOVES']];
  for (const m of info.plan) {
    const pause = m.expectedPauseMs === undefined ? 'unknown' : `~${formatMs(m.expectedPauseMs)}${m.overBudget ? ' OVER BUDGET' : ''}`;
    const total = m.expectedTotalMs === undefined ? '-' : `~${formatSeconds(m.expectedTotalMs)}`;
    rows.push([m.guestName, formatBytes(m.memoryBytes), String(m.priority), m.to ?? 'unplaced', pause, total, m.alone ? 'alone' : 'shared']);
  }
  const lines = [head, indent(formatTable(rows))];
  if (info.dryRun) for (const m of info.plan) if (m.orderReason !== undefined) lines.push(`  ${m.guestName}: ${m.orderReason}`);
  for (const m of info.plan) if (m.to === undefined) lines.push(`  ${m.guestName} cannot be placed: ${m.code ?? 'ERR_INSUFFICIENT_CAPACITY'}: ${m.reason ?? 'no room'}`);
  return lines.join('\n');
}

export function describeResult(info: EvacuationInfo): string {
  const rows = [['GUEST', 'OUTCOME', 'RUNS ON', 'DOWNTIME', 'TOTAL', 'ERROR']];
  for (const g of info.guests) {
    rows.push([
      g.guestName,
      g.outcome,
      g.runsOn ?? (g.outcome === 'indeterminate' ? `? (migration ${g.migrationIds.at(-1) ?? '-'})` : '-'),
      g.downtimeMs !== undefined ? `${g.downtimeMs.toFixed(1)} ms` : '-',
      g.totalMs !== undefined ? `${(g.totalMs / 1000).toFixed(2)} s` : '-',
      g.error?.code ?? '',
    ]);
  }
  const counts = new Map<string, number>();
  for (const g of info.guests) counts.set(g.outcome, (counts.get(g.outcome) ?? 0) + 1);
  const tally = [...counts].map(([outcome, n]) => `${n} ${outcome}`).join(', ') || 'no guests';
  const verdict = info.hostEmpty ? `${info.host} is empty` : `${info.host} is NOT empty`;
  const lines = [`evacuation ${info.evacuationId} ${info.state}${info.refused ? ' (refused: the plan does not fit, nothing moved)' : ''}: ${verdict}; ${tally}`];
  if (info.error) lines.push(`  stopped by ${info.error.code}: ${info.error.message}`);
  lines.push(indent(formatTable(rows)));
  // A completed move is explained only when the check of the copy it left behind failed.
  const why = info.guests.filter((g) => g.error !== undefined && (g.outcome !== 'completed' || g.verified === false));
  for (const g of why) lines.push(`  ${g.guestName}: ${g.error!.code}: ${g.error!.message}`);
  return lines.join('\n');
}

function indent(text: string): string {
  return text
    .split('\n')
    .map((line) => `  ${line}`)
    .join('\n');
}
