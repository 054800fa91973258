// Fault matrix, column "stall": from one record of the migration on, the network between source
// and target forwards nothing and closes nothing, queries included (a partition). Each side must
// notice on its own, by its timeouts and keepalive. Before "go" the guest resumes on the source
// and the target discards its copy; after "go" the source cannot ask the target, so it keeps its
// copy paused and says the outcome is indeterminate. Each indeterminate cell is then followed to
// its end: asked afresh once the partition is over, the agent's answer decides whether the paused
// copy is destroyed or resumed, and the guest ends on one host, as its oracle says.
import { randomUUID } from 'node:crypto';
import { afterAll, expect, test } from 'vitest';
import { queryAgent } from '../dist/agent/agent-client.js';
import { SimulatedGuest } from '../dist/domain/sim/guest.js';
import { migrate } from '../dist/precopy/migration.js';
import { connectWebSocket } from '../dist/transport/ws-connect.js';
import {
  cellTitle,
  FINAL_ROUND,
  GUEST,
  matrixMigrateOptions,
  ROWS,
  runInProcessCell,
  startMatrixAgent,
  TIMEOUTS,
  writeMatrixColumn,
  type Observation,
} from './helpers/fault-matrix.js';
import { startFaultProxy } from './helpers/fault-proxy.js';

const BEFORE_GO = { where: 'source', code: 'ERR_TIMEOUT', agent: 'discarded' } as const;

const EXPECTED: Record<string, { says: string; outcome: Partial<Observation> }> = {
  hello: {
    says: 'the source times out waiting for "ready", the agent never heard of the migration',
    outcome: { where: 'source', code: 'ERR_TIMEOUT', agent: 'unknown' },
  },
  'first-pages': { says: 'the source times out and keeps the guest, the target times out and discards', outcome: BEFORE_GO },
  'later-round': { says: 'the source times out and keeps the guest, the target times out and discards', outcome: BEFORE_GO },
  'stop-and-copy': { says: 'the source times out and resumes the paused guest, the target discards', outcome: BEFORE_GO },
  'device-state': { says: 'the source times out and resumes the paused guest, the target discards', outcome: BEFORE_GO },
  complete: { says: 'the source times out waiting for "prepared" and resumes, the target discards', outcome: BEFORE_GO },
  prepared: { says: 'the source times out and resumes, the target discards when "go" does not come', outcome: BEFORE_GO },
  'go-in-transit': {
    says: 'indeterminate: the source cannot ask and stays paused; the target discards when "go" does not come; asked afresh, the source resumes its copy',
    outcome: { where: 'indeterminate', code: 'ERR_INDETERMINATE', agent: 'discarded', targetRan: false, resolvedLater: 'source', runsAtEnd: 'source' },
  },
  'go-delivered': {
    says: 'indeterminate: the source cannot ask and stays paused; the guest runs on the target; asked afresh, the source destroys its copy',
    outcome: { where: 'indeterminate', code: 'ERR_INDETERMINATE', agent: 'running', targetRan: true, resolvedLater: 'target', runsAtEnd: 'target' },
  },
  resumed: {
    says: 'indeterminate: the source cannot ask and stays paused; the guest runs on the target; asked afresh, the source destroys its copy',
    outcome: { where: 'indeterminate', code: 'ERR_INDETERMINATE', agent: 'running', targetRan: true, resolvedLater: 'target', runsAtEnd: 'target' },
  },
};

const observed: Observation[] = [];
afterAll(() => writeMatrixColumn('stall', observed));

for (const r of ROWS) {
  const { says, outcome } = EXPECTED[r.key]!;
  test(cellTitle(`network stalls at ${r.phrase}: ${says}`, outcome), async () => {
    const o = await runInProcessCell(r, 'stall', observed);
    expect(o).toMatchObject(outcome);
  });
}

// A source that can reach the agent by another path than the stalled one must hear the truth: the
// agent's connection to the source may take its keepalive or close timeout to end, and the guest
// runs meanwhile.
test(
  'an agent asked directly says "running" as soon as the guest runs there, even while the link to the source is stalled',
  async () => {
    const agent = await startMatrixAgent();
    const proxy = await startFaultProxy({ targetUrl: agent.url, finalRound: FINAL_ROUND });
    const guest = await SimulatedGuest.boot(GUEST, 'fault-matrix');
    try {
      const migrationId = randomUUID();
      // The stall strikes when "resumed" reaches the proxy: the target has resumed the guest by then.
      proxy.arm({ at: 'resumed', fault: 'stall' });
      let answer: string | undefined;
      const asked = (async () => {
        while (!proxy.struck) await new Promise((resolve) => setTimeout(resolve, 5));
        answer = (await queryAgent(agent.url, migrationId)).state;
      })();
      const transport = await connectWebSocket(proxy.url, { idleTimeoutMs: TIMEOUTS.sourceIdleTimeoutMs });
      const report = await migrate(guest, transport, matrixMigrateOptions(proxy, migrationId));
      await asked;
      expect(report.outcome).toBe('indeterminate');
      expect(answer).toBe('running');
    } finally {
      await proxy.close();
      await agent.stop();
      await guest.destroy();
    }
  },
);
