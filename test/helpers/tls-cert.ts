// A self-signed certificate for 127.0.0.1 and localhost. Made fresh with openssl when it is
// installed; otherwise the long-lived one in test/fixtures/tls (made the same way) stands in,
// because Node's crypto can make keys but not sign certificates.
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface TestCertificate {
  certPath: string;
  keyPath: string;
  /** How it was made: 'openssl' (fresh) or 'fixture'. */
  source: 'openssl' | 'fixture';
  remove(): Promise<void>;
}

const FIXTURE_DIR = fileURLToPath(new URL('../fixtures/tls/', import.meta.url));

function hasOpenssl(): boolean {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

export async function makeLoopbackCertificate(): Promise<TestCertificate> {
  if (!hasOpenssl()) {
    return {
      certPath: join(FIXTURE_DIR, 'loopback.crt'),
      keyPath: join(FIXTURE_DIR, 'loopback.key'),
      source: 'fixture',
      remove: async () => undefined,
    };
  }
  const dir = await mkdtemp(join(tmpdir(), 'livemig-tls-'));
  const certPath = join(dir, 'agent.crt');
  const keyPath = join(dir, 'agent.key');
  execFileSync(
    'openssl',
    [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
      '-keyout', keyPath, '-out', certPath, '-days', '1',
      '-subj', '/CN=livemig-test-agent', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost',
    ],
    { stdio: 'ignore' },
  );
  return { certPath, keyPath, source: 'openssl', remove: () => rm(dir, { recursive: true, force: true }) };
}
