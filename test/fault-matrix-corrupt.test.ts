// Fault matrix, column "corrupt": one record arrives with one deliberate change (a bit of page
// data, a bit of the device state, a digit of a digest, or an undecodable header). The receiver
// must reject it with its own code: before "go" the guest then stays on the source and the target
// discards; a corrupted "go" is refused by the target, which aborts, so the source resumes; an
// undecodable "resumed" makes the source ask the target, which runs the guest.
import { afterAll, expect, test } from 'vitest';
import { cellTitle, ROWS, runInProcessCell, writeMatrixColumn, type Observation } from './helpers/fault-matrix.js';

const refusedByTarget = (peerCode: string) => ({ where: 'source', code: 'ERR_PEER_ABORTED', peerCode, agent: 'discarded' }) as const;

const EXPECTED: Record<string, { says: string; outcome: Partial<Observation> }> = {
  hello: {
    says: 'the agent refuses it as malformed and never starts the migration; the guest stays on the source',
    outcome: { where: 'source', code: 'ERR_PEER_ABORTED', peerCode: 'ERR_MALFORMED_RECORD', agent: 'unknown' },
  },
  'first-pages': { says: 'the target finds the checksum wrong and discards; the guest stays on the source', outcome: refusedByTarget('ERR_CHECKSUM_MISMATCH') },
  'later-round': { says: 'the target finds the checksum wrong and discards; the guest stays on the source', outcome: refusedByTarget('ERR_CHECKSUM_MISMATCH') },
  'stop-and-copy': {
    says: 'the target finds the checksum wrong and discards; the paused guest resumes on the source',
    outcome: refusedByTarget('ERR_CHECKSUM_MISMATCH'),
  },
  'device-state': {
    // The state still decodes, to a wrong register: only the digest, which covers the state too,
    // keeps the target from resuming the guest from it.
    says: 'the target finds the digest over memory and state wrong and discards; the guest resumes on the source',
    outcome: refusedByTarget('ERR_DIGEST_MISMATCH'),
  },
  complete: { says: 'the target finds the digests differ and discards; the guest resumes on the source', outcome: refusedByTarget('ERR_DIGEST_MISMATCH') },
  prepared: {
    says: 'the source finds the digests differ, resumes its guest and tells the target, which discards',
    outcome: { where: 'source', code: 'ERR_DIGEST_MISMATCH', agent: 'discarded' },
  },
  'go-in-transit': {
    says: 'the target refuses the malformed "go" and discards; its abort lets the source resume',
    outcome: refusedByTarget('ERR_MALFORMED_RECORD'),
  },
  resumed: {
    says: 'the source cannot read "resumed", asks the target, learns it runs the guest, and retires its copy',
    outcome: { where: 'target', resolvedAfter: 'ERR_MALFORMED_RECORD', agent: 'running' },
  },
};

const observed: Observation[] = [];
afterAll(() => writeMatrixColumn('corrupt', observed));

// A record delivered intact cannot be a corrupted one: the row "go delivered" has no cell here.
for (const r of ROWS.filter((x) => x.key !== 'go-delivered')) {
  const { says, outcome } = EXPECTED[r.key]!;
  test(cellTitle(`corrupted ${r.phrase}: ${says}`, outcome), async () => {
    const o = await runInProcessCell(r, 'corrupt', observed);
    expect(o).toMatchObject(outcome);
  });
}
