// close() destroys every guest running on the agent, including one whose migration is inside the
// backend's resume when close() is called: the guest must not start running after the agent is gone.
import { expect, test } from 'vitest';
import { connectToAgent } from '../dist/agent/agent-client.js';
import { TargetAgent } from '../dist/agent/target-agent.js';
import { encodeRecord } from '../dist/protocol/codec.js';
import { driveToPrepared, next, StubBackend, stubHello } from './helpers/scripted-source.js';

const RESUME_MS = 300;

test('a guest resuming when close() is called is destroyed by the time close() resolves', async () => {
  const backend = new StubBackend(new Set(), RESUME_MS);
  const agent = await TargetAgent.start({ backends: [backend] });
  const source = await connectToAgent(agent.url);
  try {
    await source.send(encodeRecord(stubHello('closing')));
    expect((await next(source)).type).toBe('ready');
    await driveToPrepared(source);
    await source.send(encodeRecord({ type: 'go' }));
    const domain = backend.domains[0]!;
    while (!domain.calls.includes('resume')) await new Promise((resolve) => setTimeout(resolve, 5));

    await agent.close();
    expect(domain.calls).toEqual(['loadState', 'resume', 'destroy']);
    expect(agent.migrations.get('closing')?.domain).toBeUndefined();
    // Nothing revives it afterwards.
    await new Promise((resolve) => setTimeout(resolve, RESUME_MS));
    expect(domain.calls).toEqual(['loadState', 'resume', 'destroy']);
  } finally {
    source.destroy();
    await agent.close();
  }
});
