// A peer of another protocol version gets a clear refusal, or the highest version both speak.
import { afterEach, expect, test } from 'vitest';
import { TargetAgent } from '../dist/agent/target-agent.js';
import { connectToAgent } from '../dist/agent/agent-client.js';
import { decodeFrame, encodeRecord } from '../dist/protocol/codec.js';
import { PROTOCOL_VERSION } from '../dist/protocol/records.js';

/** A version no livemig speaks yet (2 is the base protocol, 3 adds page channels). */
const FUTURE_VERSION = 99;
import { simDescriptor, DEFAULT_SIM_CONFIG } from '../dist/domain/sim/config.js';
import { SimTargetBackend } from '../dist/domain/sim/target-backend.js';
import type { DomainDescriptor, TargetDomain } from '../dist/domain/backend.js';

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

/** The simulated backend, counting the guests it is asked to build. */
class CountingBackend extends SimTargetBackend {
  created = 0;
  override create(descriptor: DomainDescriptor): Promise<TargetDomain> {
    this.created++;
    return super.create(descriptor);
  }
}

async function helloWith(versions: number[]) {
  const backend = new CountingBackend();
  const agent = await TargetAgent.start({ backends: [backend] });
  cleanups.push(() => agent.close());
  const transport = await connectToAgent(agent.url);
  cleanups.push(async () => transport.destroy());
  const domain = simDescriptor({ ...DEFAULT_SIM_CONFIG, memoryBytes: 16 * 1024 * 1024, hotSetBytes: 1024 * 1024 });
  const migrationId = `v-${versions.join('-')}`;
  await transport.send(encodeRecord({ type: 'hello', versions, migrationId, domain, codec: 'none' }));
  const frame = await transport.receive();
  return { agent, backend, migrationId, answer: decodeFrame(frame!) };
}

test('a source that speaks only a newer version is refused with ERR_UNSUPPORTED_VERSION, before anything is allocated', async () => {
  const { agent, backend, migrationId, answer } = await helloWith([FUTURE_VERSION]);
  expect(answer.type).toBe('abort');
  expect(answer.type === 'abort' && answer.code).toBe('ERR_UNSUPPORTED_VERSION');
  expect(answer.type === 'abort' && answer.message).toContain(`speaks ${PROTOCOL_VERSION}`);
  // The refusal is complete once the agent has discarded the migration; nothing was built for it.
  await expect.poll(() => agent.migrations.get(migrationId)?.state).toBe('discarded');
  expect(backend.created).toBe(0);
  expect([...agent.migrations.values()].every((m) => m.domain === undefined)).toBe(true);
});

test('a source that also speaks this version gets it, and its guest is built', async () => {
  const { backend, answer } = await helloWith([FUTURE_VERSION, PROTOCOL_VERSION]);
  expect(answer).toMatchObject({ type: 'ready', version: PROTOCOL_VERSION });
  expect(backend.created).toBe(1);
});
