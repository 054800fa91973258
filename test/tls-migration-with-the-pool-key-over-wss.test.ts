// wss://: an agent with a certificate and the pool key receives a live migration end to end; a
// client verifies the certificate by default and says what to do when it cannot.
import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, expect, test } from 'vitest';

import { connectToAgent, queryAgent } from '../dist/agent/agent-client.js';
import { generateKey } from '../dist/agent/key-file.js';
import { TargetAgent } from '../dist/agent/target-agent.js';
import { connectWebSocket } from '../dist/transport/ws-connect.js';
import { REAL_GUEST, startRealMigration } from './helpers/hostile-peer.js';
import { expectGuestMatchesOracle } from './helpers/target-memory.js';
import { makeLoopbackCertificate, type TestCertificate } from './helpers/tls-cert.js';

let cert: TestCertificate;
let agent: TargetAgent;
const key = generateKey();

beforeAll(async () => {
  cert = await makeLoopbackCertificate();
  agent = await TargetAgent.start({ key, tls: { cert: cert.certPath, key: cert.keyPath } });
});

afterAll(async () => {
  await agent?.close();
  await cert?.remove();
});

test('a guest migrates live over wss with the pool key, and the agent answers queries there', async () => {
  expect(agent.url).toMatch(/^wss:\/\/127\.0\.0\.1:\d+$/);
  const real = await startRealMigration(agent.url, { key, tls: { ca: cert.certPath } });
  try {
    const report = await real.report;
    expect(report.error).toBeUndefined();
    expect(report.outcome).toBe('completed');
    expect(report.verified).toBe(true);
    expect(report.guestRunningOn).toBe('target');
    // What arrived over TLS is the guest: the agent's copy runs on from the source's paused one.
    const atPause = await expectGuestMatchesOracle(real.guest, REAL_GUEST);
    await expectGuestMatchesOracle(agent.migrations.get(report.migrationId)?.domain, REAL_GUEST, atPause);
    // The CA may be given as PEM bytes as well as a path.
    const pem = await readFile(cert.certPath);
    const status = await queryAgent(agent.url, report.migrationId, { key, tls: { ca: pem } });
    expect(status.state).toBe('running');
  } finally {
    await real.guest.destroy();
  }
});

test('a certificate the client does not trust is refused with ERR_CONNECT_FAILED, saying how to trust it', async () => {
  const err = await connectToAgent(agent.url, { key }).catch((e: unknown) => e);
  expect(err).toMatchObject({ code: 'ERR_CONNECT_FAILED' });
  expect((err as Error).message).toMatch(/certificate was not accepted.*--tls-ca/);
});

test('a certificate that does not name the host is refused', async () => {
  // The certificate names 127.0.0.1 and localhost; check it against another name.
  const err = await connectWebSocket(agent.url, { tls: { ca: cert.certPath, servername: 'not-this-host.test' } }).catch((e: unknown) => e);
  expect(err).toMatchObject({ code: 'ERR_CONNECT_FAILED', message: expect.stringMatching(/does not name the host/) });
});

test('the pool key is still required over TLS', async () => {
  await expect(connectToAgent(agent.url, { key: generateKey(), tls: { ca: cert.certPath } })).rejects.toMatchObject({
    code: 'ERR_AUTH_FAILED',
  });
  await expect(connectToAgent(agent.url, { tls: { ca: cert.certPath } })).rejects.toMatchObject({ code: 'ERR_AUTH_FAILED' });
});

test('ws:// to a TLS agent, wss:// to a plain one, and TLS options on a ws:// URL are refused clearly', async () => {
  const plain = await TargetAgent.start({ key });
  try {
    await expect(connectToAgent(agent.url.replace('wss://', 'ws://'), { key })).rejects.toMatchObject({
      code: 'ERR_CONNECT_FAILED',
      message: expect.stringMatching(/wss:\/\//),
    });
    await expect(connectToAgent(plain.url.replace('ws://', 'wss://'), { key, tls: { ca: cert.certPath } })).rejects.toMatchObject({
      code: 'ERR_CONNECT_FAILED',
      message: expect.stringMatching(/does not speak TLS/),
    });
    await expect(connectToAgent(plain.url, { key, tls: { ca: cert.certPath } })).rejects.toMatchObject({
      code: 'ERR_INVALID_ARGUMENT',
      message: expect.stringMatching(/not a wss:\/\/ URL/),
    });
  } finally {
    await plain.close();
  }
});

test('an agent whose certificate cannot be read or used does not start', async () => {
  await expect(TargetAgent.start({ key, tls: { cert: '/nonexistent/agent.crt', key: cert.keyPath } })).rejects.toMatchObject({
    code: 'ERR_INVALID_ARGUMENT',
    message: expect.stringMatching(/TLS certificate.*\/nonexistent\/agent\.crt/),
  });
  const garbage = '-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n';
  await expect(TargetAgent.start({ key, tls: { cert: garbage, key: cert.keyPath } })).rejects.toMatchObject({
    code: 'ERR_INVALID_ARGUMENT',
    message: expect.stringMatching(/cannot use the TLS certificate and key/),
  });
});
