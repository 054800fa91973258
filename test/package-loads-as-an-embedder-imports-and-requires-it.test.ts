// The package as an embedder meets it: packed, installed into a project of its own, loaded by
// its name through package.json `exports` (never by a path into this checkout), from an ES
// module and from CommonJS, and used there to migrate a guest to a target agent in the same
// process.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { installPackedPackage, runNode, type PackedProject } from './helpers/packed-package.js';

let project: PackedProject;
beforeAll(async () => {
  project = await installPackedPackage();
  await writeFile(join(project.dir, 'package.json'), JSON.stringify({ name: 'embedder', private: true }));
});
afterAll(async () => project?.remove());

/** Runs `source` as `file` in the embedder's project; its last output line is JSON. */
async function runScript(file: string, source: string): Promise<Record<string, unknown>> {
  await writeFile(join(project.dir, file), source);
  const { code, stdout, stderr } = await runNode([file], project.dir, 90_000);
  expect(stderr).toBe('');
  expect(code).toBe(0);
  return JSON.parse(stdout.trim().split('\n').at(-1)!) as Record<string, unknown>;
}

test('an ES module imports livemig by name and migrates a 64 MiB guest to an agent in its own process', async () => {
  const result = await runScript(
    'embed.mjs',
    `
import { migrate, TargetAgent, SimulatedGuest, connectToAgent, queryAgent, DEFAULT_SIM_CONFIG } from 'livemig';

const agent = await TargetAgent.start();
const guest = await SimulatedGuest.boot(
  { ...DEFAULT_SIM_CONFIG, memoryBytes: 64 * 1024 * 1024, workload: 'hotset', hotSetBytes: 4 * 1024 * 1024, dirtyRateBytesPerSec: 10e6, seed: 3 },
  'embedded',
);
const report = await migrate(guest, await connectToAgent(agent.url), { targetName: agent.url });
const status = await queryAgent(agent.url, report.migrationId);
await agent.close();
await guest.destroy();
console.log(JSON.stringify({ outcome: report.outcome, verified: report.verified, error: report.error, pages: report.rounds.reduce((n, r) => n + r.pages, 0), agentSays: status.state }));
`,
  );
  expect(result.error).toBeUndefined();
  expect(result.outcome).toBe('completed');
  expect(result.verified).toBe(true);
  expect(result.agentSays).toBe('running');
  // Every page of the guest crossed at least once.
  expect(result.pages).toBeGreaterThanOrEqual((64 * 1024 * 1024) / 4096);
});

test('CommonJS requires livemig by name and gets the same API', async () => {
  const result = await runScript(
    'embed.cjs',
    `
const livemig = require('livemig');
(async () => {
  const agent = await livemig.TargetAgent.start();
  const status = await livemig.queryAgent(agent.url, 'no-such-migration');
  await agent.close();
  const imported = await import('livemig');
  const names = (api) => Object.keys(api).filter((name) => name !== 'default' && name !== '__esModule').sort();
  console.log(JSON.stringify({
    sameNamesAsImport: names(livemig).length > 0 && JSON.stringify(names(livemig)) === JSON.stringify(names(imported)),
    migrate: typeof livemig.migrate,
    estimateMigration: typeof livemig.estimateMigration,
    acceptMigration: typeof livemig.acceptMigration,
    MemoryTransport: typeof livemig.MemoryTransport,
    errorCode: new livemig.TimeoutError('x').code,
    agentSays: status.state,
  }));
})();
`,
  );
  expect(result).toEqual({
    sameNamesAsImport: true,
    migrate: 'function',
    estimateMigration: 'function',
    acceptMigration: 'function',
    MemoryTransport: 'function',
    errorCode: 'ERR_TIMEOUT',
    agentSays: 'unknown',
  });
});

test('a path into the package that the exports do not list is refused, by import and by require', async () => {
  const result = await runScript(
    'deep.mjs',
    `
import { createRequire } from 'node:module';
const codeOf = async (load) => { try { await load(); return 'loaded'; } catch (err) { return err.code; } };
console.log(JSON.stringify({
  imported: await codeOf(() => import('livemig/dist/precopy/migration.js')),
  required: await codeOf(() => createRequire(import.meta.url)('livemig/dist/precopy/migration.js')),
}));
`,
  );
  expect(result).toEqual({ imported: 'ERR_PACKAGE_PATH_NOT_EXPORTED', required: 'ERR_PACKAGE_PATH_NOT_EXPORTED' });
});
