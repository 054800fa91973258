// A peer of another protocol version gets a clear refusal, or the highest version both speak.
import { afterEach, expect, test } from 'vitest';
import { TargetAgent } from '../dist/agent/target-agent.js';
import { connectToAgent } from '../dist/agent/agent-client.js';
import { decodeFrame, encodeRecord } from '../dist/protocol/codec.js';
import { PROTOCOL_VERSION } from '../dist/protocol/records.js';
import { simDescriptor, DEFAULT_SIM_CONFIG } from '../dist/domain/sim/config.js';

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function helloWith(versions: number[]) {
  const agent = await TargetAgent.start();
  cleanups.push(() => agent.close());
  const transport = await connectToAgent(agent.url);
  cleanups.push(async () => transport.destroy());
  const domain = simDescriptor({ ...DEFAULT_SIM_CONFIG, memoryBytes: 16 * 1024 * 1024, hotSetBytes: 1024 * 1024 });
  await transport.send(encodeRecord({ type: 'hello', versions, migrationId: `v-${versions.join('-')}`, domain, codec: 'none' }));
  const frame = await transport.receive();
  return { agent, answer: decodeFrame(frame!) };
}

test('a source that speaks only a newer version is refused with ERR_UNSUPPORTED_VERSION, before anything is allocated', async () => {
  const { agent, answer } = await helloWith([PROTOCOL_VERSION + 1]);
  expect(answer.type).toBe('abort');
  expect(answer.type === 'abort' && answer.code).toBe('ERR_UNSUPPORTED_VERSION');
  expect(answer.type === 'abort' && answer.message).toContain(`speaks ${PROTOCOL_VERSION}`);
  for (let i = 0; i < 50 && [...agent.migrations.values()][0]?.state !== 'discarded'; i++) await new Promise((r) => setTimeout(r, 20));
  expect([...agent.migrations.values()].every((m) => m.domain === undefined)).toBe(true);
});

test('a source that also speaks this version gets it', async () => {
  const { answer } = await helloWith([PROTOCOL_VERSION + 1, PROTOCOL_VERSION]);
  expect(answer).toMatchObject({ type: 'ready', version: PROTOCOL_VERSION });
});
