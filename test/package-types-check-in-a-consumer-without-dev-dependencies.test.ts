// An embedder type-checks its own code against the published declarations with
// `skipLibCheck: false`, in a project that holds livemig, its dependencies and @types/node, but
// none of livemig's devDependencies: every declaration the package ships must resolve there.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { installPackedPackage, ROOT, runNode, type PackedProject } from './helpers/packed-package.js';

const TSC = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');

let project: PackedProject;
beforeAll(async () => {
  project = await installPackedPackage(['@types/node']);
  await writeFile(join(project.dir, 'package.json'), JSON.stringify({ name: 'embedder', private: true, type: 'module' }));
});
afterAll(async () => project?.remove());

/** What an embedder writes: the API by its public names, options typed by their own names. */
const CONSUMER = `
import {
  acceptMigration,
  connectToAgent,
  connectWebSocket,
  createMemoryTransportPair,
  DEFAULT_DOWNTIME_BUDGET_MS,
  DEFAULT_MAX_CONCURRENT_MIGRATIONS,
  DEFAULT_OUTCOME_MEMORY_MS,
  DEFAULT_PROGRESS_INTERVAL_MS,
  DEFAULT_SIM_CONFIG,
  estimateMigration,
  listenWebSocket,
  MemoryTransport,
  migrate,
  MigrationError,
  SimTargetBackend,
  SimulatedGuest,
  TargetAgent,
  type ConnectWebSocketOptions,
  type EstimateOptions,
  type IncomingOptions,
  type ListenWebSocketOptions,
  type MigrateOptions,
  type MigrationEstimate,
  type MigrationReport,
  type TargetAgentOptions,
  type Transport,
  type WebSocketTransport,
} from 'livemig';

const agentOptions: TargetAgentOptions = { maxConcurrentMigrations: DEFAULT_MAX_CONCURRENT_MIGRATIONS, outcomeMemoryMs: DEFAULT_OUTCOME_MEMORY_MS };
const migrateOptions: MigrateOptions = { downtimeBudgetMs: DEFAULT_DOWNTIME_BUDGET_MS, progressIntervalMs: DEFAULT_PROGRESS_INTERVAL_MS };
const estimateOptions: EstimateOptions = { bandwidthBytesPerSec: 1e9 };
const connectOptions: ConnectWebSocketOptions = { connectTimeoutMs: 1000 };
const listenOptions: ListenWebSocketOptions = { maxConnections: 2 };

export async function embed(): Promise<string> {
  const agent = await TargetAgent.start(agentOptions);
  const guest = await SimulatedGuest.boot({ ...DEFAULT_SIM_CONFIG, memoryBytes: 64 * 1024 * 1024 });
  const estimate: MigrationEstimate = await estimateMigration(guest, estimateOptions);
  const report: MigrationReport = await migrate(guest, await connectToAgent(agent.url), migrateOptions);
  const [a, b] = createMemoryTransportPair();
  const local: MemoryTransport = a;
  const incomingOptions: IncomingOptions = { backends: new Map([['sim', new SimTargetBackend()]]) };
  void acceptMigration(b, incomingOptions);
  const link: WebSocketTransport = await connectWebSocket(agent.url, connectOptions);
  const asTransport: Transport = link;
  const listener = await listenWebSocket(listenOptions, (t: WebSocketTransport) => t.destroy());
  await Promise.all([listener.close(), asTransport.close(), local.close(), agent.close()]);
  if (report.error instanceof MigrationError) return report.error.code;
  return \`\${report.outcome} \${estimate.advice}\`;
}
`;

/** Type-checks `file` alone, as an embedder's strict project with library checks on would. */
async function typeCheck(file: string, source: string): Promise<{ code: number; output: string }> {
  await writeFile(join(project.dir, file), source);
  const config = `tsconfig.${file}.json`;
  await writeFile(
    join(project.dir, config),
    JSON.stringify({
      compilerOptions: {
        target: 'ES2022',
        module: 'NodeNext',
        moduleResolution: 'NodeNext',
        strict: true,
        noEmit: true,
        skipLibCheck: false,
        types: ['node'],
      },
      files: [file],
    }),
  );
  const { code, stdout, stderr } = await runNode([TSC, '-p', config], project.dir);
  return { code, output: stdout + stderr };
}

test('an ES module consumer type-checks against the shipped declarations, skipLibCheck off', async () => {
  const { code, output } = await typeCheck('consumer.mts', CONSUMER);
  expect(output).toBe('');
  expect(code).toBe(0);
});

test('a CommonJS consumer type-checks against them too', async () => {
  const { code, output } = await typeCheck(
    'consumer.cts',
    `import { migrate, TargetAgent, type MigrateOptions } from 'livemig';\n` +
      `export const start: typeof TargetAgent.start = (o) => TargetAgent.start(o);\n` +
      `export const options: MigrateOptions = {};\nexport const run: typeof migrate = migrate;\n`,
  );
  expect(output).toBe('');
  expect(code).toBe(0);
});

test('a consumer that misuses the API is told so: the check has teeth', async () => {
  const { code, output } = await typeCheck(
    'misuse.mts',
    `import { TargetAgent } from 'livemig';\nexport const agent = TargetAgent.start({ maxConcurrentMigrations: 'four' });\n`,
  );
  expect(code).not.toBe(0);
  expect(output).toMatch(/misuse\.mts.*TS2322/);
});
