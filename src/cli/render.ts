/**
 * How the CLI shows a migration to people: one progress line that rewrites itself on a
 * terminal, and a short report at the end.
 */

import type { MigrationProgress, MigrationReport, SwitchoverReason } from '../precopy/report.js';
import { formatBytes, formatRate } from './units.js';

/** One line describing the migration's progress. */
export function progressLine(p: MigrationProgress): string {
  const notApplied = p.throttleUnavailable !== undefined ? ' (not applied)' : '';
  const expected = p.expectedDowntimeMs !== undefined ? `${p.expectedDowntimeMs.toFixed(0)}/${p.downtimeBudgetMs.toFixed(0)} ms` : `-/${p.downtimeBudgetMs.toFixed(0)} ms`;
  return (
    `${p.phase.padEnd(13)} round ${String(p.round).padStart(2)}  ` +
    `sent ${formatBytes(p.bytesRaw).padStart(10)}  left ${formatBytes(p.remainingBytes).padStart(10)}  ` +
    `${formatRate(p.bandwidthBytesPerSec).padStart(11)}  dirty ${formatRate(p.dirtyRateBytesPerSec).padStart(11)}  ` +
    `pause ${expected.padStart(13)}  throttle ${String(p.throttlePercent).padStart(2)}%${notApplied}  ${(p.elapsedMs / 1000).toFixed(1)} s`
  );
}

/** Writes progress to a terminal stream, overwriting the previous line; silent elsewhere. */
export function terminalProgress(stream: NodeJS.WriteStream): ((p: MigrationProgress) => void) & { done(): void } {
  let shown = false;
  const show = ((p: MigrationProgress) => {
    if (!stream.isTTY) return;
    stream.write(`\r\x1b[2K${progressLine(p)}`);
    shown = true;
  }) as ((p: MigrationProgress) => void) & { done(): void };
  show.done = () => {
    if (shown) stream.write('\r\x1b[2K');
    shown = false;
  };
  return show;
}

/** Why the engine paused the guest when it did, for people. */
const SWITCHOVER_REASONS: Record<SwitchoverReason, string> = {
  'fits-and-stopped-shrinking': 'the pause fitted the budget and stopped shrinking (fits-and-stopped-shrinking)',
  'bound-reached': 'the pause fitted the budget; another round would have cost more time than allowed (bound-reached)',
  'deadline-near': 'the pause fitted the budget; another round would have come near a deadline (deadline-near)',
  'first-fit': 'the first round whose pause fitted the budget (first-fit)',
  'nothing-dirty': 'nothing was left dirty (nothing-dirty)',
  'max-rounds': 'the round limit was reached (max-rounds)',
  'forced-by-deadline': 'a deadline passed and forced it (forced-by-deadline)',
  policy: 'the pre-copy policy chose it (policy)',
};

/** The report as a few lines for people. */
export function formatReport(r: MigrationReport): string {
  const lines: string[] = [];
  const verdict =
    r.outcome === 'completed'
      ? `migrated: the guest now runs on ${r.target}`
      : r.outcome === 'indeterminate'
        ? 'INDETERMINATE: the guest is paused here and may run on the target'
        : `${r.outcome}: the guest still runs on the source`;
  lines.push(`${verdict}`);
  if (r.error) lines.push(`  reason      ${r.error.code}: ${r.error.message}`);
  lines.push(`  domain      ${r.domain.name} (${formatBytes(r.memoryBytes)}, ${r.domain.vcpus} vCPU)`);
  if (r.downtimeMs !== undefined) {
    const predicted = r.predictedDowntimeMs !== undefined ? `, predicted ${r.predictedDowntimeMs.toFixed(1)} ms` : '';
    lines.push(`  downtime    ${r.downtimeMs.toFixed(1)} ms (upper bound ${r.downtimeUpperBoundMs?.toFixed(1)} ms${predicted}, budget ${r.downtimeBudgetMs} ms)`);
  } else if (r.downtimeUpperBoundMs !== undefined) {
    lines.push(`  downtime    at most ${r.downtimeUpperBoundMs.toFixed(1)} ms (the link failed after "go"; the outcome was asked afresh)`);
  }
  if (r.switchoverReason) lines.push(`  switchover  ${SWITCHOVER_REASONS[r.switchoverReason]}`);
  if (r.throttleUnavailable !== undefined) {
    lines.push(`  throttle    auto-converge asked to slow the guest by up to ${r.maxThrottlePercent}%, but it ran at full speed: ${r.throttleUnavailable}`);
  } else if (r.maxThrottlePercent > 0) {
    lines.push(`  throttle    auto-converge slowed the guest by up to ${r.maxThrottlePercent}%`);
  }
  if (r.forcedSwitchover) lines.push(`  forced      ${r.forcedSwitchover.code}: ${r.forcedSwitchover.message}`);
  lines.push(`  total       ${(r.totalMs / 1000).toFixed(2)} s`);
  const ratio = r.bytesWire > 0 ? (r.bytesRaw / r.bytesWire).toFixed(2) : '-';
  lines.push(`  transferred ${formatBytes(r.bytesRaw)} of page data in ${formatBytes(r.bytesWire)} on the wire (${r.codec}, ${ratio}x)`);
  lines.push('  rounds');
  for (const round of r.rounds) {
    lines.push(
      `    ${String(round.round).padStart(3)}${round.stopAndCopy ? '*' : ' '} ${String(round.pages).padStart(9)} pages ` +
        `(${String(round.zeroPages).padStart(7)} zero) ${formatBytes(round.bytesWire).padStart(11)} wire ` +
        `${round.durationMs.toFixed(1).padStart(9)} ms ${formatRate(round.bandwidthBytesPerSec).padStart(12)}` +
        (round.stopAndCopy ? '' : `  dirtied ${formatRate(round.dirtyRateBytesPerSec)}`) +
        (round.throttlePercent > 0 ? `  throttle ${round.throttlePercent}%` : ''),
    );
  }
  lines.push('    (* = sent while paused)');
  if (r.sourceDigest !== undefined) {
    lines.push(`  digest      source ${r.sourceDigest}  target ${r.targetDigest}  ${r.verified ? 'match' : 'MISMATCH'}`);
    if (r.verifyMs !== undefined) lines.push(`  verify      ${r.verifyMs.toFixed(1)} ms checking the paused copy, after the total`);
    if (r.missedPages !== undefined) {
      lines.push(
        r.missedPages > 0
          ? `  missed      ${r.missedPages} pages changed at the source after they were last sent (the dirty tracking missed their writes)`
          : '  missed      none: every page was sent as the source held it; the target\'s copy is what differs',
      );
    }
  } else if (r.outcome === 'completed') {
    lines.push('  digest      not verified: the target\'s digest at resume never arrived (the outcome was asked of its agent)');
  }
  return lines.join('\n');
}
