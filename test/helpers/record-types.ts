// Every record type version 2 puts on the wire, written out here rather than taken from the code,
// so that a type added to the code but not to the tests (or the other way round) shows up.
import type { RecordType } from '../../dist/protocol/records.js';

export const WIRE_RECORD_TYPES: readonly RecordType[] = [
  'auth-hello',
  'auth-challenge',
  'auth-proof',
  'auth-ok',
  'hello',
  'guest',
  'ready',
  'pages',
  'round-end',
  'channel-hello',
  'channel-ready',
  'pause-soon',
  'collected',
  'round-ack',
  'device-state',
  'complete',
  'prepared',
  'go',
  'resumed',
  'abort',
  'query',
  'status',
];
