//! Ephemeral port allocation algorithms, executed literally, behind one trait.
//!
//! [`PortSelector`] is what a host calls for `connect()` on an unbound socket; a profile
//! names the implementation ([`crate::profile::Selection`]):
//! - [`LinuxAllocator`]: `__inet_hash_connect` (reference §1.2–§1.4), RFC 6056 Algorithm 4
//!   with a SipHash offset, a 65,536-entry perturbation table, a 10 s reseed epoch and an
//!   even-then-odd two-pass scan; or its pre-5.12 form (Algorithm 3, one global hint). It also
//!   runs `bind(ip, 0)`: `inet_csk_find_open_port` (§1.2 step 6, §1.5), odd ports first.
//! - [`BsdCursor`]: FreeBSD `in_pcb_lport_dest` and XNU `in_pcbbind` (§3.1, §3.3): one
//!   host-wide cursor, sequential, with an optional random start per call.
//! - [`Rfc6056`]: Algorithms 1–5 of RFC 6056 §3.3 as NetBSD runs them (§5.1).
//!
//! The kernels probe one candidate port at a time. The sequential scans here test 64
//! candidates per machine word against two [`PortBits`] sets (ports busy for the pool, ports
//! blocked host-wide), so a scan over 28,232 busy ports costs a few hundred word operations
//! instead of 28,232 hash lookups, and report the kernel's probe count. [`pass_literal`] and
//! the tests' probe loops are the one-candidate-at-a-time forms; proptests check that both
//! return the same port and count.

use crate::profile::{BindSearch, Selection};
use crate::rng::{SipKey, siphash_4u32};
use crate::time::Instant;
use rand::{Rng, RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A set of TCP ports, one bit per port, held in place (a host's pools' sets lie in one
/// array). Each 64-port word is the first of `N`: the others are the owner's, for what it
/// keeps per port beside the set.
#[derive(Clone)]
pub struct PortBits<const N: usize = 1> {
    words: [[u64; N]; 1024],
}

/// A connect() pool's port set.
pub type PoolPorts = PortBits;

/// The reuse watch's two-bit counts of a pool's ports (`sim/reuse_watch.rs`): two words per
/// 64-port word of the pool's port set. A host keeps them apart from its port sets, and only
/// once it counts a port ([`crate::host::Host::watch_counts_mut`]): most runs never do.
#[derive(Clone)]
pub struct PoolCounts {
    words: [[u64; 2]; 1024],
}

impl Default for PoolCounts {
    fn default() -> Self {
        PoolCounts {
            words: [[0; 2]; 1024],
        }
    }
}

impl PoolCounts {
    /// The two words counting the 64 ports around `port`, and `port`'s bit in them.
    #[inline(always)]
    pub fn of(&self, port: u16) -> (&[u64; 2], u64) {
        (&self.words[usize::from(port >> 6)], 1u64 << (port & 63))
    }
    /// [`Self::of`], to change.
    #[inline(always)]
    pub fn of_mut(&mut self, port: u16) -> (&mut [u64; 2], u64) {
        (&mut self.words[usize::from(port >> 6)], 1u64 << (port & 63))
    }
    /// Brings the words counting `port` into cache.
    #[inline]
    pub fn prefetch(&self, port: u16) {
        crate::engine::prefetch(&self.words[usize::from(port >> 6)]);
    }
}

impl<const N: usize> Default for PortBits<N> {
    fn default() -> Self {
        PortBits {
            words: [[0; N]; 1024],
        }
    }
}

impl<const N: usize> PortBits<N> {
    /// The set's word holding ports `64 w ..= 64 w + 63`.
    #[inline(always)]
    fn word(&self, w: usize) -> u64 {
        self.words[w][0]
    }
    #[inline]
    pub fn contains(&self, port: u16) -> bool {
        self.word(usize::from(port >> 6)) & (1u64 << (port & 63)) != 0
    }
    /// Adds `port`; true if it was absent.
    #[inline]
    pub fn insert(&mut self, port: u16) -> bool {
        let w = &mut self.words[usize::from(port >> 6)][0];
        let bit = 1u64 << (port & 63);
        let was = *w & bit != 0;
        *w |= bit;
        !was
    }
    /// Removes `port`; true if it was present.
    #[inline]
    pub fn remove(&mut self, port: u16) -> bool {
        let w = &mut self.words[usize::from(port >> 6)][0];
        let bit = 1u64 << (port & 63);
        let was = *w & bit != 0;
        *w &= !bit;
        was
    }
    /// Brings the word holding `port` into cache.
    #[inline]
    pub fn prefetch(&self, port: u16) {
        crate::engine::prefetch(&self.words[usize::from(port >> 6)]);
    }
    /// Number of ports of `lo..=hi` in the set.
    pub fn count_in(&self, lo: u16, hi: u16) -> u32 {
        PortBits::count_union_in(self, self, lo, hi)
    }
    /// Number of ports of `lo..=hi` in `a ∪ b`, a word at a time.
    pub fn count_union_in<const M: usize>(a: &Self, b: &PortBits<M>, lo: u16, hi: u16) -> u32 {
        if lo > hi {
            return 0;
        }
        let (wl, wh) = (usize::from(lo >> 6), usize::from(hi >> 6));
        (wl..=wh)
            .map(|w| {
                let mut m = u64::MAX;
                if w == wl {
                    m &= u64::MAX << (lo & 63);
                }
                if w == wh {
                    m &= u64::MAX >> (63 - (hi & 63));
                }
                ((a.word(w) | b.word(w)) & m).count_ones()
            })
            .sum()
    }
}

/// Which 64-port words of `a ∪ b` still have a free port of each parity: bit `w % 64` of
/// `by_parity[p][w / 64]` is set when word `w` has a free port `≡ p (mod 2)`. Kept by the
/// owner of `a` and `b` after every change, it lets a scan skip full words.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct FreeWords {
    by_parity: [[u64; 16]; 2],
}

/// The even ports of a word.
const EVEN: u64 = 0x5555_5555_5555_5555;
/// The ports of a word of each parity.
const PARITY: [u64; 2] = [EVEN, !EVEN];

impl FreeWords {
    /// The index of `a ∪ b`, computed from scratch.
    pub fn new<const N: usize>(a: &PortBits<N>, b: &PortBits) -> Self {
        let mut f = FreeWords {
            by_parity: [[0; 16]; 2],
        };
        for w in 0..1024 {
            f.refresh(a, b, w);
        }
        f
    }
    /// Recomputes the bits of word `w` (the word holding port `w * 64`).
    #[inline]
    pub fn refresh<const N: usize>(&mut self, a: &PortBits<N>, b: &PortBits, w: usize) {
        let free = !(a.word(w) | b.word(w));
        let bit = 1u64 << (w & 63);
        for (p, mask) in PARITY.iter().enumerate() {
            let x = &mut self.by_parity[p][w >> 6];
            if free & mask != 0 {
                *x |= bit;
            } else {
                *x &= !bit;
            }
        }
    }
    /// Updates the index after `port` joined `a ∪ b`: only a word whose last free port of
    /// that parity went is written, so the common case reads no index word.
    #[inline]
    pub fn after_insert<const N: usize>(&mut self, a: &PortBits<N>, b: &PortBits, port: u16) {
        let (w, p) = (usize::from(port >> 6), usize::from(port & 1));
        if !(a.word(w) | b.word(w)) & PARITY[p] == 0 {
            self.by_parity[p][w >> 6] &= !(1u64 << (w & 63));
        }
    }
    /// Updates the index after `port` may have left `a ∪ b`: only a word that had no free
    /// port of that parity is written.
    #[inline]
    pub fn after_remove<const N: usize>(&mut self, a: &PortBits<N>, b: &PortBits, port: u16) {
        let (w, p) = (usize::from(port >> 6), usize::from(port & 1));
        let bit = 1u64 << (port & 63);
        let free = !(a.word(w) | b.word(w)) & PARITY[p];
        if free == bit {
            self.by_parity[p][w >> 6] |= 1u64 << (w & 63);
        }
    }
    /// First word index in `w..=last` that may hold a free port of the stride, if any.
    #[inline]
    fn next_word<const STEP: u32>(&self, w: usize, last: usize, parity: usize) -> Option<usize> {
        let pick = |i: usize| {
            if STEP == 1 {
                self.by_parity[0][i] | self.by_parity[1][i]
            } else {
                self.by_parity[parity][i]
            }
        };
        let mut i = w >> 6;
        let mut bits = pick(i) & (u64::MAX << (w & 63));
        loop {
            if bits != 0 {
                let found = (i << 6) + bits.trailing_zeros() as usize;
                return (found <= last).then_some(found);
            }
            i += 1;
            if (i << 6) > last {
                return None;
            }
            bits = pick(i);
        }
    }
}

/// First port `p` of `from..=to` with `p ≡ from (mod STEP)` that is in neither `a` nor `b`.
/// `STEP` is 1 or 2. `index`, when given, must describe `a ∪ b`. The first word is tested
/// before the index is read: a search usually ends there.
#[inline(always)]
fn first_free<const STEP: u32, const N: usize>(
    a: &PortBits<N>,
    b: &PortBits,
    index: Option<&FreeWords>,
    from: u32,
    to: u32,
) -> Option<u32> {
    debug_assert!(STEP == 1 || STEP == 2);
    debug_assert!(to < 65536);
    if from > to {
        return None;
    }
    let parity = (from & 1) as usize;
    let stride_mask = if STEP == 1 { u64::MAX } else { PARITY[parity] };
    let (first_word, last_word) = ((from >> 6) as usize, (to >> 6) as usize);
    let tail = |w: usize, free: u64| {
        if w == last_word && (to & 63) != 63 {
            free & ((1u64 << ((to & 63) + 1)) - 1)
        } else {
            free
        }
    };
    let free = tail(
        first_word,
        !(a.word(first_word) | b.word(first_word)) & stride_mask & (u64::MAX << (from & 63)),
    );
    if free != 0 {
        return Some(((first_word as u32) << 6) + free.trailing_zeros());
    }
    let mut w = first_word + 1;
    while w <= last_word {
        if let Some(ix) = index {
            match ix.next_word::<STEP>(w, last_word, parity) {
                Some(next) => w = next,
                None => return None,
            }
        }
        let free = tail(w, !(a.word(w) | b.word(w)) & stride_mask);
        if free != 0 {
            return Some(((w as u32) << 6) + free.trailing_zeros());
        }
        w += 1;
    }
    None
}

/// One pass of the kernel's scan loop:
///
/// ```text
/// port = low + offset;
/// for (i = 0; i < remaining; i += step, port += step) {
///     if (port >= high) port -= remaining;      /* high is exclusive here */
///     … test port …
/// }
/// ```
///
/// Returns the first port not blocked in `pool` or `host` and its `i`. The arguments are the
/// kernel loop's own variables.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub fn pass<const N: usize>(
    low: u32,
    high: u32,
    remaining: u32,
    offset: u32,
    step: u32,
    pool: &PortBits<N>,
    host: &PortBits,
    index: Option<&FreeWords>,
) -> Option<(u32, u32)> {
    if step == 1 {
        pass_by::<1, N>(low, high, remaining, offset, pool, host, index)
    } else {
        pass_by::<2, N>(low, high, remaining, offset, pool, host, index)
    }
}

#[inline(always)]
fn pass_by<const STEP: u32, const N: usize>(
    low: u32,
    high: u32,
    remaining: u32,
    offset: u32,
    pool: &PortBits<N>,
    host: &PortBits,
    index: Option<&FreeWords>,
) -> Option<(u32, u32)> {
    let ceil = |n: u32| if STEP == 1 { n } else { n.div_ceil(2) };
    let iters = ceil(remaining);
    let start = low + offset;
    let n1 = if start < high {
        iters.min(ceil(high - start))
    } else {
        0
    };
    if n1 > 0
        && let Some(p) = first_free::<STEP, N>(pool, host, index, start, start + (n1 - 1) * STEP)
    {
        return Some((p, p - start));
    }
    if n1 < iters {
        let start2 = start + n1 * STEP - remaining;
        let end2 = start2 + (iters - n1 - 1) * STEP;
        if let Some(p) = first_free::<STEP, N>(pool, host, index, start2, end2) {
            return Some((p, n1 * STEP + (p - start2)));
        }
    }
    None
}

/// [`pass`] written as the kernel writes it: one candidate at a time.
pub fn pass_literal(
    low: u32,
    high: u32,
    remaining: u32,
    offset: u32,
    step: u32,
    mut usable: impl FnMut(u32) -> bool,
) -> Option<(u32, u32)> {
    let mut port = low + offset;
    let mut i = 0;
    while i < remaining {
        if port >= high {
            port -= remaining;
        }
        if usable(port) {
            return Some((port, i));
        }
        i += step;
        port += step;
    }
    None
}

/// One pass of the kernel's scan loop ([`pass`], its arguments but the sets): a word of
/// candidates at a time over port sets, or one candidate at a time.
trait Scan {
    fn pass<const STEP: u32>(
        &mut self,
        low: u32,
        high: u32,
        remaining: u32,
        offset: u32,
    ) -> Option<(u32, u32)>;
}

impl Scan for PortView<'_> {
    #[inline(always)]
    fn pass<const STEP: u32>(
        &mut self,
        low: u32,
        high: u32,
        remaining: u32,
        offset: u32,
    ) -> Option<(u32, u32)> {
        pass_by::<STEP, _>(
            low, high, remaining, offset, self.pool, self.host, self.index,
        )
    }
}

/// A candidate test applied one port at a time ([`pass_literal`]).
struct Literal<F>(F);

impl<F: FnMut(u32) -> bool> Scan for Literal<F> {
    fn pass<const STEP: u32>(
        &mut self,
        low: u32,
        high: u32,
        remaining: u32,
        offset: u32,
    ) -> Option<(u32, u32)> {
        pass_literal(low, high, remaining, offset, STEP, &mut self.0)
    }
}

/// The outcome of one port search.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Search {
    /// The port taken, or `None` when every candidate failed.
    pub port: Option<u16>,
    /// Loop iterations, reserved ports included: the kernel's probe count.
    pub probes: u32,
}

/// What `__inet_hash_connect` needs to know about the socket (§1.1, §1.2).
#[derive(Clone, Copy, Debug)]
pub struct ConnectQuery {
    pub saddr: u32,
    pub daddr: u32,
    pub dport: u16,
    /// Inclusive range from `inet_sk_get_local_port_range`.
    pub low: u16,
    pub high: u16,
    /// True when IP_LOCAL_PORT_RANGE narrowed the range: step 1, no parity (§1.2 step 6).
    pub per_socket_range: bool,
}

/// Size of `table_perturb`: `1 << CONFIG_INET_TABLE_PERTURB_ORDER`, order 16 (§1.2 step 2).
pub const PERTURB_TABLE_SIZE: usize = 1 << 16;
/// The time seed of `secure_ipv4_port_ephemeral` changes every 10 s (§1.2 step 1).
pub const RESEED_EPOCH_NS: u64 = 10_000_000_000;

/// What a port search may consult: the ports whose four-tuple toward this destination is
/// taken (`pool`; with host-wide scope, every port any socket holds), the ports blocked
/// host-wide (`host`: reserved, or held by a bind()/listener the kernel skips), and an index
/// of `pool ∪ host` to skip full words.
#[derive(Clone, Copy)]
pub struct PortView<'a> {
    pub pool: &'a PoolPorts,
    pub host: &'a PortBits,
    pub index: Option<&'a FreeWords>,
    /// A place the pool keeps for its allocator, beside what connect() reads of it anyway,
    /// given only when every query through it has the same (saddr, daddr, dport): Linux
    /// keeps its `port_offset` there with the epoch it was hashed in.
    pub memo: Option<&'a std::cell::Cell<(u64, u64)>>,
}

impl PortView<'_> {
    #[inline]
    fn free(&self, port: u32) -> bool {
        !self.pool.contains(port as u16) && !self.host.contains(port as u16)
    }

    /// The first free port met walking up from `start` through `first..=last`, wrapping
    /// once, and how many candidates were tested to find it.
    fn walk(&self, first: u32, last: u32, start: u32) -> Option<(u32, u32)> {
        if let Some(p) = first_free::<1, _>(self.pool, self.host, self.index, start, last) {
            return Some((p, p - start + 1));
        }
        if start > first
            && let Some(p) = first_free::<1, _>(self.pool, self.host, self.index, first, start - 1)
        {
            return Some((p, last - start + 1 + p - first + 1));
        }
        None
    }
}

/// A connect() port-selection algorithm: the one trait behind every profile's allocator
/// (Linux §1.2, BSD/XNU §3.1/§3.3, RFC 6056 §5.1).
pub trait PortSelector {
    /// Picks a port of `q.low..=q.high` that `view` shows free, or fails after testing every
    /// candidate the algorithm would test. Called only when at least one port is free.
    fn connect(&mut self, now: Instant, q: &ConnectQuery, view: &PortView<'_>) -> Search;
    /// Candidates tested when every port is busy (the search then fails).
    fn exhausted_probes(&self, q: &ConnectQuery) -> u32 {
        u32::from(q.high) - u32::from(q.low) + 1
    }
    /// Brings into cache what a connect() whose pool memo holds `memo` will read of this
    /// selector's state. A hint: a stale memo costs nothing but the wasted fetch.
    fn prefetch(&self, _memo: (u64, u64)) {}
}

/// The allocator of a host: Linux's held in place, so that a connect() runs it inline; the
/// others behind the trait. One per host, so its size does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Selector {
    Linux(LinuxAllocator),
    Other(Box<dyn PortSelector>),
}

impl PortSelector for Selector {
    #[inline(always)]
    fn connect(&mut self, now: Instant, q: &ConnectQuery, view: &PortView<'_>) -> Search {
        match self {
            Selector::Linux(l) => l.connect(now, q, view),
            Selector::Other(o) => o.connect(now, q, view),
        }
    }
    fn exhausted_probes(&self, q: &ConnectQuery) -> u32 {
        match self {
            Selector::Linux(l) => l.exhausted_probes(q),
            Selector::Other(o) => o.exhausted_probes(q),
        }
    }
    #[inline(always)]
    fn prefetch(&self, memo: (u64, u64)) {
        match self {
            Selector::Linux(l) => l.prefetch(memo),
            Selector::Other(o) => o.prefetch(memo),
        }
    }
}

/// Builds the allocator a profile names, drawing its secrets from `rng`.
pub fn selector(sel: Selection, range: (u16, u16), rng: ChaCha8Rng) -> Selector {
    match sel {
        Selection::Linux => Selector::Linux(LinuxAllocator::new(rng)),
        Selection::LinuxPre512 => Selector::Linux(LinuxAllocator::pre_5_12(rng)),
        Selection::LinuxPre42 => Selector::Other(Box::new(LinuxPre42::new(rng))),
        Selection::BsdCursor { random_start } => {
            Selector::Other(Box::new(BsdCursor::new(random_start, range, rng)))
        }
        Selection::Rfc6056(alg) => Selector::Other(Box::new(Rfc6056::new(alg, rng))),
    }
}

/// `get_random_u32_below(8)`: the top three bits of one 32-bit draw, which is what
/// `random_range(0..8)` gives from the same stream (a power of two never needs its second
/// draw), written out so that the hot path does not depend on how that inlines.
#[inline(always)]
fn below_8(rng: &mut ChaCha8Rng) -> u32 {
    rng.next_u32() >> 29
}

/// Entries of a [`Perturb`] table written before the whole table is drawn: beyond them an
/// array of every entry is smaller than the open-addressed one.
const PERTURB_SPARSE_MAX: usize = 4096;

/// Where a [`Perturb`] entry is: in the whole table (its index), in a slot, or not written
/// (its index and the empty slot it would take).
#[derive(Clone, Copy)]
enum Place {
    Dense(usize),
    Written(usize),
    Unwritten(usize, usize),
}

/// `table_perturb` (§1.2 step 2): 65,536 entries drawn in turn from the host's stream at
/// boot, of which a run reads few (one per pool and 10 s epoch), or before 5.12 the one
/// global `hint`.
///
/// An entry never written is drawn when read, from where the stream stood for it (ChaCha
/// seeks by word), so a fleet of hosts neither draws nor holds 256 KiB each; written entries
/// are kept, open-addressed by index, until there are [`PERTURB_SPARSE_MAX`] of them, when the
/// whole table is drawn. Every way gives the entries drawing the table at boot gives.
#[derive(Clone, PartialEq)]
struct Perturb {
    /// Every entry, once drawn; empty while sparse.
    dense: Box<[u32]>,
    /// While sparse, the entries written: `(index + 1, value)`, `(0, _)` where none is; a
    /// power of two in length, at most three quarters full.
    slots: Box<[(u32, u32)]>,
    /// Entries in `slots`.
    written: usize,
    /// The stream where the table's first entry is drawn.
    source: ChaCha8Rng,
}

impl Perturb {
    /// The table drawn from `rng` at its position, which moves past it, as drawing all of
    /// its entries would.
    fn drawn(rng: &mut ChaCha8Rng) -> Perturb {
        let source = rng.clone();
        rng.set_word_pos(source.get_word_pos() + PERTURB_TABLE_SIZE as u128);
        Perturb {
            dense: Box::default(),
            slots: vec![(0, 0); 16].into_boxed_slice(),
            written: 0,
            source,
        }
    }

    /// A table of one entry, `hint` (before 5.12).
    fn single(hint: u32) -> Perturb {
        Perturb {
            dense: vec![hint].into_boxed_slice(),
            slots: Box::default(),
            written: 0,
            source: ChaCha8Rng::from_seed([0; 32]),
        }
    }

    /// Entries in the table.
    #[inline(always)]
    fn len(&self) -> usize {
        if self.slots.is_empty() {
            self.dense.len()
        } else {
            PERTURB_TABLE_SIZE
        }
    }

    /// The slot of entry `index`: `Ok` where it is written, `Err` the empty slot it would
    /// take. The index is the low bits of a SipHash, spread already.
    #[inline(always)]
    fn find(&self, index: usize) -> Result<usize, usize> {
        let mask = self.slots.len() - 1;
        let key = index as u32 + 1;
        let mut at = index & mask;
        loop {
            match self.slots[at].0 {
                k if k == key => return Ok(at),
                0 => return Err(at),
                _ => at = (at + 1) & mask,
            }
        }
    }

    /// Entry `index`.
    #[cfg(test)]
    fn get(&self, index: usize) -> u32 {
        self.entry(index).1
    }

    /// Entry `index` and where it is, for [`Perturb::write`].
    #[inline(always)]
    fn entry(&self, index: usize) -> (Place, u32) {
        if self.slots.is_empty() {
            return (Place::Dense(index), self.dense[index]);
        }
        match self.find(index) {
            Ok(at) => (Place::Written(at), self.slots[at].1),
            Err(at) => (Place::Unwritten(index, at), self.draw(index)),
        }
    }

    /// Entry `index` as drawn at boot.
    #[cold]
    fn draw(&self, index: usize) -> u32 {
        let mut rng = self.source.clone();
        rng.set_word_pos(rng.get_word_pos() + index as u128);
        rng.next_u32()
    }

    /// Writes entry `index`.
    #[cfg(test)]
    fn set(&mut self, index: usize, value: u32) {
        let (place, _) = self.entry(index);
        self.write(place, value);
    }

    /// Writes the entry [`Perturb::entry`] found at `place`, nothing written since.
    #[inline(always)]
    fn write(&mut self, place: Place, value: u32) {
        match place {
            Place::Dense(index) => self.dense[index] = value,
            Place::Written(at) => self.slots[at].1 = value,
            Place::Unwritten(index, at) => {
                self.slots[at] = (index as u32 + 1, value);
                self.written += 1;
                if self.written * 4 > self.slots.len() * 3 {
                    self.grow();
                }
            }
        }
    }

    /// Twice the slots, or, past [`PERTURB_SPARSE_MAX`] entries written, the whole table.
    #[cold]
    fn grow(&mut self) {
        let slots = std::mem::take(&mut self.slots);
        if self.written > PERTURB_SPARSE_MAX {
            let mut rng = self.source.clone();
            let mut dense: Box<[u32]> = (0..PERTURB_TABLE_SIZE).map(|_| rng.next_u32()).collect();
            for &(k, v) in slots.iter().filter(|&&(k, _)| k != 0) {
                dense[k as usize - 1] = v;
            }
            self.dense = dense;
            return;
        }
        self.slots = vec![(0, 0); slots.len() * 2].into_boxed_slice();
        for &(k, v) in slots.iter().filter(|&&(k, _)| k != 0) {
            if let Err(at) = self.find(k as usize - 1) {
                self.slots[at] = (k, v);
            }
        }
    }

    /// Draws every entry now: the whole table, read at one load.
    fn draw_whole(&mut self) {
        if !self.slots.is_empty() {
            self.written = PERTURB_SPARSE_MAX + 1;
            self.grow();
        }
    }

    /// Brings entry `index` (where it would be) into cache.
    #[inline(always)]
    fn prefetch(&self, index: usize) {
        if self.slots.is_empty() {
            if let Some(e) = self.dense.get(index) {
                crate::engine::prefetch(e);
            }
        } else {
            crate::engine::prefetch(&self.slots[index & (self.slots.len() - 1)]);
        }
    }
}

/// Per-network-namespace state of Linux's port selection.
///
/// The kernel keys its hash with a boot-time random `net_secret`; here the key, the
/// perturbation table, the phase of the 10 s epoch (jiffies at scenario start) and the
/// `get_random_u32_below` draws all come from the host's seeded stream. Any keyed hash would
/// do; SipHash-2-4 over the kernel's own inputs is used.
///
/// Before 5.12 (`pre_5_12`) the loop was the same but the table was one global `hint`, the
/// hash had no time seed, and the hint advanced by exactly `i + 2` (RFC 6056 Algorithm 3,
/// §1.2 "History", §5.1).
pub struct LinuxAllocator {
    secret: SipKey,
    table: Perturb,
    epoch_phase_ns: u64,
    rng: ChaCha8Rng,
    pre_5_12: bool,
}

impl LinuxAllocator {
    pub fn new(mut rng: ChaCha8Rng) -> Self {
        let secret = [rng.next_u64(), rng.next_u64()];
        let table = Perturb::drawn(&mut rng);
        let epoch_phase_ns = rng.random_range(0..RESEED_EPOCH_NS);
        LinuxAllocator {
            secret,
            table,
            epoch_phase_ns,
            rng,
            pre_5_12: false,
        }
    }

    /// Linux 4.6–5.11: one global `hint`, no time seed, exact advance.
    pub fn pre_5_12(mut rng: ChaCha8Rng) -> Self {
        let secret = [rng.next_u64(), rng.next_u64()];
        let hint = rng.next_u32();
        LinuxAllocator {
            secret,
            table: Perturb::single(hint),
            epoch_phase_ns: 0,
            rng,
            pre_5_12: true,
        }
    }

    /// Draws the whole perturbation table now (it is drawn entry by entry as read, by
    /// default): the same entries, one load per connect() instead of a lookup, 256 KiB.
    pub fn draw_table(&mut self) {
        self.table.draw_whole();
    }

    /// The 10 s epoch in force at `now`: `jiffies / (HZ * 10)`; always 0 before 5.12.
    pub fn epoch(&self, now: Instant) -> u32 {
        if self.pre_5_12 {
            return 0;
        }
        ((now.0 + self.epoch_phase_ns) / RESEED_EPOCH_NS) as u32
    }

    /// `secure_ipv4_port_ephemeral(saddr, daddr, dport)`: SipHash of saddr, daddr, dport and
    /// the epoch. The source port is not an input (§1.2 step 1).
    pub fn port_offset(&self, saddr: u32, daddr: u32, dport: u16, epoch: u32) -> u64 {
        port_hash(&self.secret, saddr, daddr, dport, epoch)
    }

    /// [`Self::port_offset`] at `now`, from the pool's memo when it was hashed in this epoch
    /// (else hashed, and the memo updated); a query without a memo is hashed each time.
    #[inline(always)]
    pub fn memo_offset(
        &self,
        now: Instant,
        saddr: u32,
        daddr: u32,
        dport: u16,
        memo: Option<&std::cell::Cell<(u64, u64)>>,
    ) -> u64 {
        let epoch = u64::from(self.epoch(now));
        match memo {
            Some(memo) => match memo.get() {
                (e, off) if e == epoch => off,
                _ => {
                    let off = self.port_offset(saddr, daddr, dport, epoch as u32);
                    memo.set((epoch, off));
                    off
                }
            },
            None => self.port_offset(saddr, daddr, dport, epoch as u32),
        }
    }

    /// `__inet_hash_connect` for an unbound socket (§1.2–§1.4) with a given `port_offset`.
    #[inline(never)]
    pub fn connect_at(
        &mut self,
        q: &ConnectQuery,
        port_offset: u64,
        view: &PortView<'_>,
    ) -> Search {
        self.connect_with(q, port_offset, *view)
    }

    /// [`Self::connect_at`] with the candidate test supplied probe by probe.
    pub fn connect_literal(
        &mut self,
        q: &ConnectQuery,
        port_offset: u64,
        usable: impl FnMut(u32) -> bool,
    ) -> Search {
        self.connect_with(q, port_offset, Literal(usable))
    }

    #[inline(always)]
    fn connect_with(&mut self, q: &ConnectQuery, port_offset: u64, scan: impl Scan) -> Search {
        // IP_LOCAL_PORT_RANGE: every port in turn; else even ports, then odd (§1.2 step 6).
        if q.per_socket_range {
            self.connect_by::<1>(q, port_offset, scan)
        } else {
            self.connect_by::<2>(q, port_offset, scan)
        }
    }

    /// The scan's set-up (§1.2 steps 2–4): `low`, `high` (exclusive), `remaining`, the
    /// perturbation table's index and the first candidate's offset.
    #[inline(always)]
    fn scan_start<const STEP: u32>(
        &self,
        low: u16,
        high: u16,
        port_offset: u64,
    ) -> (u32, u32, u32, (Place, u32), u32) {
        let low = u32::from(low);
        let high = u32::from(high) + 1;
        let mut remaining = high - low;
        if STEP == 2 && remaining > 1 {
            remaining &= !1;
        }
        let index = (port_offset as usize) & (self.table.len() - 1);
        let (place, entry) = self.table.entry(index);
        let mut offset = entry.wrapping_add((port_offset >> 32) as u32) % remaining;
        if STEP == 2 {
            offset &= !1;
        }
        (low, high, remaining, (place, entry), offset)
    }

    /// A port found `i` candidates into the scan: the table entry `(place, value)` moves on
    /// by at least `i + step`, by a random 0–7 steps more after 5.12 (§1.2 step 7).
    #[inline(always)]
    fn found<const STEP: u32>(&mut self, (place, entry): (Place, u32), i: u32) {
        let i = if self.pre_5_12 {
            i
        } else {
            i.max(below_8(&mut self.rng) * STEP)
        };
        self.table.write(place, entry.wrapping_add(i + STEP));
    }

    /// [`Self::connect_at`] when its first candidate is free in `pool` and `host`, as it
    /// nearly always is in a pool far from full: the same port (its one probe) and the same
    /// state after. `None`, changing nothing, when the scan must run.
    #[inline(always)]
    pub fn connect_first(
        &mut self,
        q: &ConnectQuery,
        port_offset: u64,
        pool: &PoolPorts,
        host: &PortBits,
    ) -> Option<u16> {
        if q.per_socket_range {
            self.first_by::<1>(q, port_offset, pool, host)
        } else {
            self.first_by::<2>(q, port_offset, pool, host)
        }
    }

    /// [`Self::connect_first`] with the scan's stride.
    #[inline(always)]
    fn first_by<const STEP: u32>(
        &mut self,
        q: &ConnectQuery,
        port_offset: u64,
        pool: &PoolPorts,
        host: &PortBits,
    ) -> Option<u16> {
        let (low, high, _, index, offset) = self.scan_start::<STEP>(q.low, q.high, port_offset);
        let port = low + offset;
        if port >= high || pool.contains(port as u16) || host.contains(port as u16) {
            return None;
        }
        self.found::<STEP>(index, 0);
        Some(port as u16)
    }

    /// [`Self::connect_with`] with the scan's stride.
    #[inline(always)]
    fn connect_by<const STEP: u32>(
        &mut self,
        q: &ConnectQuery,
        port_offset: u64,
        mut scan: impl Scan,
    ) -> Search {
        let (low, high, remaining, index, mut offset) =
            self.scan_start::<STEP>(q.low, q.high, port_offset);
        let mut probes = 0;
        loop {
            if let Some((port, i)) = scan.pass::<STEP>(low, high, remaining, offset) {
                probes += i / STEP + 1;
                self.found::<STEP>(index, i);
                return Search {
                    port: Some(port as u16),
                    probes,
                };
            }
            probes += remaining.div_ceil(STEP);
            if STEP == 1 {
                break;
            }
            offset += 1;
            if !(offset & 1 == 1 && remaining > 1) {
                break;
            }
        }
        Search { port: None, probes }
    }

    /// `inet_csk_find_open_port` for `bind(addr, 0)` (§1.2 step 6, §1.5). `conflict(port, relax)`
    /// is `inet_csk_bind_conflict` for a port whose bind bucket exists, `None` when no bucket
    /// exists (the port is free); `owners(port)` its bucket's `num_owners`. `reuse` is
    /// SO_REUSEADDR (scan the lower half first); `autobind_reuse` is
    /// `net.ipv4.ip_autobind_reuse` (a relaxed second round). `search` is the release's form
    /// ([`BindSearch`]): before 4.11 an SO_REUSEADDR bind falls back to a shared port.
    #[allow(clippy::too_many_arguments)]
    pub fn bind_any(
        &mut self,
        low: u16,
        high: u16,
        reuse: bool,
        autobind_reuse: bool,
        search: BindSearch,
        reserved: impl Fn(u32) -> bool,
        mut conflict: impl FnMut(u32, bool) -> Option<bool>,
        owners: impl Fn(u32) -> u32,
        fast: Option<(&PortBits, &PortBits)>,
    ) -> Search {
        if search == BindSearch::Sequential {
            return self.bind_sequential(low, high, reuse, reserved, conflict, owners);
        }
        let smallest = search == BindSearch::SmallestShared && reuse;
        let mut probes = 0;
        let mut relax = false;
        loop {
            let mut attempt_half = u32::from(reuse);
            loop {
                let mut lo = u32::from(low);
                let mut hi = u32::from(high) + 1;
                if hi - lo < 4 {
                    attempt_half = 0;
                }
                if attempt_half != 0 {
                    let half = lo + (((hi - lo) >> 2) << 1);
                    if attempt_half == 1 {
                        hi = half;
                    } else {
                        lo = half;
                    }
                }
                let mut remaining = hi - lo;
                if remaining > 1 {
                    remaining &= !1;
                }
                let mut offset = self.rng.random_range(0..remaining) | 1;
                loop {
                    // `fast`: the ports that conflict and the reserved ones, as bit sets, when
                    // the conflict test is "any owner on this address" (not the relaxed
                    // round): the same first port and probe count, a word at a time.
                    let found = match fast {
                        Some((taken, reserved)) if !relax && !smallest => {
                            let f = pass(lo, hi, remaining, offset, 2, taken, reserved, None);
                            probes += match f {
                                Some((_, i)) => i / 2 + 1,
                                None => remaining.div_ceil(2),
                            };
                            f
                        }
                        _ => {
                            // 4.6–4.10: the shareable port of the pass with the fewest owners,
                            // the first met among equals (`tb->num_owners < smallest_size`).
                            let mut best: Option<(u32, u32)> = None;
                            let f = pass_literal(lo, hi, remaining, offset, 2, |port| {
                                probes += 1;
                                if reserved(port) || !conflict(port, relax).unwrap_or(false) {
                                    return !reserved(port);
                                }
                                if smallest && conflict(port, true) == Some(false) {
                                    let n = owners(port);
                                    if best.is_none_or(|(m, _)| n < m) {
                                        best = Some((n, port));
                                    }
                                }
                                false
                            });
                            f.or(best.map(|(_, p)| (p, 0)))
                        }
                    };
                    if let Some((port, _)) = found {
                        return Search {
                            port: Some(port as u16),
                            probes,
                        };
                    }
                    offset = offset.wrapping_sub(1);
                    if offset & 1 != 0 {
                        break;
                    }
                }
                if attempt_half == 1 {
                    attempt_half = 2;
                    continue;
                }
                break;
            }
            if autobind_reuse && !relax {
                relax = true;
                continue;
            }
            return Search { port: None, probes };
        }
    }
}

impl LinuxAllocator {
    /// Linux before 4.6 (3.10 `inet_csk_get_port` with `snum == 0`): every port in turn from
    /// a random one (`rover = net_random() % remaining + low`), no parity or halves. A port
    /// whose bucket conflicts is skipped; after a full scan with none free, the shareable
    /// one (SO_REUSEADDR, `tb->fastreuse > 0`) with the fewest owners is taken. The
    /// `bsockets > range` shortcut, which takes that port before the scan ends once the host
    /// holds more bound sockets than the range has ports, is not modelled.
    fn bind_sequential(
        &mut self,
        low: u16,
        high: u16,
        reuse: bool,
        reserved: impl Fn(u32) -> bool,
        mut conflict: impl FnMut(u32, bool) -> Option<bool>,
        owners: impl Fn(u32) -> u32,
    ) -> Search {
        let (lo, hi) = (u32::from(low), u32::from(high));
        let n = hi - lo + 1;
        let mut rover = lo + self.rng.random_range(0..n);
        let mut best: Option<(u32, u32)> = None;
        for probes in 1..=n {
            if !reserved(rover) {
                match conflict(rover, false) {
                    None | Some(false) => {
                        return Search {
                            port: Some(rover as u16),
                            probes,
                        };
                    }
                    Some(true) if reuse && conflict(rover, true) == Some(false) => {
                        let k = owners(rover);
                        if best.is_none_or(|(m, _)| k < m) {
                            best = Some((k, rover));
                        }
                    }
                    Some(true) => {}
                }
            }
            rover = if rover >= hi { lo } else { rover + 1 };
        }
        Search {
            port: best.map(|(_, p)| p as u16),
            probes: n,
        }
    }
}

/// Linux before 4.2 (3.10 `__inet_hash_connect`):
///
/// ```text
/// offset = hint + port_offset;               /* static u32 hint; secure_ipv4_port_ephemeral */
/// for (i = 1; i <= remaining; i++) {         /* remaining = high − low + 1 */
///     port = low + (i + offset) % remaining;
///     if (usable) goto ok;
/// }
/// return -EADDRNOTAVAIL;
/// ok: hint += i;
/// ```
///
/// Every port in turn, no parity; the range's last port is a candidate. 07f4c90062f8 (4.2)
/// made the offset even and 1580ab63fc9a (4.6) the scan even-then-odd ([`LinuxAllocator`]).
pub struct LinuxPre42 {
    secret: SipKey,
    hint: u32,
}

impl LinuxPre42 {
    pub fn new(mut rng: ChaCha8Rng) -> Self {
        LinuxPre42 {
            secret: [rng.next_u64(), rng.next_u64()],
            hint: rng.next_u32(),
        }
    }
}

impl PortSelector for LinuxPre42 {
    fn connect(&mut self, _now: Instant, q: &ConnectQuery, view: &PortView<'_>) -> Search {
        let (low, high) = (u32::from(q.low), u32::from(q.high));
        let n = high - low + 1;
        // 3.10 hashes with MD5 (`secure_ipv4_port_ephemeral`); only its spread matters here.
        let hash = port_hash(&self.secret, q.saddr, q.daddr, q.dport, 0) as u32;
        let offset = u64::from(self.hint.wrapping_add(hash));
        let start = low + ((offset + 1) % u64::from(n)) as u32;
        match view.walk(low, high, start) {
            Some((port, i)) => {
                self.hint = self.hint.wrapping_add(i);
                Search {
                    port: Some(port as u16),
                    probes: i,
                }
            }
            None => Search {
                port: None,
                probes: n,
            },
        }
    }
}

impl PortSelector for LinuxAllocator {
    #[inline(always)]
    fn prefetch(&self, (_, off): (u64, u64)) {
        self.table.prefetch((off as usize) & (self.table.len() - 1));
    }

    /// The first candidate inline, the scan out of line.
    #[inline(always)]
    fn connect(&mut self, now: Instant, q: &ConnectQuery, view: &PortView<'_>) -> Search {
        let off = self.memo_offset(now, q.saddr, q.daddr, q.dport, view.memo);
        match self.connect_first(q, off, view.pool, view.host) {
            Some(port) => Search {
                port: Some(port),
                probes: 1,
            },
            None => self.connect_at(q, off, view),
        }
    }

    /// With parity, `remaining` is rounded down to even: an odd-sized range never tests its
    /// last port (§1.2 step 4).
    fn exhausted_probes(&self, q: &ConnectQuery) -> u32 {
        let n = u32::from(q.high) + 1 - u32::from(q.low);
        if !q.per_socket_range && n > 1 {
            n & !1
        } else {
            n
        }
    }
}

/// BSD `in_pcb_lport_dest` (FreeBSD, §3.1) and XNU `in_pcbbind` with `lport == 0` (§3.3):
///
/// ```text
/// if (randomized) *lastport = first + rand() % (last - first);
/// count = last - first;
/// do {
///     if (count-- < 0) return EADDRNOTAVAIL;        /* last − first + 1 candidates */
///     ++*lastport;
///     if (*lastport < first || *lastport > last) *lastport = first;
/// } while (in use);
/// ```
///
/// `lastport` is one cursor per protocol for the whole host, shared by every destination.
/// A host that has been up a while has it anywhere: it starts at a random port of the range.
pub struct BsdCursor {
    random_start: bool,
    cursor: u32,
    rng: ChaCha8Rng,
}

impl BsdCursor {
    pub fn new(random_start: bool, range: (u16, u16), mut rng: ChaCha8Rng) -> Self {
        let cursor = rng.random_range(u32::from(range.0)..=u32::from(range.1));
        BsdCursor {
            random_start,
            cursor,
            rng,
        }
    }
}

impl PortSelector for BsdCursor {
    fn connect(&mut self, _now: Instant, q: &ConnectQuery, view: &PortView<'_>) -> Search {
        let (first, last) = (u32::from(q.low), u32::from(q.high));
        if self.random_start && first < last {
            self.cursor = first + self.rng.random_range(0..last - first);
        }
        let next = self.cursor + 1;
        let start = if next < first || next > last {
            first
        } else {
            next
        };
        match view.walk(first, last, start) {
            Some((port, probes)) => {
                self.cursor = port;
                Search {
                    port: Some(port as u16),
                    probes,
                }
            }
            None => {
                // A full lap leaves the cursor on the candidate before `start`.
                self.cursor = if start == first { last } else { start - 1 };
                Search {
                    port: None,
                    probes: last - first + 1,
                }
            }
        }
    }
}

/// RFC 6056 §3.3.1–3.3.5 (§5.1), as NetBSD's `portalgo.c` runs them. `min..max` is the
/// range, `num = max − min + 1`, `suitable(p)` = free in the view.
pub struct Rfc6056 {
    alg: u8,
    rng: ChaCha8Rng,
    secret: SipKey,
    secret2: SipKey,
    /// Algorithms 3 and 5: the global `next_ephemeral` counter.
    next: u32,
    /// Algorithm 4: the RFC's example `table[TABLE_LENGTH = 10]`.
    table: [u32; RFC6056_TABLE_LENGTH],
}

/// Algorithm 4's table length, the RFC's example value.
pub const RFC6056_TABLE_LENGTH: usize = 10;
/// Algorithm 5's trade-off `N`, the RFC's example value.
pub const RFC6056_ALG5_N: u32 = 500;

impl Rfc6056 {
    pub fn new(alg: u8, mut rng: ChaCha8Rng) -> Self {
        let secret = [rng.next_u64(), rng.next_u64()];
        let secret2 = [rng.next_u64(), rng.next_u64()];
        let next = rng.next_u32();
        let mut table = [0u32; RFC6056_TABLE_LENGTH];
        for t in &mut table {
            *t = rng.next_u32();
        }
        Rfc6056 {
            alg,
            rng,
            secret,
            secret2,
            next,
            table,
        }
    }

    fn f(&self, q: &ConnectQuery, key: &SipKey) -> u32 {
        siphash_4u32(q.saddr, q.daddr, u32::from(q.dport), 0, key) as u32
    }
}

impl PortSelector for Rfc6056 {
    fn connect(&mut self, _now: Instant, q: &ConnectQuery, view: &PortView<'_>) -> Search {
        let (min, max) = (u32::from(q.low), u32::from(q.high));
        let num = max - min + 1;
        let found = |r: Option<(u32, u32)>| match r {
            Some((p, probes)) => Search {
                port: Some(p as u16),
                probes,
            },
            None => Search {
                port: None,
                probes: num,
            },
        };
        match self.alg {
            // Alg 1: p = min + rand % num, then sequential with wrap.
            1 => {
                let start = min + self.rng.random_range(0..num);
                found(view.walk(min, max, start))
            }
            // Alg 2: num independent random picks; may fail while ports are free.
            2 => {
                for probe in 1..=num {
                    let p = min + self.rng.random_range(0..num);
                    if view.free(p) {
                        return found(Some((p, probe)));
                    }
                }
                found(None)
            }
            // Alg 3: p = min + (next_ephemeral + F(…)) % num, next_ephemeral += 1 per probe.
            3 => {
                let off = self.f(q, &self.secret);
                let start = min + self.next.wrapping_add(off) % num;
                let r = view.walk(min, max, start);
                let probes = r.map_or(num, |(_, k)| k);
                self.next = self.next.wrapping_add(probes);
                found(r)
            }
            // Alg 4: p = min + (F(…) + table[G(…) % 10]) % num, table[idx] += 1 per probe.
            4 => {
                let off = self.f(q, &self.secret);
                let idx = self.f(q, &self.secret2) as usize % RFC6056_TABLE_LENGTH;
                let start = min + off.wrapping_add(self.table[idx]) % num;
                let r = view.walk(min, max, start);
                let probes = r.map_or(num, |(_, k)| k);
                self.table[idx] = self.table[idx].wrapping_add(probes);
                found(r)
            }
            // Alg 5: next_ephemeral += 1 + rand % N, p = min + next_ephemeral % num.
            _ => {
                for probe in 1..=num {
                    self.next = self
                        .next
                        .wrapping_add(1 + self.rng.random_range(0..RFC6056_ALG5_N));
                    let p = min + self.next % num;
                    if view.free(p) {
                        return found(Some((p, probe)));
                    }
                }
                found(None)
            }
        }
    }
}

/// `secure_ipv4_port_ephemeral(saddr, daddr, dport)` with the secret `key`: SipHash of
/// saddr, daddr, dport and the reseed epoch, in network byte order (§1.2 step 1).
fn port_hash(key: &SipKey, saddr: u32, daddr: u32, dport: u16, epoch: u32) -> u64 {
    siphash_4u32(
        saddr.to_be(),
        daddr.to_be(),
        u32::from(dport.to_be()),
        epoch,
        key,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::stream;
    use proptest::prelude::*;

    #[test]
    fn below_8_draws_what_random_range_draws() {
        let mut a = stream(7, "below-8");
        let mut b = stream(7, "below-8");
        let mut seen = [0u32; 8];
        for _ in 0..100_000 {
            let x = below_8(&mut a);
            assert_eq!(x, b.random_range(0..8u32));
            seen[x as usize] += 1;
        }
        // Each value about 12,500 times: the top bits, not a constant.
        assert!(
            seen.iter().all(|&n| (11_500..13_500).contains(&n)),
            "{seen:?}"
        );
    }

    #[test]
    fn a_pools_counts_are_two_words_per_word_of_its_port_set() {
        let mut c = PoolCounts::default();
        // Ports 960..=1023 share a word: its two count words, all ones.
        let (words, bit) = c.of_mut(1001);
        assert_eq!(bit, 1 << (1001 % 64));
        *words = [u64::MAX; 2];
        assert_eq!(c.of(960).0, &[u64::MAX; 2]);
        assert_eq!(c.of(1024).0, &[0, 0]);
        assert_eq!(c.of(959).0, &[0, 0]);
    }

    proptest! {
        #[test]
        fn counting_by_words_equals_counting_ports(
            a in prop::collection::vec(any::<u16>(), 0..300),
            b in prop::collection::vec(1000u16..1200, 0..300),
            lo in any::<u16>(),
            len in 0u16..3000,
        ) {
            let (mut x, mut y) = (PoolPorts::default(), PortBits::<1>::default());
            a.iter().for_each(|p| { x.insert(*p); });
            b.iter().for_each(|p| { y.insert(*p); });
            let hi = lo.saturating_add(len);
            let slow = (lo..=hi).filter(|p| x.contains(*p) || y.contains(*p)).count() as u32;
            prop_assert_eq!(PortBits::count_union_in(&x, &y, lo, hi), slow);
            prop_assert_eq!(x.count_in(lo, hi), (lo..=hi).filter(|p| x.contains(*p)).count() as u32);
        }
    }

    #[test]
    fn the_perturbation_table_drawn_when_read_is_the_table_drawn_at_boot() {
        // At an even and an odd word of the stream (a u64 draw after it straddles a block).
        for skip in [0, 1, 63] {
            let mut rng = stream(7, "perturb");
            for _ in 0..skip {
                rng.next_u32();
            }
            let (a, b) = (rng.next_u64(), rng.next_u64());
            let mut boot = rng.clone();
            let mut table = Perturb::drawn(&mut rng);
            let mut want: Vec<u32> = (0..PERTURB_TABLE_SIZE).map(|_| boot.next_u32()).collect();
            assert!(rng == boot, "the stream moves past the table");
            assert_eq!(rng.next_u64(), boot.next_u64());
            assert_ne!(a, b);
            // Reads and writes at random entries, past the point where it is drawn whole.
            let mut x = 0x9e37_79b9_7f4a_7c15u64;
            for n in 0..3 * PERTURB_SPARSE_MAX as u32 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let i = (x as usize) % PERTURB_TABLE_SIZE;
                assert_eq!(table.get(i), want[i]);
                want[i] = want[i].wrapping_add(n | 1);
                table.set(i, want[i]);
            }
            assert!(table.slots.is_empty(), "drawn whole");
            assert!((0..PERTURB_TABLE_SIZE).all(|i| table.get(i) == want[i]));
        }
    }

    fn alloc() -> LinuxAllocator {
        LinuxAllocator::new(stream(1, "test"))
    }

    fn view<'a>(pool: &'a PoolPorts, host: &'a PortBits) -> PortView<'a> {
        PortView {
            pool,
            host,
            index: None,
            memo: None,
        }
    }

    fn query(low: u16, high: u16) -> ConnectQuery {
        ConnectQuery {
            saddr: 0x0a00_0001,
            daddr: 0x0a00_0002,
            dport: 80,
            low,
            high,
            per_socket_range: false,
        }
    }

    #[test]
    fn linux_connect_takes_even_ports_before_odd_ones() {
        // Kernel 6.18 (crates.md): range 40000–40009, ten connects succeed even ports first,
        // the eleventh gets EADDRNOTAVAIL.
        let mut a = alloc();
        let mut pool = PortBits::default();
        let host = PortBits::default();
        let q = query(40000, 40009);
        let mut got = Vec::new();
        for _ in 0..10 {
            let s = a.connect_at(
                &q,
                a.port_offset(q.saddr, q.daddr, q.dport, 0),
                &view(&pool, &host),
            );
            let p = s.port.expect("a free port");
            pool.insert(p);
            got.push(p);
        }
        assert!(got[..5].iter().all(|p| p % 2 == 0), "{got:?}");
        assert!(got[5..].iter().all(|p| p % 2 == 1), "{got:?}");
        let s = a.connect_at(
            &q,
            a.port_offset(q.saddr, q.daddr, q.dport, 0),
            &view(&pool, &host),
        );
        assert_eq!(s.port, None);
        assert_eq!(s.probes, 10, "two passes of five candidates");
    }

    #[test]
    fn linux_connect_skips_ports_held_host_wide() {
        let mut a = alloc();
        let pool = PortBits::default();
        let mut host = PortBits::default();
        let q = query(40000, 40009);
        for p in (40000..=40009).step_by(2) {
            host.insert(p);
        }
        let s = a.connect_at(&q, 12345, &view(&pool, &host));
        assert_eq!(s.port.map(|p| p % 2), Some(1));
        assert!(s.probes > 5, "the whole even pass is scanned first");
    }

    #[test]
    fn linux_bind_any_takes_odd_ports_first() {
        let mut a = alloc();
        let mut held = std::collections::BTreeSet::new();
        for k in 0..10 {
            let s = a.bind_any(
                40000,
                40009,
                false,
                false,
                BindSearch::Strict,
                |_| false,
                |p, _| held.contains(&p).then_some(true),
                |_| 1,
                None,
            );
            let p = u32::from(s.port.expect("free"));
            assert_eq!(p % 2, if k < 5 { 1 } else { 0 }, "bind #{k} got {p}");
            held.insert(p);
        }
        let s = a.bind_any(
            40000,
            40009,
            false,
            false,
            BindSearch::Strict,
            |_| false,
            |p, _| held.contains(&p).then_some(true),
            |_| 1,
            None,
        );
        assert_eq!(s.port, None);
        assert_eq!(s.probes, 10);
    }

    #[test]
    fn the_perturbation_entry_advances_by_two_to_sixteen_when_uncontended() {
        let mut a = alloc();
        let mut pool = PortBits::default();
        let host = PortBits::default();
        let q = query(32768, 60999);
        let off = a.port_offset(q.saddr, q.daddr, q.dport, 3);
        let mut last = None;
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..400 {
            let p = a.connect_at(&q, off, &view(&pool, &host)).port.unwrap();
            pool.insert(p);
            if let Some(l) = last {
                let d = (i32::from(p) - i32::from(l)).rem_euclid(28232);
                seen.insert(d);
            }
            last = Some(p);
        }
        assert_eq!(seen, (1..=8).map(|k| k * 2).collect());
    }

    fn free_view() -> (PoolPorts, PortBits) {
        (PoolPorts::default(), PortBits::default())
    }

    const NOW: Instant = Instant(0);

    #[test]
    fn linux_before_4_2_takes_every_port_in_turn_and_advances_the_hint_by_i() {
        // 3.10 __inet_hash_connect: port = low + (i + offset) % remaining for i = 1…remaining,
        // then hint += i. With every port free, each connect() to the same destination takes
        // the port after the previous one (i = 1, hint + 1), odd and even alike, and the
        // range's last port is a candidate (no rounding to even).
        let mut a = LinuxPre42::new(stream(1, "p"));
        let (mut pool, host) = free_view();
        let q = query(40000, 40006);
        let mut got = Vec::new();
        for _ in 0..7 {
            let s = a.connect(NOW, &q, &view(&pool, &host));
            assert_eq!(s.probes, 1);
            let p = s.port.unwrap();
            pool.insert(p);
            got.push(u32::from(p));
        }
        let start = got[0];
        let want: Vec<u32> = (0..7).map(|k| 40000 + (start - 40000 + k) % 7).collect();
        assert_eq!(got, want);
        // Full: seven probes, then EADDRNOTAVAIL; one port freed is found i probes on.
        let s = a.connect(NOW, &q, &view(&pool, &host));
        assert_eq!((s.port, s.probes), (None, 7));
        pool.remove(got[3] as u16);
        let s = a.connect(NOW, &q, &view(&pool, &host));
        assert_eq!((s.port, s.probes), (Some(got[3] as u16), 4), "{got:?}");
    }

    #[test]
    fn bsd_cursor_walks_the_range_one_port_at_a_time_and_wraps() {
        // XNU in_pcbbind, randomization off (§3.3): ++lastport, wrap to first.
        let mut a = BsdCursor::new(false, (49152, 49159), stream(1, "c"));
        a.cursor = 49157;
        let (mut pool, host) = free_view();
        let q = query(49152, 49159);
        let mut got = Vec::new();
        for _ in 0..8 {
            let s = a.connect(NOW, &q, &view(&pool, &host));
            assert_eq!(s.probes, 1);
            let p = s.port.unwrap();
            pool.insert(p);
            got.push(p);
        }
        assert_eq!(
            got,
            [49158, 49159, 49152, 49153, 49154, 49155, 49156, 49157]
        );
        // A freed port is found by walking past the busy ones: probes count them.
        pool.remove(49155);
        let s = a.connect(NOW, &q, &view(&pool, &host));
        assert_eq!(
            (s.port, s.probes),
            (Some(49155), 6),
            "49158, 49159, 49152 … 49155"
        );
        let s = a.connect(NOW, &q, &view(&pool.clone(), &host));
        assert_eq!(s.port, Some(49155), "nothing recorded it as taken");
        pool.insert(49155);
        let s = a.connect(NOW, &q, &view(&pool, &host));
        assert_eq!(
            (s.port, s.probes),
            (None, 8),
            "count = last − first, loop while count-- ≥ 0"
        );
    }

    #[test]
    fn bsd_random_start_never_picks_first_when_all_ports_are_free() {
        // FreeBSD in_pcb_lport_dest (§3.1): lastport = first + rand % (last − first), then
        // pre-increment, so the first candidate lies in [first+1, last].
        let mut a = BsdCursor::new(true, (10000, 10003), stream(2, "c"));
        let (pool, host) = free_view();
        let q = query(10000, 10003);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..400 {
            seen.insert(a.connect(NOW, &q, &view(&pool, &host)).port.unwrap());
        }
        assert_eq!(seen, [10001, 10002, 10003].into());
    }

    #[test]
    fn rfc6056_alg1_finds_the_only_free_port_with_probes_equal_to_the_walk() {
        let mut a = Rfc6056::new(1, stream(3, "c"));
        let q = query(20000, 20099);
        let (mut pool, host) = free_view();
        for p in 20000..=20099 {
            pool.insert(p);
        }
        pool.remove(20042);
        for _ in 0..50 {
            let s = a.connect(NOW, &q, &view(&pool, &host));
            assert_eq!(s.port, Some(20042));
            assert!((1..=100).contains(&s.probes));
        }
    }

    #[test]
    fn rfc6056_alg2_can_fail_while_a_port_is_free() {
        // §5.1 Alg 2: num random picks, no coverage guarantee: with one free port of num the
        // chance to miss it is (1 − 1/num)^num ≈ 1/e.
        let mut a = Rfc6056::new(2, stream(4, "c"));
        let q = query(20000, 20099);
        let (mut pool, host) = free_view();
        for p in 20000..=20099 {
            pool.insert(p);
        }
        pool.remove(20042);
        let fails = (0..1000)
            .filter(|_| {
                let s = a.connect(NOW, &q, &view(&pool, &host));
                if s.port.is_none() {
                    assert_eq!(s.probes, 100);
                }
                s.port.is_none()
            })
            .count();
        let expected = 1000.0 * (0.99f64).powi(100);
        assert!(
            (fails as f64 - expected).abs() < 60.0,
            "{fails} vs {expected:.0}"
        );
    }

    #[test]
    fn rfc6056_alg3_is_sequential_per_destination_with_one_global_counter() {
        // §5.1 Alg 3: p = min + (next + F(dest)) % num, next += 1 per probe.
        let mut a = Rfc6056::new(3, stream(5, "c"));
        let (mut pool, host) = free_view();
        let qa = query(30000, 39999);
        let qb = ConnectQuery { dport: 443, ..qa };
        let a1 = a.connect(NOW, &qa, &view(&pool, &host)).port.unwrap();
        pool.insert(a1);
        let b1 = a.connect(NOW, &qb, &view(&pool, &host)).port.unwrap();
        pool.insert(b1);
        let a2 = a.connect(NOW, &qa, &view(&pool, &host)).port.unwrap();
        // The connect to B advanced the shared counter: A's next port is two further on.
        assert_eq!(u32::from(a2), 30000 + (u32::from(a1) - 30000 + 2) % 10000);
        assert_ne!(a1.abs_diff(b1), 1, "different destinations start elsewhere");
    }

    #[test]
    fn rfc6056_alg4_keeps_destinations_in_separate_counters() {
        // §5.1 Alg 4: table[G(dest) % 10] += 1 per probe; a destination in another bucket
        // does not move this one's sequence.
        let mut a = Rfc6056::new(4, stream(6, "c"));
        let (mut pool, host) = free_view();
        let qa = query(30000, 39999);
        let idx = |a: &Rfc6056, q: &ConnectQuery| a.f(q, &a.secret2) as usize % 10;
        let qb = (1..100u16)
            .map(|d| ConnectQuery { dport: d, ..qa })
            .find(|q| idx(&a, q) != idx(&a, &qa))
            .unwrap();
        let a1 = a.connect(NOW, &qa, &view(&pool, &host)).port.unwrap();
        pool.insert(a1);
        let b1 = a.connect(NOW, &qb, &view(&pool, &host)).port.unwrap();
        pool.insert(b1);
        let a2 = a.connect(NOW, &qa, &view(&pool, &host)).port.unwrap();
        assert_eq!(u32::from(a2), 30000 + (u32::from(a1) - 30000 + 1) % 10000);
    }

    #[test]
    fn rfc6056_alg5_steps_by_one_to_n() {
        let mut a = Rfc6056::new(5, stream(7, "c"));
        let (pool, host) = free_view();
        let q = query(1024, 65535);
        let mut last = a.connect(NOW, &q, &view(&pool, &host)).port.unwrap();
        for _ in 0..500 {
            let p = a.connect(NOW, &q, &view(&pool, &host)).port.unwrap();
            let step = (i64::from(p) - i64::from(last)).rem_euclid(64512);
            assert!((1..=i64::from(RFC6056_ALG5_N)).contains(&step), "{step}");
            last = p;
        }
    }

    #[test]
    fn linux_before_5_12_advances_one_global_hint_by_exactly_two() {
        // Pre-5.12 __inet_hash_connect: hint += i + 2, no random skip (§1.2 History).
        let mut a = LinuxAllocator::pre_5_12(stream(8, "c"));
        let (mut pool, host) = free_view();
        let q = query(32768, 60999);
        let mut last = None;
        for _ in 0..200 {
            let p = a.connect(NOW, &q, &view(&pool, &host)).port.unwrap();
            pool.insert(p);
            if let Some(l) = last {
                assert_eq!((i32::from(p) - i32::from(l)).rem_euclid(28232), 2);
            }
            last = Some(p);
        }
        // The time seed is absent: ten minutes later the same destination continues the sweep.
        let later = a.connect(Instant(600_000_000_000), &q, &view(&pool, &host));
        assert_eq!(
            (i32::from(later.port.unwrap()) - i32::from(last.unwrap())).rem_euclid(28232),
            2
        );
    }

    proptest! {
        #[test]
        fn fast_pass_equals_the_literal_loop(
            low in 1024u32..60000,
            len in 1u32..3000,
            offset_seed in any::<u32>(),
            step in 1u32..=2,
            blocked in proptest::collection::vec(any::<u16>(), 0..3000),
            host_blocked in proptest::collection::vec(any::<u16>(), 0..300),
        ) {
            let high_incl = (low + len - 1).min(65535);
            let high = high_incl + 1;
            let mut remaining = high - low;
            if step == 2 && remaining > 1 { remaining &= !1; }
            let mut offset = offset_seed % remaining;
            if step == 2 && offset_seed & 1 == 0 { offset &= !1; }
            let mut a = PoolPorts::default();
            let mut b = PortBits::default();
            for p in &blocked { a.insert(low as u16 + (p % (len as u16).max(1))); }
            for p in &host_blocked { b.insert(*p); }
            let fast = pass(low, high, remaining, offset, step, &a, &b, None);
            let ix = FreeWords::new(&a, &b);
            let indexed = pass(low, high, remaining, offset, step, &a, &b, Some(&ix));
            prop_assert_eq!(fast, indexed);
            let lit = pass_literal(low, high, remaining, offset, step,
                |p| !a.contains(p as u16) && !b.contains(p as u16));
            prop_assert_eq!(fast, lit);
        }

        #[test]
        fn the_free_word_index_kept_by_changes_equals_one_built_afresh(
            blocked in proptest::collection::vec(any::<u16>(), 0..200),
            changes in proptest::collection::vec((0u8..16, 0u16..192), 0..4000),
        ) {
            // Mostly takes over three words: words fill up and empty again.
            let (mut a, mut b) = (PoolPorts::default(), PortBits::default());
            for p in &blocked { b.insert(p % 192); }
            let mut ix = FreeWords::new(&a, &b);
            for &(die, port) in &changes {
                if die < 15 {
                    a.insert(port);
                    ix.after_insert(&a, &b, port);
                } else {
                    a.remove(port);
                    ix.after_remove(&a, &b, port);
                }
                prop_assert_eq!(&ix, &FreeWords::new(&a, &b));
            }
        }

        #[test]
        fn the_word_walk_equals_the_bsd_probe_loop(
            first in 1024u32..60000,
            len in 1u32..3000,
            start_seed in any::<u32>(),
            busy in proptest::collection::vec(any::<u16>(), 0..3000),
        ) {
            let last = (first + len - 1).min(65535);
            let start = first + start_seed % (last - first + 1);
            let mut a = PortBits::default();
            for p in &busy { a.insert((first + u32::from(*p) % len).min(last) as u16); }
            let b = PortBits::default();
            let v = PortView { pool: &a, host: &b, index: Some(&FreeWords::new(&a, &b)), memo: None };
            let mut lit = None;
            let mut port = start;
            for probe in 1..=last - first + 1 {
                if !a.contains(port as u16) { lit = Some((port, probe)); break; }
                port = if port == last { first } else { port + 1 };
            }
            prop_assert_eq!(v.walk(first, last, start), lit);
        }

        #[test]
        fn fast_connect_equals_the_literal_connect(
            low in 1024u16..40000,
            len in 1u16..500,
            per_socket in any::<bool>(),
            blocked in proptest::collection::vec(any::<u16>(), 0..600),
            off in any::<u64>(),
        ) {
            let q = ConnectQuery { low, high: low + len - 1, per_socket_range: per_socket, ..query(0, 0) };
            let mut a = PortBits::default();
            for p in &blocked { a.insert(low + p % len); }
            let b = PortBits::default();
            let mut x = alloc();
            let mut y = alloc();
            for _ in 0..5 {
                let ix = FreeWords::new(&a, &b);
                let f = x.connect_at(&q, off, &PortView { pool: &a, host: &b, index: Some(&ix), memo: None });
                let l = y.connect_literal(&q, off, |p| !a.contains(p as u16));
                prop_assert_eq!(f, l);
                if let Some(p) = f.port { a.insert(p); }
            }
        }

        #[test]
        fn the_first_candidate_shortcut_is_the_scan_when_it_answers(
            low in 1024u16..40000,
            len in 1u16..200,
            pre_5_12 in any::<bool>(),
            per_socket in any::<bool>(),
            taken in proptest::collection::vec(any::<u16>(), 0..300),
            blocked in proptest::collection::vec(any::<u16>(), 0..100),
            off in any::<u64>(),
        ) {
            let q = ConnectQuery { per_socket_range: per_socket, ..query(low, low + len - 1) };
            let (mut a, mut b) = (PortBits::default(), PortBits::default());
            for p in &taken { a.insert(low + p % len); }
            for p in &blocked { b.insert(low + p % len); }
            let fresh = || if pre_5_12 { LinuxAllocator::pre_5_12(stream(1, "t")) } else { alloc() };
            let (mut x, mut y) = (fresh(), fresh());
            for _ in 0..20 {
                let ix = FreeWords::new(&a, &b);
                let view = PortView { pool: &a, host: &b, index: Some(&ix), memo: None };
                let (table, rng) = (x.table.clone(), x.rng.clone());
                let port = match x.connect_first(&q, off, &a, &b) {
                    Some(p) => {
                        let s = y.connect_at(&q, off, &view);
                        prop_assert_eq!(s, Search { port: Some(p), probes: 1 });
                        Some(p)
                    }
                    None => {
                        // Nothing changed, and the scan finds no port on its first probe.
                        prop_assert!(x.table == table && x.rng == rng);
                        let s = y.connect_at(&q, off, &view);
                        prop_assert_eq!(s, x.connect_at(&q, off, &view));
                        prop_assert!(s.port.is_none() || s.probes > 1);
                        s.port
                    }
                };
                prop_assert!(x.table == y.table && x.rng == y.rng);
                if let Some(p) = port {
                    a.insert(p);
                }
            }
        }
    }

    #[test]
    fn bind_search_by_words_finds_what_the_kernel_loop_finds() {
        use rand::SeedableRng;
        let mut fill = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for round in 0..200u64 {
            let (lo, hi) = (30000u16, 30000 + (round as u16 % 97) * 3 + 3);
            let (mut taken, mut reserved) = (PortBits::default(), PortBits::default());
            let density = round % 10;
            for p in lo..=hi {
                if fill.random_range(0..10) < density {
                    taken.insert(p);
                }
                if fill.random_range(0..40) == 0 {
                    reserved.insert(p);
                }
            }
            let search = |fast| {
                let mut a = LinuxAllocator::new(crate::rng::stream(round, "b"));
                a.bind_any(
                    lo,
                    hi,
                    round % 2 == 0,
                    false,
                    BindSearch::Strict,
                    |p| reserved.contains(p as u16),
                    |p, _| taken.contains(p as u16).then_some(true),
                    |_| 1,
                    fast,
                )
            };
            assert_eq!(
                search(None),
                search(Some((&taken, &reserved))),
                "round {round}"
            );
        }
    }
}
