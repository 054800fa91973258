import { Packr } from 'msgpackr';
import { describe, expect, it } from 'vitest';

import { decodeFrame, encodePages, encodeRecord } from '../dist/protocol/codec.js';
import { writePageNumbers } from '../dist/protocol/page-list.js';
import type { ProtocolLimits } from '../dist/protocol/limits.js';

const packr = new Packr({ useRecords: false, variableMapSize: true });

/** A frame around any header object, bypassing the encoder's checks. */
function rawFrame(header: unknown, payload: Uint8Array = new Uint8Array(0)): Uint8Array {
  return frameAround(packr.pack(header), payload);
}

/** A frame around raw header bytes. */
function frameAround(headerBytes: Uint8Array, payload: Uint8Array = new Uint8Array(0)): Uint8Array {
  const frame = new Uint8Array(4 + headerBytes.length + payload.length);
  new DataView(frame.buffer).setUint32(0, headerBytes.length, true);
  frame.set(headerBytes, 4);
  frame.set(payload, 4 + headerBytes.length);
  return frame;
}

function codeOf(run: () => unknown): string {
  try {
    run();
  } catch (err) {
    expect(err).toBeInstanceOf(Error);
    return (err as { code?: string }).code ?? `no code: ${String(err)}`;
  }
  return 'no error';
}

function rejects(frame: Uint8Array, code: string, limits?: Partial<ProtocolLimits>): void {
  expect(codeOf(() => decodeFrame(frame, limits))).toBe(code);
}

const MALFORMED = 'ERR_MALFORMED_RECORD';
const LIMIT = 'ERR_LIMIT_EXCEEDED';

const pagesHeader = {
  type: 'pages',
  round: 0,
  seq: 0,
  pages: writePageNumbers([1, 2]),
  zeros: writePageNumbers([3]),
  codec: 'none',
  rawLength: 2 * 4096,
  checksum: '0123456789abcdef',
};
const twoPages = new Uint8Array(2 * 4096);

const hello = {
  type: 'hello',
  versions: [1],
  migrationId: 'm',
  domain: { kind: 'sim', name: 'vm', memoryBytes: 1 << 20, pageSize: 4096, vcpus: 1, config: {} },
  codec: 'none',
};

describe('framing', () => {
  it('rejects a frame shorter than the header length', () => {
    rejects(new Uint8Array(0), MALFORMED);
    rejects(new Uint8Array([1, 0, 0]), MALFORMED);
  });

  it('rejects a frame truncated inside its header', () => {
    const frame = encodeRecord({ type: 'ready', version: 1, migrationId: 'abc' });
    for (let cut = 4; cut < frame.length; cut++) rejects(frame.subarray(0, cut), MALFORMED);
  });

  it('rejects an empty header', () => {
    rejects(new Uint8Array([0, 0, 0, 0]), MALFORMED);
  });

  it('rejects a header length that does not match the msgpack map', () => {
    const frame = encodeRecord({ type: 'prepared', digest: 'aaaaaaaaaaaaaaaa' });
    const shorter = frame.slice();
    shorter[0]! -= 1;
    rejects(shorter, MALFORMED);
    // One byte more: the header then ends with a stray byte after its map.
    const longer = new Uint8Array(frame.length + 1);
    longer.set(frame);
    longer[0]! += 1;
    rejects(longer, MALFORMED);
  });

  it('rejects a header over maxHeaderBytes before decoding it', () => {
    const frame = encodeRecord({ type: 'abort', code: 'ERR_X', message: 'x'.repeat(200) });
    rejects(frame, LIMIT, { maxHeaderBytes: 100 });
    // A length prefix announcing 4 GiB fails on the limit, not on the missing bytes.
    rejects(new Uint8Array([0xff, 0xff, 0xff, 0xff, 0x80]), LIMIT);
  });

  it('rejects a frame over maxFrameBytes', () => {
    rejects(rawFrame(pagesHeader, twoPages), LIMIT, { maxFrameBytes: 4096 });
  });

  it('rejects input that is not binary', () => {
    expect(codeOf(() => decodeFrame('hello' as unknown as Uint8Array))).toBe(MALFORMED);
  });
});

describe('header shape', () => {
  it('rejects a header that is not a map', () => {
    rejects(rawFrame(['hello']), MALFORMED);
    rejects(rawFrame('go'), MALFORMED);
    rejects(rawFrame(7), MALFORMED);
  });

  it('rejects msgpack extension types', () => {
    rejects(rawFrame({ type: 'abort', code: 'ERR_X', message: new Date(0) }), MALFORMED);
    rejects(rawFrame({ type: 'abort', code: 'ERR_X', message: undefined }), MALFORMED);
    rejects(rawFrame({ type: 'abort', code: 'ERR_X', message: new Set([1]) }), MALFORMED);
  });

  it('rejects map keys that are not strings', () => {
    // {1: "go"}
    rejects(frameAround(new Uint8Array([0x81, 0x01, 0xa2, 0x67, 0x6f])), MALFORMED);
  });

  it('rejects nesting deeper than the limit without exhausting the stack', () => {
    let config: unknown = 1;
    for (let i = 0; i < 40; i++) config = [config];
    rejects(rawFrame({ ...hello, domain: { ...hello.domain, config: { deep: config } } }), MALFORMED);
    // 100k nested one-element arrays: a recursive decoder would overflow the stack.
    const deep = new Uint8Array(100_001);
    deep.fill(0x91);
    deep[0] = 0x81;
    rejects(frameAround(deep), MALFORMED);
  });

  it('draws the nesting limit at 32 levels, on both sides alike', () => {
    // The header is level 1, domain 2, config 3, so 29 nested arrays reach level 32.
    const nested = (levels: number): unknown => {
      let v: unknown = 0;
      for (let i = 0; i < levels; i++) v = [v];
      return v;
    };
    const withConfig = (levels: number) => ({ ...hello, domain: { ...hello.domain, config: { d: nested(levels) } } });
    expect(decodeFrame(rawFrame(withConfig(29))).type).toBe('hello');
    expect(decodeFrame(encodeRecord(withConfig(29) as never)).type).toBe('hello');
    rejects(rawFrame(withConfig(30)), MALFORMED);
    expect(codeOf(() => encodeRecord(withConfig(30) as never))).toBe(MALFORMED);
  });

  it('rejects lengths that promise more elements than the header holds', () => {
    // {"type": array32 of 2^32-1 elements}
    rejects(frameAround(new Uint8Array([0x81, 0xa4, 0x74, 0x79, 0x70, 0x65, 0xdd, 0xff, 0xff, 0xff, 0xff])), MALFORMED);
    // {"type": str32 of 2^32-1 bytes}
    rejects(frameAround(new Uint8Array([0x81, 0xa4, 0x74, 0x79, 0x70, 0x65, 0xdb, 0xff, 0xff, 0xff, 0xff])), MALFORMED);
  });

  it('rejects an unknown record type', () => {
    rejects(rawFrame({ type: 'teleport' }), MALFORMED);
    rejects(rawFrame({ type: 7 }), MALFORMED);
    rejects(rawFrame({}), MALFORMED);
  });

  it('rejects unknown fields', () => {
    rejects(rawFrame({ type: 'go', now: true }), MALFORMED);
    rejects(rawFrame({ ...hello, domain: { ...hello.domain, extra: 1 } }), MALFORMED);
  });

  it('does not echo a long unknown field name, so the reason fits an abort record', () => {
    let message = '';
    try {
      decodeFrame(rawFrame({ type: 'go', ['x'.repeat(3000)]: 1 }));
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toMatch(/unknown field a string of 3000 characters/);
    expect(message.length).toBeLessThan(200);
  });
});

describe('fields', () => {
  it('rejects missing fields', () => {
    rejects(rawFrame({ type: 'ready', version: 1 }), MALFORMED);
    rejects(rawFrame({ type: 'complete', digest: '0000000000000000' }), MALFORMED);
    const { checksum: _checksum, ...noChecksum } = pagesHeader;
    rejects(rawFrame(noChecksum, twoPages), MALFORMED);
  });

  it('rejects wrongly typed integers', () => {
    for (const round of ['1', -1, 1.5, 2 ** 53, null, true]) {
      rejects(rawFrame({ type: 'round-end', round, pages: 1 }), MALFORMED);
    }
    rejects(rawFrame({ ...pagesHeader, seq: -3 }, twoPages), MALFORMED);
  });

  it('rejects wrongly typed strings, booleans and byte strings', () => {
    rejects(rawFrame({ type: 'query', migrationId: 5, inspect: false }), MALFORMED);
    rejects(rawFrame({ type: 'query', migrationId: '', inspect: false }), MALFORMED);
    rejects(rawFrame({ type: 'query', migrationId: 'x'.repeat(1025), inspect: false }), MALFORMED);
    rejects(rawFrame({ type: 'query', migrationId: 'm', inspect: 1 }), MALFORMED);
    rejects(rawFrame({ type: 'device-state', state: 'blob' }), MALFORMED);
    rejects(rawFrame({ type: 'device-state', state: [1, 2] }), MALFORMED);
    // The state is the payload; a header that carries it (version 1's layout) is refused.
    rejects(rawFrame({ type: 'device-state', state: new Uint8Array(3) }), MALFORMED);
    rejects(rawFrame({ type: 'status', migrationId: 'm', state: 'lost' }), MALFORMED);
    rejects(rawFrame({ type: 'status', migrationId: 'm', state: 'running', digest: null }), MALFORMED);
    // An inspection's state is the payload of a status with a digest; nowhere else.
    rejects(rawFrame({ type: 'status', migrationId: 'm', state: 'running', domainState: new Uint8Array(2) }), MALFORMED);
    rejects(rawFrame({ type: 'status', migrationId: 'm', state: 'running', digest: '0123456789abcdef', domainState: new Uint8Array(2) }), MALFORMED);
    rejects(rawFrame({ type: 'status', migrationId: 'm', state: 'running' }, new Uint8Array(2)), MALFORMED);
    rejects(rawFrame({ type: 'resumed', resumeMs: -1, digest: '0000000000000000' }), MALFORMED);
  });

  it('rejects bad hex digests and checksums', () => {
    for (const digest of ['0123456789ABCDEF', '0123456789abcde', '0123456789abcdef0', '0123456789abcdeg', 12]) {
      rejects(rawFrame({ type: 'prepared', digest }), MALFORMED);
      rejects(rawFrame({ ...pagesHeader, checksum: digest }, twoPages), MALFORMED);
    }
  });

  it('rejects a bad domain descriptor', () => {
    const domain = hello.domain;
    rejects(rawFrame({ ...hello, domain: 'sim' }), MALFORMED);
    rejects(rawFrame({ ...hello, domain: { ...domain, pageSize: 8192, memoryBytes: 8192 } }), MALFORMED);
    rejects(rawFrame({ ...hello, domain: { ...domain, memoryBytes: 4097 } }), MALFORMED);
    rejects(rawFrame({ ...hello, domain: { ...domain, memoryBytes: 0 } }), MALFORMED);
    rejects(rawFrame({ ...hello, domain: { ...domain, vcpus: 0 } }), MALFORMED);
    rejects(rawFrame({ ...hello, domain: { ...domain, config: [1] } }), MALFORMED);
    rejects(rawFrame({ ...hello, domain: { ...domain, kind: '' } }), MALFORMED);
    rejects(rawFrame({ ...hello, domain: { ...domain, config: { blob: new Uint8Array(2) } } }), MALFORMED);
  });

  it('rejects a domain over the memory or vCPU limits', () => {
    rejects(rawFrame({ ...hello, domain: { ...hello.domain, memoryBytes: 1 << 21 } }), LIMIT, { maxGuestMemoryBytes: 1 << 20 });
    rejects(rawFrame({ ...hello, domain: { ...hello.domain, vcpus: 257 } }), LIMIT);
  });

  it('rejects bad version lists and codecs', () => {
    for (const versions of [[], [0], [1.5], ['1'], 1, Array.from({ length: 17 }, () => 1), [70000]]) {
      rejects(rawFrame({ ...hello, versions }), MALFORMED);
    }
    rejects(rawFrame({ type: 'ready', version: 0, migrationId: 'm' }), MALFORMED);
    rejects(rawFrame({ ...hello, codec: 'zstd' }), MALFORMED);
    rejects(rawFrame({ ...pagesHeader, codec: 'gzip' }, twoPages), MALFORMED);
  });

  it('rejects an oversized device state', () => {
    rejects(encodeRecord({ type: 'device-state', state: new Uint8Array(9) }), LIMIT, { maxDeviceStateBytes: 8 });
    rejects(rawFrame({ type: 'device-state' }, new Uint8Array(9)), LIMIT, { maxDeviceStateBytes: 8 });
    rejects(rawFrame({ type: 'status', migrationId: 'm', state: 'running', digest: '0123456789abcdef' }, new Uint8Array(9)), LIMIT, {
      maxDeviceStateBytes: 8,
    });
    rejects(
      encodeRecord({ type: 'status', migrationId: 'm', state: 'running', digest: '0123456789abcdef', domainState: new Uint8Array(9) }),
      LIMIT,
      { maxDeviceStateBytes: 8 },
    );
  });
});

describe('pages records', () => {
  it('accepts the reference header', () => {
    expect(decodeFrame(rawFrame(pagesHeader, twoPages)).type).toBe('pages');
  });

  it('rejects a page list whose length is not a multiple of 4', () => {
    rejects(rawFrame({ ...pagesHeader, zeros: new Uint8Array(5) }, twoPages), MALFORMED);
    rejects(rawFrame({ ...pagesHeader, pages: new Uint8Array(9), rawLength: 2 * 4096 }, twoPages), MALFORMED);
  });

  it('rejects a rawLength that does not match the data pages', () => {
    rejects(rawFrame({ ...pagesHeader, rawLength: 4096 }, twoPages.subarray(4096)), MALFORMED);
    rejects(rawFrame({ ...pagesHeader, rawLength: 3 * 4096 }, new Uint8Array(3 * 4096)), MALFORMED);
  });

  it('rejects more pages than the batch limits allow', () => {
    rejects(rawFrame(pagesHeader, twoPages), LIMIT, { maxDataPagesPerBatch: 1 });
    rejects(rawFrame({ ...pagesHeader, zeros: writePageNumbers([1, 2, 3]) }, twoPages), LIMIT, { maxZeroPagesPerBatch: 2 });
  });

  it('rejects a batch that lists no pages', () => {
    rejects(rawFrame({ ...pagesHeader, pages: new Uint8Array(0), zeros: new Uint8Array(0), rawLength: 0 }), MALFORMED);
  });

  it('rejects a payload that does not match the header', () => {
    rejects(rawFrame(pagesHeader, twoPages.subarray(1)), MALFORMED);
    rejects(rawFrame(pagesHeader, new Uint8Array(2 * 4096 + 1)), MALFORMED);
    // No data pages, yet a payload.
    rejects(rawFrame({ ...pagesHeader, pages: new Uint8Array(0), rawLength: 0 }, new Uint8Array([0, 0, 0, 0, 0])), MALFORMED);
  });

  it('rejects an lz4 payload whose size prefix disagrees with rawLength', () => {
    const lz4 = { ...pagesHeader, codec: 'lz4' };
    // Announces 4096 bytes where two pages make 8192.
    rejects(rawFrame(lz4, new Uint8Array([0, 0x10, 0, 0, 0x1f])), MALFORMED);
    // Too short to hold the size prefix at all.
    rejects(rawFrame(lz4, new Uint8Array([0, 0x20, 0])), MALFORMED);
  });

  it('accepts an lz4 payload whose size prefix matches rawLength', () => {
    const lz4 = { ...pagesHeader, codec: 'lz4' };
    expect(decodeFrame(rawFrame(lz4, new Uint8Array([0, 0x20, 0, 0, 0x1f]))).type).toBe('pages');
  });
});

describe('payloads on other records', () => {
  it('rejects a payload after a non-pages header', () => {
    const go = encodeRecord({ type: 'go' });
    const withPayload = new Uint8Array(go.length + 3);
    withPayload.set(go);
    rejects(withPayload, MALFORMED);
  });
});

describe('the encoder checks what it sends', () => {
  it('refuses malformed records', () => {
    expect(codeOf(() => encodeRecord({ type: 'prepared', digest: 'XYZ' }))).toBe(MALFORMED);
    expect(codeOf(() => encodeRecord({ type: 'go', extra: 1 } as never))).toBe(MALFORMED);
    const withDate = { ...hello, domain: { ...hello.domain, config: { when: new Date() } } };
    expect(codeOf(() => encodeRecord(withDate as never))).toBe(MALFORMED);
  });

  it('refuses pages records, which have their own encoder', () => {
    expect(codeOf(() => encodeRecord({ ...pagesHeader, payload: twoPages } as never))).toBe('ERR_INVALID_ARGUMENT');
  });

  it('refuses records over the limits', () => {
    expect(codeOf(() => encodeRecord({ type: 'abort', code: 'ERR_X', message: 'x'.repeat(900) }, { maxHeaderBytes: 512 }))).toBe(LIMIT);
    const { type: _type, ...header } = pagesHeader;
    expect(codeOf(() => encodePages({ ...header, codec: 'none' }, twoPages, { maxFrameBytes: 4096 }))).toBe(LIMIT);
  });

  it('refuses a payload that does not match the header', () => {
    const { type: _type, ...header } = pagesHeader;
    expect(codeOf(() => encodePages({ ...header, codec: 'none' }, twoPages.subarray(10)))).toBe(MALFORMED);
    expect(codeOf(() => encodePages({ ...header, codec: 'lz4' }, new Uint8Array([1, 0, 0, 0, 0])))).toBe(MALFORMED);
  });
});

describe('limits', () => {
  it('a limit left undefined keeps its default; NaN, zero or an unknown limit is refused', () => {
    const big = { ...hello, domain: { ...hello.domain, memoryBytes: 2 ** 44 } };
    // undefined must not switch the guest-size check off.
    rejects(rawFrame(big), LIMIT, { maxGuestMemoryBytes: undefined });
    for (const bad of [{ maxGuestMemoryBytes: Number.NaN }, { maxFrameBytes: 0 }, { maxVcpus: 1.5 }, { maxFrames: 3 } as Partial<ProtocolLimits>]) {
      expect(codeOf(() => decodeFrame(rawFrame(hello), bad))).toBe('ERR_INVALID_ARGUMENT');
    }
  });
});
