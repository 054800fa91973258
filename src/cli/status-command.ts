/** `livemig status`: ask an agent what became of a migration. */

import { queryAgent } from '../agent/agent-client.js';
import { InvalidArgumentError } from '../errors.js';
import { agentUrlFlag, CONNECT_FLAGS, CONNECT_HELP, connectOptionsFromFlags, parse } from './args.js';

export const STATUS_HELP = `usage: livemig status --to ws://HOST:PORT --id MIGRATION_ID [flags]

Asks the agent what became of a migration: receiving, prepared, running, discarded or unknown.

  --to URL               the agent: ws://HOST:PORT or wss://HOST:PORT
  --id ID                the migration id (in the report, and in every message about it)
${CONNECT_HELP}
  --json                 one JSON object on stdout
`;

export async function status(args: string[]): Promise<number> {
  const { values } = parse(args, { ...CONNECT_FLAGS, to: { type: 'string' }, id: { type: 'string' }, json: { type: 'boolean' } } as const);
  const to = agentUrlFlag(values.to, 'status');
  if (values.id === undefined) throw new InvalidArgumentError('status needs --to URL and --id MIGRATION_ID');
  const answer = await queryAgent(to, values.id, await connectOptionsFromFlags(values, to));
  process.stdout.write(values.json ? `${JSON.stringify({ migrationId: answer.migrationId, state: answer.state })}\n` : `${answer.migrationId}: ${answer.state}\n`);
  return 0;
}
