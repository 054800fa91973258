// Fault matrix, column "kill-source": the source's process is killed (SIGKILL) at one record of
// the migration, and the guest's only complete copy with it. Until "go" reached the target, the
// target discards what it holds, and the guest is lost with the source host: no copy runs
// anywhere, which is the honest outcome, and the cell holds "never both". Once "go" reached the
// target, the guest runs there, intact.
import { afterAll, expect, test } from 'vitest';
import { cellTitle, ROWS, runKilledSourceCell, writeMatrixColumn, type Observation } from './helpers/fault-matrix.js';

const LOST = { where: 'lost', agent: 'discarded', runsAtEnd: 'none', targetRan: false } as const;
const HANDED_OVER = { where: 'target', agent: 'running', runsAtEnd: 'target', targetRan: true } as const;

const EXPECTED: Record<string, { says: string; outcome: Partial<Observation> }> = {
  hello: { says: 'the guest is lost with the source host; the agent never heard of the migration', outcome: { ...LOST, agent: 'unknown' } },
  'first-pages': { says: 'the guest is lost with the source host; the target discards its partial copy', outcome: LOST },
  'later-round': { says: 'the guest is lost with the source host; the target discards its partial copy', outcome: LOST },
  'stop-and-copy': { says: 'the guest is lost with the source host; the target discards its partial copy', outcome: LOST },
  'device-state': { says: 'the guest is lost with the source host; the target discards its copy', outcome: LOST },
  complete: { says: 'the guest is lost with the source host; the target discards its copy', outcome: LOST },
  prepared: { says: 'the guest is lost with the source host; the prepared target discards its copy', outcome: LOST },
  'go-in-transit': { says: 'the guest is lost with the source host; the target, without "go", discards its copy', outcome: LOST },
  'go-delivered': { says: 'the guest runs on the target and matches its oracle', outcome: HANDED_OVER },
  resumed: { says: 'the guest runs on the target and matches its oracle', outcome: HANDED_OVER },
};

const observed: Observation[] = [];
afterAll(() => writeMatrixColumn('kill-source', observed));

for (const r of ROWS) {
  const { says, outcome } = EXPECTED[r.key]!;
  test(cellTitle(`source killed at ${r.phrase}: ${says}`, outcome), async () => {
    const o = await runKilledSourceCell(r, observed);
    expect(o).toMatchObject(outcome);
  });
}
