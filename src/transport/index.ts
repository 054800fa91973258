/** The transport layer: the interface the engine talks to and its two implementations. */

export {
  DEFAULT_CLOSE_TIMEOUT_MS,
  DEFAULT_MAX_QUEUED_BYTES,
  DEFAULT_MAX_QUEUED_FRAMES,
  type Transport,
} from './transport.js';
export {
  DEFAULT_CONNECT_TIMEOUT_MS,
  DEFAULT_IDLE_TIMEOUT_MS,
  DEFAULT_LISTEN_HOST,
  DEFAULT_MAX_CONNECTIONS,
  DEFAULT_UPGRADE_TIMEOUT_MS,
  type WebSocketTransport,
  connectWebSocket,
  listenWebSocket,
  type ConnectWebSocketOptions,
  type ListenWebSocketOptions,
  type PemSource,
  type RemoteInfo,
  type TlsConnectOptions,
  type TlsListenOptions,
  type WebSocketListener,
  type WebSocketTransportOptions,
} from './ws-transport.js';
export { DeadlineTransport } from './deadline-transport.js';
export { MemoryTransport, createMemoryTransportPair, type MemoryTransportOptions } from './memory-transport.js';
