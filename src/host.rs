//! One host's TCP port state: a network namespace, run by a [`Profile`].
//!
//! It holds what the kernel consults when it hands out a port (reference §1.3, §2, §3):
//! - the **bind buckets** (`bhash`), one per local port, with `fastreuse`/`fastreuseport`
//!   telling whether a `bind()` created or touched the bucket (then `connect()` never shares
//!   the port) and the owners (sockets and TIME-WAIT minisocks) that keep it alive;
//! - the **four-tuple table** (`ehash`) of every socket that owns a port: SYN-SENT to
//!   TIME-WAIT, on both the client and the server side (loopback: one table for both);
//! - per **pool** — a (source IP, destination IP, destination port) toward which `connect()`
//!   autoselects ports — the set of ports whose four-tuple is taken, so the allocator can scan
//!   64 candidates per word (see [`crate::alloc`]). With host-wide scope (XNU, §3.3) there is
//!   one pool per host and its set holds every port any socket owns.
//!
//! Bind buckets and their `fastreuse` rules are Linux's; the scenario accepts bind() modes on
//! Linux hosts only.

use crate::alloc::{
    ConnectQuery, FreeWords, LinuxAllocator, PoolCounts, PoolPorts, PortBits, PortSelector,
    PortView, Search, Selector, selector,
};
pub use crate::profile::Errno;
use crate::profile::{Isn, Profile, Scope, Skip, TsOffset, TwAccept, TwReject};
use crate::rng::{SipKey, siphash_3u32};
use crate::time::{Duration, Instant};
use crate::tw_timer::TwClock;
use rand::{Rng, RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::Ipv4Addr;
use std::rc::Rc;

/// Index of a socket in its host's socket slab.
pub type SockId = u32;
/// Index of a pool in its host.
pub type PoolId = u32;
/// "No such index".
pub const NONE: u32 = u32::MAX;

/// TCP states, with the RFC's names (`Display` prints the RFC 9293 spelling).
#[derive(Clone, Copy, PartialEq, Eq, Debug, PartialOrd, Ord)]
pub enum State {
    /// Bound by `bind()` but not connected: owns a port, not in the four-tuple table.
    Bound,
    Listen,
    SynSent,
    SynReceived,
    Established,
    FinWait1,
    CloseWait,
    LastAck,
    TimeWait,
}

impl State {
    pub const COUNT: usize = 9;
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::Bound => "BOUND",
            State::Listen => "LISTEN",
            State::SynSent => "SYN-SENT",
            State::SynReceived => "SYN-RECEIVED",
            State::Established => "ESTABLISHED",
            State::FinWait1 => "FIN-WAIT-1",
            State::CloseWait => "CLOSE-WAIT",
            State::LastAck => "LAST-ACK",
            State::TimeWait => "TIME-WAIT",
        })
    }
}

/// Which end of a connection a socket is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Side {
    Client,
    Server,
}

/// A connection's name, seen from the socket that owns it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct Tuple {
    pub local_ip: u32,
    pub local_port: u16,
    pub remote_ip: u32,
    pub remote_port: u16,
}

impl Tuple {
    #[inline]
    fn key(&self) -> u128 {
        (u128::from(self.local_ip) << 80)
            | (u128::from(self.local_port) << 64)
            | (u128::from(self.remote_ip) << 16)
            | u128::from(self.remote_port)
    }
    /// The same connection seen from the other end.
    pub fn mirror(&self) -> Tuple {
        Tuple {
            local_ip: self.remote_ip,
            local_port: self.remote_port,
            remote_ip: self.local_ip,
            remote_port: self.local_port,
        }
    }
}

impl fmt::Display for Tuple {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{} → {}:{}",
            Ipv4Addr::from(self.local_ip),
            self.local_port,
            Ipv4Addr::from(self.remote_ip),
            self.remote_port
        )
    }
}

/// `ipv4_is_loopback`: 127.0.0.0/8.
pub fn is_loopback(ip: u32) -> bool {
    ip >> 24 == 127
}

/// What a TIME-WAIT minisock keeps (§2.1, §7 item 2).
#[derive(Clone, Copy, Debug, Default)]
pub struct TimeWait {
    /// When the socket entered TIME-WAIT (`tw_entry_stamp`).
    pub entry: Instant,
    /// Next sequence number expected from the peer (`tw_rcv_nxt`).
    pub rcv_nxt: u32,
    /// Last timestamp value seen from the peer (`tw_ts_recent`).
    pub ts_recent: u32,
    /// Whether timestamps were negotiated (`tw_ts_recent_stamp != 0`).
    pub ts_seen: bool,
}

/// A socket that owns a local port.
#[derive(Clone, Debug)]
pub struct Socket {
    pub tuple: Tuple,
    pub state: State,
    pub side: Side,
    /// The simulation's connection record, `NONE` once detached (TIME-WAIT).
    pub conn: u32,
    /// SO_REUSEADDR (`sk_reuse`, copied to `tw_reuse`).
    pub reuse: bool,
    /// In the four-tuple table.
    pub hashed: bool,
    /// Autoselect pool whose port set tracks this tuple, or `NONE`.
    pub pool: PoolId,
    /// Set when a TIME-WAIT entry became reusable by `tcp_tw_reuse` (its pool bit cleared).
    pub reusable: bool,
    pub tw: TimeWait,
    /// Bumped when the slot is freed, so stale timer events can be recognised.
    pub generation: u32,
}

/// One `inet_bind_bucket` (§1.3 step 2).
#[derive(Clone, Copy, Debug, Default)]
struct Bucket {
    owners: u32,
    /// Owners that block an SO_REUSEADDR bind: not (`sk_reuse` and not LISTEN).
    strict: u32,
    fastreuse: i8,
    fastreuseport: i8,
}

impl Bucket {
    fn bind_created(&self) -> bool {
        self.owners > 0 && (self.fastreuse >= 0 || self.fastreuseport >= 0)
    }
}

/// A host's bind buckets, one per port, allocated when the first is written: a host whose
/// sockets own no bucket (a client whose buckets are not kept, [`Host::sockets_unseen`])
/// holds none, and a fleet of them costs no 768 KiB each.
#[derive(Default)]
struct Buckets(Vec<Bucket>);

impl Buckets {
    /// The bucket of `port` (empty if never written).
    #[inline(always)]
    fn get(&self, port: u16) -> Bucket {
        self.0.get(usize::from(port)).copied().unwrap_or_default()
    }
    /// The bucket of `port`, to change.
    #[inline(always)]
    fn get_mut(&mut self, port: u16) -> &mut Bucket {
        if self.0.is_empty() {
            self.0 = vec![Bucket::default(); 1 << 16];
        }
        &mut self.0[usize::from(port)]
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Owners {
    all: u32,
    strict: u32,
}

/// A (source IP, destination IP, destination port) toward which connect() autoselects ports.
///
/// What connect() and a close read of a pool but its port set sits in one cache line, and a
/// host's pools lie together, their port sets apart ([`Host::reserve_pools`]): a run over
/// many pools visits each rarely, and reads one word of its port set.
#[repr(C, align(64))]
pub struct Pool {
    pub saddr: u32,
    pub daddr: u32,
    pub dport: u16,
    /// Words of `taken ∪ blocked` with a free port, to skip full words when scanning.
    index: Box<FreeWords>,
    /// The allocator's memo for this pool's address triple ([`PortView::memo`]); unused by
    /// the host-wide pool, whose connects go to every destination.
    memo: Cell<(u64, u64)>,
    /// The port the last connect() from this pool took: the next search starts near it.
    last: u16,
    /// Ports of the host range usable by the next connect(): neither taken, reserved nor held
    /// by a bind()-created bucket.
    pub free: u32,
    /// `tcp_twsk_unique` can reuse this pool's TIME-WAIT entries after the delay (§2.3):
    /// `tcp_tw_reuse` is 1, or 2 with a loopback address, and timestamps are negotiated.
    pub tw_reuse: bool,
    /// The host's single pool under host-wide scope: `taken` holds every owned port.
    pub host_wide: bool,
}

/// Handshakes completed from a pool.
#[derive(Clone, Copy, Default)]
pub struct Established {
    pub all: u64,
    /// In the run's sustained window.
    pub late: u64,
}

impl Pool {
    pub fn label(&self) -> String {
        if self.host_wide {
            return "any → any (host-wide)".into();
        }
        format!(
            "{} → {}:{}",
            Ipv4Addr::from(self.saddr),
            Ipv4Addr::from(self.daddr),
            self.dport
        )
    }
}

/// Deterministic hasher for the kernel tables (never iterated, only looked up).
#[derive(Default, Clone, Copy)]
pub struct TableHasher(u64);

impl Hasher for TableHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }
    #[inline]
    fn write_u64(&mut self, x: u64) {
        self.0 = (self.0.rotate_left(5) ^ x).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    #[inline]
    fn write_u128(&mut self, x: u128) {
        self.write_u64(x as u64);
        self.write_u64((x >> 64) as u64);
    }
    #[inline]
    fn write_u32(&mut self, x: u32) {
        self.write_u64(u64::from(x));
    }
    #[inline]
    fn write_u16(&mut self, x: u16) {
        self.write_u64(u64::from(x));
    }
    #[inline]
    fn finish(&self) -> u64 {
        let h = self.0;
        (h ^ (h >> 31)).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (h >> 17)
    }
}

/// A hash map with a fixed, fast hasher: no per-process seed, and no iteration anywhere its
/// order could reach a result.
pub type Table<K, V> = HashMap<K, V, BuildHasherDefault<TableHasher>>;

/// A successful port search.
#[derive(Clone, Copy, Debug)]
pub struct Placed {
    pub sock: SockId,
    pub probes: u32,
    /// A TIME-WAIT entry of the same four-tuple was taken over (`TIMEWAITRECYCLED`).
    pub recycled: bool,
}

/// A refused port search.
#[derive(Clone, Copy, Debug)]
pub struct Refused {
    pub errno: Errno,
    pub probes: u32,
}

/// What happened to a SYN that found its four-tuple already in the server's table (§2.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SynOnTuple {
    /// No socket holds the tuple.
    Free,
    /// A TIME-WAIT entry accepted the SYN as a new incarnation and was killed.
    TimeWaitAccepted,
    /// A TIME-WAIT entry refused the SYN: with `ack`, it answered with an ACK (the client's
    /// RST reaches it one RTT later); without, it dropped the SYN silently, or its ACK was
    /// rate-limited. With `rearm`, its timer restarted (`inet_twsk_reschedule(tw,
    /// TCP_TIMEWAIT_LEN)`: PAWS rejected the SYN).
    TimeWaitRejected {
        sock: SockId,
        ack: bool,
        rearm: bool,
    },
    /// A live socket holds the tuple (challenge ACK; the client's RST resets it).
    Live(SockId),
}

/// What a TIME-WAIT did since its entry that moves its timer or limits its ACKs.
#[derive(Clone, Copy, Debug, Default)]
struct TwMarks {
    /// The last re-arm of its timer (`inet_twsk_reschedule`).
    rearmed: Option<Instant>,
    /// The last ACK it sent to a refused SYN (`tw_last_oow_ack_time`).
    last_ack: Option<Instant>,
}

/// The host model.
pub struct Host {
    pub name: String,
    pub profile: Profile,
    pub ips: Vec<u32>,
    listeners: Vec<(u32, u16)>,
    socks: Vec<Socket>,
    free_socks: Vec<SockId>,
    ehash: crate::ehash::Ehash,
    /// Whether every socket's port bucket is kept. Off on a host where nothing binds and
    /// ports are per destination: there a bucket changes nothing but its owner count (a
    /// connect() bucket is never bind-created, §1.3 step 2), so only listeners own buckets.
    buckets_kept: bool,
    /// Whether `ehash` is kept: off when nothing looks a tuple of this host up (no SYN
    /// arrives, no bind(), no `tcp_tw_reuse` pool), the pools' port sets then being the
    /// only record connect() needs ([`Host::index_tuples`]).
    indexed: bool,
    buckets: Buckets,
    /// Owners per (address, port), kept only when some socket on this host binds (bhash2).
    owners: Option<Table<(u32, u16), Owners>>,
    /// Per address, the ports it owns (`owners` with `all > 0`), for a word-at-a-time
    /// bind(0) search; kept with `owners`.
    addr_ports: Table<u32, Box<PortBits>>,
    /// Ports owned on the wildcard address 0.0.0.0.
    wildcard_ports: u32,
    /// A broken invariant found on the way (checked by the simulation in checking mode).
    pub violation: Option<String>,
    reserved: PortBits,
    /// Reserved ports and ports of bind()-created buckets.
    blocked: PortBits,
    pub pools: Vec<Pool>,
    /// Per pool, the ports whose four-tuple toward its destination is taken and not
    /// reusable: apart from the pools, so that their headers lie close together.
    taken: Vec<PoolPorts>,
    /// Per pool, the reuse watch's counts of its ports ([`Host::watch_counts`]), made for
    /// every pool at the host's first count: a run that closes no pool's four-tuple without
    /// TIME-WAIT keeps none (16 KiB a pool, twice its port set).
    watch: Vec<PoolCounts>,
    /// Per pool, its handshakes: apart from the pools, whose lines a count would otherwise
    /// bring into cache one per connection when a flight's steps are applied in bulk.
    pub established: Vec<Established>,
    pool_index: Table<(u32, u32, u16), PoolId>,
    /// The single pool under host-wide scope, once registered.
    wide_pool: Option<PoolId>,
    /// The connect() port-selection algorithm of the profile.
    selector: Selector,
    /// Linux `inet_csk_find_open_port` for bind(0).
    binder: LinuxAllocator,
    /// TIME-WAIT minisocks alive, both sides (`tcp_death_row.tw_refcount`, §2.2).
    pub tw_alive: u32,
    /// Client TIME-WAITs of connections that never had a socket ([`Host::time_wait_unseen`]),
    /// counted in `tw_alive` and `counts` as sockets in TIME-WAIT would be.
    unseen_time_wait: u32,
    /// Sockets per side and state.
    pub counts: [[u32; State::COUNT]; 2],
    /// TIME-WAITs per side of every host sharing this cell (a simulation's), kept with
    /// `counts`: the run's peak is read at each entry without visiting every host.
    time_wait_total: Rc<Cell<[u32; 2]>>,
    isn_secret: SipKey,
    ts_secret: SipKey,
    /// Draws of the ISN generator (random ISNs, per-ISN increments).
    isn_rng: ChaCha8Rng,
    /// The global ISN offset of clock-based generators with a per-ISN step.
    isn_offset: u32,
    /// Offset of the host's monotonic clock (`tcp_clock_ns`) at scenario start.
    mono_offset_ns: u64,
    /// When this host's TIME-WAIT timers fire ([`TwClock`]).
    tw_clock: TwClock,
    /// TIME-WAITs whose timer was re-armed or which sent an ACK ([`TwMarks`]); removed
    /// with the socket.
    tw_marks: BTreeMap<SockId, TwMarks>,
    /// Offset of the host's real-time clock (`ktime_get_real_ns`) at scenario start.
    real_offset_ns: u64,
}

impl Host {
    /// A host running `profile`, its randomness drawn from `rng`. `track_binds` keeps the
    /// per-address owner counts that bind() conflict checks need.
    pub fn new(
        name: String,
        profile: Profile,
        ips: Vec<u32>,
        mut rng: ChaCha8Rng,
        mut bind_rng: ChaCha8Rng,
        track_binds: bool,
    ) -> Host {
        let isn_secret = [rng.next_u64(), rng.next_u64()];
        let ts_secret = [rng.next_u64(), rng.next_u64()];
        // Uptime at scenario start: between 5 minutes and about 12 days.
        let mono_offset_ns = 300_000_000_000 + (rng.next_u64() % 1_000_000_000_000_000);
        let real_offset_ns = rng.next_u64() >> 2;
        let tw_clock = TwClock::new(profile.tw_timer, mono_offset_ns, profile.time_wait);
        let isn_rng = ChaCha8Rng::from_rng(&mut bind_rng);
        let binder = LinuxAllocator::new(bind_rng);
        let selector = selector(profile.selection, profile.port_range, rng);
        let mut reserved = PortBits::default();
        for &(a, b) in &profile.reserved_ports {
            for p in a..=b {
                reserved.insert(p);
            }
        }
        Host {
            name,
            blocked: reserved.clone(),
            reserved,
            ips,
            listeners: Vec::new(),
            socks: Vec::new(),
            free_socks: Vec::new(),
            ehash: crate::ehash::Ehash::default(),
            indexed: true,
            buckets: Buckets::default(),
            buckets_kept: track_binds || profile.scope == Scope::HostWide,
            owners: track_binds.then(Table::default),
            addr_ports: Table::default(),
            wildcard_ports: 0,
            violation: None,
            pools: Vec::new(),
            taken: Vec::new(),
            watch: Vec::new(),
            established: Vec::new(),
            pool_index: Table::default(),
            wide_pool: None,
            profile,
            selector,
            binder,
            tw_alive: 0,
            unseen_time_wait: 0,
            counts: [[0; State::COUNT]; 2],
            time_wait_total: Rc::default(),
            isn_secret,
            ts_secret,
            isn_rng,
            isn_offset: 0,
            mono_offset_ns,
            tw_clock,
            tw_marks: BTreeMap::new(),
            real_offset_ns,
        }
    }

    /// Draws the selector's whole table at once ([`LinuxAllocator::draw_table`]): faster
    /// connect()s for 256 KiB, worth it for a scenario of few hosts.
    pub fn draw_port_table(&mut self) {
        if let Selector::Linux(l) = &mut self.selector {
            l.draw_table();
        }
    }

    pub fn has_ip(&self, ip: u32) -> bool {
        is_loopback(ip) || self.ips.contains(&ip)
    }

    /// Makes room for `n` more pools: their headers in one array, their port sets in another,
    /// backed by huge pages where the kernel allows ([`crate::engine::advise_huge_pages`]): a
    /// run over many pools reads their port sets at scattered places.
    pub fn reserve_pools(&mut self, n: usize) {
        if self.pools.is_empty() {
            self.pools.reserve_exact(n);
            self.taken.reserve_exact(n);
            crate::engine::advise_huge_pages(&self.taken);
        }
    }

    /// Registers an autoselect pool (source IP → destination). `peer_timestamps` is the
    /// destination host's `tcp_timestamps`.
    pub fn add_pool(&mut self, saddr: u32, daddr: u32, dport: u16, peer_timestamps: u8) -> PoolId {
        let key = self.pool_key(saddr, daddr, dport);
        if let Some(&id) = self.pool_index.get(&key) {
            return id;
        }
        let host_wide = self.profile.scope == Scope::HostWide;
        let (saddr, daddr, dport) = key;
        let reuse = match self.profile.tw_reuse {
            0 => false,
            1 => true,
            _ => is_loopback(saddr) || is_loopback(daddr),
        };
        let ts = self.profile.timestamps != 0 && peer_timestamps != 0;
        let (lo, hi) = self.profile.port_range;
        let id = self.pools.len() as PoolId;
        // Made in place: a port set is 8 KiB.
        self.taken.push(PoolPorts::default());
        let taken = &mut self.taken[id as usize];
        // Sockets already on this tuple space (none at build time, but keep it exact).
        for s in &self.socks {
            let owns = self.buckets.get(s.tuple.local_port).owners > 0;
            if (host_wide && owns)
                || (s.hashed
                    && s.tuple.local_ip == saddr
                    && s.tuple.remote_ip == daddr
                    && s.tuple.remote_port == dport)
            {
                taken.insert(s.tuple.local_port);
            }
        }
        let free = u32::from(hi - lo) + 1 - PortBits::count_union_in(taken, &self.blocked, lo, hi);
        let index = Box::new(FreeWords::new(taken, &self.blocked));
        self.pools.push(Pool {
            saddr,
            daddr,
            dport,
            index,
            memo: Cell::new((u64::MAX, 0)),
            last: lo,
            free,
            tw_reuse: reuse && ts && !host_wide,
            host_wide,
        });
        self.established.push(Established::default());
        self.pool_index.insert(key, id);
        if host_wide {
            self.wide_pool = Some(id);
        }
        id
    }

    /// The pool a connect() from `saddr` to `daddr:dport` draws from: its own, or the host's
    /// single pool under host-wide scope.
    fn pool_key(&self, saddr: u32, daddr: u32, dport: u16) -> (u32, u32, u16) {
        match self.profile.scope {
            Scope::FourTuple => (saddr, daddr, dport),
            Scope::HostWide => (0, 0, 0),
        }
    }

    /// The per-destination pool a socket on this tuple belongs to (its `pool`), if any.
    pub fn four_tuple_pool(&self, saddr: u32, daddr: u32, dport: u16) -> Option<PoolId> {
        if self.profile.scope == Scope::FourTuple {
            self.pool_of(saddr, daddr, dport)
        } else {
            None
        }
    }

    pub fn pool_of(&self, saddr: u32, daddr: u32, dport: u16) -> Option<PoolId> {
        self.pool_index
            .get(&self.pool_key(saddr, daddr, dport))
            .copied()
    }

    pub fn sock(&self, id: SockId) -> &Socket {
        &self.socks[id as usize]
    }

    pub fn sock_mut(&mut self, id: SockId) -> &mut Socket {
        &mut self.socks[id as usize]
    }

    /// Sockets alive (any state), for invariant checks and memory accounting.
    pub fn live_sockets(&self) -> usize {
        self.socks.len() - self.free_socks.len()
    }

    pub fn ehash_len(&self) -> usize {
        self.ehash.len()
    }

    // ---- clocks of this host -------------------------------------------------------

    /// `tcp_clock_ms()` at `now`.
    pub fn clock_ms(&self, now: Instant) -> u64 {
        (now.0 + self.mono_offset_ns) / 1_000_000
    }

    /// When a TIME-WAIT timer armed at `at` fires ([`TwClock::expiry`]).
    #[inline]
    pub fn tw_expiry(&self, at: Instant) -> Instant {
        self.tw_clock.expiry(at)
    }

    /// Whether every TIME-WAIT lasts TIME_WAIT exactly.
    pub fn tw_exact(&self) -> bool {
        self.tw_clock.is_exact()
    }

    /// The ISN of an active open of `t` at `now`, by the profile's generator. Linux
    /// `secure_tcp_seq`: SipHash of the four-tuple plus `ktime_get_real_ns() >> 6` (§2.4).
    /// FreeBSD `tcp_new_isn`: a keyed hash plus a global offset that grows by 4096–8191 per
    /// ISN and at least 1 MiB/s. XNU: random (see [`Isn::Random`]).
    pub fn isn(&mut self, t: &Tuple, now: Instant) -> u32 {
        let (per_sec, step, jitter) = match self.profile.isn {
            Isn::Random => return self.isn_rng.next_u32(),
            Isn::Clock {
                per_sec,
                step,
                jitter,
            } => (per_sec, step, jitter),
        };
        let h = siphash_3u32(
            t.local_ip.to_be(),
            t.remote_ip.to_be(),
            (u32::from(t.local_port.to_be()) << 16) | u32::from(t.remote_port.to_be()),
            &self.isn_secret,
        ) as u32;
        let ns = u128::from(now.0 + self.real_offset_ns);
        let clock = (ns * u128::from(per_sec) / 1_000_000_000) as u32;
        if step == 0 {
            return h.wrapping_add(clock);
        }
        let inc = step + self.isn_rng.random_range(0..=jitter);
        let stepped = self.isn_offset.wrapping_add(inc);
        // SEQ_GT(projected, offset): the clock wins when it is ahead.
        self.isn_offset = if (clock.wrapping_sub(stepped) as i32) > 0 {
            clock
        } else {
            stepped
        };
        h.wrapping_add(self.isn_offset)
    }

    /// Whether drawing an ISN and a TSval offset changes the host's state (a random draw, or
    /// FreeBSD's stepping offset): when it does not, a connection that never needs them may
    /// skip them and leave every later draw the same.
    pub fn isn_draw_has_effects(&self) -> bool {
        matches!(self.profile.isn, Isn::Random | Isn::Clock { step: 1.., .. })
            || self.profile.ts_offset == TsOffset::PerConnection
    }

    /// The TSval offset of a new connection on `t`: Linux `secure_tcp_ts_off` per address
    /// pair (§2.3), XNU per tuple or random per connection (notes/xnu-research.md §3). A
    /// TSval is `ts_clock(now) + offset`.
    pub fn ts_offset(&mut self, t: &Tuple) -> u32 {
        let (local, remote) = (t.local_ip.to_be(), t.remote_ip.to_be());
        match self.profile.ts_offset {
            TsOffset::None => 0,
            TsOffset::PerHostPair => siphash_3u32(local, remote, 0, &self.ts_secret) as u32,
            TsOffset::PerTuple => {
                let ports = (u32::from(t.local_port) << 16) | u32::from(t.remote_port);
                siphash_3u32(local, remote, ports, &self.ts_secret) as u32
            }
            TsOffset::PerConnection => self.isn_rng.next_u32(),
        }
    }

    /// The timestamp clock at `now`: `tcp_clock_ms()` (Linux), `tcp_now` (BSD), in ms.
    pub fn ts_clock(&self, now: Instant) -> u32 {
        self.clock_ms(now) as u32
    }

    // ---- sockets, buckets and the four-tuple table ---------------------------------

    fn new_socket(
        &mut self,
        tuple: Tuple,
        state: State,
        side: Side,
        conn: u32,
        reuse: bool,
    ) -> SockId {
        let sock = Socket {
            tuple,
            state,
            side,
            conn,
            reuse,
            hashed: false,
            pool: NONE,
            reusable: false,
            tw: TimeWait::default(),
            generation: 0,
        };
        self.count(side, state, true);
        match self.free_socks.pop() {
            Some(id) => {
                let generation = self.socks[id as usize].generation;
                self.socks[id as usize] = Socket { generation, ..sock };
                id
            }
            None => {
                self.socks.push(sock);
                (self.socks.len() - 1) as SockId
            }
        }
    }

    /// One socket more (`up`) or fewer in `state` on `side`, in `counts` and, for TIME-WAIT,
    /// the total shared with other hosts.
    #[inline(always)]
    fn count(&mut self, side: Side, state: State, up: bool) {
        let c = &mut self.counts[side as usize][state as usize];
        *c = if up { *c + 1 } else { *c - 1 };
        if state == State::TimeWait {
            let mut t = self.time_wait_total.get();
            let c = &mut t[side as usize];
            *c = if up { *c + 1 } else { *c - 1 };
            self.time_wait_total.set(t);
        }
    }

    /// Counts this host's TIME-WAITs into `total` (client, server), shared with the other
    /// hosts of a simulation; set before any socket is made.
    pub fn share_time_wait_total(&mut self, total: Rc<Cell<[u32; 2]>>) {
        debug_assert!(self.counts.iter().all(|c| c[State::TimeWait as usize] == 0));
        self.time_wait_total = total;
    }

    /// TIME-WAITs (client, server) of every host sharing this one's total
    /// ([`Host::share_time_wait_total`]).
    #[inline]
    pub fn time_wait_total(&self) -> [u32; 2] {
        self.time_wait_total.get()
    }

    /// Moves a socket to `state`, keeping the per-state counts.
    pub fn set_state(&mut self, id: SockId, state: State) {
        let (side, was) = (self.socks[id as usize].side, self.socks[id as usize].state);
        self.count(side, was, false);
        self.count(side, state, true);
        let s = &mut self.socks[id as usize];
        if s.state == State::TimeWait {
            self.tw_alive -= 1;
        }
        if state == State::TimeWait {
            self.tw_alive += 1;
        }
        s.state = state;
    }

    fn strict(reuse: bool, state: State) -> bool {
        !(reuse && state != State::Listen)
    }

    fn set_blocked(&mut self, port: u16, blocked: bool) {
        let changed = if blocked {
            self.blocked.insert(port)
        } else {
            self.blocked.remove(port)
        };
        if !changed {
            return;
        }
        let (lo, hi) = self.profile.port_range;
        if !(lo..=hi).contains(&port) {
            return;
        }
        for (pool, taken) in self.pools.iter_mut().zip(&self.taken) {
            pool.index
                .refresh(taken, &self.blocked, usize::from(port >> 6));
            if !taken.contains(port) {
                if blocked {
                    pool.free -= 1;
                } else {
                    pool.free += 1;
                }
            }
        }
    }

    fn refresh_taint(&mut self, port: u16) {
        let tainted = match self.profile.skip {
            Skip::BindCreated => self.buckets.get(port).bind_created(),
            Skip::Listeners => self.listeners.iter().any(|&(_, p)| p == port),
        };
        let blocked = tainted || self.reserved.contains(port);
        if blocked != self.blocked.contains(port) {
            self.set_blocked(port, blocked);
        }
    }

    /// Adds an owner to the port's bucket (`inet_bind_hash`).
    #[inline(always)]
    fn own_port(&mut self, id: SockId) {
        let s = &self.socks[id as usize];
        if !self.buckets_kept && s.state != State::Listen {
            return;
        }
        let (port, addr, strict) = (
            s.tuple.local_port,
            s.tuple.local_ip,
            Self::strict(s.reuse, s.state),
        );
        let b = self.buckets.get_mut(port);
        b.owners += 1;
        b.strict += u32::from(strict);
        let first = b.owners == 1;
        if let Some(owners) = &mut self.owners {
            let o = owners.entry((addr, port)).or_default();
            o.all += 1;
            o.strict += u32::from(strict);
            if o.all == 1 {
                self.addr_ports.entry(addr).or_default().insert(port);
                self.wildcard_ports += u32::from(addr == 0);
            }
        }
        if first && let Some(pool) = self.wide_pool {
            self.pool_take(pool, port);
        }
    }

    /// The connect pool a socket drew its port from, if any.
    pub fn pool_of_socket(&self, id: SockId) -> Option<PoolId> {
        let p = self.socks[id as usize].pool;
        if p != NONE { Some(p) } else { self.wide_pool }
    }

    /// Removes an owner; the bucket dies with its last owner (`inet_put_port`,
    /// `inet_twsk_bind_unhash`).
    #[inline(always)]
    fn release_port(&mut self, id: SockId) {
        let s = &self.socks[id as usize];
        if !self.buckets_kept && s.state != State::Listen {
            return;
        }
        let (port, addr, strict) = (
            s.tuple.local_port,
            s.tuple.local_ip,
            Self::strict(s.reuse, s.state),
        );
        let b = self.buckets.get_mut(port);
        b.owners -= 1;
        b.strict -= u32::from(strict);
        let emptied = b.owners == 0;
        if emptied {
            *b = Bucket::default();
        }
        if let Some(owners) = &mut self.owners {
            let o = owners.get_mut(&(addr, port)).expect("owner recorded");
            o.all -= 1;
            o.strict -= u32::from(strict);
            if o.all == 0 {
                owners.remove(&(addr, port));
                if let Some(bits) = self.addr_ports.get_mut(&addr) {
                    bits.remove(port);
                }
                self.wildcard_ports -= u32::from(addr == 0);
            }
        }
        if emptied {
            self.refresh_taint(port);
            if let Some(pool) = self.wide_pool {
                self.pool_release(pool, port);
            }
        }
    }

    #[inline(always)]
    fn pool_take(&mut self, pool: PoolId, port: u16) {
        let (lo, hi) = self.profile.port_range;
        let counted = (lo..=hi).contains(&port) && !self.blocked.contains(port);
        let (p, taken) = (
            &mut self.pools[pool as usize],
            &mut self.taken[pool as usize],
        );
        if taken.insert(port) && counted {
            p.free -= 1;
        }
        p.index.after_insert(taken, &self.blocked, port);
    }

    #[inline(always)]
    fn pool_release(&mut self, pool: PoolId, port: u16) {
        let (lo, hi) = self.profile.port_range;
        let counted = (lo..=hi).contains(&port) && !self.blocked.contains(port);
        let (p, taken) = (
            &mut self.pools[pool as usize],
            &mut self.taken[pool as usize],
        );
        if taken.remove(port) && counted {
            p.free += 1;
        }
        p.index.after_remove(taken, &self.blocked, port);
    }

    fn hash_socket(&mut self, id: SockId) {
        let t = self.socks[id as usize].tuple;
        let pool = if self.profile.scope == Scope::FourTuple {
            self.pool_of(t.local_ip, t.remote_ip, t.remote_port)
        } else {
            None
        };
        self.hash_socket_in(id, pool);
    }

    /// [`Host::hash_socket`] for a socket whose per-destination pool is known: `pool` is
    /// `four_tuple_pool` of its tuple.
    #[inline(always)]
    fn hash_socket_in(&mut self, id: SockId, pool: Option<PoolId>) {
        let s = &mut self.socks[id as usize];
        s.hashed = true;
        let t = s.tuple;
        let socks = &self.socks;
        let prev = if self.indexed {
            self.ehash
                .insert(t.key(), id, |i| socks[i as usize].tuple.key())
        } else {
            None
        };
        debug_assert!(prev.is_none(), "two sockets share {t}");
        if let Some(pool) = pool {
            self.socks[id as usize].pool = pool;
            self.pool_take(pool, t.local_port);
        }
    }

    #[inline(always)]
    fn unhash_socket(&mut self, id: SockId) {
        let s = &mut self.socks[id as usize];
        if !s.hashed {
            return;
        }
        s.hashed = false;
        let (t, pool, reusable) = (s.tuple, s.pool, s.reusable);
        if self.indexed {
            let socks = &self.socks;
            self.ehash
                .remove(t.key(), |i| socks[i as usize].tuple.key());
        }
        if pool != NONE && !reusable {
            self.pool_release(pool, t.local_port);
        }
    }

    /// Frees a socket: out of the table, its port released (`tcp_done`, `inet_twsk_kill`).
    pub fn destroy(&mut self, id: SockId) {
        self.unhash_socket(id);
        self.release_port(id);
        let s = &mut self.socks[id as usize];
        let (side, state) = (s.side, s.state);
        s.generation = s.generation.wrapping_add(1);
        s.conn = NONE;
        if state == State::TimeWait {
            self.tw_alive -= 1;
            if !self.tw_marks.is_empty() {
                self.tw_marks.remove(&id);
            }
        }
        self.count(side, state, false);
        self.free_socks.push(id);
    }

    /// Keeps the four-tuple table, or not: a host no SYN reaches, with no bind() and no
    /// `tcp_tw_reuse` pool, never looks a tuple up, and connect() keeps tuples unique through
    /// the pools' port sets. Set before any socket is hashed.
    pub fn index_tuples(&mut self, on: bool) {
        debug_assert!(self.ehash.is_empty());
        self.indexed = on;
    }

    /// Whether a connect() pool of this host takes over reusable TIME-WAITs.
    pub fn reuses_time_wait(&self) -> bool {
        self.pools.iter().any(|p| p.tw_reuse)
    }

    /// Brings socket `id` into cache: it will be read soon.
    pub fn prefetch_socket(&self, id: SockId) {
        if let Some(s) = self.socks.get(id as usize) {
            crate::engine::prefetch(s);
        }
    }

    /// Brings into cache the fields of this host a connect() reads before its pool: a
    /// connect() from it comes soon.
    #[inline]
    pub fn prefetch_host(&self) {
        crate::engine::prefetch(&self.pools);
        crate::engine::prefetch(&self.taken);
        crate::engine::prefetch(&self.profile.port_range);
        crate::engine::prefetch(&self.selector);
    }

    /// Brings pool `pool`'s handshake counts into cache.
    #[inline]
    pub fn prefetch_established(&self, pool: PoolId) {
        if let Some(e) = self.established.get(pool as usize) {
            crate::engine::prefetch(e);
        }
    }

    /// Brings the socket counts into cache (a TIME-WAIT entry changes them).
    #[inline]
    pub fn prefetch_counts(&self) {
        crate::engine::prefetch(&self.counts[Side::Client as usize][State::TimeWait as usize]);
        crate::engine::prefetch(&self.tw_alive);
    }

    /// Brings pool `pool` into cache: a connect() from it comes soon.
    #[inline]
    pub fn prefetch_pool(&self, pool: PoolId) {
        if let Some(p) = self.pools.get(pool as usize) {
            crate::engine::prefetch(p);
        }
    }

    /// Brings into cache what the next connect() from `pool` will read beyond the pool
    /// itself, which should be in cache by now ([`Host::prefetch_pool`]): the selector's state
    /// for the pool's memo and the port-set word near the port it took last, with the reuse
    /// watch's counts of it when the host keeps any.
    #[inline]
    pub fn prefetch_connect(&self, pool: PoolId) {
        if let Some(p) = self.pools.get(pool as usize) {
            self.selector.prefetch(p.memo.get());
            if let Some(taken) = self.taken.get(pool as usize) {
                taken.prefetch(p.last);
            }
            if let Some(counts) = self.watch.get(pool as usize) {
                counts.prefetch(p.last);
            }
            self.blocked.prefetch(p.last);
        }
    }

    /// The simulation's reuse-watch count words for the 64 ports around `port` in `pool`
    /// ([`PoolCounts`]), and `port`'s bit in them: all zero while the host keeps no counts.
    #[inline(always)]
    pub fn watch_counts(&self, pool: PoolId, port: u16) -> Option<(&[u64; 2], u64)> {
        /// The counts of a pool the host keeps none for.
        static NONE_COUNTED: [u64; 2] = [0; 2];
        let i = pool as usize;
        match self.watch.get(i) {
            Some(counts) => Some(counts.of(port)),
            None => (i < self.taken.len()).then_some((&NONE_COUNTED, 1u64 << (port & 63))),
        }
    }

    /// [`Host::watch_counts`], to change: the first change makes the counts of every pool.
    #[inline(always)]
    pub fn watch_counts_mut(&mut self, pool: PoolId, port: u16) -> Option<(&mut [u64; 2], u64)> {
        let i = pool as usize;
        if i >= self.watch.len() {
            if i >= self.taken.len() {
                return None;
            }
            self.keep_watch_counts();
        }
        Some(self.watch[i].of_mut(port))
    }

    /// Makes the reuse watch's counts of every pool, all zero, beside those it has.
    #[cold]
    fn keep_watch_counts(&mut self) {
        self.watch
            .resize_with(self.taken.len(), PoolCounts::default);
    }

    /// Brings the four-tuple table's slot of socket `id` into cache.
    pub fn prefetch_slot(&self, id: SockId) {
        if self.indexed
            && let Some(s) = self.socks.get(id as usize)
            && s.hashed
        {
            self.ehash.prefetch(s.tuple.key());
        }
    }

    pub fn lookup(&self, t: &Tuple) -> Option<SockId> {
        assert!(
            self.indexed,
            "host {}: a tuple looked up in no table",
            self.name
        );
        self.ehash
            .get(t.key(), |i| self.socks[i as usize].tuple.key())
    }

    /// A listener on `ip:port` (`ip` 0 = any address). Listeners bind with SO_REUSEADDR.
    pub fn listen(&mut self, ip: u32, port: u16) {
        let t = Tuple {
            local_ip: ip,
            local_port: port,
            remote_ip: 0,
            remote_port: 0,
        };
        let id = self.new_socket(t, State::Listen, Side::Server, NONE, true);
        let b = self.buckets.get_mut(port);
        if b.owners == 0 {
            // inet_csk_update_fastreuse on an empty bucket, socket not yet LISTEN at bind().
            b.fastreuse = 1;
            b.fastreuseport = 0;
        } else {
            b.fastreuseport = 0;
        }
        self.listeners.push((ip, port));
        self.own_port(id);
        self.refresh_taint(port);
    }

    /// Whether a listener accepts connections on `ip:port`.
    pub fn listening(&self, ip: u32, port: u16) -> bool {
        self.listeners
            .iter()
            .any(|&(a, p)| p == port && (a == 0 || a == ip))
    }

    /// `inet_csk_bind_conflict` for `addr:port` (§2.6); `None` when the port has no bucket.
    pub fn bind_conflict(&self, addr: u32, port: u16, reuse: bool, relax: bool) -> Option<bool> {
        conflict(
            &self.buckets,
            self.owners.as_ref(),
            addr,
            port,
            reuse,
            relax,
        )
    }

    /// `inet_csk_get_port` bookkeeping once a bind() is granted: `inet_csk_update_fastreuse`.
    fn grant_bind(&mut self, addr: u32, port: u16, reuse: bool, conn: u32) -> SockId {
        let b = self.buckets.get_mut(port);
        if b.owners == 0 {
            b.fastreuse = i8::from(reuse);
        } else if !reuse {
            b.fastreuse = 0;
        }
        b.fastreuseport = 0;
        let t = Tuple {
            local_ip: addr,
            local_port: port,
            remote_ip: 0,
            remote_port: 0,
        };
        let id = self.new_socket(t, State::Bound, Side::Client, conn, reuse);
        self.own_port(id);
        self.refresh_taint(port);
        id
    }

    /// `bind(addr, 0)` without IP_BIND_ADDRESS_NO_PORT: an exclusive port (§1.6), odd first.
    pub fn bind_any(&mut self, addr: u32, reuse: bool, conn: u32) -> Result<Placed, Refused> {
        let (lo, hi) = self.profile.port_range;
        if addr != 0 && self.owners.is_some() {
            self.addr_ports.entry(addr).or_default();
        }
        let Host {
            binder,
            reserved,
            buckets,
            owners,
            profile,
            addr_ports,
            wildcard_ports,
            ..
        } = self;
        // Word at a time when only this address's own ports conflict: a specific address
        // and no socket bound to the wildcard address.
        let fast = match addr_ports.get(&addr) {
            Some(bits) if addr != 0 && *wildcard_ports == 0 => Some((&**bits, &*reserved)),
            _ => None,
        };
        let search: Search = binder.bind_any(
            lo,
            hi,
            reuse,
            profile.autobind_reuse,
            profile.bind_search,
            |p| reserved.contains(p as u16),
            |p, relax| conflict(buckets, owners.as_ref(), addr, p as u16, reuse, relax),
            |p| buckets.get(p as u16).owners,
            fast,
        );
        match search.port {
            Some(port) => Ok(Placed {
                sock: self.grant_bind(addr, port, reuse, conn),
                probes: search.probes,
                recycled: false,
            }),
            None => Err(Refused {
                errno: Errno::AddrInUse,
                probes: search.probes,
            }),
        }
    }

    /// `bind(addr, port)` with an explicit port (§2.6): EADDRINUSE on conflict.
    pub fn bind_port(
        &mut self,
        addr: u32,
        port: u16,
        reuse: bool,
        conn: u32,
    ) -> Result<SockId, Errno> {
        let b = self.buckets.get(port);
        if b.owners > 0
            && !(b.fastreuse > 0 && reuse)
            && self.bind_conflict(addr, port, reuse, true) == Some(true)
        {
            return Err(Errno::AddrInUse);
        }
        Ok(self.grant_bind(addr, port, reuse, conn))
    }

    /// connect() on a socket whose port is already bound: `check_established(port, twp=NULL)`
    /// (§1.1, §2.3 step 3: a TIME-WAIT tuple is reused whenever timestamps were seen).
    pub fn connect_bound(&mut self, id: SockId, daddr: u32, dport: u16) -> Result<bool, Errno> {
        let mut t = self.socks[id as usize].tuple;
        t.remote_ip = daddr;
        t.remote_port = dport;
        let mut recycled = false;
        if let Some(other) = self.lookup(&t) {
            let o = &self.socks[other as usize];
            if o.state == State::TimeWait && o.tw.ts_seen {
                self.destroy(other);
                recycled = true;
            } else {
                return Err(Errno::AddrNotAvail);
            }
        }
        self.socks[id as usize].tuple = t;
        self.set_state(id, State::SynSent);
        self.hash_socket(id);
        Ok(recycled)
    }

    /// connect() on an unbound socket from `saddr` (`__inet_hash_connect`, §1.2–§1.4).
    /// `range` is IP_LOCAL_PORT_RANGE when the application set one.
    pub fn connect_any(
        &mut self,
        now: Instant,
        saddr: u32,
        daddr: u32,
        dport: u16,
        range: Option<(u16, u16)>,
        conn: u32,
    ) -> Result<Placed, Refused> {
        let pool_id = self
            .pool_of(saddr, daddr, dport)
            .expect("pool registered at build");
        self.connect_in(pool_id, now, saddr, daddr, dport, range, conn)
    }

    /// [`Host::connect_any`] drawing from `pool_id`, the pool of `saddr → daddr:dport`.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    pub fn connect_in(
        &mut self,
        pool_id: PoolId,
        now: Instant,
        saddr: u32,
        daddr: u32,
        dport: u16,
        range: Option<(u16, u16)>,
        conn: u32,
    ) -> Result<Placed, Refused> {
        let (port, probes) = self.choose_port(pool_id, now, saddr, daddr, dport, range)?;
        let t = Tuple {
            local_ip: saddr,
            local_port: port,
            remote_ip: daddr,
            remote_port: dport,
        };
        if self.buckets_kept
            && self.profile.skip == crate::profile::Skip::BindCreated
            && self.buckets.get(port).bind_created()
            && self.violation.is_none()
        {
            self.violation = Some(format!(
                "host {}: connect() handed out port {port}, whose bucket bind() created (§1.3 step 2)",
                self.name
            ));
        }
        let mut recycled = false;
        // A port the pool counts as free holds no socket, or a TIME-WAIT made reusable.
        if self.pools[pool_id as usize].tw_reuse
            && let Some(tw) = self.lookup(&t)
        {
            debug_assert!(
                self.socks[tw as usize].reusable,
                "only reusable TIME-WAIT is scanned as free"
            );
            self.destroy(tw);
            recycled = true;
        }
        if self.buckets_kept {
            let b = self.buckets.get_mut(port);
            if b.owners == 0 {
                b.fastreuse = -1;
                b.fastreuseport = -1;
            }
        }
        let id = self.new_socket(t, State::SynSent, Side::Client, conn, false);
        self.own_port(id);
        let four_tuple = self.profile.scope == Scope::FourTuple;
        self.hash_socket_in(id, four_tuple.then_some(pool_id));
        Ok(Placed {
            sock: id,
            probes,
            recycled,
        })
    }

    /// The port search of connect() from `saddr` to `daddr:dport` in `pool_id` (§1.2–§1.4):
    /// the port and the candidates tested, or the error and the candidates tested. Takes
    /// nothing; the port found is the pool's `last`.
    #[inline(always)]
    fn choose_port(
        &mut self,
        pool_id: PoolId,
        now: Instant,
        saddr: u32,
        daddr: u32,
        dport: u16,
        range: Option<(u16, u16)>,
    ) -> Result<(u16, u32), Refused> {
        debug_assert_eq!(self.pool_of(saddr, daddr, dport), Some(pool_id));
        let (lo, hi) = self.profile.port_range;
        // inet_sk_get_local_port_range: each per-socket bound counts only inside the netns range.
        let (low, high, per_socket) = match range {
            Some((a, b)) => {
                let low = if a >= lo && a <= hi { a } else { lo };
                let high = if b >= lo && b <= hi { b } else { hi };
                if low <= high {
                    (low, high, true)
                } else {
                    (lo, hi, false)
                }
            }
            None => (lo, hi, false),
        };
        let q = ConnectQuery {
            saddr,
            daddr,
            dport,
            low,
            high,
            per_socket_range: per_socket,
        };
        let pool = &self.pools[pool_id as usize];
        if pool.free == 0 {
            return Err(self.exhausted(&q));
        }
        let view = PortView {
            pool: &self.taken[pool_id as usize],
            host: &self.blocked,
            index: Some(&pool.index),
            // A memo holds what depends on the addresses: one triple per pool, except the
            // host-wide pool, which serves every destination.
            memo: (!pool.host_wide).then_some(&pool.memo),
        };
        let search = self.selector.connect(now, &q, &view);
        match search.port {
            Some(port) => {
                self.pools[pool_id as usize].last = port;
                Ok((port, search.probes))
            }
            None => Err(Refused {
                errno: Errno::AddrNotAvail,
                probes: search.probes,
            }),
        }
    }

    /// connect() with every candidate taken: the scan fails after testing all of them.
    #[cold]
    fn exhausted(&self, q: &ConnectQuery) -> Refused {
        Refused {
            errno: Errno::AddrNotAvail,
            probes: self.selector.exhausted_probes(q),
        }
    }

    /// Whether nothing reads a client socket of this host between connect() and its
    /// TIME-WAIT entry but its pool's port set: no table is kept in which a lookup could find
    /// it ([`Host::index_tuples`]), no bind bucket counts it, and ports are per destination.
    /// Such a socket can be made at its TIME-WAIT entry ([`Host::connect_port`]).
    pub fn sockets_unseen(&self) -> bool {
        !self.indexed && !self.buckets_kept && self.profile.scope == Scope::FourTuple
    }

    /// connect() on a host whose sockets are unseen until TIME-WAIT ([`Host::sockets_unseen`]):
    /// the port is chosen and taken in the pool, and no socket is made (the caller keeps
    /// the connection); [`Host::time_wait_port`] or [`Host::release_pool_port`] ends it.
    #[inline(always)]
    pub fn connect_port(
        &mut self,
        pool_id: PoolId,
        now: Instant,
        saddr: u32,
        daddr: u32,
        dport: u16,
        range: Option<(u16, u16)>,
    ) -> Result<(u16, u32), Refused> {
        debug_assert!(self.sockets_unseen());
        let (port, probes) = self.choose_port(pool_id, now, saddr, daddr, dport, range)?;
        self.pool_take(pool_id, port);
        Ok((port, probes))
    }

    /// The connection whose port [`Host::connect_port`] took enters TIME-WAIT where nothing
    /// can see it (no SYN reaches this host, nothing kills a TIME-WAIT early) and it cannot
    /// overflow `tcp_max_tw_buckets`: it is counted, its port stays taken, and it ends by
    /// [`Host::expire_unseen`] after the TIME-WAIT.
    #[inline]
    pub fn time_wait_unseen(&mut self) {
        debug_assert!(self.sockets_unseen() && self.tw_alive < self.profile.max_tw_buckets);
        self.count(Side::Client, State::TimeWait, true);
        self.tw_alive += 1;
        self.unseen_time_wait += 1;
    }

    /// A TIME-WAIT of [`Host::time_wait_unseen`] on `port` of `pool` ends: the port is free.
    #[inline]
    pub fn expire_unseen(&mut self, pool: PoolId, port: u16) {
        self.pool_release(pool, port);
        self.count(Side::Client, State::TimeWait, false);
        self.tw_alive -= 1;
        self.unseen_time_wait -= 1;
    }

    /// The connection of `t`, whose port [`Host::connect_port`] took in `pool`, closes with
    /// no TIME-WAIT: the port is free again.
    #[inline]
    pub fn release_pool_port(&mut self, pool: PoolId, port: u16) {
        self.pool_release(pool, port);
    }

    /// [`Host::enter_time_wait`] for the connection from `ip`:`port`, whose port
    /// [`Host::connect_port`] took in `pool`: its socket is made in TIME-WAIT. None when
    /// `tcp_max_tw_buckets` is reached: no socket, the port is free again.
    #[inline(always)]
    pub fn time_wait_port(
        &mut self,
        pool: PoolId,
        ip: u32,
        port: u16,
        tw: TimeWait,
    ) -> Option<SockId> {
        if self.tw_alive >= self.profile.max_tw_buckets {
            self.pool_release(pool, port);
            return None;
        }
        Some(self.time_wait_socket(pool, ip, port, tw))
    }

    /// [`Host::time_wait_port`] with room in `tcp_max_tw_buckets`: the socket made.
    #[inline(never)]
    fn time_wait_socket(&mut self, pool: PoolId, ip: u32, port: u16, tw: TimeWait) -> SockId {
        let p = &self.pools[pool as usize];
        let t = Tuple {
            local_ip: ip,
            local_port: port,
            remote_ip: p.daddr,
            remote_port: p.dport,
        };
        let id = self.new_socket(t, State::TimeWait, Side::Client, NONE, false);
        self.tw_alive += 1;
        let s = &mut self.socks[id as usize];
        s.tw = tw;
        s.hashed = true;
        s.pool = pool;
        id
    }

    /// The passive open: a SYN for `t` (seen from this host) found a listener.
    pub fn accept_syn(&mut self, t: Tuple, conn: u32) -> SockId {
        let id = self.new_socket(t, State::SynReceived, Side::Server, conn, true);
        self.own_port(id);
        self.hash_socket(id);
        id
    }

    /// A SYN for `t` arrives at `now` with sequence number `seq` and timestamp `tsval`
    /// (present when timestamps are on at both ends). Linux `tcp_timewait_state_process`
    /// (§2.4, §7 item 4), FreeBSD `tcp_twcheck` (§3.2), XNU `tcp_input` (§3.4), by the
    /// profile's rule.
    pub fn syn_on_tuple(
        &mut self,
        t: &Tuple,
        seq: u32,
        tsval: Option<u32>,
        now: Instant,
    ) -> SynOnTuple {
        let Some(id) = self.lookup(t) else {
            return SynOnTuple::Free;
        };
        let s = &self.socks[id as usize];
        if s.state != State::TimeWait {
            return SynOnTuple::Live(id);
        }
        let tw = s.tw;
        let (accept, rearm) = match self.profile.tw_accept {
            TwAccept::SeqOrTimestamp => {
                let ts = tsval.filter(|_| tw.ts_seen);
                // tcp_paws_reject → tcp_paws_check(rx_opt, 0): a TSval below ts_recent,
                // by even one, is rejected (include/net/tcp.h).
                let paws_reject = ts.is_some_and(|v| (tw.ts_recent.wrapping_sub(v) as i32) > 0);
                let seq_newer = (tw.rcv_nxt.wrapping_sub(seq) as i32) < 0;
                let ts_newer = ts.is_some_and(|v| (tw.ts_recent.wrapping_sub(v) as i32) < 0);
                // An ACK-less SYN re-arms the timer only when PAWS rejected it.
                (!paws_reject && (seq_newer || ts_newer), paws_reject)
            }
            // SEQ_GT(seq, rcv_nxt + window): FreeBSD tcp_twcheck (window 0, §3.2); XNU
            // tcp_input, where the SYN must also lie beyond the receive window (§3.4), after
            // PAWS: TSTMP_LT(tsval, ts_recent) drops the segment without an ACK.
            TwAccept::Seq { window, paws } => {
                let stale = tsval
                    .filter(|_| paws && tw.ts_seen)
                    .is_some_and(|v| (v.wrapping_sub(tw.ts_recent) as i32) < 0);
                if stale {
                    return SynOnTuple::TimeWaitRejected {
                        sock: id,
                        ack: false,
                        rearm: false,
                    };
                }
                let beyond = (seq.wrapping_sub(tw.rcv_nxt.wrapping_add(window)) as i32) > 0;
                (beyond, false)
            }
        };
        if accept {
            self.destroy(id);
            return SynOnTuple::TimeWaitAccepted;
        }
        if rearm {
            self.tw_marks.entry(id).or_default().rearmed = Some(now);
        }
        let ack = self.profile.tw_reject == TwReject::Ack && !self.oow_rate_limited(id, now);
        SynOnTuple::TimeWaitRejected {
            sock: id,
            ack,
            rearm,
        }
    }

    /// Linux `tcp_timewait_check_oow_rate_limit` → `tcp_oow_rate_limited`: a TIME-WAIT
    /// answers a SYN it refuses with an ACK at most once per `tcp_invalid_ratelimit`
    /// (net/ipv4/tcp_input.c `__tcp_oow_rate_limited`; `TCPACKSkippedTimeWait` counts the
    /// rest). With no limit (other kernels, Linux before 4.0) it answers every one.
    fn oow_rate_limited(&mut self, id: SockId, now: Instant) -> bool {
        let limit = Duration::from_millis(u64::from(self.profile.invalid_ratelimit_ms));
        if limit == Duration::ZERO {
            return false;
        }
        let marks = self.tw_marks.entry(id).or_default();
        if marks.last_ack.is_some_and(|at| now - at < limit) {
            return true;
        }
        marks.last_ack = Some(now);
        false
    }

    /// When the TIME-WAIT timer of socket `id`, which entered at `entry`, is due: at its
    /// entry's expiry, or at its last re-arm's (`inet_twsk_reschedule`).
    pub fn tw_due(&self, id: SockId, entry: Instant) -> Instant {
        self.tw_expiry(self.tw_rearmed(id).unwrap_or(entry))
    }

    /// When the TIME-WAIT timer of socket `id` was last re-armed, if it was.
    #[inline]
    pub fn tw_rearmed(&self, id: SockId) -> Option<Instant> {
        if self.tw_marks.is_empty() {
            return None;
        }
        self.tw_marks.get(&id).and_then(|m| m.rearmed)
    }

    /// The active closer enters TIME-WAIT (`tcp_time_wait`, §2.1–§2.2). Returns false when
    /// `tcp_max_tw_buckets` is reached: the socket is closed with no TIME-WAIT.
    pub fn enter_time_wait(&mut self, id: SockId, tw: TimeWait) -> bool {
        if self.tw_alive >= self.profile.max_tw_buckets {
            self.destroy(id);
            return false;
        }
        let s = &mut self.socks[id as usize];
        s.tw = tw;
        s.conn = NONE;
        self.set_state(id, State::TimeWait);
        true
    }

    /// A client TIME-WAIT entry of a reuse-enabled pool has passed `tcp_tw_reuse_delay`:
    /// connect() may now take its tuple over, so its port counts as free for the pool.
    pub fn mark_reusable(&mut self, id: SockId) {
        let s = &mut self.socks[id as usize];
        debug_assert_eq!(s.state, State::TimeWait);
        if s.reusable || s.pool == NONE || self.pools[s.pool as usize].host_wide {
            return;
        }
        s.reusable = true;
        let (pool, port) = (s.pool, s.tuple.local_port);
        self.pool_release(pool, port);
    }

    /// Number of ports of `pool` that the next connect() could use.
    pub fn pool_free(&self, pool: PoolId) -> u32 {
        self.pools[pool as usize].free
    }

    /// Recomputes a pool's free count from scratch (for invariant checks).
    pub fn pool_free_recount(&self, pool: PoolId) -> u32 {
        let (lo, hi) = self.profile.port_range;
        let taken = &self.taken[pool as usize];
        (lo..=hi)
            .filter(|&port| !taken.contains(port) && !self.blocked.contains(port))
            .count() as u32
    }

    /// Checks the host's tables against each other (checking mode; O(sockets + pools × range)):
    /// every socket in the four-tuple table is there under its own tuple, so no two share one;
    /// the per-state counts and pool free counts match a recount. (That connect() never hands
    /// out a port of a bind()-created bucket is checked where it picks one: `violation`.)
    pub fn audit(&self) -> Result<(), String> {
        let name = &self.name;
        let mut hashed = 0usize;
        let mut counts = [[0u32; State::COUNT]; 2];
        let mut tw = 0u32;
        let mut unique: HashMap<u128, usize> = HashMap::new();
        let mut free = vec![false; self.socks.len()];
        for &f in &self.free_socks {
            free[f as usize] = true;
        }
        for (id, s) in self.socks.iter().enumerate() {
            if free[id] {
                continue;
            }
            counts[s.side as usize][s.state as usize] += 1;
            tw += u32::from(s.state == State::TimeWait);
            if s.hashed && !self.indexed {
                hashed += 1;
                if let Some(other) = unique.insert(s.tuple.key(), id) {
                    return Err(format!(
                        "host {name}: sockets {id} and {other} share the four-tuple {}",
                        s.tuple
                    ));
                }
            } else if s.hashed {
                hashed += 1;
                match self
                    .ehash
                    .get(s.tuple.key(), |i| self.socks[i as usize].tuple.key())
                {
                    Some(other) if other as usize == id => {}
                    Some(other) => {
                        return Err(format!(
                            "host {name}: sockets {id} and {other} share the four-tuple {}",
                            s.tuple
                        ));
                    }
                    None => {
                        return Err(format!(
                            "host {name}: socket {id} ({}) is hashed but not in the four-tuple table",
                            s.tuple
                        ));
                    }
                }
            }
        }
        counts[Side::Client as usize][State::TimeWait as usize] += self.unseen_time_wait;
        tw += self.unseen_time_wait;
        if self.indexed && hashed != self.ehash.len() {
            return Err(format!(
                "host {name}: {} four-tuple entries for {hashed} hashed sockets",
                self.ehash.len()
            ));
        }
        if counts != self.counts {
            return Err(format!(
                "host {name}: state counts {:?}, recount {counts:?}",
                self.counts
            ));
        }
        if tw != self.tw_alive {
            return Err(format!(
                "host {name}: {} TIME-WAIT counted, {tw} found",
                self.tw_alive
            ));
        }
        for (i, (p, taken)) in self.pools.iter().zip(&self.taken).enumerate() {
            if *p.index != FreeWords::new(taken, &self.blocked) {
                return Err(format!("host {name} pool {i}: free-word index is stale"));
            }
            let (fast, slow) = (self.pool_free(i as u32), self.pool_free_recount(i as u32));
            if fast != slow {
                return Err(format!(
                    "host {name} pool {i}: free {fast} but recount {slow}"
                ));
            }
        }
        Ok(())
    }

    /// The TIME-WAIT delay after which `tcp_tw_reuse` applies.
    pub fn tw_reuse_delay(&self) -> Duration {
        self.profile.tw_reuse_min_age()
    }

    /// When a TIME-WAIT entered at `entry` becomes reusable by `tcp_tw_reuse` (§2.3).
    pub fn tw_reusable_at(&self, entry: Instant) -> Instant {
        let offset = if self.profile.tw_reuse_realtime() {
            self.real_offset_ns
        } else {
            self.mono_offset_ns
        };
        self.profile.tw_reusable_at(entry, offset)
    }
}

/// `inet_csk_bind_conflict` over the owners of `port` whose address overlaps `addr`
/// (wildcard-aware). With `relax` an owner does not conflict when both it and the new socket
/// have SO_REUSEADDR and it is not listening; without, any overlapping owner conflicts.
fn conflict(
    buckets: &Buckets,
    owners: Option<&Table<(u32, u16), Owners>>,
    addr: u32,
    port: u16,
    reuse: bool,
    relax: bool,
) -> Option<bool> {
    let b = buckets.get(port);
    if b.owners == 0 {
        return None;
    }
    let owners = owners.expect("bind tracking is on for hosts whose workloads bind");
    let (all, strict) = if addr == 0 {
        (b.owners, b.strict)
    } else {
        let get = |a| owners.get(&(a, port)).copied().unwrap_or_default();
        let (x, y) = (get(addr), get(0));
        (x.all + y.all, x.strict + y.strict)
    };
    Some(if relax && reuse { strict > 0 } else { all > 0 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::stream;

    /// A server host of `profile` holding one TIME-WAIT on `t`, whose peer's next sequence
    /// number is 1000 and last TSval 5000.
    fn server_with_time_wait(profile: Profile, t: Tuple) -> Host {
        let mut h = Host::new(
            "s".into(),
            profile,
            vec![t.local_ip],
            stream(1, "h"),
            stream(1, "b"),
            false,
        );
        h.listen(t.local_ip, t.local_port);
        let id = h.accept_syn(t, NONE);
        h.set_state(id, State::Established);
        let tw = TimeWait {
            entry: Instant(0),
            rcv_nxt: 1000,
            ts_recent: 5000,
            ts_seen: true,
        };
        assert!(h.enter_time_wait(id, tw));
        h
    }

    const T: Tuple = Tuple {
        local_ip: 0x0a00_0002,
        local_port: 80,
        remote_ip: 0x0a00_0001,
        remote_port: 50000,
    };

    fn verdict(p: Profile, seq: u32, ts: Option<u32>) -> SynOnTuple {
        server_with_time_wait(p, T).syn_on_tuple(&T, seq, ts, Instant(1_000_000_000))
    }

    fn refused(ack: bool) -> impl Fn(SynOnTuple) -> bool {
        move |v| matches!(v, SynOnTuple::TimeWaitRejected { ack: a, .. } if a == ack)
    }

    #[test]
    fn linux_time_wait_accepts_a_newer_sequence_or_timestamp_and_acks_the_rest() {
        // §2.4: accept if not PAWS-rejected and (seq > rcv_nxt or TSval > ts_recent).
        let p = Profile::linux;
        assert_eq!(verdict(p(), 2000, None), SynOnTuple::TimeWaitAccepted);
        assert!(
            refused(true)(verdict(p(), 2000, Some(4998))),
            "PAWS beats a newer seq"
        );
        // tcp_paws_check(rx_opt, 0): one below ts_recent is already stale.
        assert!(refused(true)(verdict(p(), 2000, Some(4999))));
        assert_eq!(verdict(p(), 2000, Some(5000)), SynOnTuple::TimeWaitAccepted);
        assert_eq!(verdict(p(), 500, Some(6000)), SynOnTuple::TimeWaitAccepted);
        assert!(refused(true)(verdict(p(), 500, Some(5000))));
    }

    #[test]
    fn linux_time_wait_rearms_on_a_paws_rejected_syn_and_rate_limits_its_acks() {
        // tcp_timewait_state_process: `if (paws_reject || th->ack) inet_twsk_reschedule`;
        // an ACK-less SYN that is merely not newer leaves the timer alone.
        let rearms = |ts| {
            matches!(
                verdict(Profile::linux(), 500, Some(ts)),
                SynOnTuple::TimeWaitRejected { rearm: true, .. }
            )
        };
        assert!(rearms(4999));
        assert!(!rearms(5000));
        // tcp_oow_rate_limited: one ACK per tcp_invalid_ratelimit (500 ms).
        let mut h = server_with_time_wait(Profile::linux(), T);
        let acks: Vec<bool> = [0u64, 100, 499, 500, 1200]
            .iter()
            .map(|&ms| {
                let at = Instant(ms * 1_000_000);
                matches!(
                    h.syn_on_tuple(&T, 500, Some(4000), at),
                    SynOnTuple::TimeWaitRejected { ack: true, .. }
                )
            })
            .collect();
        assert_eq!(acks, [true, false, false, true, true]);
        // The last re-arm sets the timer: 1.2 s after entry, plus TIME_WAIT on the wheel.
        let id = h.lookup(&T).unwrap();
        let due = h.tw_due(id, Instant(0));
        assert_eq!(due, h.tw_expiry(Instant(1_200_000_000)));
        assert!(due > Instant(61_200_000_000));
    }

    #[test]
    fn freebsd_time_wait_tests_the_sequence_only_and_drops_silently() {
        // §3.2 tcp_twcheck: SEQ_GT(seq, rcv_nxt) accepts; PAWS is #if 0; else drop, no ACK.
        let p = Profile::freebsd;
        assert_eq!(verdict(p(), 1001, Some(1)), SynOnTuple::TimeWaitAccepted);
        assert!(refused(false)(verdict(p(), 1000, Some(9000))));
    }

    #[test]
    fn xnu_time_wait_drops_stale_timestamps_and_acks_syns_inside_the_window() {
        // §3.4, notes/xnu-research.md §2: PAWS first (silent drop), then the SYN must lie
        // beyond rcv_nxt + rcv_wnd, else ACK (and the client's RST is ignored).
        let p = Profile::macos;
        assert!(refused(false)(verdict(p(), 1_000_000, Some(4999))), "PAWS");
        assert!(refused(true)(verdict(p(), 1000 + XNU_WINDOW, Some(5001))));
        assert_eq!(
            verdict(p(), 1001 + XNU_WINDOW, Some(5001)),
            SynOnTuple::TimeWaitAccepted
        );
        // The 10th retransmission carries no timestamp: PAWS cannot drop it.
        assert_eq!(
            verdict(p(), 1001 + XNU_WINDOW, None),
            SynOnTuple::TimeWaitAccepted
        );
        assert!(!p().tw_rst_kills);
    }

    const XNU_WINDOW: u32 = crate::profile::XNU_TW_WINDOW;

    #[test]
    fn linux_connect_on_a_host_wide_pool_takes_each_destinations_own_port_offset() {
        // §1.2 step 1: port_offset hashes (saddr, daddr, dport). A host-wide pool serves every
        // destination, so no destination may reuse another's offset.
        use rand::Rng;
        let mut p = Profile::linux();
        p.scope = Scope::HostWide;
        p.port_range = (40000, 40101);
        let saddr = 0x0a00_0001;
        let mut h = Host::new(
            "c".into(),
            p,
            vec![saddr],
            stream(3, "h"),
            stream(3, "b"),
            false,
        );
        // The allocator Host::new makes, made again from the same stream after the host's
        // own six draws (its secrets and clock offsets); it hashes every query afresh.
        let mut rng = stream(3, "h");
        for _ in 0..6 {
            rng.next_u64();
        }
        let mut reference = LinuxAllocator::new(rng);
        let mut owned = PortBits::<1>::default();
        let now = Instant(0);
        let destinations = [
            (2, 80),
            (2, 81),
            (3, 80),
            (2, 80),
            (3, 80),
            (2, 81),
            (2, 81),
        ];
        for (i, &(d, dport)) in destinations.iter().enumerate() {
            let daddr = 0x0a00_0000 | d;
            h.add_pool(saddr, daddr, dport, 1);
            let placed = h
                .connect_any(now, saddr, daddr, dport, None, i as u32)
                .unwrap();
            let port = h.sock(placed.sock).tuple.local_port;
            let q = ConnectQuery {
                saddr,
                daddr,
                dport,
                low: 40000,
                high: 40101,
                per_socket_range: false,
            };
            let off = reference.port_offset(saddr, daddr, dport, reference.epoch(now));
            let want = reference.connect_literal(&q, off, |p| !owned.contains(p as u16));
            assert_eq!(Some(port), want.port, "connect {i} to {daddr:x}:{dport}");
            assert_eq!(placed.probes, want.probes);
            owned.insert(port);
        }
    }

    #[test]
    fn a_macos_host_refuses_a_port_any_socket_holds_whatever_the_destination() {
        // §3.3: the implicit bind looks up the local port alone.
        let mut p = Profile::macos();
        p.port_range = (50000, 50001);
        let mut h = Host::new(
            "m".into(),
            p,
            vec![0x0a00_0001],
            stream(2, "h"),
            stream(2, "b"),
            false,
        );
        let a = h.add_pool(0x0a00_0001, 0x0a00_0002, 80, 2);
        let b = h.add_pool(0x0a00_0001, 0x0a00_0003, 443, 2);
        assert_eq!(a, b, "one pool for the host");
        let now = Instant(0);
        assert!(
            h.connect_any(now, 0x0a00_0001, 0x0a00_0002, 80, None, 0)
                .is_ok()
        );
        assert!(
            h.connect_any(now, 0x0a00_0001, 0x0a00_0003, 443, None, 1)
                .is_ok()
        );
        let e = h
            .connect_any(now, 0x0a00_0001, 0x0a00_0004, 22, None, 2)
            .unwrap_err();
        assert_eq!(e.errno, Errno::AddrNotAvail);
        assert_eq!(h.profile.errno(e.errno), ("EADDRNOTAVAIL", 49));
        assert_eq!(h.pool_free(a), h.pool_free_recount(a));
    }
}
