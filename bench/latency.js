// Latency benchmark: the same matrix as `livemig bench`, from the harness in harness/ as built to dist/bench/.
// Usage: npm run bench:latency -- [flags], or node --v8-pool-size=1 --initial-old-space-size=128 bench/latency.js [flags]
// (the Node options: see src/cli/node-flags.ts; --help lists the flags)
// Results go to bench/results/latency-<timestamp>/ unless --out says otherwise.
import { existsSync } from 'node:fs';

const command = new URL('../dist/bench/command.js', import.meta.url);
if (!existsSync(command)) {
  process.stderr.write('bench/latency.js: dist/ is missing; run "npm run build" first\n');
  process.exit(2);
}
// The collector the engine calls before a pause, as the livemig command has it.
await import(new URL('../dist/cli/expose-gc.js', import.meta.url).href);
const { runBench } = await import(command.href);
const { InvalidArgumentError, asMigrationError } = await import('livemig');

try {
  process.exitCode = await runBench(process.argv.slice(2));
} catch (err) {
  const error = asMigrationError(err);
  process.stderr.write(`bench/latency.js: ${error.code}: ${error.message}\n`);
  process.exitCode = error instanceof InvalidArgumentError ? 2 : 1;
}
