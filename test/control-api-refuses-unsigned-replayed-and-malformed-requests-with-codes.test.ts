// The control API of a `livemig host` process that holds the pool key: a request that does not
// prove the key (unsigned, another key, altered, replayed, stale) gets 401 ERR_AUTH_FAILED; a
// malformed one gets 400 with ERR_MALFORMED_RECORD or ERR_INVALID_ARGUMENT; an unknown id 404
// ERR_NOT_FOUND; every error body is { error: { code, message } }. /metrics takes the bearer
// token derived from the key.
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { controlKey, metricsToken, signRequest } from '../dist/agent/control-auth.js';
import { ControlClient } from '../dist/agent/control-client.js';
import { generateKey, writeKeyFile } from '../dist/agent/key-file.js';
import { runLivemig, startHostProcess, type HostProcess } from './helpers/host-process.js';

let dir: string;
let keyFile: string;
let key: Uint8Array;
let host: HostProcess;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'livemig-control-'));
  keyFile = join(dir, 'pool.key');
  key = await writeKeyFile(keyFile);
  host = await startHostProcess('C', ['--capacity', '64MiB', '--key-file', keyFile], key);
});

afterAll(async () => {
  await host?.stop();
  rmSync(dir, { recursive: true, force: true });
});

interface Raw {
  status: number;
  body: string;
  json?: { error?: { code: string; message: string } };
}

/** Sends one request as given: `authorization` as is, or none. */
function raw(method: string, path: string, body: string | Buffer = '', headers: Record<string, string> = {}): Promise<Raw> {
  const url = new URL(host.url);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: url.hostname, port: url.port, method, path, headers: { ...headers, 'content-length': Buffer.byteLength(body) }, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json;
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode!, body: text, json });
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** A request signed with `withKey` (the pool key unless told), at `nowMs`. */
function signed(method: string, path: string, body = '', withKey: Uint8Array = key, nowMs?: number): Promise<Raw> {
  const signature = signRequest(controlKey(withKey), method, path, Buffer.from(body), nowMs);
  return raw(method, path, body, { authorization: signature.authorization });
}

function expectError(answer: Raw, status: number, code: string): void {
  expect(answer.status, answer.body).toBe(status);
  expect(answer.json?.error?.code).toBe(code);
  expect(answer.json?.error?.message.length).toBeGreaterThan(10);
}

test('requests that do not prove the pool key are refused with 401 ERR_AUTH_FAILED', async () => {
  expect((await signed('GET', '/v1/host')).status).toBe(200);
  expectError(await raw('GET', '/v1/host'), 401, 'ERR_AUTH_FAILED');
  expectError(await raw('GET', '/v1/guests', '', { authorization: 'Bearer nothing' }), 401, 'ERR_AUTH_FAILED');
  expectError(await signed('GET', '/v1/host', '', generateKey()), 401, 'ERR_AUTH_FAILED');
  expectError(await signed('GET', '/v1/host', '', key, Date.now() - 5 * 60_000), 401, 'ERR_AUTH_FAILED');
  // A signature over one request does not carry another: another path, another body.
  const signature = signRequest(controlKey(key), 'POST', '/v1/host/maintenance', Buffer.from('{"enabled":false}'));
  expectError(await raw('POST', '/v1/host/maintenance', '{"enabled":true}', { authorization: signature.authorization }), 401, 'ERR_AUTH_FAILED');
  const other = signRequest(controlKey(key), 'GET', '/v1/host', Buffer.alloc(0));
  expectError(await raw('GET', '/v1/guests', '', { authorization: other.authorization }), 401, 'ERR_AUTH_FAILED');
  // A replay of a request that went through is refused.
  const once = signRequest(controlKey(key), 'GET', '/v1/migrations', Buffer.alloc(0));
  expect((await raw('GET', '/v1/migrations', '', { authorization: once.authorization })).status).toBe(200);
  expectError(await raw('GET', '/v1/migrations', '', { authorization: once.authorization }), 401, 'ERR_AUTH_FAILED');
  // Nothing refused changed anything.
  expect(await host.client.host()).toMatchObject({ maintenance: false, guests: 0 });
  // The client with another key is refused, and says so by code.
  await expect(new ControlClient(host.url, { key: generateKey() }).host()).rejects.toMatchObject({ code: 'ERR_AUTH_FAILED' });
  const cli = runLivemig(['host', 'status', '--host', host.url]);
  expect(cli.status).toBe(1);
  expect(cli.stderr).toContain('ERR_AUTH_FAILED');
});

test('malformed requests get 400 with a code; unknown ids 404; a body past the limit 413', async () => {
  expectError(await signed('POST', '/v1/guests', '{"name": "x", memoryBytes: 1}'), 400, 'ERR_MALFORMED_RECORD');
  expectError(await signed('POST', '/v1/guests', '[]'), 400, 'ERR_INVALID_ARGUMENT');
  expectError(await signed('POST', '/v1/guests', '{"name":"x","memoryBytes":-4096}'), 400, 'ERR_INVALID_ARGUMENT');
  expectError(await signed('POST', '/v1/guests', '{"name":"x","memoryBytes":4096,"colour":"red"}'), 400, 'ERR_INVALID_ARGUMENT');
  expectError(await signed('POST', '/v1/guests', '{"name":"x","memoryBytes":1000}'), 400, 'ERR_INVALID_ARGUMENT');
  expectError(await signed('POST', '/v1/guests', '{"name":"x","memoryBytes":4194304,"kind":"qemu"}'), 400, 'ERR_UNKNOWN_BACKEND');
  expectError(await signed('POST', '/v1/host/maintenance', '{"enabled":"yes"}'), 400, 'ERR_INVALID_ARGUMENT');
  expectError(await signed('POST', '/v1/guests/nope/migrate', '{"to":"http://127.0.0.1:1"}'), 404, 'ERR_NOT_FOUND');
  expectError(await signed('GET', '/v1/guests/nope'), 404, 'ERR_NOT_FOUND');
  expectError(await signed('GET', '/v1/migrations/nope'), 404, 'ERR_NOT_FOUND');
  expectError(await signed('DELETE', '/v1/migrations/nope'), 404, 'ERR_NOT_FOUND');
  expectError(await signed('GET', '/v1/teapots'), 404, 'ERR_NOT_FOUND');
  expectError(await signed('PUT', '/v1/host'), 405, 'ERR_INVALID_ARGUMENT');
  expectError(await signed('POST', '/v1/guests', JSON.stringify({ name: 'x'.repeat(70_000), memoryBytes: 4096 })), 413, 'ERR_LIMIT_EXCEEDED');
  expectError(await signed('POST', '/v1/host/evacuate', '{}'), 501, 'ERR_NOT_FOUND');
  // Capacity is checked before a guest boots.
  expectError(await signed('POST', '/v1/guests', '{"name":"huge","memoryBytes":134217728}'), 507, 'ERR_INSUFFICIENT_CAPACITY');
  // A guest that does start answers 201 with its id; migrating it to a host that is no URL is refused.
  const started = await signed('POST', '/v1/guests', '{"name":"ok","memoryBytes":4194304,"config":{"workload":"idle"}}');
  expect(started.status).toBe(201);
  const id = (JSON.parse(started.body) as { id: string }).id;
  expectError(await signed('POST', `/v1/guests/${id}/migrate`, '{"to":"somewhere"}'), 400, 'ERR_INVALID_ARGUMENT');
  expectError(await signed('POST', `/v1/guests/${id}/migrate`, '{"to":"http://127.0.0.1:1","codec":"zip"}'), 400, 'ERR_INVALID_ARGUMENT');
  expect((await signed('DELETE', `/v1/guests/${id}`)).status).toBe(200);
  expectError(await signed('DELETE', `/v1/guests/${id}`), 404, 'ERR_NOT_FOUND');
});

test('/metrics answers the bearer token derived from the pool key, and nothing else unsigned', async () => {
  const scraped = await raw('GET', '/metrics', '', { authorization: `Bearer ${metricsToken(key)}` });
  expect(scraped.status).toBe(200);
  expect(scraped.body).toMatch(/^livemig_memory_free_bytes \d+$/m);
  expect(scraped.body).toMatch(/^livemig_memory_capacity_bytes 67108864$/m);
  expect(scraped.body).toContain('livemig_migrations_in_flight{direction="out"} 0');
  expect(scraped.body).toContain('process_resident_memory_bytes');
  expectError(await raw('GET', '/metrics', '', { authorization: `Bearer ${metricsToken(generateKey())}` }), 401, 'ERR_AUTH_FAILED');
  // The token opens /metrics only.
  expectError(await raw('GET', '/v1/host', '', { authorization: `Bearer ${metricsToken(key)}` }), 401, 'ERR_AUTH_FAILED');
  const token = runLivemig(['host', 'metrics-token', '--key-file', keyFile]);
  expect(token.stdout.trim()).toBe(metricsToken(key));
});
