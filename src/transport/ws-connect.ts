/**
 * Opening a migration connection: `connectWebSocket` dials a `ws://` or `wss://` URL, waits for
 * the upgrade within a deadline, and turns every way it can fail into ERR_CONNECT_FAILED with a
 * hint, or ERR_LIMIT_EXCEEDED when the listener is at its connection limit.
 */

import type http from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocket } from 'ws';
import { ConnectFailedError, InvalidArgumentError, LimitExceededError } from '../errors.js';
import { checkTimeoutMs, isDeadline } from '../util/deadline.js';
import { describeError, ignoreError } from './describe-error.js';
import { clientTlsOptions, type ClientTlsSettings, type TlsConnectOptions } from './tls.js';
import {
  resolveWebSocketOptions,
  wsCloseTimeout,
  type ResolvedWebSocketOptions,
  type WebSocketTransportOptions,
} from './ws-options.js';
import { wrapWebSocket, type WebSocketTransport } from './ws-transport.js';

/** How long `connectWebSocket` may take, DNS to finished handshake, in milliseconds. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;

/** OpenSSL and Node error codes of a certificate that did not verify. */
const CERTIFICATE_ERROR = /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER|ALTNAME/;

/**
 * RFC 6455 wants client frames masked with an unpredictable key so that scripts in a browser
 * cannot craft bytes a caching proxy would misread. A migration stream runs between two agents
 * of ours, never from a browser, so the key is all zero: `ws` then skips the XOR pass and the copy
 * it needs for it, which raises the loopback throughput of 1 MiB frames by about a fifth.
 */
function zeroMask(mask: Buffer): void {
  mask.fill(0);
}

/** Options of {@link connectWebSocket}. */
export interface ConnectWebSocketOptions extends WebSocketTransportOptions {
  /**
   * Deadline for the whole connection attempt, in milliseconds. Infinity, or anything beyond
   * 2^31-1 ms (about 24.8 days), is no deadline.
   * @default DEFAULT_CONNECT_TIMEOUT_MS (10 s)
   */
  connectTimeoutMs?: number;
  /** TLS settings, for `wss://` URLs only. @default system CAs, verification on */
  tls?: TlsConnectOptions;
}

/**
 * Opens a migration connection to `url` (`ws://host:port`). Rejects with ERR_CONNECT_FAILED when
 * the URL is not a WebSocket URL, the host cannot be reached or refuses, the server answers
 * without upgrading, or `connectTimeoutMs` passes, and with ERR_LIMIT_EXCEEDED when the server
 * answers HTTP 503 (a target agent at its connection limit); no socket is left behind then.
 */
export function connectWebSocket(url: string, options: ConnectWebSocketOptions = {}): Promise<WebSocketTransport> {
  let transportOptions: ResolvedWebSocketOptions;
  let connectTimeoutMs: number;
  try {
    transportOptions = resolveWebSocketOptions(options);
    connectTimeoutMs = checkTimeoutMs('connectTimeoutMs', options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS);
  } catch (err) {
    return Promise.reject(err);
  }
  if (options.tls !== undefined && !/^wss:/i.test(url)) {
    return Promise.reject(
      new InvalidArgumentError(`TLS options were given but ${JSON.stringify(url)} is not a wss:// URL; use wss://host:port`),
    );
  }
  return clientTlsOptions(options.tls).then((tls) => openWebSocket(url, transportOptions, connectTimeoutMs, tls));
}

/**
 * Dials `url` and waits for the upgrade; on any failure, or at the deadline, the socket is
 * terminated before the promise rejects, so nothing is left behind.
 */
function openWebSocket(
  url: string,
  transportOptions: ResolvedWebSocketOptions,
  connectTimeoutMs: number,
  tls: ClientTlsSettings,
): Promise<WebSocketTransport> {
  return new Promise((resolve, reject) => {
    let ws: WebSocket;
    let socket: Duplex | undefined;
    try {
      ws = new WebSocket(url, { ...tls, ...wsClientOptions(transportOptions) });
    } catch (err) {
      reject(
        new ConnectFailedError(`cannot connect to ${JSON.stringify(url)}: ${describeError(err)}; expected a URL like ws://host:port`, {
          cause: err,
        }),
      );
      return;
    }

    const settle = (error: ConnectFailedError | LimitExceededError | undefined): void => {
      clearTimeout(timer);
      ws.off('open', onOpen);
      ws.off('error', onError);
      ws.off('upgrade', onUpgrade);
      ws.off('unexpected-response', onUnexpectedResponse);
      if (error) {
        // `ws` may still report the aborted handshake; nobody listens for it any more.
        ws.on('error', ignoreError);
        ws.terminate();
        reject(error);
        return;
      }
      try {
        resolve(wrapWebSocket(ws, transportOptions, socket));
      } catch (err) {
        ws.on('error', ignoreError);
        ws.terminate();
        reject(err);
      }
    };
    const onOpen = (): void => settle(undefined);
    const onUpgrade = (res: http.IncomingMessage): void => {
      socket = res.socket;
    };
    const onError = (err: Error): void => settle(new ConnectFailedError(`could not connect to ${url}: ${connectHint(url, err)}`, { cause: err }));
    const onUnexpectedResponse = (_req: http.ClientRequest, res: http.IncomingMessage): void =>
      settle(upgradeRefusedError(url, res));
    const timer = isDeadline(connectTimeoutMs)
      ? setTimeout(
          () =>
            settle(
              new ConnectFailedError(
                `timed out after ${connectTimeoutMs} ms connecting to ${url}; check the host, port and network path, or raise connectTimeoutMs`,
              ),
            ),
          connectTimeoutMs,
        )
      : undefined;
    ws.on('open', onOpen);
    ws.on('error', onError);
    ws.on('upgrade', onUpgrade);
    ws.on('unexpected-response', onUnexpectedResponse);
  });
}

/**
 * The error for a server that answered the upgrade request with a plain HTTP response. A target
 * at its connection limit (503) is up and will take the migration later: a caller retries it,
 * where a target that cannot be reached is one to give up on or replace.
 */
function upgradeRefusedError(url: string, res: http.IncomingMessage): ConnectFailedError | LimitExceededError {
  const answered = `${url} answered HTTP ${res.statusCode} ${res.statusMessage ?? ''} instead of accepting a WebSocket`;
  return res.statusCode === 503
    ? new LimitExceededError(`${answered}; the target is at its connection limit: try again once a migration there has finished`)
    : new ConnectFailedError(`${answered}; check that the URL points at a livemig target agent`);
}

/** What went wrong opening a connection to `url`, and what to do about it. */
function connectHint(url: string, err: Error): string {
  const code = (err as { code?: unknown }).code;
  const text = describeError(err);
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
    return `the listener's TLS certificate does not name the host of the URL: ${text}; connect by a name or address the certificate lists, or set tls.servername`;
  }
  if (typeof code === 'string' && CERTIFICATE_ERROR.test(code)) {
    return (
      `the listener's TLS certificate was not accepted: ${text} (${code}); trust the certificate of the CA that signed it, ` +
      'or the self-signed certificate itself (tls.ca, --tls-ca PATH)'
    );
  }
  if (code === 'EPROTO' || /wrong version number|packet length too long/i.test(text)) {
    return 'the listener does not speak TLS at that address (the TLS handshake failed); use a ws:// URL, or start the agent with a certificate';
  }
  const plainToTls = /^ws:/i.test(url) && (code === 'ECONNRESET' || /socket hang up/i.test(text));
  return (
    `${text}; check that a livemig target is listening at that address and that the network lets it through` +
    (plainToTls ? ' (an agent started with a TLS certificate listens on wss://)' : '')
  );
}

function wsClientOptions(options: ResolvedWebSocketOptions): WebSocket.ClientOptions {
  return {
    perMessageDeflate: false,
    maxPayload: options.maxFrameBytes,
    generateMask: zeroMask,
    followRedirects: false,
    ...wsCloseTimeout(options),
  };
}
