/** What the exit status of `livemig` means: one table, shown by `--help` and the README. */

import type { MigrationReport } from '../precopy/report.js';
import type { OracleCheck } from './oracle-check.js';

/** What each exit status means, for `--help` and the README alike. */
export const EXIT_STATUS_HELP = `Exit status:
  0  done: for demo and migrate, the guest runs on the target and its copy was verified;
     for host evacuate, the host is empty
  1  the migration did not complete: the guest runs on the source (the report says why);
     for host evacuate, guests are left on the host (the table says why, per guest)
  2  a usage error: nothing was started
  3  indeterminate: the guest is paused here and may run on the target (see the message)
  4  the guest runs on the target, but a check after the switchover failed or could not
     be made (the report's verified and oracle fields say which)`;

/** The exit status of a migration's report (see {@link EXIT_STATUS_HELP}). */
export function exitCode(report: MigrationReport & { oracle?: OracleCheck }): number {
  if (report.outcome === 'indeterminate') return 3;
  if (report.outcome !== 'completed') return 1;
  if (!report.verified || (report.oracle && !report.oracle.matches)) return 4;
  return 0;
}
