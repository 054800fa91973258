// Fault matrix, column "kill-target": the target agent's process is killed (SIGKILL) at one
// record of the migration. Before "go" the guest stays on the source. After "go" nobody is left
// to ask: the source keeps its copy paused and says the outcome is indeterminate, naming the
// migration, since the target may have resumed the guest before it died. No copy runs then, and
// the cell holds "never both": a target that ran the guest before it died must not see the
// source resume its copy.
import { afterAll, expect, test } from 'vitest';
import { cellTitle, ROWS, runInProcessCell, writeMatrixColumn, type Observation } from './helpers/fault-matrix.js';

const BEFORE_GO = { where: 'source', code: 'ERR_CONNECTION_CLOSED', agent: 'dead' } as const;
const AFTER_GO = { where: 'indeterminate', code: 'ERR_INDETERMINATE', agent: 'dead', runsAtEnd: 'none' } as const;

const EXPECTED: Record<string, { says: string; outcome: Partial<Observation> }> = {
  hello: { says: 'the guest stays on the source', outcome: BEFORE_GO },
  'first-pages': { says: 'the guest stays on the source', outcome: BEFORE_GO },
  'later-round': { says: 'the guest stays on the source', outcome: BEFORE_GO },
  'stop-and-copy': { says: 'the paused guest resumes on the source', outcome: BEFORE_GO },
  'device-state': { says: 'the paused guest resumes on the source', outcome: BEFORE_GO },
  complete: { says: 'the paused guest resumes on the source', outcome: BEFORE_GO },
  prepared: { says: 'the paused guest resumes on the source', outcome: BEFORE_GO },
  'go-in-transit': { says: 'indeterminate: nobody to ask, the source copy stays paused', outcome: { ...AFTER_GO, targetRan: false } },
  'go-delivered': { says: 'indeterminate: nobody to ask, the source copy stays paused', outcome: AFTER_GO },
  // "resumed" is sent once the guest runs, and the agent says so first: the record shows the run.
  resumed: { says: 'indeterminate: the target ran the guest before it died, the source copy stays paused', outcome: { ...AFTER_GO, targetRan: true } },
};

const observed: Observation[] = [];
afterAll(() => writeMatrixColumn('kill-target', observed));

for (const r of ROWS) {
  const { says, outcome } = EXPECTED[r.key]!;
  test(cellTitle(`target killed at ${r.phrase}: ${says}`, outcome), async () => {
    const o = await runInProcessCell(r, 'kill-target', observed);
    expect(o).toMatchObject(outcome);
  });
}
