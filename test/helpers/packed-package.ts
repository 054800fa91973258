// The package as an embedder receives it: `npm pack` of the built tree (dist/ must be built),
// unpacked into node_modules/livemig of an empty project beside its runtime dependencies and
// nothing else. The dependencies are linked from this checkout rather than downloaded, so the
// project sees exactly what `npm install livemig` would give it, devDependencies excepted.
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, realpath, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));

export interface PackedProject {
  /** The embedder's project: its node_modules holds livemig and livemig's dependencies. */
  dir: string;
  /** Where the package was unpacked: `dir`/node_modules/livemig. */
  packageDir: string;
  /** Every path in the tarball, relative to the package root. */
  files: string[];
  remove(): Promise<void>;
}

/**
 * Packs this checkout and installs the tarball into a fresh project. `devTypes` names packages
 * the embedder installed for itself (say `@types/node`), linked beside livemig.
 */
export async function installPackedPackage(devTypes: string[] = []): Promise<PackedProject> {
  const dir = await realpath(await mkdtemp(join(tmpdir(), 'livemig-embedder-')));
  try {
    const { stdout } = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', dir], { cwd: ROOT });
    const [packed] = JSON.parse(stdout) as Array<{ filename: string; files: Array<{ path: string }> }>;
    const packageDir = join(dir, 'node_modules', 'livemig');
    await mkdir(packageDir, { recursive: true });
    await run('tar', ['-xzf', join(dir, packed!.filename), '-C', packageDir, '--strip-components=1']);
    const manifest = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { dependencies?: Record<string, string> };
    for (const name of [...Object.keys(manifest.dependencies ?? {}), ...devTypes]) {
      const link = join(dir, 'node_modules', name);
      await mkdir(dirname(link), { recursive: true });
      await symlink(await realpath(join(ROOT, 'node_modules', name)), link, 'dir');
    }
    return {
      dir,
      packageDir,
      files: packed!.files.map((f) => f.path),
      remove: () => rm(dir, { recursive: true, force: true }),
    };
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

/** Runs `node args...` in `cwd`; resolves with its output whatever its exit code. */
export async function runNode(args: string[], cwd: string, timeoutMs = 60_000): Promise<{ code: number; stdout: string; stderr: string }> {
  return runCommand(process.execPath, args, cwd, timeoutMs);
}

/** Runs a command in `cwd`; resolves with its output whatever its exit code. */
export async function runCommand(
  command: string,
  args: string[],
  cwd: string,
  timeoutMs = 60_000,
): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(command, args, { cwd, timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: unknown; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? String(err) };
  }
}
