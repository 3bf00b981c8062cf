//! Randomness: one seeded ChaCha8 stream per component, and the kernel's keyed hashes.
//!
//! Every component (a host's allocator, a workload's arrivals, a workload's latencies …)
//! draws from its own stream: `ChaCha8Rng::seed_from_u64(seed)` with `set_stream` set to a
//! stable 64-bit hash of the component's name. Adding a workload therefore never perturbs
//! the draws of another one.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::LazyLock;

/// The random stream of the component named `component` under `seed`.
pub fn stream(seed: u64, component: &str) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(fnv1a(component.as_bytes()));
    rng
}

/// FNV-1a, 64 bit: a stable name → stream-id map.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// A 128-bit SipHash key (the kernel's `net_secret` and friends).
pub type SipKey = [u64; 2];

#[inline(always)]
fn sipround(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13);
    v[1] ^= v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16);
    v[3] ^= v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21);
    v[3] ^= v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17);
    v[1] ^= v[2];
    v[2] = v[2].rotate_left(32);
}

fn sip_init(key: &SipKey) -> [u64; 4] {
    [
        key[0] ^ 0x736f_6d65_7073_6575,
        key[1] ^ 0x646f_7261_6e64_6f6d,
        key[0] ^ 0x6c79_6765_6e65_7261,
        key[1] ^ 0x7465_6462_7974_6573,
    ]
}

fn sip_compress(v: &mut [u64; 4], m: u64) {
    v[3] ^= m;
    sipround(v);
    sipround(v);
    v[0] ^= m;
}

fn sip_finish(v: &mut [u64; 4]) -> u64 {
    v[2] ^= 0xff;
    for _ in 0..4 {
        sipround(v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

/// SipHash-2-4 of an arbitrary byte string.
pub fn siphash(key: &SipKey, msg: &[u8]) -> u64 {
    let mut v = sip_init(key);
    let mut chunks = msg.chunks_exact(8);
    for c in &mut chunks {
        sip_compress(&mut v, u64::from_le_bytes(c.try_into().expect("8 bytes")));
    }
    let mut last = (msg.len() as u64 & 0xff) << 56;
    for (i, b) in chunks.remainder().iter().enumerate() {
        last |= u64::from(*b) << (8 * i);
    }
    sip_compress(&mut v, last);
    sip_finish(&mut v)
}

/// SipHash-2-4 of two 64-bit words (16 bytes), as the kernel's `siphash_2u64`.
pub fn siphash_2u64(a: u64, b: u64, key: &SipKey) -> u64 {
    let mut v = sip_init(key);
    sip_compress(&mut v, a);
    sip_compress(&mut v, b);
    sip_compress(&mut v, 16u64 << 56);
    sip_finish(&mut v)
}

/// The kernel's `siphash_4u32(a, b, c, d)`: `siphash_2u64(b<<32 | a, d<<32 | c)`.
pub fn siphash_4u32(a: u32, b: u32, c: u32, d: u32, key: &SipKey) -> u64 {
    siphash_2u64(
        (u64::from(b) << 32) | u64::from(a),
        (u64::from(d) << 32) | u64::from(c),
        key,
    )
}

/// The kernel's `siphash_3u32(a, b, c)`: 12 bytes.
pub fn siphash_3u32(a: u32, b: u32, c: u32, key: &SipKey) -> u64 {
    let mut v = sip_init(key);
    sip_compress(&mut v, (u64::from(b) << 32) | u64::from(a));
    sip_compress(&mut v, (12u64 << 56) | u64::from(c));
    sip_finish(&mut v)
}

/// The ziggurat of the unit exponential: 256 layers of equal area `V` (Marsaglia and Tsang,
/// "The Ziggurat Method for Generating Random Variables", 2000), the base layer's tail
/// starting at `R`. `x[i]` is the right edge of layer `i` (`x[0] = V / f(R)`, `x[1] = R`,
/// `x[256] = 0`), `f[i] = exp(-x[i])`. Computed once with `libm`, so the same on every
/// platform.
pub struct Ziggurat {
    x: [f64; 257],
    f: [f64; 257],
}

const ZIG_EXP_R: f64 = 7.697_117_470_131_05;

static ZIGGURAT: LazyLock<Ziggurat> = LazyLock::new(|| {
    let r = ZIG_EXP_R;
    let v = libm::exp(-r) * (r + 1.0);
    let mut x = [0.0; 257];
    x[0] = v / libm::exp(-r);
    x[1] = r;
    for i in 1..255 {
        x[i + 1] = -libm::log(v / x[i] + libm::exp(-x[i]));
    }
    let mut f = [1.0; 257];
    for i in 0..256 {
        f[i] = libm::exp(-x[i]);
    }
    Ziggurat { x, f }
});

/// A uniform draw on `[0, 1)` from the top 52 bits of `bits`.
#[inline]
fn unit52(bits: u64) -> f64 {
    // Below 2^52: the signed conversion is exact and one instruction.
    ((bits >> 12) as i64) as f64 * (1.0 / (1u64 << 52) as f64)
}

/// A unit exponential draw by the ziggurat: one 64-bit draw and a multiply nearly always
/// (the low 8 bits pick the layer, the top 52 the point); a logarithm only in the tail, an
/// exponential only on a layer's wedge. Only IEEE arithmetic and `libm`: bit-identical on
/// every platform.
#[inline]
pub fn exp1(rng: &mut ChaCha8Rng) -> f64 {
    exp1_in(ziggurat(), rng)
}

/// The ziggurat's tables, built on first use.
pub fn ziggurat() -> &'static Ziggurat {
    &ZIGGURAT
}

/// [`exp1`] with the tables already at hand: a hot loop skips the first-use check.
#[inline]
pub fn exp1_in(z: &Ziggurat, rng: &mut ChaCha8Rng) -> f64 {
    loop {
        let bits = rng.next_u64();
        let i = (bits & 0xff) as usize;
        let x = unit52(bits) * z.x[i];
        if x < z.x[i + 1] {
            return x;
        }
        if let Some(x) = exp1_edge(rng, z, i, x) {
            return x;
        }
    }
}

/// The rare cases of [`exp1`]: the base layer's tail (`R` plus a fresh unit exponential, the
/// distribution being memoryless), or a point of layer `i` outside its inner rectangle, kept
/// if it falls under the curve.
#[cold]
fn exp1_edge(rng: &mut ChaCha8Rng, z: &Ziggurat, i: usize, x: f64) -> Option<f64> {
    if i == 0 {
        // (0, 1]: the logarithm is finite.
        let u = ((rng.next_u64() >> 11) + 1) as f64 * (1.0 / (1u64 << 53) as f64);
        return Some(ZIG_EXP_R - libm::log(u));
    }
    let y = z.f[i + 1] + (z.f[i] - z.f[i + 1]) * unit52(rng.next_u64());
    (y < libm::exp(-x)).then_some(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: SipKey = [0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908];

    #[test]
    fn siphash_matches_the_reference_vector() {
        // SipHash paper, Appendix A: key 00..0f, message 00..0e.
        let msg: Vec<u8> = (0u8..15).collect();
        assert_eq!(siphash(&KEY, &msg), 0xa129_ca61_49be_45e5);
        // Empty message, first entry of the reference vectors.
        assert_eq!(siphash(&KEY, &[]), 0x726f_db47_dd0e_0e31);
    }

    #[test]
    fn word_forms_equal_the_byte_form() {
        let (a, b, c, d) = (0x0a00_0001u32, 0x0a00_0002u32, 80u32, 1234u32);
        let mut bytes = Vec::new();
        for w in [a, b, c, d] {
            bytes.extend_from_slice(&w.to_le_bytes());
        }
        assert_eq!(siphash_4u32(a, b, c, d, &KEY), siphash(&KEY, &bytes));
        assert_eq!(siphash_3u32(a, b, c, &KEY), siphash(&KEY, &bytes[..12]));
    }

    #[test]
    fn the_ziggurat_draws_a_unit_exponential() {
        let z = &*ZIGGURAT;
        // Layers of equal area V: x[i] (f[i+1] - f[i]) + tail terms telescope; check two.
        let v = z.x[0] * z.f[1];
        for i in [1, 100, 254] {
            let area = z.x[i] * (z.f[i + 1] - z.f[i]);
            assert!((area - v).abs() < 1e-12, "layer {i}: {area} vs {v}");
        }
        // The top layer closes at the mode: its area is V too (R fixes that).
        let top = z.x[255] * (1.0 - z.f[255]);
        assert!((top - v).abs() < 1e-9, "top layer {top} vs {v}");
        let mut rng = stream(3, "exp");
        let n = 2_000_000;
        let draws: Vec<f64> = (0..n).map(|_| exp1(&mut rng)).collect();
        let mean = draws.iter().sum::<f64>() / n as f64;
        let var = draws.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / n as f64;
        // Standard errors: mean 1/sqrt(n) = 0.0007, variance about 0.0016.
        assert!((mean - 1.0).abs() < 0.004, "{mean}");
        assert!((var - 1.0).abs() < 0.01, "{var}");
        for t in [0.1, 0.5, 1.0, 2.0, 4.0, 7.0, 9.0] {
            let p = draws.iter().filter(|&&d| d > t).count() as f64 / n as f64;
            let exact = (-t).exp();
            let sd = (exact * (1.0 - exact) / n as f64).sqrt();
            assert!(
                (p - exact).abs() < 5.0 * sd + 1e-6,
                "P(X > {t}) = {p}, not {exact}"
            );
        }
        assert!(draws.iter().all(|d| d.is_finite() && *d >= 0.0));
    }

    #[test]
    fn streams_are_independent_of_each_other() {
        use rand::Rng;
        let mut a = stream(7, "host:client:alloc");
        let mut b = stream(7, "workload:w1:arrivals");
        let mut a2 = stream(7, "host:client:alloc");
        let x = a.next_u64();
        assert_eq!(x, a2.next_u64());
        assert_ne!(x, b.next_u64());
    }
}

/// The kernel's `jhash2` (include/linux/jhash.h): Bob Jenkins' lookup3 over 32-bit words.
pub fn jhash_words(k: &[u32], initval: u32) -> u32 {
    fn mix(a: &mut u32, b: &mut u32, c: &mut u32) {
        *a = a.wrapping_sub(*c) ^ c.rotate_left(4);
        *c = c.wrapping_add(*b);
        *b = b.wrapping_sub(*a) ^ a.rotate_left(6);
        *a = a.wrapping_add(*c);
        *c = c.wrapping_sub(*b) ^ b.rotate_left(8);
        *b = b.wrapping_add(*a);
        *a = a.wrapping_sub(*c) ^ c.rotate_left(16);
        *c = c.wrapping_add(*b);
        *b = b.wrapping_sub(*a) ^ a.rotate_left(19);
        *a = a.wrapping_add(*c);
        *c = c.wrapping_sub(*b) ^ b.rotate_left(4);
        *b = b.wrapping_add(*a);
    }
    fn fin(a: &mut u32, b: &mut u32, c: &mut u32) {
        *c = (*c ^ *b).wrapping_sub(b.rotate_left(14));
        *a = (*a ^ *c).wrapping_sub(c.rotate_left(11));
        *b = (*b ^ *a).wrapping_sub(a.rotate_left(25));
        *c = (*c ^ *b).wrapping_sub(b.rotate_left(16));
        *a = (*a ^ *c).wrapping_sub(c.rotate_left(4));
        *b = (*b ^ *a).wrapping_sub(a.rotate_left(14));
        *c = (*c ^ *b).wrapping_sub(b.rotate_left(24));
    }
    let init = 0xdead_beef_u32
        .wrapping_add((k.len() as u32) << 2)
        .wrapping_add(initval);
    let (mut a, mut b, mut c) = (init, init, init);
    let mut k = k;
    while k.len() > 3 {
        a = a.wrapping_add(k[0]);
        b = b.wrapping_add(k[1]);
        c = c.wrapping_add(k[2]);
        mix(&mut a, &mut b, &mut c);
        k = &k[3..];
    }
    match k.len() {
        0 => return c,
        3 => {
            c = c.wrapping_add(k[2]);
            b = b.wrapping_add(k[1]);
            a = a.wrapping_add(k[0]);
        }
        2 => {
            b = b.wrapping_add(k[1]);
            a = a.wrapping_add(k[0]);
        }
        _ => a = a.wrapping_add(k[0]),
    }
    fin(&mut a, &mut b, &mut c);
    c
}

#[cfg(test)]
mod jhash_tests {
    /// lookup3.c's published check: hashword of nothing with initval 0 is 0xdeadbeef.
    #[test]
    fn jhash_of_nothing_is_the_init_value() {
        assert_eq!(super::jhash_words(&[], 0), 0xdead_beef);
    }
}
