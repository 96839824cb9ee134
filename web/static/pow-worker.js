// pow-worker.js, a Web Worker: solves the join challenge's proof of work
// (DESIGN.md, "Join challenge"): a decimal nonce such that
// SHA-256(challenge + ":" + nonce) starts with `difficulty` zero bits.
//
//   in:  {challenge, difficulty}
//   out: {type: "progress", tried} about every 50 ms, then {type: "done", nonce, tried};
//        {type: "error", message} for input it cannot solve.
// The page stops a solve it no longer needs with worker.terminate().
//
// SHA-256 is written out here rather than taken from crypto.subtle.digest:
// each digest() is a promise, many times slower per hash than this loop
// (web/pow_bench_test.go measures both), and the loop can skip the bytes that
// never change. The nonce is a fixed head, as many digits as it takes for
// challenge + ":" + head to fill whole 64-byte blocks (11 for the server's
// 52-character challenges), then a counter: the fixed blocks are hashed once
// per head, and each try costs one block.
"use strict";

const K = Int32Array.of(
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2);
const IV = Int32Array.of(
  0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19);
const W = new Int32Array(64);
const MAX_DIGITS = 20; // the longest nonce the server accepts
const MIN_COUNTER = 9; // counter digits: a billion tries per head

// compress is SHA-256's compression function on the 16 words of m from o,
// into h. The working variables are a–g and k (h is taken). Instead of
// moving eight values down after each round, eight rounds are written out
// with the names rotated: about 10% faster in V8 (a full unroll of all 64
// rounds was about 10% faster again, at 1 KB more gzipped; not worth it).
function compress(h, m, o) {
  const w = W;
  for (let i = 0; i < 16; i++) w[i] = m[o + i];
  for (let i = 16; i < 64; i++) {
    const x = w[i - 15], y = w[i - 2];
    w[i] = (w[i - 16] + w[i - 7] +
      (((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)) +
      (((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10))) | 0;
  }
  let a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7], t;
  for (let i = 0; i < 64; i += 8) {
    t = (k + (((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7))) + (g ^ (e & (f ^ g))) + K[i] + w[i]) | 0;
    d = (d + t) | 0;
    k = (t + (((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10))) + ((a & b) | (c & (a | b)))) | 0;
    t = (g + (((d >>> 6) | (d << 26)) ^ ((d >>> 11) | (d << 21)) ^ ((d >>> 25) | (d << 7))) + (f ^ (d & (e ^ f))) + K[i + 1] + w[i + 1]) | 0;
    c = (c + t) | 0;
    g = (t + (((k >>> 2) | (k << 30)) ^ ((k >>> 13) | (k << 19)) ^ ((k >>> 22) | (k << 10))) + ((k & a) | (b & (k | a)))) | 0;
    t = (f + (((c >>> 6) | (c << 26)) ^ ((c >>> 11) | (c << 21)) ^ ((c >>> 25) | (c << 7))) + (e ^ (c & (d ^ e))) + K[i + 2] + w[i + 2]) | 0;
    b = (b + t) | 0;
    f = (t + (((g >>> 2) | (g << 30)) ^ ((g >>> 13) | (g << 19)) ^ ((g >>> 22) | (g << 10))) + ((g & k) | (a & (g | k)))) | 0;
    t = (e + (((b >>> 6) | (b << 26)) ^ ((b >>> 11) | (b << 21)) ^ ((b >>> 25) | (b << 7))) + (d ^ (b & (c ^ d))) + K[i + 3] + w[i + 3]) | 0;
    a = (a + t) | 0;
    e = (t + (((f >>> 2) | (f << 30)) ^ ((f >>> 13) | (f << 19)) ^ ((f >>> 22) | (f << 10))) + ((f & g) | (k & (f | g)))) | 0;
    t = (d + (((a >>> 6) | (a << 26)) ^ ((a >>> 11) | (a << 21)) ^ ((a >>> 25) | (a << 7))) + (c ^ (a & (b ^ c))) + K[i + 4] + w[i + 4]) | 0;
    k = (k + t) | 0;
    d = (t + (((e >>> 2) | (e << 30)) ^ ((e >>> 13) | (e << 19)) ^ ((e >>> 22) | (e << 10))) + ((e & f) | (g & (e | f)))) | 0;
    t = (c + (((k >>> 6) | (k << 26)) ^ ((k >>> 11) | (k << 21)) ^ ((k >>> 25) | (k << 7))) + (b ^ (k & (a ^ b))) + K[i + 5] + w[i + 5]) | 0;
    g = (g + t) | 0;
    c = (t + (((d >>> 2) | (d << 30)) ^ ((d >>> 13) | (d << 19)) ^ ((d >>> 22) | (d << 10))) + ((d & e) | (f & (d | e)))) | 0;
    t = (b + (((g >>> 6) | (g << 26)) ^ ((g >>> 11) | (g << 21)) ^ ((g >>> 25) | (g << 7))) + (a ^ (g & (k ^ a))) + K[i + 6] + w[i + 6]) | 0;
    f = (f + t) | 0;
    b = (t + (((c >>> 2) | (c << 30)) ^ ((c >>> 13) | (c << 19)) ^ ((c >>> 22) | (c << 10))) + ((c & d) | (e & (c | d)))) | 0;
    t = (a + (((f >>> 6) | (f << 26)) ^ ((f >>> 11) | (f << 21)) ^ ((f >>> 25) | (f << 7))) + (k ^ (f & (g ^ k))) + K[i + 7] + w[i + 7]) | 0;
    e = (e + t) | 0;
    a = (t + (((b >>> 2) | (b << 30)) ^ ((b >>> 13) | (b << 19)) ^ ((b >>> 22) | (b << 10))) + ((b & c) | (d & (b | c)))) | 0;
  }
  h[0] = (h[0] + a) | 0; h[1] = (h[1] + b) | 0; h[2] = (h[2] + c) | 0; h[3] = (h[3] + d) | 0;
  h[4] = (h[4] + e) | 0; h[5] = (h[5] + f) | 0; h[6] = (h[6] + g) | 0; h[7] = (h[7] + k) | 0;
}

function solve(challenge, difficulty) {
  const prefix = new TextEncoder().encode(challenge + ":");
  const n = prefix.length;
  let headLen = (64 - n % 64) % 64;
  if (headLen + MIN_COUNTER > MAX_DIGITS) headLen = 0; // no room: every try hashes the prefix's last block too
  const width = MAX_DIGITS - headLen;
  const len = n + headLen + width;
  const fixed = (n + headLen) & ~63; // bytes in blocks that no try changes
  const bytes = new Uint8Array(fixed + ((len - fixed + 9 + 63) & ~63)); // + 0x80 and the 64-bit length
  bytes.set(prefix);
  bytes.fill(48, n, len); // "0" digits
  bytes[len] = 0x80;
  const bitLen = len * 8;
  bytes[bytes.length - 5] = bitLen / 2 ** 32; // below 2^40 bits: a challenge under 128 GB
  bytes[bytes.length - 4] = bitLen >>> 24;
  bytes[bytes.length - 3] = bitLen >>> 16;
  bytes[bytes.length - 2] = bitLen >>> 8;
  bytes[bytes.length - 1] = bitLen;
  const words = new Int32Array(bytes.length / 4);
  const setByte = (p, v) => {
    const s = 24 - 8 * (p & 3);
    words[p >> 2] = (words[p >> 2] & ~(0xff << s)) | (v << s);
  };
  for (let p = 0; p < bytes.length; p++) setByte(p, bytes[p]);

  const mid = new Int32Array(8), h = new Int32Array(8);
  let head = headLen ? 10 ** (headLen - 1) : 0; // "1000…": headLen digits, no leading zero
  const newHead = () => {
    const s = headLen ? String(head) : "";
    for (let i = 0; i < headLen; i++) setByte(n + i, s.charCodeAt(i));
    mid.set(IV);
    for (let o = 0; o < fixed / 4; o += 16) compress(mid, words, o);
  };
  newHead();

  const digits = new Uint8Array(width); // the counter, most significant first
  const at = n + headLen, first = fixed / 4, last = words.length;
  const shift = 32 - difficulty;
  let tried = 0, next = performance.now() + 50;
  for (;;) {
    h.set(mid);
    for (let o = first; o < last; o += 16) compress(h, words, o);
    tried++;
    if (h[0] >>> shift === 0) {
      return { nonce: (headLen ? String(head) : "") + digits.join(""), tried };
    }
    let j = width - 1;
    while (j >= 0 && digits[j] === 9) { digits[j] = 0; setByte(at + j, 48); j--; }
    if (j >= 0) {
      digits[j]++;
      setByte(at + j, 48 + digits[j]);
    } else if (headLen && String(head + 1).length === headLen) {
      head++;
      newHead();
    } else {
      return null; // every nonce of 20 digits tried: not in this universe
    }
    if ((tried & 1023) === 0 && performance.now() >= next) {
      postMessage({ type: "progress", tried });
      next = performance.now() + 50;
    }
  }
}

self.onmessage = (e) => {
  const { challenge, difficulty } = e.data || {};
  if (typeof challenge !== "string" || !Number.isInteger(difficulty) || difficulty < 1 || difficulty > 30) {
    postMessage({ type: "error", message: "a challenge string and a difficulty of 1 to 30 bits are needed" });
    return;
  }
  const found = solve(challenge, difficulty);
  postMessage(found ? { type: "done", nonce: found.nonce, tried: found.tried }
    : { type: "error", message: "no nonce found" });
};
