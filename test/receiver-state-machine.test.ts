import { describe, expect, it } from 'vitest';

import {
  clientAuthTransition,
  expectedRecords,
  initialReceiverState,
  expectedSourceRecords,
  receiverTransition,
  sourceTransition,
} from '../dist/protocol/receiver-state.js';
import type { ClientAuthState, ReceiverEvent, ReceiverState, SourceEvent, SourceState } from '../dist/protocol/receiver-state.js';
import type { RecordType } from '../dist/protocol/records.js';
import { WIRE_RECORD_TYPES } from './helpers/record-types.js';

const RECORD_TYPES = WIRE_RECORD_TYPES;

// The receiver table as docs/protocol.md states it, written out independently of the code.
const RECEIVER_LEGAL: Record<ReceiverState, Partial<Record<ReceiverEvent, ReceiverState>>> = {
  'await-auth': { 'auth-hello': 'await-proof', abort: 'aborted' },
  'await-proof': { 'auth-proof': 'await-hello', abort: 'aborted' },
  'await-hello-or-auth': { 'auth-hello': 'await-hello', hello: 'receiving', query: 'answered', 'channel-hello': 'channel', abort: 'aborted' },
  'await-hello': { hello: 'receiving', query: 'answered', 'channel-hello': 'channel', abort: 'aborted' },
  receiving: { guest: 'receiving', pages: 'receiving', 'pause-soon': 'receiving', 'round-end': 'receiving', 'device-state': 'state-received', abort: 'aborted' },
  'state-received': { complete: 'complete-received', abort: 'aborted' },
  'complete-received': { 'sent-prepared': 'prepared', abort: 'aborted' },
  prepared: { go: 'resumed', abort: 'aborted' },
  resumed: {},
  aborted: {},
  answered: {},
  channel: { pages: 'channel', abort: 'aborted' },
};

const SOURCE_LEGAL: Record<SourceState, Partial<Record<SourceEvent, SourceState>>> = {
  'hello-sent': { ready: 'streaming', abort: 'aborted' },
  streaming: { collected: 'streaming', 'round-ack': 'streaming', 'sent-complete': 'complete-sent', abort: 'aborted' },
  'complete-sent': { 'round-ack': 'complete-sent', prepared: 'prepared-received', abort: 'aborted' },
  'prepared-received': { 'sent-go': 'go-sent', abort: 'aborted' },
  'go-sent': { resumed: 'done', abort: 'aborted' },
  done: {},
  aborted: {},
};

function codeOf(run: () => unknown): string {
  try {
    run();
  } catch (err) {
    return (err as { code?: string }).code ?? 'no code';
  }
  return 'no error';
}

function runReceiver(events: ReceiverEvent[]): ReceiverState {
  return events.reduce<ReceiverState>((state, event) => receiverTransition(state, event), 'await-hello');
}

describe('receiver: legal paths', () => {
  it('walks a whole migration with several rounds', () => {
    expect(
      runReceiver([
        'hello',
        'pages',
        'pages',
        'round-end',
        'pages',
        'round-end',
        'pages',
        'device-state',
        'complete',
        'sent-prepared',
        'go',
      ]),
    ).toBe('resumed');
  });

  it('accepts a migration whose rounds were all empty', () => {
    expect(runReceiver(['hello', 'round-end', 'device-state', 'complete', 'sent-prepared', 'go'])).toBe('resumed');
  });

  it('answers a query connection', () => {
    expect(runReceiver(['query'])).toBe('answered');
  });

  it('steps through each state as the table says', () => {
    expect(runReceiver(['hello'])).toBe('receiving');
    expect(runReceiver(['hello', 'device-state'])).toBe('state-received');
    expect(runReceiver(['hello', 'device-state', 'complete'])).toBe('complete-received');
    expect(runReceiver(['hello', 'device-state', 'complete', 'sent-prepared'])).toBe('prepared');
  });
});

describe('receiver: authentication before hello', () => {
  function runFrom(start: ReceiverState, events: ReceiverEvent[]): ReceiverState {
    return events.reduce<ReceiverState>((state, event) => receiverTransition(state, event), start);
  }

  it('starts an agent with a key in await-auth and one without in await-hello-or-auth', () => {
    expect(initialReceiverState(true)).toBe('await-auth');
    expect(initialReceiverState(false)).toBe('await-hello-or-auth');
  });

  it('with a key: auth-hello, auth-proof, then a migration or a query', () => {
    expect(runFrom('await-auth', ['auth-hello', 'auth-proof', 'hello'])).toBe('receiving');
    expect(runFrom('await-auth', ['auth-hello', 'auth-proof', 'query'])).toBe('answered');
  });

  it('with a key: nothing but auth-hello opens, and a proof comes only after the challenge', () => {
    for (const first of ['hello', 'query', 'auth-proof', 'auth-ok', 'pages', 'go'] as ReceiverEvent[]) {
      expect(codeOf(() => receiverTransition('await-auth', first))).toBe('ERR_UNEXPECTED_RECORD');
    }
    expect(codeOf(() => runFrom('await-auth', ['auth-hello', 'auth-hello']))).toBe('ERR_UNEXPECTED_RECORD');
    expect(codeOf(() => runFrom('await-auth', ['auth-hello', 'hello']))).toBe('ERR_UNEXPECTED_RECORD');
  });

  it('without a key: hello or query at once, or one auth-hello first', () => {
    expect(runFrom('await-hello-or-auth', ['hello'])).toBe('receiving');
    expect(runFrom('await-hello-or-auth', ['query'])).toBe('answered');
    expect(runFrom('await-hello-or-auth', ['auth-hello', 'hello'])).toBe('receiving');
    expect(codeOf(() => runFrom('await-hello-or-auth', ['auth-hello', 'auth-hello']))).toBe('ERR_UNEXPECTED_RECORD');
    expect(codeOf(() => runFrom('await-hello-or-auth', ['auth-proof']))).toBe('ERR_UNEXPECTED_RECORD');
  });

  it('never takes authentication records once a migration or a question has begun', () => {
    for (const event of ['auth-hello', 'auth-proof'] as ReceiverEvent[]) {
      expect(codeOf(() => runFrom('await-auth', ['auth-hello', 'auth-proof', 'hello', event]))).toBe('ERR_UNEXPECTED_RECORD');
      expect(codeOf(() => runReceiver(['hello', 'pages', event]))).toBe('ERR_UNEXPECTED_RECORD');
    }
  });
});

describe('client authentication', () => {
  const CLIENT_LEGAL: Record<ClientAuthState, Partial<Record<RecordType, ClientAuthState>>> = {
    'auth-hello-sent': { 'auth-challenge': 'auth-proof-sent', 'auth-ok': 'authenticated', abort: 'aborted' },
    'auth-proof-sent': { 'auth-ok': 'authenticated', abort: 'aborted' },
    authenticated: {},
    aborted: {},
  };

  for (const [state, row] of Object.entries(CLIENT_LEGAL) as [ClientAuthState, Partial<Record<RecordType, ClientAuthState>>][]) {
    it(`in ${state}: exactly the legal records pass`, () => {
      for (const event of RECORD_TYPES) {
        const next = row[event];
        if (next !== undefined) expect(clientAuthTransition(state, event)).toBe(next);
        else expect(codeOf(() => clientAuthTransition(state, event))).toBe('ERR_UNEXPECTED_RECORD');
      }
    });
  }
});

describe('receiver: abort', () => {
  for (const [state, row] of Object.entries(RECEIVER_LEGAL) as [ReceiverState, object][]) {
    const final = Object.keys(row).length === 0;
    it(`is ${final ? 'refused in final' : 'legal in'} state ${state}`, () => {
      if (final) expect(codeOf(() => receiverTransition(state, 'abort'))).toBe('ERR_UNEXPECTED_RECORD');
      else expect(receiverTransition(state, 'abort')).toBe('aborted');
    });
  }
});

describe('receiver: out-of-order records', () => {
  const events: ReceiverEvent[] = [...RECORD_TYPES, 'sent-prepared'];
  for (const [state, row] of Object.entries(RECEIVER_LEGAL) as [ReceiverState, Partial<Record<ReceiverEvent, ReceiverState>>][]) {
    it(`in ${state}: exactly the legal events pass, every other throws ERR_UNEXPECTED_RECORD`, () => {
      for (const event of events) {
        const next = row[event];
        if (next !== undefined) expect(receiverTransition(state, event)).toBe(next);
        else expect(codeOf(() => receiverTransition(state, event))).toBe('ERR_UNEXPECTED_RECORD');
      }
    });
  }

  it('names the record, the state and what was expected', () => {
    expect(() => receiverTransition('await-hello', 'pages')).toThrow(
      /"pages".*"await-hello".*hello, query, channel-hello, abort/,
    );
    expect(() => receiverTransition('resumed', 'go')).toThrow(/"go".*"resumed".*no further records/);
  });

  it('rejects a second hello, pages after the device state and go before prepared', () => {
    expect(codeOf(() => runReceiver(['hello', 'hello']))).toBe('ERR_UNEXPECTED_RECORD');
    expect(codeOf(() => runReceiver(['hello', 'device-state', 'pages']))).toBe('ERR_UNEXPECTED_RECORD');
    expect(codeOf(() => runReceiver(['hello', 'device-state', 'complete', 'go']))).toBe('ERR_UNEXPECTED_RECORD');
    expect(codeOf(() => runReceiver(['query', 'hello']))).toBe('ERR_UNEXPECTED_RECORD');
  });

  it('is not fooled by names that live on Object.prototype', () => {
    for (const event of ['constructor', 'toString', '__proto__', 'hasOwnProperty']) {
      expect(codeOf(() => receiverTransition('receiving', event as ReceiverEvent))).toBe('ERR_UNEXPECTED_RECORD');
    }
    expect(codeOf(() => receiverTransition('constructor' as ReceiverState, 'abort'))).toBe('ERR_INVALID_ARGUMENT');
  });
});

describe('receiver: expected records', () => {
  it('lists the record types legal in each state, without local events', () => {
    expect(expectedRecords('await-auth')).toEqual(['auth-hello', 'abort']);
    expect(expectedRecords('await-proof')).toEqual(['auth-proof', 'abort']);
    expect(expectedRecords('await-hello-or-auth')).toEqual(['auth-hello', 'hello', 'query', 'channel-hello', 'abort']);
    expect(expectedRecords('await-hello')).toEqual(['hello', 'query', 'channel-hello', 'abort']);
    expect(expectedRecords('receiving')).toEqual(['guest', 'pages', 'pause-soon', 'round-end', 'device-state', 'abort']);
    expect(expectedRecords('state-received')).toEqual(['complete', 'abort']);
    expect(expectedRecords('complete-received')).toEqual(['abort']);
    expect(expectedRecords('prepared')).toEqual(['go', 'abort']);
    expect(expectedRecords('resumed')).toEqual([]);
    expect(expectedRecords('aborted')).toEqual([]);
    expect(expectedRecords('answered')).toEqual([]);
    expect(expectedRecords('channel')).toEqual(['pages', 'abort']);
  });

  it('takes only batches on a page channel, and nothing after its abort', () => {
    const runFrom = (start: ReceiverState, events: ReceiverEvent[]): ReceiverState => events.reduce((state, event) => receiverTransition(state, event), start);
    expect(runFrom('await-hello', ['channel-hello', 'pages', 'pages'])).toBe('channel');
    expect(codeOf(() => runFrom('await-hello', ['channel-hello', 'round-end']))).toBe('ERR_UNEXPECTED_RECORD');
    expect(codeOf(() => runFrom('await-hello', ['channel-hello', 'abort', 'pages']))).toBe('ERR_UNEXPECTED_RECORD');
  });
});

describe('source', () => {
  function runSource(events: SourceEvent[]): SourceState {
    return events.reduce<SourceState>((state, event) => sourceTransition(state, event), 'hello-sent');
  }

  it('walks a whole migration', () => {
    expect(runSource(['ready', 'sent-complete', 'prepared', 'sent-go', 'resumed'])).toBe('done');
  });

  for (const [state, row] of Object.entries(SOURCE_LEGAL) as [SourceState, Partial<Record<SourceEvent, SourceState>>][]) {
    it(`in ${state}: exactly the legal events pass`, () => {
      const events: SourceEvent[] = [...RECORD_TYPES, 'sent-complete', 'sent-go'];
      for (const event of events) {
        const next = row[event];
        if (next !== undefined) expect(sourceTransition(state, event)).toBe(next);
        else expect(codeOf(() => sourceTransition(state, event))).toBe('ERR_UNEXPECTED_RECORD');
      }
      const final = Object.keys(row).length === 0;
      expect(expectedSourceRecords(state).includes('abort')).toBe(!final);
    });
  }

  it('accepts nothing but round acknowledgements, the target\'s "collected" and abort while streaming', () => {
    expect(expectedSourceRecords('streaming')).toEqual(['collected', 'round-ack', 'abort']);
    expect(runSource(['ready', 'round-ack', 'round-ack'])).toBe('streaming');
    expect(codeOf(() => runSource(['ready', 'ready']))).toBe('ERR_UNEXPECTED_RECORD');
    expect(codeOf(() => runSource(['ready', 'prepared']))).toBe('ERR_UNEXPECTED_RECORD');
  });
});
