// The far end of the loopback benchmark: one process that hosts both a target agent and a raw
// WebSocket sink, so that migration and raw link are measured between the same two processes.
// Prints one JSON line with both URLs, then serves until killed.
import { TargetAgent } from '../dist/agent/target-agent.js';
import { listenWebSocket } from '../dist/transport/ws-transport.js';

const agent = await TargetAgent.start({ port: 0 });

// The sink reads frames and, after `expect` bytes (announced in the first frame as a decimal
// string), answers one frame with the count it saw.
const sink = await listenWebSocket({ port: 0 }, async (transport) => {
  const first = await transport.receive();
  if (first === undefined) return;
  const expected = Number(Buffer.from(first).toString());
  let seen = 0;
  while (seen < expected) {
    const frame = await transport.receive();
    if (frame === undefined) break;
    seen += frame.length;
  }
  await transport.send(Buffer.from(String(seen)));
  await transport.close();
});

process.stdout.write(`${JSON.stringify({ agentUrl: agent.url, sinkUrl: sink.url })}\n`);
process.on('SIGTERM', async () => {
  await agent.close();
  await sink.close();
  process.exit(0);
});
