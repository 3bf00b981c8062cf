//! The reuse watch: four-tuples closed without any TIME-WAIT (SO_LINGER 0, `nolocaltimewait`,
//! `tcp_max_tw_buckets`), remembered for one TIME-WAIT length. A connect() that takes one
//! of them again in that time is an unprotected reuse (RFC 793's quiet time, §5.2): counted
//! in the report's `unprotected_reuse`.

use crate::host::{Host, NONE, Tuple};
use crate::time::{Duration, Instant};
use std::collections::VecDeque;

/// Four-tuples closed without any TIME-WAIT, remembered for one TIME-WAIT length: a
/// connect() that takes one of them again in that time is an unprotected reuse.
///
/// A tuple of a per-destination pool is kept as a count of the pool's port, in two bits
/// ([`Counts`]: up to 3, the excess in `repeats`) held by the host per pool
/// ([`crate::alloc::PoolCounts`]), made at its first count: a run that closes no pool tuple
/// without TIME-WAIT keeps none. Other tuples are kept in a table with their end.
#[derive(Default)]
pub(super) struct ReuseWatch {
    closed: crate::host::Table<Tuple, Instant>,
    /// Per watch length, the tuples outside pools in the order they were closed (so in
    /// order of end).
    lanes: Vec<(Duration, VecDeque<(Instant, Tuple)>)>,
    /// The pools' tuples in the order they were closed, per watch length, host and high
    /// half of the pool index: 8 bytes each.
    marked: Vec<MarkedLane>,
    /// Watches of a (host, pool, port) beyond the 3 its [`Counts`] hold, by [`watch_key`].
    repeats: crate::host::Table<u64, u32>,
    /// Pool tuples watched now: while none is, a lookup reads no count.
    pooled: u64,
    /// No watch ends before this ([`Instant::MAX`] when none is kept): the lanes need no
    /// look until then.
    next_end: Instant,
    /// The end of the run: a watch ending after it is counted but never ended, so its end is
    /// not kept (a run whose TIME-WAIT outlasts it keeps no lane).
    horizon: Instant,
    /// The index in `marked` of the last lane used.
    last_marked: usize,
}

/// A count of 0 to 3 per port in two bits, for 64 ports at a time: the low bits and the high
/// bits, the words a host keeps per pool for each word of its port set
/// ([`crate::host::Host::watch_counts`]); `bit` is the port's.
pub(super) struct Counts;

impl Counts {
    /// Adds one to the count of `bit`; false, changing nothing, when it is at 3 already.
    #[inline(always)]
    fn increment([lo, hi]: &mut [u64; 2], bit: u64) -> bool {
        if *lo & *hi & bit != 0 {
            return false;
        }
        // Two-bit binary addition: the low bit flips, the high bit takes its carry.
        *hi |= *lo & bit;
        *lo ^= bit;
        true
    }

    /// Takes one from the count of `bit`, which is not 0.
    #[inline]
    fn decrement([lo, hi]: &mut [u64; 2], bit: u64) {
        // The low bit flips; the high bit clears where the low bit was 0 (a borrow).
        *hi &= !(!*lo & bit);
        *lo ^= bit;
    }

    /// Whether the count of `bit` is 3, the most it holds.
    #[inline]
    fn saturated([lo, hi]: &[u64; 2], bit: u64) -> bool {
        lo & hi & bit != 0
    }

    /// Whether the count of `bit` is above 0.
    #[inline(always)]
    pub(super) fn any([lo, hi]: &[u64; 2], bit: u64) -> bool {
        (lo | hi) & bit != 0
    }
}

/// A four-tuple the watch keeps: a port of a host's per-destination pool, counted there, or
/// any other tuple, kept in the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Watched {
    Pooled { host: u16, pool: u32, port: u16 },
    Tuple(Tuple),
}

/// How the watch keeps the tuple `t` (as the client sees it) of a connection from host
/// `client`, whose client socket's per-destination pool is `pool` (or NONE).
pub(super) fn watched(hosts: &[Host], client: u16, pool: u32, t: Tuple) -> Watched {
    debug_assert_eq!(
        (pool != NONE).then_some(pool),
        hosts[client as usize].four_tuple_pool(t.local_ip, t.remote_ip, t.remote_port)
    );
    match pool {
        NONE => Watched::Tuple(t),
        pool => Watched::Pooled {
            host: client,
            pool,
            port: t.local_port,
        },
    }
}

/// A watched pool tuple, (host, pool, port), as one key.
fn watch_key(host: u16, pool: u32, port: u16) -> u64 {
    (u64::from(host) << 48) | (u64::from(pool) << 16) | u64::from(port)
}

/// The ends of pool tuples' watches of one length, host and high half of the pool index, in
/// order. An end is one word: the nanoseconds since the end before it (32 bits), the pool
/// index's low half and the local port. A gap beyond 32 bits is bridged by filler ends with
/// port 0, which no connected socket has.
struct MarkedLane {
    pub(super) len: Duration,
    pub(super) host: u16,
    pub(super) pool_high: u16,
    /// The end of the front entry.
    pub(super) front: Instant,
    /// The end of the back entry.
    pub(super) back: Instant,
    pub(super) ends: VecDeque<u64>,
}

impl MarkedLane {
    #[inline(always)]
    pub(super) fn push(&mut self, until: Instant, pool: u32, port: u16) {
        debug_assert!(port != 0, "port 0 marks a filler");
        let word = (u64::from(pool & 0xffff) << 16) | u64::from(port);
        if self.ends.is_empty() {
            (self.front, self.back) = (until, until);
        }
        debug_assert!(until >= self.back, "a lane's ends come in order");
        let mut gap = until.0 - self.back.0;
        if gap > u64::from(u32::MAX) {
            gap = self.bridge(gap);
        }
        self.ends.push_back((gap << 32) | word);
        self.back = until;
    }

    /// Fillers for a gap beyond 32 bits: the gap left for the end after them.
    #[cold]
    fn bridge(&mut self, mut gap: u64) -> u64 {
        while gap > u64::from(u32::MAX) {
            self.ends.push_back(u64::from(u32::MAX) << 32);
            gap -= u64::from(u32::MAX);
        }
        gap
    }

    /// Takes the front end if it comes at or before `now`: (pool, port), port 0 for a filler.
    #[inline]
    fn pop_until(&mut self, now: Instant) -> Option<(u32, u16)> {
        if self.front > now {
            return None;
        }
        let word = self.ends.pop_front()?;
        if let Some(&next) = self.ends.front() {
            self.front = self.front + Duration(next >> 32);
        }
        let pool = (u32::from(self.pool_high) << 16) | ((word >> 16) & 0xffff) as u32;
        Some((pool, word as u16))
    }
}

/// The lane of watch length `len` in `lanes`, added when new.
fn lane_of<T>(lanes: &mut Vec<(Duration, VecDeque<T>)>, len: Duration) -> &mut VecDeque<T> {
    let i = match lanes.iter().position(|(l, _)| *l == len) {
        Some(i) => i,
        None => {
            lanes.push((len, VecDeque::new()));
            lanes.len() - 1
        }
    };
    &mut lanes[i].1
}

impl ReuseWatch {
    /// An empty watch for a run ending at `horizon`.
    pub(super) fn new(horizon: Instant) -> ReuseWatch {
        ReuseWatch {
            next_end: Instant::MAX,
            horizon,
            ..ReuseWatch::default()
        }
    }

    /// The tuple `watched` of a connection of `hosts` closes at `now` with no TIME-WAIT: it
    /// is watched for `len`.
    #[inline(always)]
    pub(super) fn closed_without_tw(
        &mut self,
        hosts: &mut [Host],
        watched: Watched,
        now: Instant,
        len: Duration,
    ) {
        let until = now + len;
        let ends = until <= self.horizon;
        if ends {
            self.next_end = self.next_end.min(until);
        }
        let (host, pool, port) = match watched {
            Watched::Pooled { host, pool, port } => (host, pool, port),
            Watched::Tuple(t) => return self.closed_unpooled(t, until, len, ends),
        };
        if ends {
            self.keep_end(until, len, host, pool, port);
        }
        self.pooled += 1;
        let counted = hosts
            .get_mut(host as usize)
            .and_then(|h| h.watch_counts_mut(pool, port))
            .is_some_and(|(words, bit)| Counts::increment(words, bit));
        if !counted {
            self.repeat(host, pool, port);
        }
    }

    /// Keeps the end, `until`, of a watch of (host, pool, port) of length `len`, in its lane.
    #[inline(always)]
    fn keep_end(&mut self, until: Instant, len: Duration, host: u16, pool: u32, port: u16) {
        let pool_high = (pool >> 16) as u16;
        let lane = match self.marked.get_mut(self.last_marked) {
            Some(l) if l.len == len && l.host == host && l.pool_high == pool_high => l,
            _ => {
                self.last_marked = self.marked_lane(len, host, pool_high, until);
                &mut self.marked[self.last_marked]
            }
        };
        lane.push(until, pool, port);
    }

    /// One more watch of (host, pool, port) beyond what its [`Counts`] hold.
    #[cold]
    pub(super) fn repeat(&mut self, host: u16, pool: u32, port: u16) {
        *self.repeats.entry(watch_key(host, pool, port)).or_default() += 1;
    }

    /// [`Self::closed_without_tw`] for a tuple outside pools, watched until `until`, an end
    /// kept if it `ends` within the run.
    #[cold]
    fn closed_unpooled(&mut self, t: Tuple, until: Instant, len: Duration, ends: bool) {
        if ends {
            lane_of(&mut self.lanes, len).push_back((until, t));
        }
        // The latest end: a tuple closed again by a host with a shorter TIME_WAIT is
        // still watched for the longer one.
        let end = self.closed.entry(t).or_insert(until);
        *end = (*end).max(until);
    }

    /// The index in `marked` of the lane of (len, host, pool_high), added when new.
    #[cold]
    fn marked_lane(&mut self, len: Duration, host: u16, pool_high: u16, until: Instant) -> usize {
        let ours = |l: &MarkedLane| l.len == len && l.host == host && l.pool_high == pool_high;
        match self.marked.iter().position(ours) {
            Some(i) => i,
            None => {
                self.marked.push(MarkedLane {
                    len,
                    host,
                    pool_high,
                    front: until,
                    back: until,
                    ends: VecDeque::new(),
                });
                self.marked.len() - 1
            }
        }
    }

    /// Whether a connect() of `hosts` taking the tuple `watched` at `now` reuses it while
    /// it is watched.
    #[inline(always)]
    pub(super) fn reused(&mut self, hosts: &mut [Host], watched: Watched, now: Instant) -> bool {
        if self.next_end <= now {
            self.end_watches(hosts, now);
        }
        match watched {
            Watched::Pooled { .. } if self.pooled == 0 => false,
            Watched::Pooled { host, pool, port } => {
                match hosts
                    .get(host as usize)
                    .and_then(|h| h.watch_counts(pool, port))
                {
                    Some((words, bit)) => Counts::any(words, bit),
                    None => self.repeats.contains_key(&watch_key(host, pool, port)),
                }
            }
            Watched::Tuple(t) => self.closed.get(&t).is_some_and(|&until| until > now),
        }
    }

    /// Ends the watches that end at or before `now`.
    fn end_watches(&mut self, hosts: &mut [Host], now: Instant) {
        for (_, lane) in &mut self.lanes {
            while let Some(&(until, old)) = lane.front() {
                if until > now {
                    break;
                }
                lane.pop_front();
                if self.closed.get(&old) == Some(&until) {
                    self.closed.remove(&old);
                }
            }
        }
        // A (host, pool, port) watched n times counts min(n, 3) and holds n − 3 repeats
        // beyond: each end takes one, in any order.
        for lane in &mut self.marked {
            let host = lane.host;
            while let Some((pool, port)) = lane.pop_until(now) {
                if port == 0 {
                    continue;
                }
                self.pooled -= 1;
                let key = watch_key(host, pool, port);
                let counts = hosts
                    .get_mut(host as usize)
                    .and_then(|h| h.watch_counts_mut(pool, port));
                if counts
                    .as_ref()
                    .is_none_or(|(w, bit)| Counts::saturated(w, *bit))
                    && let Some(r) = self.repeats.get_mut(&key)
                {
                    *r -= 1;
                    if *r == 0 {
                        self.repeats.remove(&key);
                    }
                    continue;
                }
                let Some((words, bit)) = counts else {
                    unreachable!("a watch ended that was not counted")
                };
                debug_assert!(
                    Counts::any(words, bit),
                    "a watch ended that was not counted"
                );
                Counts::decrement(words, bit);
            }
        }
        let fronts = self
            .lanes
            .iter()
            .filter_map(|(_, l)| l.front().map(|f| f.0));
        let marked = self
            .marked
            .iter()
            .filter(|l| !l.ends.is_empty())
            .map(|l| l.front);
        self.next_end = fronts.chain(marked).min().unwrap_or(Instant::MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marked_lane_gives_each_end_at_its_time_across_gaps_beyond_32_bits() {
        let mut lane = MarkedLane {
            len: Duration(0),
            host: 0,
            pool_high: 1,
            front: Instant::ZERO,
            back: Instant::ZERO,
            ends: VecDeque::new(),
        };
        let ends = [
            (5, 7),
            (5, 8),
            (9_000_000_000, 9),
            (9_000_000_001, 10),
            (30_000_000_000, 11),
        ];
        for &(at, port) in &ends {
            lane.push(Instant(at), 0x1_0002, port);
        }
        let mut seen = Vec::new();
        // Every nanosecond around each end: an end comes out at its time, not before.
        for &(at, _) in &ends {
            for now in [at - 1, at, at + 1] {
                while let Some((pool, port)) = lane.pop_until(Instant(now)) {
                    if port != 0 {
                        assert_eq!(pool, 0x1_0002);
                        seen.push((now, port));
                    }
                }
            }
        }
        let expected: Vec<(u64, u16)> = ends.iter().map(|&(at, port)| (at, port)).collect();
        assert_eq!(seen, expected);
        assert!(lane.ends.is_empty());
    }

    #[test]
    fn the_reuse_watch_answers_as_a_list_of_every_closed_tuple_would() {
        // With no end to the run, and with one that many watches outlast (their ends not
        // kept): every lookup before the end is the same.
        for horizon in [Instant::MAX, Instant(2_000_000)] {
            reuse_watch_against_a_list(horizon);
        }
    }

    /// `n` Linux hosts of two connect() pools each (0 and 1).
    fn hosts_with_pools(n: usize) -> Vec<Host> {
        (0..n)
            .map(|i| {
                let rng = |what| crate::rng::stream(i as u64, what);
                let mut h = Host::new(
                    format!("h{i}"),
                    crate::profile::Profile::linux(),
                    vec![1],
                    rng("h"),
                    rng("b"),
                    false,
                );
                for daddr in [2, 4] {
                    h.add_pool(1, daddr, 80, 1);
                }
                h
            })
            .collect()
    }

    fn reuse_watch_against_a_list(horizon: Instant) {
        // Random closes of a few tuples (marked and not, two watch lengths, repeats), each
        // lookup checked against the plain rule: closed at some c with c + len > now. A
        // port's count holds 3 watches, more go to `repeats`.
        let mut hosts = hosts_with_pools(2);
        let mut w = ReuseWatch::new(horizon);
        let mut log: Vec<(Watched, Instant)> = Vec::new();
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut now = Instant::ZERO;
        let (mut hits, mut misses, mut repeated) = (0, 0, false);
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            now = now + Duration(x % 300);
            if now > horizon {
                break;
            }
            let port = [1000, 1001, 1002, 1003, 1100, 1101][((x >> 8) % 6) as usize];
            let marked = !(x >> 20).is_multiple_of(3);
            let t = Tuple {
                local_ip: 1,
                local_port: port,
                remote_ip: if marked { 2 } else { 3 },
                remote_port: 80,
            };
            // Two hosts sharing a loopback address can watch the same tuple, apart.
            let watched = match marked {
                true => Watched::Pooled {
                    host: (x >> 50) as u16 % 2,
                    pool: 1,
                    port,
                },
                false => Watched::Tuple(t),
            };
            if (x >> 30).is_multiple_of(2) {
                let len = Duration([700, 2_000][((x >> 40) % 2) as usize]);
                w.closed_without_tw(&mut hosts, watched, now, len);
                log.push((watched, now + len));
                repeated |= !w.repeats.is_empty();
            } else {
                let expected = log.iter().any(|&(o, until)| o == watched && until > now);
                let reused = w.reused(&mut hosts, watched, now);
                assert_eq!(reused, expected, "{t} at {now:?}");
                if expected {
                    hits += 1;
                } else {
                    misses += 1;
                }
            }
        }
        assert!(hits > 1_000 && misses > 1_000, "{hits} {misses}");
        assert!(repeated, "some port watched more than 3 times at once");
    }

    #[test]
    fn a_watch_past_the_end_of_the_run_is_kept_without_its_end() {
        let mut hosts = hosts_with_pools(1);
        let mut w = ReuseWatch::new(Instant(100));
        let at = |port| Watched::Pooled {
            host: 0,
            pool: 0,
            port,
        };
        // One ends at the end of the run, one after it.
        w.closed_without_tw(&mut hosts, at(1000), Instant(0), Duration(100));
        w.closed_without_tw(&mut hosts, at(1001), Instant(0), Duration(101));
        let mut reused = |port, t| w.reused(&mut hosts, at(port), Instant(t));
        assert!(reused(1000, 99) && reused(1001, 99));
        assert!(!reused(1000, 100) && reused(1001, 100));
        let kept: usize = w.marked.iter().map(|l| l.ends.len()).sum();
        assert_eq!(
            kept, 0,
            "the end at the horizon was taken, the later one never kept"
        );
        assert_eq!(w.next_end, Instant::MAX);
    }
}
