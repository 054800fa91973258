// A backend that throws a plain Error is a backend failure: the agent tells the peer
// ERR_DOMAIN_FAILED, a code the protocol lets travel (protocol.md §10), never
// ERR_CONNECTION_CLOSED. An inspection that fails, at its pause or after it, still resumes the guest.
import { afterEach, expect, test } from 'vitest';
import { connectToAgent, queryAgent } from '../dist/agent/agent-client.js';
import { TargetAgent, type AgentEvent } from '../dist/agent/target-agent.js';
import { encodeRecord } from '../dist/protocol/codec.js';
import { driveToPrepared, next, StubBackend, stubHello } from './helpers/scripted-source.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

/** An agent with a stub backend whose `failing` hooks throw, and one guest migrated in and running. */
async function agentRunningAGuest(failing: string[]) {
  const backend = new StubBackend(new Set(failing));
  const agent = await TargetAgent.start({ backends: [backend] });
  cleanups.push(() => agent.close());
  const events: AgentEvent[] = [];
  agent.on('event', (e: AgentEvent) => events.push(e));
  const source = await connectToAgent(agent.url);
  cleanups.push(() => source.destroy());
  await source.send(encodeRecord(stubHello('inspected')));
  expect((await next(source)).type).toBe('ready');
  await driveToPrepared(source);
  await source.send(encodeRecord({ type: 'go' }));
  expect((await next(source)).type).toBe('resumed');
  const domain = backend.domains[0]!;
  domain.calls.length = 0;
  return { agent, domain, events };
}

test.each([['pause'], ['saveState']])('an inspection whose %s throws a plain Error is refused with ERR_DOMAIN_FAILED and the guest runs on', async (hook) => {
  const { agent, domain, events } = await agentRunningAGuest([hook]);
  const err = await queryAgent(agent.url, 'inspected', { inspect: true }).catch((e: unknown) => e);
  expect(err).toMatchObject({ code: 'ERR_PEER_ABORTED', peerCode: 'ERR_DOMAIN_FAILED' });
  expect((err as Error).message).toContain(`stub ${hook} broke`);
  expect(events).toContainEqual(expect.objectContaining({ type: 'connection-refused', error: expect.objectContaining({ code: 'ERR_DOMAIN_FAILED' }) }));
  expect(domain.calls.at(-1)).toBe('resume');
  expect(domain.paused).toBe(false);
  // The guest is still there, running, and a plain question is answered.
  expect(await queryAgent(agent.url, 'inspected')).toMatchObject({ state: 'running' });
});
