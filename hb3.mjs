import x from '@node-rs/xxhash';
const P1=2654435761|0, P2=2246822519|0, P3=3266489917|0, P4=668265263, P5=374761393;
function xxh32js(w, off, n) { // w: Uint32Array over memory, off: word offset, n: words (multiple of 4)
  let v1 = (P1 + P2) | 0, v2 = P2, v3 = 0, v4 = (-P1) | 0;
  const end = off + n;
  for (let i = off; i < end; i += 4) {
    v1 = (v1 + Math.imul(w[i], P2)) | 0; v1 = Math.imul((v1 << 13) | (v1 >>> 19), P1);
    v2 = (v2 + Math.imul(w[i+1], P2)) | 0; v2 = Math.imul((v2 << 13) | (v2 >>> 19), P1);
    v3 = (v3 + Math.imul(w[i+2], P2)) | 0; v3 = Math.imul((v3 << 13) | (v3 >>> 19), P1);
    v4 = (v4 + Math.imul(w[i+3], P2)) | 0; v4 = Math.imul((v4 << 13) | (v4 >>> 19), P1);
  }
  let h = (((v1 << 1) | (v1 >>> 31)) + ((v2 << 7) | (v2 >>> 25)) + ((v3 << 12) | (v3 >>> 20)) + ((v4 << 18) | (v4 >>> 14))) | 0;
  h = (h + n * 4) | 0;
  h ^= h >>> 15; h = Math.imul(h, P2); h ^= h >>> 13; h = Math.imul(h, P3); h ^= h >>> 16;
  return h >>> 0;
}
const buf = Buffer.alloc(256*1024*1024); for (let i=0;i<buf.length;i+=7) buf[i]=i&255;
const w = new Uint32Array(buf.buffer, buf.byteOffset, buf.length/4);
const n = buf.length/4096;
for (let i=0;i<100;i++) if (xxh32js(w, i*1024, 1024) !== x.xxh32(buf.subarray(i*4096,(i+1)*4096),0)) { console.log('MISMATCH', i); break; }
function t(name, f){ let s=0; const t0=process.hrtime.bigint(); for(let i=0;i<n;i++) s^=f(i); const ms=Number(process.hrtime.bigint()-t0)/1e6; console.log(name, (ms*4).toFixed(0),'ms/GiB', s>>>0); }
for (let r=0;r<3;r++){ t('napi', i=>x.xxh32(buf.subarray(i*4096,(i+1)*4096),0)); t('js', i=>xxh32js(w, i*1024, 1024)); }
