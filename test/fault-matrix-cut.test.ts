// Fault matrix, column "cut": the link between source and target is destroyed at one record of
// the migration. Before "go" the guest stays on the source and the target discards its copy;
// after "go" the source asks the target afresh and retires or resumes its paused copy.
import { afterAll, expect, test } from 'vitest';
import { cellTitle, ROWS, runInProcessCell, writeMatrixColumn, type Observation } from './helpers/fault-matrix.js';

const EXPECTED: Record<string, { says: string; outcome: Partial<Observation> }> = {
  hello: {
    says: 'the guest stays on the source and the agent never heard of the migration',
    outcome: { where: 'source', code: 'ERR_CONNECTION_CLOSED', agent: 'unknown' },
  },
  'first-pages': { says: 'the guest stays on the source, the target discards', outcome: { where: 'source', code: 'ERR_CONNECTION_CLOSED', agent: 'discarded' } },
  'later-round': { says: 'the guest stays on the source, the target discards', outcome: { where: 'source', code: 'ERR_CONNECTION_CLOSED', agent: 'discarded' } },
  'stop-and-copy': {
    says: 'the paused guest resumes on the source, the target discards',
    outcome: { where: 'source', code: 'ERR_CONNECTION_CLOSED', agent: 'discarded' },
  },
  'device-state': {
    says: 'the paused guest resumes on the source, the target discards',
    outcome: { where: 'source', code: 'ERR_CONNECTION_CLOSED', agent: 'discarded' },
  },
  complete: { says: 'the paused guest resumes on the source, the target discards', outcome: { where: 'source', code: 'ERR_CONNECTION_CLOSED', agent: 'discarded' } },
  prepared: {
    says: 'the prepared target discards, the paused guest resumes on the source',
    outcome: { where: 'source', code: 'ERR_CONNECTION_CLOSED', agent: 'discarded' },
  },
  'go-in-transit': {
    says: 'the target never got it and discards; the source asks, learns so, and resumes its copy',
    outcome: { where: 'source', resolvedAfter: 'ERR_CONNECTION_CLOSED', agent: 'discarded' },
  },
  'go-delivered': {
    says: 'the target runs the guest; the source asks, learns so, and retires its copy',
    outcome: { where: 'target', resolvedAfter: 'ERR_CONNECTION_CLOSED', agent: 'running' },
  },
  resumed: {
    says: 'the target runs the guest; the source asks, learns so, and retires its copy',
    outcome: { where: 'target', resolvedAfter: 'ERR_CONNECTION_CLOSED', agent: 'running' },
  },
};

const observed: Observation[] = [];
afterAll(() => writeMatrixColumn('cut', observed));

for (const r of ROWS) {
  const { says, outcome } = EXPECTED[r.key]!;
  test(cellTitle(`link cut at ${r.phrase}: ${says}`, outcome), async () => {
    const o = await runInProcessCell(r, 'cut', observed);
    expect(o).toMatchObject(outcome);
  });
}
