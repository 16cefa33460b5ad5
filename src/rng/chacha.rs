//! ChaCha8 with rand_chacha's stream, generated 16 blocks at a time.
//!
//! [`ChainRng`] produces exactly the words of `rand_chacha::ChaCha8Rng`
//! with the same key, stream and position (and `next_u32`, `next_u64` and
//! `fill_bytes` consume them the same way: one word, two words low first,
//! `ceil(n / 4)` words), so every seeded output of boltz is unchanged; it
//! only computes them faster. On CPUs with AVX-512 sixteen consecutive
//! blocks are computed at once, one block per vector lane: state word `i`
//! of all sixteen blocks lives in one 512-bit register, so the rounds are
//! plain vector adds, xors and native rotates with no shuffles, and one
//! 16 x 16 transpose puts the blocks back in stream order. With AVX2 the
//! same is done eight blocks at a time (byte shuffles for the rotations
//! by 16 and 8, two 8 x 8 transposes). Elsewhere a portable loop computes
//! the same blocks. Tests compare both with
//! `rand_chacha` over many seeds, streams, positions and call patterns.

use rand::{SeedableRng, TryCryptoRng, TryRng};
use std::convert::Infallible;

/// Blocks computed per refill.
const BLOCKS: usize = 16;
/// Words per block.
const BLOCK_WORDS: usize = 16;
/// Words in the buffer.
const BUF: usize = BLOCKS * BLOCK_WORDS;
/// "expand 32-byte k".
const SIGMA: [u32; 4] = [0x6170_7865, 0x3320_646e, 0x7962_2d32, 0x6b20_6574];
/// Double rounds of ChaCha8.
const DOUBLE_ROUNDS: usize = 4;

/// A ChaCha8 stream, word for word `rand_chacha::ChaCha8Rng`'s.
#[derive(Clone)]
pub struct ChainRng {
    key: [u32; 8],
    stream: u64,
    /// Block counter of the block after the buffer's last.
    next_block: u64,
    /// Next word of the buffer to hand out; `BUF` when it is used up.
    index: usize,
    buf: Box<[u32; BUF]>,
}

impl std::fmt::Debug for ChainRng {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key stays private, as rand_chacha's Debug keeps it.
        f.debug_struct("ChainRng")
            .field("stream", &self.stream)
            .field("word_pos", &self.get_word_pos())
            .finish_non_exhaustive()
    }
}

impl PartialEq for ChainRng {
    fn eq(&self, o: &ChainRng) -> bool {
        self.key == o.key && self.stream == o.stream && self.get_word_pos() == o.get_word_pos()
    }
}

impl Eq for ChainRng {}

impl SeedableRng for ChainRng {
    type Seed = [u8; 32];

    fn from_seed(seed: [u8; 32]) -> ChainRng {
        let mut key = [0u32; 8];
        for (k, b) in key.iter_mut().zip(seed.chunks_exact(4)) {
            *k = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        }
        ChainRng {
            key,
            stream: 0,
            next_block: 0,
            index: BUF,
            buf: Box::new([0; BUF]),
        }
    }
}

impl ChainRng {
    /// The 32-byte key.
    pub fn get_seed(&self) -> [u8; 32] {
        let mut seed = [0u8; 32];
        for (b, k) in seed.chunks_exact_mut(4).zip(&self.key) {
            b.copy_from_slice(&k.to_le_bytes());
        }
        seed
    }

    /// The stream (ChaCha's 64-bit nonce).
    pub fn get_stream(&self) -> u64 {
        self.stream
    }

    /// Sets the stream and keeps the position.
    pub fn set_stream(&mut self, stream: u64) {
        self.stream = stream;
        if self.index < BUF {
            let wp = self.get_word_pos();
            self.set_word_pos(wp);
        }
    }

    /// Words handed out since the start of the stream (a 68-bit number).
    pub fn get_word_pos(&self) -> u128 {
        let start = if self.index < BUF {
            self.next_block.wrapping_sub(BLOCKS as u64)
        } else {
            self.next_block
        };
        let within = if self.index < BUF { self.index } else { 0 };
        u128::from(start) * BLOCK_WORDS as u128 + within as u128
    }

    /// Moves to word `pos` of the stream (the upper bits beyond 68 ignored).
    pub fn set_word_pos(&mut self, pos: u128) {
        self.next_block = (pos / BLOCK_WORDS as u128) as u64;
        let skip = (pos % BLOCK_WORDS as u128) as usize;
        self.index = BUF;
        if skip > 0 {
            self.refill();
            self.index = skip;
        }
    }

    /// Computes the next 16 blocks into the buffer.
    fn refill(&mut self) {
        blocks(&self.key, self.stream, self.next_block, &mut self.buf);
        self.next_block = self.next_block.wrapping_add(BLOCKS as u64);
        self.index = 0;
    }

    #[inline]
    fn word(&mut self) -> u32 {
        if self.index >= BUF {
            self.refill();
        }
        let w = self.buf[self.index];
        self.index += 1;
        w
    }

    /// Fills `out` with the next `2 out.len()` words, pairwise as
    /// `next_u64` would (low word first): `fill_bytes` of `8 out.len()`
    /// bytes read as little-endian u64s, without the byte copy.
    pub fn fill_u64(&mut self, out: &mut [u64]) {
        let mut k = 0;
        while k < out.len() {
            if self.index >= BUF {
                self.refill();
            }
            if self.index == BUF - 1 {
                out[k] = self.next_u64_pair();
                k += 1;
                continue;
            }
            let n = ((BUF - self.index) / 2).min(out.len() - k);
            let src = &self.buf[self.index..self.index + 2 * n];
            for (o, w) in out[k..k + n].iter_mut().zip(src.chunks_exact(2)) {
                *o = u64::from(w[0]) | (u64::from(w[1]) << 32);
            }
            self.index += 2 * n;
            k += n;
        }
    }

    #[inline]
    fn next_u64_pair(&mut self) -> u64 {
        let lo = self.word();
        let hi = self.word();
        u64::from(lo) | (u64::from(hi) << 32)
    }
}

impl TryRng for ChainRng {
    type Error = Infallible;

    #[inline]
    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok(self.word())
    }

    #[inline]
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        if self.index + 2 <= BUF {
            let w = u64::from(self.buf[self.index]) | (u64::from(self.buf[self.index + 1]) << 32);
            self.index += 2;
            return Ok(w);
        }
        Ok(self.next_u64_pair())
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), Infallible> {
        let mut at = 0;
        while at < dest.len() {
            if self.index >= BUF {
                self.refill();
            }
            let avail = BUF - self.index;
            let full = ((dest.len() - at) / 4).min(avail);
            // Whole words: fixed 4-byte copies (vectorised, no memmove call).
            let src = &self.buf[self.index..self.index + full];
            for (d, w) in dest[at..at + 4 * full].chunks_exact_mut(4).zip(src) {
                d.copy_from_slice(&w.to_le_bytes());
            }
            at += 4 * full;
            self.index += full;
            if at < dest.len() && full < avail {
                // The last 1-3 bytes take a whole word, as rand_core's.
                let n = dest.len() - at;
                dest[at..].copy_from_slice(&self.buf[self.index].to_le_bytes()[..n]);
                self.index += 1;
                at = dest.len();
            }
        }
        Ok(())
    }
}

impl TryCryptoRng for ChainRng {}

/// Blocks `first .. first + 16` of (key, stream) into `out`, in order.
fn blocks(key: &[u32; 8], stream: u64, first: u64, out: &mut [u32; BUF]) {
    #[cfg(target_arch = "x86_64")]
    if crate::simd::simd_level() == crate::simd::SimdLevel::Avx512 {
        // SAFETY: simd_level() returned Avx512 only if the CPU has AVX-512F.
        unsafe { avx512::blocks(key, stream, first, out) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if crate::simd::simd_level() == crate::simd::SimdLevel::Avx2 {
        let (lo, hi) = out.split_at_mut(BUF / 2);
        // SAFETY: simd_level() returned Avx2 only if the CPU has AVX2.
        unsafe {
            avx2::blocks(key, stream, first, lo);
            avx2::blocks(key, stream, first.wrapping_add(8), hi);
        }
        return;
    }
    portable_blocks(key, stream, first, out);
}

/// One ChaCha double round by the quarter-round macro `$qr` of a vector
/// path (`$qr!(a, b, c, d)` on state words a, b, c, d): the four columns,
/// then the four diagonals, with indices known at compile time so the
/// state stays in registers.
#[cfg(target_arch = "x86_64")]
macro_rules! double_round {
    ($qr:ident) => {
        $qr!(0, 4, 8, 12);
        $qr!(1, 5, 9, 13);
        $qr!(2, 6, 10, 14);
        $qr!(3, 7, 11, 15);
        $qr!(0, 5, 10, 15);
        $qr!(1, 6, 11, 12);
        $qr!(2, 7, 8, 13);
        $qr!(3, 4, 9, 14);
    };
}

/// The ChaCha8 block function, one block at a time.
fn portable_blocks(key: &[u32; 8], stream: u64, first: u64, out: &mut [u32; BUF]) {
    for (b, block) in out.chunks_exact_mut(BLOCK_WORDS).enumerate() {
        let ctr = first.wrapping_add(b as u64);
        let mut s = [0u32; 16];
        s[..4].copy_from_slice(&SIGMA);
        s[4..12].copy_from_slice(key);
        s[12] = ctr as u32;
        s[13] = (ctr >> 32) as u32;
        s[14] = stream as u32;
        s[15] = (stream >> 32) as u32;
        let mut x = s;
        for _ in 0..DOUBLE_ROUNDS {
            for (a, b, c, d) in [
                (0, 4, 8, 12),
                (1, 5, 9, 13),
                (2, 6, 10, 14),
                (3, 7, 11, 15),
                (0, 5, 10, 15),
                (1, 6, 11, 12),
                (2, 7, 8, 13),
                (3, 4, 9, 14),
            ] {
                x[a] = x[a].wrapping_add(x[b]);
                x[d] = (x[d] ^ x[a]).rotate_left(16);
                x[c] = x[c].wrapping_add(x[d]);
                x[b] = (x[b] ^ x[c]).rotate_left(12);
                x[a] = x[a].wrapping_add(x[b]);
                x[d] = (x[d] ^ x[a]).rotate_left(8);
                x[c] = x[c].wrapping_add(x[d]);
                x[b] = (x[b] ^ x[c]).rotate_left(7);
            }
        }
        for (o, (xi, si)) in block.iter_mut().zip(x.iter().zip(&s)) {
            *o = xi.wrapping_add(*si);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{BUF, DOUBLE_ROUNDS, SIGMA};
    use std::arch::x86_64::*;

    /// Sixteen blocks, block `j` in lane `j` of every state word.
    ///
    /// # Safety
    /// The CPU must have AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn blocks(key: &[u32; 8], stream: u64, first: u64, out: &mut [u32; BUF]) {
        let lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        // 64-bit counters first + j: the low words, and the high words
        // with the carry where the low word wrapped.
        let lo0 = _mm512_set1_epi32(first as u32 as i32);
        let lo = _mm512_add_epi32(lo0, lanes);
        let carry = _mm512_cmplt_epu32_mask(lo, lo0);
        let hi0 = _mm512_set1_epi32((first >> 32) as u32 as i32);
        let hi = _mm512_mask_add_epi32(hi0, carry, hi0, _mm512_set1_epi32(1));
        let mut s = [_mm512_setzero_si512(); 16];
        for i in 0..4 {
            s[i] = _mm512_set1_epi32(SIGMA[i] as i32);
        }
        for i in 0..8 {
            s[4 + i] = _mm512_set1_epi32(key[i] as i32);
        }
        s[12] = lo;
        s[13] = hi;
        s[14] = _mm512_set1_epi32(stream as u32 as i32);
        s[15] = _mm512_set1_epi32((stream >> 32) as u32 as i32);
        let mut x = s;
        macro_rules! qr {
            ($a:expr, $b:expr, $c:expr, $d:expr) => {
                x[$a] = _mm512_add_epi32(x[$a], x[$b]);
                x[$d] = _mm512_rol_epi32::<16>(_mm512_xor_si512(x[$d], x[$a]));
                x[$c] = _mm512_add_epi32(x[$c], x[$d]);
                x[$b] = _mm512_rol_epi32::<12>(_mm512_xor_si512(x[$b], x[$c]));
                x[$a] = _mm512_add_epi32(x[$a], x[$b]);
                x[$d] = _mm512_rol_epi32::<8>(_mm512_xor_si512(x[$d], x[$a]));
                x[$c] = _mm512_add_epi32(x[$c], x[$d]);
                x[$b] = _mm512_rol_epi32::<7>(_mm512_xor_si512(x[$b], x[$c]));
            };
        }
        for _ in 0..DOUBLE_ROUNDS {
            double_round!(qr);
        }
        for i in 0..16 {
            x[i] = _mm512_add_epi32(x[i], s[i]);
        }
        // Transpose: row i (state word i of blocks 0..16) -> block j's
        // words. Stage 1 interleaves words of row pairs, stage 2 pairs of
        // words of row quadruples, stages 3 and 4 move 128-bit lanes.
        let mut t = [_mm512_setzero_si512(); 16];
        for i in 0..8 {
            t[2 * i] = _mm512_unpacklo_epi32(x[2 * i], x[2 * i + 1]);
            t[2 * i + 1] = _mm512_unpackhi_epi32(x[2 * i], x[2 * i + 1]);
        }
        let mut u = [_mm512_setzero_si512(); 16];
        for i in 0..4 {
            u[4 * i] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
            u[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
            u[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
            u[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
        }
        // u[4q + r], 128-bit lane L: words 4q..4q+4 of block 4L + r.
        let mut v = [_mm512_setzero_si512(); 16];
        for r in 0..4 {
            // Lanes (0, 1) of q = 0, 1 and of q = 2, 3; then lanes (2, 3).
            let a = _mm512_shuffle_i32x4::<0x44>(u[r], u[4 + r]); // q0 L0 L1, q1 L0 L1
            let b = _mm512_shuffle_i32x4::<0x44>(u[8 + r], u[12 + r]); // q2 L0 L1, q3 L0 L1
            let c = _mm512_shuffle_i32x4::<0xee>(u[r], u[4 + r]); // q0 L2 L3, q1 L2 L3
            let d = _mm512_shuffle_i32x4::<0xee>(u[8 + r], u[12 + r]); // q2 L2 L3, q3 L2 L3
            // Block 4L + r = q0 LL, q1 LL, q2 LL, q3 LL.
            v[r] = _mm512_shuffle_i32x4::<0x88>(a, b); // L0
            v[4 + r] = _mm512_shuffle_i32x4::<0xdd>(a, b); // L1
            v[8 + r] = _mm512_shuffle_i32x4::<0x88>(c, d); // L2
            v[12 + r] = _mm512_shuffle_i32x4::<0xdd>(c, d); // L3
        }
        for (j, vj) in v.iter().enumerate() {
            // SAFETY: block j's 16 words lie inside `out`.
            unsafe { _mm512_storeu_si512(out.as_mut_ptr().add(16 * j).cast(), *vj) };
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{BLOCK_WORDS, DOUBLE_ROUNDS, SIGMA};
    use std::arch::x86_64::*;

    /// Eight blocks, block `j` in lane `j` of every state word (the AVX-512
    /// scheme at half the width): `out` gets blocks `first..first + 8` in
    /// stream order.
    ///
    /// # Safety
    /// The CPU must have AVX2; `out` holds 8 blocks.
    #[target_feature(enable = "avx2")]
    pub unsafe fn blocks(key: &[u32; 8], stream: u64, first: u64, out: &mut [u32]) {
        assert_eq!(out.len(), 8 * BLOCK_WORDS);
        let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        // 64-bit counters first + j: the low words, and the high words
        // plus one where the low word wrapped (unsigned lo < lo0, compared
        // signed after flipping the top bits).
        let lo0 = _mm256_set1_epi32(first as u32 as i32);
        let lo = _mm256_add_epi32(lo0, lanes);
        let top = _mm256_set1_epi32(i32::MIN);
        let wrapped = _mm256_cmpgt_epi32(_mm256_xor_si256(lo0, top), _mm256_xor_si256(lo, top));
        let hi = _mm256_sub_epi32(_mm256_set1_epi32((first >> 32) as u32 as i32), wrapped);
        let mut s = [_mm256_setzero_si256(); 16];
        for i in 0..4 {
            s[i] = _mm256_set1_epi32(SIGMA[i] as i32);
        }
        for i in 0..8 {
            s[4 + i] = _mm256_set1_epi32(key[i] as i32);
        }
        s[12] = lo;
        s[13] = hi;
        s[14] = _mm256_set1_epi32(stream as u32 as i32);
        s[15] = _mm256_set1_epi32((stream >> 32) as u32 as i32);
        // Rotations by whole bytes are byte shuffles within each word.
        let rot16 = _mm256_setr_epi8(
            2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13, 2, 3, 0, 1, 6, 7, 4, 5, 10, 11,
            8, 9, 14, 15, 12, 13,
        );
        let rot8 = _mm256_setr_epi8(
            3, 0, 1, 2, 7, 4, 5, 6, 11, 8, 9, 10, 15, 12, 13, 14, 3, 0, 1, 2, 7, 4, 5, 6, 11, 8, 9,
            10, 15, 12, 13, 14,
        );
        let mut x = s;
        macro_rules! qr {
            ($a:expr, $b:expr, $c:expr, $d:expr) => {
                x[$a] = _mm256_add_epi32(x[$a], x[$b]);
                x[$d] = _mm256_shuffle_epi8(_mm256_xor_si256(x[$d], x[$a]), rot16);
                x[$c] = _mm256_add_epi32(x[$c], x[$d]);
                let t = _mm256_xor_si256(x[$b], x[$c]);
                x[$b] = _mm256_or_si256(_mm256_slli_epi32::<12>(t), _mm256_srli_epi32::<20>(t));
                x[$a] = _mm256_add_epi32(x[$a], x[$b]);
                x[$d] = _mm256_shuffle_epi8(_mm256_xor_si256(x[$d], x[$a]), rot8);
                x[$c] = _mm256_add_epi32(x[$c], x[$d]);
                let t = _mm256_xor_si256(x[$b], x[$c]);
                x[$b] = _mm256_or_si256(_mm256_slli_epi32::<7>(t), _mm256_srli_epi32::<25>(t));
            };
        }
        for _ in 0..DOUBLE_ROUNDS {
            double_round!(qr);
        }
        for i in 0..16 {
            x[i] = _mm256_add_epi32(x[i], s[i]);
        }
        // Two 8 x 8 transposes (words 0..8, then 8..16): after the 32- and
        // 64-bit interleaves, u[r] holds words 0..4 of block r in its low
        // 128-bit lane and of block 4 + r in its high one, u[4 + r] words
        // 4..8 of the same blocks.
        for g in 0..2 {
            let w = &x[8 * g..8 * g + 8];
            let mut t = [_mm256_setzero_si256(); 8];
            for i in 0..4 {
                t[2 * i] = _mm256_unpacklo_epi32(w[2 * i], w[2 * i + 1]);
                t[2 * i + 1] = _mm256_unpackhi_epi32(w[2 * i], w[2 * i + 1]);
            }
            let mut u = [_mm256_setzero_si256(); 8];
            for h in 0..2 {
                let t = &t[4 * h..4 * h + 4];
                u[4 * h] = _mm256_unpacklo_epi64(t[0], t[2]);
                u[4 * h + 1] = _mm256_unpackhi_epi64(t[0], t[2]);
                u[4 * h + 2] = _mm256_unpacklo_epi64(t[1], t[3]);
                u[4 * h + 3] = _mm256_unpackhi_epi64(t[1], t[3]);
            }
            for r in 0..4 {
                let low = _mm256_permute2x128_si256::<0x20>(u[r], u[4 + r]);
                let high = _mm256_permute2x128_si256::<0x31>(u[r], u[4 + r]);
                // SAFETY: blocks r and 4 + r, words 8g..8g + 8, lie in `out`.
                unsafe {
                    let base = out.as_mut_ptr().add(8 * g);
                    _mm256_storeu_si256(base.add(BLOCK_WORDS * r).cast(), low);
                    _mm256_storeu_si256(base.add(BLOCK_WORDS * (4 + r)).cast(), high);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, RngExt};
    use rand_chacha::ChaCha8Rng;

    fn pair(seed: u64, stream: u64) -> (ChainRng, ChaCha8Rng) {
        let mut a = ChainRng::seed_from_u64(seed);
        let mut b = ChaCha8Rng::seed_from_u64(seed);
        a.set_stream(stream);
        b.set_stream(stream);
        (a, b)
    }

    #[test]
    fn blocks_equal_rand_chacha_for_every_instruction_set() {
        for (seed, stream, first) in [
            (0u64, 0u64, 0u64),
            (7, 3, 5),
            (u64::MAX, u64::MAX, u64::MAX - 3),
            (99, 1 << 40, (1 << 32) - 7),
        ] {
            let mut want = [0u32; BUF];
            let mut r = ChaCha8Rng::seed_from_u64(seed);
            r.set_stream(stream);
            r.set_word_pos(u128::from(first) * 16);
            for w in want.iter_mut() {
                *w = r.next_u32();
            }
            let a = ChainRng::seed_from_u64(seed);
            let mut got = [0u32; BUF];
            portable_blocks(&a.key, stream, first, &mut got);
            assert_eq!(got, want, "portable, seed {seed}");
            blocks(&a.key, stream, first, &mut got);
            assert_eq!(got, want, "dispatched, seed {seed}");
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") {
                let mut got = [0u32; BUF];
                let (lo, hi) = got.split_at_mut(BUF / 2);
                // SAFETY: the CPU has AVX2; each half holds 8 blocks.
                unsafe {
                    avx2::blocks(&a.key, stream, first, lo);
                    avx2::blocks(&a.key, stream, first.wrapping_add(8), hi);
                }
                assert_eq!(got, want, "avx2, seed {seed}");
            }
        }
    }

    #[test]
    fn streams_equal_rand_chacha_under_mixed_calls() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        for case in 0..200u64 {
            let (mut a, mut b) = pair(case * 7919, case % 13);
            // Start at a random position in the stream (sometimes a block boundary).
            let pos: u128 = if case % 3 == 0 {
                u128::from(rng.random_range(0..1000u32)) * 16
            } else {
                u128::from(rng.random_range(0..100_000u32))
            };
            a.set_word_pos(pos);
            b.set_word_pos(pos);
            for _ in 0..300 {
                match rng.random_range(0..5u32) {
                    0 => assert_eq!(a.next_u32(), b.next_u32()),
                    1 => assert_eq!(a.next_u64(), b.next_u64()),
                    2 => {
                        let n = rng.random_range(0..700usize);
                        let (mut x, mut y) = (vec![0u8; n], vec![0u8; n]);
                        a.fill_bytes(&mut x);
                        b.fill_bytes(&mut y);
                        assert_eq!(x, y);
                    }
                    3 => {
                        let n = rng.random_range(0..300usize);
                        let mut x = vec![0u64; n];
                        a.fill_u64(&mut x);
                        let mut y = vec![0u8; 8 * n];
                        b.fill_bytes(&mut y);
                        let y: Vec<u64> = y
                            .chunks_exact(8)
                            .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
                            .collect();
                        assert_eq!(x, y);
                    }
                    _ => {
                        let s = rng.random_range(0..4u64);
                        a.set_stream(s);
                        b.set_stream(s);
                    }
                }
                assert_eq!(a.get_word_pos(), b.get_word_pos(), "case {case}");
            }
            assert_eq!(a.get_seed(), b.get_seed());
            assert_eq!(a.get_stream(), b.get_stream());
            let f: f64 = a.random();
            let g: f64 = b.random();
            assert_eq!(f.to_bits(), g.to_bits());
        }
    }

    #[test]
    fn a_clone_continues_the_same_stream() {
        let mut a = ChainRng::seed_from_u64(5);
        let _ = a.next_u32();
        let mut b = a.clone();
        assert_eq!(a, b);
        for _ in 0..1000 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
    }
}
