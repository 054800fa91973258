/**
 * TLS settings of `wss://`: what a listener presents and what a client trusts, given as paths,
 * PEM text or bytes, and read into what Node's `https` and `ws` take.
 */

import { readFile } from 'node:fs/promises';
import type https from 'node:https';
import { InvalidArgumentError } from '../errors.js';
import { describeError } from './describe-error.js';

/**
 * PEM material: a path to a PEM file, the PEM text itself (a string starting with `-----BEGIN`),
 * or its bytes.
 */
export type PemSource = string | Uint8Array;

/** TLS of a listener: `wss://` instead of `ws://`. */
export interface TlsListenOptions {
  /** The certificate chain the listener presents, leaf first (PEM). */
  cert: PemSource;
  /** The certificate's private key (PEM, unencrypted). */
  key: PemSource;
}

/** TLS of a client connecting to a `wss://` URL. */
export interface TlsConnectOptions {
  /**
   * Certificate authorities to trust instead of the system's, e.g. the listener's self-signed
   * certificate (PEM).
   * @default the system's CAs
   */
  ca?: PemSource;
  /**
   * Verify the listener's certificate and that it names the host of the URL. Turning this off
   * lets anyone on the path impersonate the listener; it exists for experiments only.
   * @default true
   */
  rejectUnauthorized?: boolean;
  /**
   * Host name to check the certificate against, when it differs from the URL's host.
   * @default the URL's host
   */
  servername?: string;
}

/** What `ws` passes on to `tls.connect`; its type definitions omit `servername`. */
export interface ClientTlsSettings {
  ca?: string | Buffer | Array<string | Buffer>;
  rejectUnauthorized?: boolean;
  servername?: string;
}

/**
 * Reads a client's TLS settings; none for a plain `ws://` client.
 * @throws InvalidArgumentError if the CA cannot be read.
 */
export async function clientTlsOptions(tls: TlsConnectOptions | undefined): Promise<ClientTlsSettings> {
  if (tls === undefined) return {};
  const options: ClientTlsSettings = { rejectUnauthorized: tls.rejectUnauthorized ?? true };
  if (tls.ca !== undefined) options.ca = await loadPem(tls.ca, 'the trusted CA certificate (tls.ca)');
  if (tls.servername !== undefined) options.servername = tls.servername;
  return options;
}

/**
 * Reads a listener's certificate and key; `undefined` for a plain `ws://` listener.
 * @throws InvalidArgumentError if either is missing or cannot be read.
 */
export async function serverTlsOptions(tls: TlsListenOptions | undefined): Promise<https.ServerOptions | undefined> {
  if (tls === undefined) return undefined;
  if (typeof tls !== 'object' || tls === null || tls.cert === undefined || tls.key === undefined) {
    throw new InvalidArgumentError('TLS needs both a certificate (tls.cert) and its private key (tls.key)');
  }
  return {
    cert: await loadPem(tls.cert, 'the TLS certificate (tls.cert)'),
    key: await loadPem(tls.key, 'the TLS private key (tls.key)'),
  };
}

/** Reads PEM material given as a path, as PEM text, or as bytes. */
async function loadPem(source: PemSource, what: string): Promise<Buffer> {
  if (source instanceof Uint8Array) return Buffer.from(source.buffer, source.byteOffset, source.length);
  if (typeof source !== 'string' || source === '') {
    throw new InvalidArgumentError(`${what} must be a path to a PEM file, PEM text or PEM bytes`);
  }
  if (source.startsWith('-----BEGIN')) return Buffer.from(source, 'utf8');
  try {
    return await readFile(source);
  } catch (err) {
    throw new InvalidArgumentError(`cannot read ${what} from ${source}: ${describeError(err)}`);
  }
}
