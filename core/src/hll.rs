//! A HyperLogLog distinct-count sketch for active users (UUIDs) per time
//! bucket, so "active users in the last 1h / 24h / 30d" costs the same at
//! 1M users as at 10: one sketch per bucket, merged over the window.
//!
//! * Precision p = 12: 4096 registers of 6 bits, standard error
//!   ≈ 1.04/√4096 ≈ 1.6 %.
//! * Hash: [`hash_uuid`], a fixed 64-bit function of the 16 UUID bytes built
//!   from the Murmur3 `fmix64` finalizer. It is part of the serialized format
//!   and must never change within a format version (pinned by a test).
//! * Sparse mode (HLL++ style): while the sketch holds at most
//!   [`SPARSE_LIMIT`] distinct hashes it keeps the sorted hashes themselves
//!   and counts exactly; the 385th distinct hash converts it to dense
//!   registers, for good. A merge stays sparse exactly when the union fits.
//! * Dense estimate: Otmar Ertl's "improved raw estimator" (*New cardinality
//!   estimation algorithms for HyperLogLog sketches*, 2017, algorithm 6). It
//!   is unbiased over the whole range without empirical bias tables or a
//!   switch to linear counting, so it has no bump at ~2.5·m.
//!
//! The result of any sequence of inserts and merges depends only on the set
//! of hashes that went in (sorted hashes while at most 512, otherwise the
//! registers' per-index maximum), so merge is commutative, associative and
//! idempotent down to the bytes.
//!
//! Format, version 2 (all integers little-endian):
//!
//! | bytes | content                                                        |
//! |-------|----------------------------------------------------------------|
//! | 0     | version, `2`                                                   |
//! | 1     | kind: `0` sparse, `1` dense                                     |
//! | 2..   | sparse: n ≤ 384 strictly increasing `u64` hashes, 8 bytes each |
//! |       | dense: 4096 registers of 6 bits, each ≤ 53, in 3072 bytes:     |
//! |       | registers 4i..4i+3 in bytes 3i..3i+2, lowest bits first        |
//!
//! At most 3,074 bytes either way: a stored sketch and its next version fit
//! in one 8 kB page together, so rewriting it can be a HOT update (with one
//! byte a register, 4,098 bytes, every rewrite moved to a new page).
//!
//! An empty sketch is the 2 bytes `[2, 0]`. [`Sketch::from_bytes`] is total:
//! any input either decodes to a sketch whose `to_bytes` gives the input back
//! or is refused with an [`Error`]; it never panics.

use std::fmt;

/// log2 of the number of registers.
pub const PRECISION: u32 = 12;
/// Number of dense registers.
pub const REGISTERS: usize = 1 << PRECISION;
/// Bytes of the packed dense registers (6 bits each).
const DENSE_BYTES: usize = REGISTERS * 6 / 8;
/// Most distinct hashes kept exactly (sparse); 384 × 8 bytes is the size of
/// the dense registers.
pub const SPARSE_LIMIT: usize = DENSE_BYTES / 8;
/// Current serialization format version (1, with one byte a register and up
/// to 512 sparse hashes, was never released and is not read).
pub const FORMAT_VERSION: u8 = 2;

const KIND_SPARSE: u8 = 0;
const KIND_DENSE: u8 = 1;
const HEADER_BYTES: usize = 2;
/// Largest register value: position of the first 1 bit among the 52 hash bits
/// after the index, or 53 when all are zero.
const MAX_RANK: u8 = (64 - PRECISION + 1) as u8;
/// Domain separation for [`hash_uuid`]: changing it changes the format.
const HASH_SEED: u64 = 0x9e37_79b9_7f4a_7c15;

/// Why [`Sketch::from_bytes`] refused its input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// Fewer bytes than the 2-byte header.
    Truncated { len: usize },
    /// A format version this code does not read.
    UnsupportedVersion(u8),
    /// A kind byte other than sparse (0) or dense (1).
    UnknownKind(u8),
    /// Sparse payload not a whole number of 8-byte hashes.
    SparseLength { payload: usize },
    /// More hashes than a sparse sketch ever holds.
    TooManyHashes { count: usize },
    /// Hashes not strictly increasing (unsorted or duplicated) at this position.
    UnsortedHashes { position: usize },
    /// Dense payload not exactly 3072 bytes.
    DenseLength { payload: usize },
    /// A register above the largest possible rank.
    RegisterOutOfRange { index: usize, value: u8 },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Truncated { len } => write!(f, "hll sketch too short: {len} bytes, header needs 2"),
            Error::UnsupportedVersion(v) => {
                write!(
                    f,
                    "unsupported hll sketch version {v} (this build reads {FORMAT_VERSION})"
                )
            }
            Error::UnknownKind(k) => write!(f, "unknown hll sketch kind {k}"),
            Error::SparseLength { payload } => {
                write!(f, "sparse hll payload of {payload} bytes is not a multiple of 8")
            }
            Error::TooManyHashes { count } => {
                write!(
                    f,
                    "sparse hll sketch holds {count} hashes, at most {SPARSE_LIMIT} allowed"
                )
            }
            Error::UnsortedHashes { position } => {
                write!(
                    f,
                    "sparse hll hashes not strictly increasing at position {position}"
                )
            }
            Error::DenseLength { payload } => {
                write!(f, "dense hll payload of {payload} bytes, expected {DENSE_BYTES}")
            }
            Error::RegisterOutOfRange { index, value } => {
                write!(
                    f,
                    "hll register {index} holds {value}, at most {MAX_RANK} allowed"
                )
            }
        }
    }
}

impl std::error::Error for Error {}

/// Murmur3's 64-bit finalizer: a bijection with full avalanche.
const fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

/// The sketch's 64-bit hash of a UUID's 16 bytes: `fmix64` of the first
/// half (little-endian, seeded), xor the second half, `fmix64` again. For a
/// fixed first half it is injective in the second; both halves avalanche
/// into every output bit, so time-ordered (v7) and random (v4) UUIDs both
/// spread evenly. Fixed forever within format version 1.
pub fn hash_uuid(uuid: &[u8; 16]) -> u64 {
    let (lo, hi) = uuid.split_at(8);
    // Both halves are exactly 8 bytes, so the conversions cannot fail.
    let lo = u64::from_le_bytes(lo.try_into().unwrap_or([0; 8]));
    let hi = u64::from_le_bytes(hi.try_into().unwrap_or([0; 8]));
    fmix64(fmix64(lo ^ HASH_SEED) ^ hi)
}

/// Register index (top 12 bits) and rank (1 + leading zeros of the rest,
/// at most 53) of a hash.
fn index_rank(hash: u64) -> (usize, u8) {
    let index = (hash >> (64 - PRECISION)) as usize;
    // The sentinel bit caps the rank at 53 when the 52 remaining bits are 0.
    let rest = (hash << PRECISION) | (1 << (PRECISION - 1));
    (index, rest.leading_zeros() as u8 + 1)
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Repr {
    /// Strictly increasing distinct hashes, at most `SPARSE_LIMIT`.
    Sparse(Vec<u64>),
    /// One rank per register.
    Dense(Box<[u8; REGISTERS]>),
}

/// A HyperLogLog++-style distinct-count sketch of UUIDs. See the module
/// documentation for the representation and the serialized format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sketch {
    repr: Repr,
}

impl Default for Sketch {
    fn default() -> Self {
        Sketch::new()
    }
}

impl Sketch {
    /// An empty (sparse) sketch.
    pub fn new() -> Sketch {
        Sketch {
            repr: Repr::Sparse(Vec::new()),
        }
    }

    /// Adds a UUID. Returns whether the sketch changed (equivalently, whether
    /// `to_bytes` changed), so a caller writes it back only when needed.
    pub fn insert(&mut self, uuid: &[u8; 16]) -> bool {
        self.insert_hash(hash_uuid(uuid))
    }

    fn insert_hash(&mut self, hash: u64) -> bool {
        match &mut self.repr {
            Repr::Sparse(hashes) => match hashes.binary_search(&hash) {
                Ok(_) => false,
                Err(at) => {
                    if hashes.len() < SPARSE_LIMIT {
                        hashes.insert(at, hash);
                    } else {
                        let mut registers = dense_from(hashes);
                        update(&mut registers, hash);
                        self.repr = Repr::Dense(registers);
                    }
                    true
                }
            },
            Repr::Dense(registers) => update(registers, hash),
        }
    }

    /// Merges `other` into `self` (set union). Returns whether `self` changed.
    pub fn merge(&mut self, other: &Sketch) -> bool {
        match (&mut self.repr, &other.repr) {
            (Repr::Sparse(mine), Repr::Sparse(theirs)) => {
                let union = sorted_union(mine, theirs);
                // The union contains `mine`, so equal length means equal.
                if union.len() == mine.len() {
                    return false;
                }
                self.repr = if union.len() <= SPARSE_LIMIT {
                    Repr::Sparse(union)
                } else {
                    Repr::Dense(dense_from(&union))
                };
                true
            }
            (Repr::Sparse(mine), Repr::Dense(theirs)) => {
                let mut registers = theirs.clone();
                for &hash in mine.iter() {
                    update(&mut registers, hash);
                }
                // Dense bytes always differ from sparse ones.
                self.repr = Repr::Dense(registers);
                true
            }
            (Repr::Dense(mine), Repr::Sparse(theirs)) => {
                let mut changed = false;
                for &hash in theirs {
                    changed |= update(mine, hash);
                }
                changed
            }
            (Repr::Dense(mine), Repr::Dense(theirs)) => {
                let mut changed = false;
                for (m, &t) in mine.iter_mut().zip(theirs.iter()) {
                    if t > *m {
                        *m = t;
                        changed = true;
                    }
                }
                changed
            }
        }
    }

    /// Estimated number of distinct UUIDs inserted: exact while sparse,
    /// Ertl's improved raw estimator once dense (≈1.6 % standard error).
    pub fn estimate(&self) -> u64 {
        match &self.repr {
            Repr::Sparse(hashes) => hashes.len() as u64,
            Repr::Dense(registers) => ertl_estimate(registers),
        }
    }

    /// Whether nothing was ever inserted (or merged in).
    pub fn is_empty(&self) -> bool {
        match &self.repr {
            Repr::Sparse(hashes) => hashes.is_empty(),
            Repr::Dense(registers) => registers.iter().all(|&r| r == 0),
        }
    }

    /// Whether the sketch still counts exactly (at most 512 distinct hashes).
    pub fn is_sparse(&self) -> bool {
        matches!(self.repr, Repr::Sparse(_))
    }

    /// Serializes in format version 2: 2 + 8·n bytes sparse, 2 + 3072 dense.
    pub fn to_bytes(&self) -> Vec<u8> {
        match &self.repr {
            Repr::Sparse(hashes) => {
                let mut out = Vec::with_capacity(HEADER_BYTES + 8 * hashes.len());
                out.extend_from_slice(&[FORMAT_VERSION, KIND_SPARSE]);
                for hash in hashes {
                    out.extend_from_slice(&hash.to_le_bytes());
                }
                out
            }
            Repr::Dense(registers) => {
                let mut out = Vec::with_capacity(HEADER_BYTES + DENSE_BYTES);
                out.extend_from_slice(&[FORMAT_VERSION, KIND_DENSE]);
                for r in registers.chunks_exact(4) {
                    out.extend_from_slice(&[r[0] | r[1] << 6, r[1] >> 2 | r[2] << 4, r[2] >> 4 | r[3] << 2]);
                }
                out
            }
        }
    }

    /// Parses [`to_bytes`](Sketch::to_bytes) output. Total: malformed input
    /// (from a `bytea`, say) is an `Err`, never a panic, and anything accepted
    /// re-serializes to exactly the same bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Sketch, Error> {
        let [version, kind, payload @ ..] = bytes else {
            return Err(Error::Truncated { len: bytes.len() });
        };
        if *version != FORMAT_VERSION {
            return Err(Error::UnsupportedVersion(*version));
        }
        match *kind {
            KIND_SPARSE => {
                if payload.len() % 8 != 0 {
                    return Err(Error::SparseLength {
                        payload: payload.len(),
                    });
                }
                let count = payload.len() / 8;
                if count > SPARSE_LIMIT {
                    return Err(Error::TooManyHashes { count });
                }
                let mut hashes = Vec::with_capacity(count);
                for (position, chunk) in payload.chunks_exact(8).enumerate() {
                    let mut word = [0u8; 8];
                    word.copy_from_slice(chunk);
                    let hash = u64::from_le_bytes(word);
                    if hashes.last().is_some_and(|&previous| previous >= hash) {
                        return Err(Error::UnsortedHashes { position });
                    }
                    hashes.push(hash);
                }
                Ok(Sketch {
                    repr: Repr::Sparse(hashes),
                })
            }
            KIND_DENSE => {
                if payload.len() != DENSE_BYTES {
                    return Err(Error::DenseLength {
                        payload: payload.len(),
                    });
                }
                let mut registers = [0u8; REGISTERS];
                for (r, b) in registers.chunks_exact_mut(4).zip(payload.chunks_exact(3)) {
                    r[0] = b[0] & 63;
                    r[1] = b[0] >> 6 | (b[1] & 15) << 2;
                    r[2] = b[1] >> 4 | (b[2] & 3) << 4;
                    r[3] = b[2] >> 2;
                }
                if let Some((index, &value)) = registers.iter().enumerate().find(|(_, &r)| r > MAX_RANK) {
                    return Err(Error::RegisterOutOfRange { index, value });
                }
                Ok(Sketch {
                    repr: Repr::Dense(Box::new(registers)),
                })
            }
            other => Err(Error::UnknownKind(other)),
        }
    }
}

/// Entry point for a `cargo fuzz` target over arbitrary bytes: decoding never
/// panics, and whatever decodes re-encodes to the same bytes and survives
/// estimate, insert and merge.
#[doc(hidden)]
pub fn fuzz_from_bytes(data: &[u8]) {
    if let Ok(mut sketch) = Sketch::from_bytes(data) {
        assert_eq!(sketch.to_bytes(), data);
        let _ = sketch.estimate();
        let copy = sketch.clone();
        assert!(!sketch.merge(&copy));
        sketch.insert(&[0x5a; 16]);
        let _ = sketch.estimate();
    }
}

/// Raises the register of `hash`; returns whether it rose.
fn update(registers: &mut [u8; REGISTERS], hash: u64) -> bool {
    let (index, rank) = index_rank(hash);
    let register = &mut registers[index];
    if rank > *register {
        *register = rank;
        true
    } else {
        false
    }
}

fn dense_from(hashes: &[u64]) -> Box<[u8; REGISTERS]> {
    let mut registers = Box::new([0u8; REGISTERS]);
    for &hash in hashes {
        update(&mut registers, hash);
    }
    registers
}

/// Union of two strictly increasing sequences, strictly increasing.
fn sorted_union(a: &[u64], b: &[u64]) -> Vec<u64> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while let (Some(&x), Some(&y)) = (a.get(i), b.get(j)) {
        if x < y {
            out.push(x);
            i += 1;
        } else if y < x {
            out.push(y);
            j += 1;
        } else {
            out.push(x);
            i += 1;
            j += 1;
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

/// Ertl (2017), algorithm 6: the improved raw estimator from the register
/// value histogram, valid from empty to saturated without corrections.
fn ertl_estimate(registers: &[u8; REGISTERS]) -> u64 {
    let q = usize::from(MAX_RANK) - 1; // 52 hash bits after the index
    let mut histogram = [0u32; MAX_RANK as usize + 1];
    for &r in registers.iter() {
        // from_bytes and update keep every register ≤ MAX_RANK.
        histogram[usize::from(r.min(MAX_RANK))] += 1;
    }
    let m = REGISTERS as f64;
    if histogram[0] as usize == REGISTERS {
        return 0;
    }
    let mut z = m * tau(1.0 - f64::from(histogram[q + 1]) / m);
    for k in (1..=q).rev() {
        z = 0.5 * (z + f64::from(histogram[k]));
    }
    z += m * sigma(f64::from(histogram[0]) / m);
    let alpha_inf = 1.0 / (2.0 * std::f64::consts::LN_2);
    (alpha_inf * m * m / z).round() as u64
}

/// σ(x) = x + Σ_{k≥1} x^(2^k) · 2^(k−1), for x in [0, 1).
fn sigma(mut x: f64) -> f64 {
    if x >= 1.0 {
        return f64::INFINITY;
    }
    let mut y = 1.0;
    let mut z = x;
    loop {
        x *= x;
        let previous = z;
        z += x * y;
        y += y;
        if z == previous {
            return z;
        }
    }
}

/// τ(x) = (1 − x − Σ_{k≥1} (1 − x^(2^−k))² · 2^−k) / 3, for x in [0, 1].
fn tau(mut x: f64) -> f64 {
    if x == 0.0 || x == 1.0 {
        return 0.0;
    }
    let mut y = 1.0;
    let mut z = 1.0 - x;
    loop {
        x = x.sqrt();
        let previous = z;
        y *= 0.5;
        z -= (1.0 - x).powi(2) * y;
        if z == previous {
            return z / 3.0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Deterministic pseudo-random UUIDs (SplitMix64), no `rand` needed.
    struct Uuids(u64);

    impl Iterator for Uuids {
        type Item = [u8; 16];
        fn next(&mut self) -> Option<[u8; 16]> {
            let mut word = || {
                self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
                fmix64(self.0)
            };
            let mut uuid = [0u8; 16];
            uuid[..8].copy_from_slice(&word().to_le_bytes());
            uuid[8..].copy_from_slice(&word().to_le_bytes());
            // Shape them like v4 UUIDs (version and variant bits).
            uuid[6] = (uuid[6] & 0x0f) | 0x40;
            uuid[8] = (uuid[8] & 0x3f) | 0x80;
            Some(uuid)
        }
    }

    fn sketch_of<'a>(uuids: impl IntoIterator<Item = &'a [u8; 16]>) -> Sketch {
        let mut sketch = Sketch::new();
        for uuid in uuids {
            sketch.insert(uuid);
        }
        sketch
    }

    fn relative_error(n: u64, seed: u64) -> f64 {
        let mut sketch = Sketch::new();
        for uuid in Uuids(seed).take(n as usize) {
            sketch.insert(&uuid);
        }
        assert!(!sketch.is_sparse());
        (sketch.estimate() as f64 - n as f64) / n as f64
    }

    #[test]
    fn hash_is_pinned() {
        // Part of the serialized format: these values must never change.
        assert_eq!(hash_uuid(&[0; 16]), 0x6393_d51c_06c6_18dc);
        assert_eq!(hash_uuid(&[0xff; 16]), 0xa055_e88e_d5c9_0f86);
        let uuid = *b"\x01\x23\x45\x67\x89\xab\xcd\xef\x01\x23\x45\x67\x89\xab\xcd\xef";
        assert_eq!(hash_uuid(&uuid), 0x760c_94f4_ba43_dd74);
    }

    #[test]
    fn index_and_rank() {
        assert_eq!(index_rank(0), (0, MAX_RANK));
        assert_eq!(index_rank(u64::MAX), (REGISTERS - 1, 1));
        assert_eq!(index_rank(1 << 51), (0, 1));
        assert_eq!(index_rank(1), (0, 52));
        assert_eq!(index_rank(0xabc0_0000_0000_0000 | (1 << 40)), (0xabc, 12));
    }

    #[test]
    fn empty_sketch() {
        let sketch = Sketch::new();
        assert!(sketch.is_empty());
        assert!(sketch.is_sparse());
        assert_eq!(sketch.estimate(), 0);
        assert_eq!(sketch.to_bytes(), vec![FORMAT_VERSION, KIND_SPARSE]);
        assert_eq!(Sketch::from_bytes(&[FORMAT_VERSION, 0]), Ok(Sketch::new()));
        assert_eq!(Sketch::default(), Sketch::new());
        let dense_zero: Vec<u8> = [FORMAT_VERSION, 1].into_iter().chain([0; DENSE_BYTES]).collect();
        let sketch = Sketch::from_bytes(&dense_zero).unwrap();
        assert!(sketch.is_empty());
        assert_eq!(sketch.estimate(), 0);
    }

    #[test]
    fn eight_users_counted_exactly() {
        let users: Vec<_> = Uuids(8).take(8).collect();
        let mut sketch = Sketch::new();
        for user in &users {
            assert!(sketch.insert(user));
            assert!(!sketch.insert(user));
        }
        for user in users.iter().rev() {
            assert!(!sketch.insert(user));
        }
        assert!(!sketch.is_empty());
        assert_eq!(sketch.estimate(), 8);
        assert_eq!(sketch.to_bytes().len(), 2 + 8 * 8);
    }

    #[test]
    fn converts_to_dense_after_limit() {
        let users: Vec<_> = Uuids(1).take(SPARSE_LIMIT + 1).collect();
        let mut sketch = sketch_of(&users[..SPARSE_LIMIT]);
        assert!(sketch.is_sparse());
        assert_eq!(sketch.estimate(), SPARSE_LIMIT as u64);
        assert_eq!(sketch.to_bytes().len(), 2 + 8 * SPARSE_LIMIT);
        assert!(!sketch.insert(&users[0]));
        assert!(sketch.is_sparse());
        assert!(sketch.insert(&users[SPARSE_LIMIT]));
        assert!(!sketch.is_sparse());
        assert_eq!(sketch.to_bytes().len(), 2 + DENSE_BYTES);
        let estimate = sketch.estimate() as f64;
        assert!(
            (estimate / (SPARSE_LIMIT + 1) as f64 - 1.0).abs() < 0.05,
            "{estimate}"
        );
        assert_eq!(Sketch::from_bytes(&sketch.to_bytes()), Ok(sketch));
    }

    #[test]
    fn merge_of_sparse_overflowing_goes_dense() {
        let users: Vec<_> = Uuids(2).take(600).collect();
        let mut a = sketch_of(&users[..300]);
        let b = sketch_of(&users[250..]);
        assert!(a.is_sparse() && b.is_sparse());
        assert!(a.merge(&b));
        assert!(!a.is_sparse());
        assert_eq!(a, sketch_of(&users));
        let mut small = sketch_of(&users[..10]);
        assert!(small.merge(&sketch_of(&users[5..20])));
        assert!(small.is_sparse());
        assert_eq!(small.estimate(), 20);
    }

    #[test]
    fn decode_errors() {
        assert_eq!(Sketch::from_bytes(&[]), Err(Error::Truncated { len: 0 }));
        assert_eq!(Sketch::from_bytes(&[1]), Err(Error::Truncated { len: 1 }));
        assert_eq!(Sketch::from_bytes(&[1, 0]), Err(Error::UnsupportedVersion(1)));
        assert_eq!(
            Sketch::from_bytes(&[FORMAT_VERSION, 7]),
            Err(Error::UnknownKind(7))
        );
        assert_eq!(
            Sketch::from_bytes(&[FORMAT_VERSION, 0, 1, 2, 3]),
            Err(Error::SparseLength { payload: 3 })
        );
        let too_many: Vec<u8> = [FORMAT_VERSION, 0]
            .into_iter()
            .chain((0..=SPARSE_LIMIT as u64).flat_map(u64::to_le_bytes))
            .collect();
        assert_eq!(
            Sketch::from_bytes(&too_many),
            Err(Error::TooManyHashes {
                count: SPARSE_LIMIT + 1
            })
        );
        let unsorted: Vec<u8> = [FORMAT_VERSION, 0]
            .into_iter()
            .chain([5u64, 9, 9].into_iter().flat_map(u64::to_le_bytes))
            .collect();
        assert_eq!(
            Sketch::from_bytes(&unsorted),
            Err(Error::UnsortedHashes { position: 2 })
        );
        assert_eq!(
            Sketch::from_bytes(&[FORMAT_VERSION, 1, 0]),
            Err(Error::DenseLength { payload: 1 })
        );
        // Register 100 (byte 75, the lowest 6 bits) at 63.
        let mut dense: Vec<u8> = [FORMAT_VERSION, 1].into_iter().chain([0; DENSE_BYTES]).collect();
        dense[2 + 75] = 63;
        assert_eq!(
            Sketch::from_bytes(&dense),
            Err(Error::RegisterOutOfRange {
                index: 100,
                value: 63
            })
        );
        assert!(Error::UnknownKind(7).to_string().contains("kind 7"));
    }

    #[test]
    fn dense_estimate_within_five_percent() {
        for (n, seed) in [(1_000, 11), (10_000, 12), (100_000, 13), (1_000_000, 14)] {
            let error = relative_error(n, seed);
            eprintln!("n = {n}: relative error {:+.3} %", 100.0 * error);
            assert!(error.abs() < 0.05, "n = {n}: relative error {error}");
        }
    }

    #[test]
    fn dense_error_is_near_theory_across_seeds() {
        // Root-mean-square error over 32 sketches at a mid-range n, where the
        // classic estimator has its bias bump; theory says ≈ 1.63 %.
        let errors: Vec<f64> = (0..32).map(|seed| relative_error(12_000, 100 + seed)).collect();
        let rms = (errors.iter().map(|e| e * e).sum::<f64>() / errors.len() as f64).sqrt();
        let mean = errors.iter().sum::<f64>() / errors.len() as f64;
        eprintln!(
            "n = 12000 over 32 seeds: rms {:.3} %, mean {:+.3} %",
            100.0 * rms,
            100.0 * mean
        );
        assert!(rms < 0.025, "rms {rms}");
        assert!(mean.abs() < 0.01, "mean {mean}");
    }

    /// Up to 1500 UUIDs, each in a non-empty subset of three sketches
    /// (bit 0: a, bit 1: b, bit 2: c), so unions overlap and cross the
    /// sparse limit in some cases only.
    fn three_sketches() -> impl Strategy<Value = (Sketch, Sketch, Sketch, Sketch)> {
        prop::collection::vec((any::<[u8; 16]>(), 1u8..8), 0..1500).prop_map(|items| {
            let pick = |bit: u8| sketch_of(items.iter().filter(|(_, m)| m & bit != 0).map(|(u, _)| u));
            let all = sketch_of(items.iter().map(|(u, _)| u));
            (pick(1), pick(2), pick(4), all)
        })
    }

    fn merged(a: &Sketch, b: &Sketch) -> Sketch {
        let mut out = a.clone();
        out.merge(b);
        out
    }

    proptest! {
        #[test]
        fn sparse_counts_are_exact(users in prop::collection::hash_set(any::<[u8; 16]>(), 0..=SPARSE_LIMIT)) {
            let sketch = sketch_of(&users);
            prop_assert!(sketch.is_sparse());
            prop_assert_eq!(sketch.estimate(), users.len() as u64);
            prop_assert_eq!(sketch.is_empty(), users.is_empty());
            prop_assert_eq!(sketch.to_bytes().len(), 2 + 8 * users.len());
        }

        #[test]
        fn insert_reports_change_exactly(users in prop::collection::vec(any::<[u8; 16]>(), 0..800), repeat in prop::collection::vec(any::<prop::sample::Index>(), 0..50)) {
            let mut sketch = Sketch::new();
            let mut stream = users.clone();
            if !users.is_empty() {
                stream.extend(repeat.iter().map(|i| users[i.index(users.len())]));
            }
            for user in &stream {
                let before = sketch.to_bytes();
                let changed = sketch.insert(user);
                prop_assert_eq!(changed, sketch.to_bytes() != before);
                prop_assert!(!sketch.insert(user), "second insert of the same UUID changed the sketch");
            }
        }

        #[test]
        fn merge_laws((a, b, c, all) in three_sketches()) {
            // Commutative.
            let ab = merged(&a, &b);
            let ba = merged(&b, &a);
            prop_assert_eq!(ab.to_bytes(), ba.to_bytes());
            prop_assert_eq!(ab.estimate(), ba.estimate());
            // Associative, and equal to the sketch of the union.
            let ab_c = merged(&ab, &c);
            let a_bc = merged(&a, &merged(&b, &c));
            prop_assert_eq!(ab_c.to_bytes(), a_bc.to_bytes());
            prop_assert_eq!(ab_c.estimate(), a_bc.estimate());
            prop_assert_eq!(ab_c.to_bytes(), all.to_bytes());
            // Idempotent, and merging what is already there reports no change.
            let mut again = ab_c.clone();
            prop_assert!(!again.merge(&ab_c));
            prop_assert!(!again.merge(&a));
            prop_assert!(!again.merge(&Sketch::new()));
            prop_assert_eq!(again.to_bytes(), ab_c.to_bytes());
            // The returned flag matches a change of bytes.
            let mut x = a.clone();
            let changed = x.merge(&b);
            prop_assert_eq!(changed, x.to_bytes() != a.to_bytes());
        }

        #[test]
        fn serialization_round_trips((a, b, _, all) in three_sketches()) {
            for sketch in [a, b, all] {
                let bytes = sketch.to_bytes();
                let expected = if sketch.is_sparse() { 2 + 8 * sketch.estimate() as usize } else { 2 + DENSE_BYTES };
                prop_assert_eq!(bytes.len(), expected);
                let decoded = Sketch::from_bytes(&bytes).unwrap();
                prop_assert_eq!(decoded.estimate(), sketch.estimate());
                prop_assert_eq!(&decoded, &sketch);
            }
        }

        #[test]
        fn from_bytes_is_total_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..5000)) {
            fuzz_from_bytes(&bytes);
        }

        #[test]
        fn from_bytes_is_total_on_mutated_sketches(
            (a, _, _, all) in three_sketches(),
            edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
            cut in any::<prop::sample::Index>(),
            truncate in any::<bool>(),
        ) {
            for sketch in [a, all] {
                let mut bytes = sketch.to_bytes();
                bytes[0] = FORMAT_VERSION;
                for (at, value) in &edits {
                    let i = at.index(bytes.len());
                    bytes[i] = *value;
                }
                if truncate {
                    bytes.truncate(cut.index(bytes.len() + 1));
                }
                fuzz_from_bytes(&bytes);
            }
        }
    }
}
