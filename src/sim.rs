//! The simulation: hosts, workloads, and the TCP connection lifecycle between them.
//!
//! A connection is a client socket, a server socket and the segments between them; each
//! segment is an event at the receiving host, one-way delay after it was sent:
//!
//! ```text
//! client                                   server
//! connect(): port chosen, SYN-SENT ──SYN──▶ TIME-WAIT check (§2.4), SYN-RECEIVED
//! ESTABLISHED (connect latency)  ◀─SYN/ACK─
//!                   ACK + request ───────▶ ESTABLISHED, service time
//!                 response (×N)  ◀────────
//! close(): FIN-WAIT-1 ───────────FIN─────▶ CLOSE-WAIT → close() → LAST-ACK
//! TIME-WAIT 60 s ◀─────────────ACK+FIN───
//!                 ACK ───────────────────▶ CLOSED
//! ```
//!
//! When the server closes first the roles swap and TIME-WAIT sits on the server. SO_LINGER
//! {on, 0} replaces the FIN exchange by one RST and no TIME-WAIT (§2.5).
//!
//! # Exchanges scheduled whole
//!
//! When nothing can disturb a connection between connect() and its TIME-WAIT, its segments
//! are not queued one by one ([`Exchange`]): the client closes, delays are fixed, no other
//! socket can hold the server's side of the tuple, and nothing reads the states in between
//! except the gauges. Its TIME-WAIT entry is an event with the key stepping would give it
//! ([`crate::engine::packet_key`]), and the counts in between (ESTABLISHED sockets at both
//! ends, the requests, the latencies) are applied in bulk at each bin edge. The report is the
//! same as stepping through every segment ([`Simulation::stepping_segments`], compared in
//! `tests/scenarios.rs`; design in `notes/whole-exchanges.md`).
//!
//! # Streams
//!
//! An open-loop workload's arrivals and its whole exchanges' TIME-WAIT entries are one queue
//! source ([`Stream`]) whose event is the earlier of the two: both are known ahead (the next
//! arrival is drawn when one runs; entries come in connect() order). After one runs, the
//! next runs at once while it sorts before everything queued, as the run loop would have run
//! it; most events of a busy stream never touch the queue.
//!
//! # Sockets nobody sees
//!
//! On a client host that keeps no four-tuple table and no bind buckets and draws ports per
//! destination ([`Host::sockets_unseen`]), a whole exchange's socket could only be seen
//! through its pool's port set: connect() takes the port alone ([`Host::connect_port`]), and
//! the socket is made at the TIME-WAIT entry ([`Host::time_wait_port`]), or never when
//! `tcp_max_tw_buckets` is full. Where entries are applied in bulk, a TIME-WAIT is only
//! counted ([`Host::time_wait_unseen`]) and its expiry frees the port
//! ([`Event::UnseenExpire`]).

use crate::engine::{Class, Queue, packed};
use crate::host::{Errno, Host, NONE, Refused, SockId, State, SynOnTuple, TimeWait, Tuple};
use crate::report::{
    Connections, Counter, Gauges, HostInfo, LatencySummary, PoolInfo, PortUse, ProbeSummary,
    Recorder, Report, Requests, ScenarioInfo, Summary, TimeWaitSummary, WorkloadSummary,
    add_named_errors,
};
use crate::rng::stream;
use crate::scenario::Scenario;
use crate::time::{Duration, Instant};
use crate::workload::{AfterFailure, Arrival, Closer, Dist, Mode, Runner, Spread, Workload};
use std::collections::VecDeque;
use std::net::Ipv4Addr;

/// What happens; see the module docs for the segments.
#[derive(Clone, Copy, Debug)]
enum Event {
    /// The next event of open-loop workload `wl`'s [`Stream`]: an arrival, or the TIME-WAIT
    /// entry of its next whole exchange.
    Stream {
        wl: u32,
    },
    /// A closed-loop slot (or a retry) starts a connection.
    Start {
        wl: u32,
        slot: u32,
        retry: u32,
    },
    Syn {
        conn: u32,
        generation: u32,
    },
    SynAck {
        conn: u32,
        generation: u32,
    },
    /// The handshake's ACK, carrying the first request, reaches the server.
    Ack {
        conn: u32,
        generation: u32,
    },
    /// A response reaches the client (with the server's FIN after the last, if it closes).
    Response {
        conn: u32,
        generation: u32,
    },
    /// The server application closes after sending its last response.
    ServerClose {
        conn: u32,
        generation: u32,
    },
    /// The client's FIN reaches the server (client closes first).
    FinAtPassive {
        conn: u32,
        generation: u32,
    },
    /// The passive side's ACK and FIN reach the active closer: TIME-WAIT.
    FinAtActive {
        conn: u32,
        generation: u32,
    },
    /// The last ACK reaches the passive side: CLOSED.
    LastAck {
        conn: u32,
        generation: u32,
    },
    /// The RST of an SO_LINGER {on, 0} close reaches the peer.
    Rst {
        conn: u32,
        generation: u32,
    },
    SynRetransmit {
        conn: u32,
        generation: u32,
        tries: u8,
    },
    /// The client's RST, answering a TIME-WAIT's ACK, reaches that TIME-WAIT.
    TwRst {
        host: u16,
        sock: SockId,
        generation: u32,
    },
    TwExpire {
        host: u16,
        sock: SockId,
        generation: u32,
    },
    /// A TIME-WAIT entered without a socket ([`Host::time_wait_unseen`]) ends: `port` of
    /// `pool` on `host` is free.
    UnseenExpire {
        host: u16,
        pool: u32,
        port: u16,
    },
    TwReusable {
        host: u16,
        sock: SockId,
        generation: u32,
    },
}

/// A connection in progress.
#[derive(Clone, Copy, Debug, Default)]
struct Conn {
    generation: u32,
    /// The connection's number, in the order connections were opened, and the segments it
    /// has sent: its packets' keys ([`crate::engine::packet_key`]).
    origin: u64,
    stage: u32,
    wl: u32,
    slot: u32,
    retry: u32,
    client: u16,
    server: u16,
    csock: SockId,
    ssock: SockId,
    /// The client's view of the four-tuple.
    tuple: Tuple,
    started: Instant,
    /// When the request now in flight was issued (connect() for the first).
    req_start: Instant,
    syn_sent: Instant,
    syn_tries: u8,
    /// One-way delays client → server and server → client.
    up: Duration,
    down: Duration,
    requests_left: u32,
    isn: u32,
    /// The client's TSval offset for this connection.
    ts_off: u32,
    bytes: u32,
    client_fin_at: Instant,
    /// The per-destination pool of the client socket (its `pool`), or NONE.
    pool: u32,
}

impl Conn {
    /// What connect() decided: the client socket, its tuple and pool, the ISN and TSval
    /// offset.
    #[inline]
    fn attach(&mut self, sock: SockId, t: Tuple, isn: u32, ts_off: u32, pool: u32) {
        (self.csock, self.tuple, self.isn, self.ts_off, self.pool) = (sock, t, isn, ts_off, pool);
    }
}

/// How far ahead in a TIME-WAIT lane the socket, then its table slot, is prefetched.
const PREFETCH_SOCKET: usize = 16;
const PREFETCH_SLOT: usize = 8;

/// Connections of a whole exchange kept past their TIME-WAIT entry before all their steps
/// are applied at once.
const FLIGHTS_KEPT: usize = 1024;

/// Most requests per connection for an exchange scheduled whole (one step each).
const WHOLE_MAX_REQUESTS: u32 = 8;

/// What a step of a whole exchange does ([`Exchange`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StepKind {
    /// The SYN-ACK reaches the client: ESTABLISHED, the connect latency recorded.
    Established,
    /// The ACK reaches the server: its socket ESTABLISHED.
    ServerEstablished,
    /// Response `k` reaches the client (1 = the first, timed from connect()).
    Response(u32),
    /// The client closes after the last response: FIN-WAIT-1.
    ClientFin,
    /// The client's FIN reaches the server: its socket leaves ESTABLISHED for LAST-ACK.
    ServerFin,
    /// The FIN-ACK reaches the client: TIME-WAIT (only when entries are applied in bulk, see
    /// [`Exchange::bulk_time_wait`]).
    TimeWait,
}

/// The least and greatest client → server delay (half the RTT) a workload can draw; no
/// greatest for an exponential RTT.
fn one_way_bounds(rtt: Dist) -> (u64, Option<u64>) {
    match rtt {
        Dist::Fixed(d) => (d.0 / 2, Some(d.0 / 2)),
        Dist::Uniform(a, b) => (a.0 / 2, Some(b.0 / 2)),
        Dist::Exponential(_) => (0, None),
    }
}

/// What closes actively: a socket, or the connection of a tuple whose port a pool holds and
/// whose socket is made only at its TIME-WAIT entry ([`Exchange::lazy`]).
#[derive(Clone, Copy, Debug)]
enum Closing {
    /// A socket, and the address of its peer.
    Socket(SockId, u32),
    /// The connection from `ip`:`port` toward the destination of `pool`.
    Port { pool: u32, ip: u32, port: u16 },
}

/// A connection of a whole exchange.
#[derive(Clone, Copy, Debug)]
struct Flight {
    /// When connect() ran.
    at: Instant,
    /// The connection's number: its packets' keys ([`crate::engine::packet_key`]).
    origin: u64,
    /// The client socket's connect pool, or NONE (a bind() pool's, by `ip`).
    pool: u32,
    /// The client socket's address.
    ip: u32,
    client: u16,
    server: u16,
    /// The client socket (NONE until its TIME-WAIT entry where sockets are made then,
    /// [`Exchange::lazy`]), its port, and whether both ends use timestamps (its TIME-WAIT's
    /// `ts_seen`).
    sock: SockId,
    port: u16,
    ts_seen: bool,
}

/// A connection established on `host` from `ip`, counted for its connect pool, or else for
/// the bind() or explicit-port pool of its source address.
fn count_in_pool(
    client: &mut Host,
    bind_pools: &mut [BindPool],
    host: u16,
    pool: Option<u32>,
    ip: u32,
    late: u64,
) {
    if let Some(pool) = pool {
        let e = &mut client.established[pool as usize];
        e.all += 1;
        e.late += late;
    } else if let Some(b) = bind_pools.iter_mut().find(|b| b.host == host && b.ip == ip) {
        b.established += 1;
        b.established_late += late;
    }
}

/// Whether no TIME-WAIT entry on host `h` can find `tcp_max_tw_buckets` reached (§2.2): every
/// socket that can enter TIME-WAIT there holds a port of one of its connect() pools (nothing
/// binds from it, no server on it closes first), and the pools hold no more ports than the
/// limit, so at most limit − 1 others are in TIME-WAIT when one enters.
fn time_wait_cannot_overflow(sc: &Scenario, h: u16) -> bool {
    let host = &sc.hosts[h as usize];
    let mut pools = std::collections::BTreeSet::new();
    for w in &sc.workloads {
        let sources: Vec<_> = w.sources.iter().filter(|s| s.host == h).collect();
        let serves = w.destinations.iter().any(|d| d.host == h);
        if (!sources.is_empty() && w.mode.binds())
            || (serves && w.closer == Closer::Server && !w.linger_zero)
        {
            return false;
        }
        for s in sources {
            for d in &w.destinations {
                pools.insert((s.ip, d.ip, d.port));
            }
        }
    }
    let n = match host.profile.scope {
        crate::profile::Scope::HostWide => pools.len().min(1),
        crate::profile::Scope::FourTuple => pools.len(),
    };
    let (lo, hi) = host.profile.port_range;
    n as u64 * (u64::from(hi - lo) + 1) <= u64::from(host.profile.max_tw_buckets)
}

/// Flight `f` of a whole exchange enters TIME-WAIT on its client `host` at `entry`, applied
/// in bulk ([`Exchange::bulk_time_wait`]: it cannot overflow): its socket, or only the count
/// where it has none ([`Host::time_wait_unseen`]).
fn enter_in_bulk(host: &mut Host, f: &Flight, entry: Instant) {
    if f.sock == NONE {
        host.time_wait_unseen();
    } else {
        let tw = TimeWait {
            entry,
            rcv_nxt: 0,
            ts_recent: 0,
            ts_seen: f.ts_seen,
        };
        let ok = host.enter_time_wait(f.sock, tw);
        debug_assert!(ok, "a bulk TIME-WAIT entry overflowed");
    }
}

/// Records the TIME-WAIT count of every host now, toward the run's peak.
fn note_time_wait(hosts: &[Host], rec: &mut Recorder) {
    let (mut client, mut server) = (0, 0);
    for h in hosts {
        client += h.counts[0][State::TimeWait as usize];
        server += h.counts[1][State::TimeWait as usize];
    }
    rec.time_wait(client, server);
}

/// The connections of one workload whose exchanges are scheduled whole, in connect() order.
///
/// With fixed delays each step comes a fixed offset after connect(), so a step's pending
/// connections are a suffix of the queue and each step keeps a cursor into it. The server's
/// socket is not created: its only reader is the gauge of ESTABLISHED server sockets
/// (`virtual_established`). The client's socket stays SYN-SENT in the host's table until its
/// TIME-WAIT entry (nothing reads its state in between), or is made only then
/// ([`Exchange::lazy`]), the gauge of ESTABLISHED client sockets counting it from the cursors
/// ([`Exchange::client_established`]); the SYN finds no socket on the tuple, since the client
/// holds the port until after the server's socket has gone (its LAST-ACK comes `up` after the
/// client's TIME-WAIT entry, and a port leaves TIME-WAIT no earlier than that).
struct Exchange {
    rtt: Duration,
    /// Segments sent up to the TIME-WAIT entry's: the FIN-ACK's segment number.
    fin_stage: u32,
    /// From connect() to the TIME-WAIT entry.
    to_time_wait: Duration,
    /// (offset from connect(), step), in the order stepping applies them.
    steps: Vec<(Duration, StepKind)>,
    /// Connections in connect() order.
    flights: VecDeque<Flight>,
    /// Between two responses: RTT plus service time.
    gap: Duration,
    /// Connections dropped from the front of `flights`.
    popped: u64,
    /// Per step, the number of the first connection it has not been applied to.
    next: Vec<u64>,
    /// Connections that have entered TIME-WAIT.
    entered: u64,
    /// The (host, pool) every connection draws from, when there is only one.
    single_pool: Option<(u16, u32)>,
    /// The server host of every connection, when there is only one.
    single_server: Option<u16>,
    /// TIME-WAIT entries are a step applied in bulk, not an event: each connection's expiry
    /// is queued at connect() and nothing else is (see [`Simulation::new`] for when).
    bulk_time_wait: bool,

    /// Connections draw their ports from connect() pools (connect() or
    /// IP_BIND_ADDRESS_NO_PORT): [`Simulation::start_whole`] starts them.
    pooled: bool,
    /// The client socket is made at the TIME-WAIT entry, not at connect(): nothing on the
    /// client host can see it before ([`Host::sockets_unseen`]); the flight holds the port.
    lazy: bool,
}

/// Four-tuples closed without any TIME-WAIT, remembered for one TIME-WAIT length: a
/// connect() that takes one of them again in that time is an unprotected reuse.
///
/// A tuple of a per-destination pool is kept as a count of the pool's port, in two bits
/// ([`Counts`]: up to 3, the excess in `repeats`) held beside the port's word in the pool's
/// port set ([`crate::alloc::PoolPorts`]): a lookup at connect(), nearly always a miss,
/// reads the line connect() has just read. Other tuples are kept in a table with their end.
#[derive(Default)]
struct ReuseWatch {
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
/// bits, the words a pool keeps beside each word of its port set
/// ([`crate::host::Host::watch_counts`]); `bit` is the port's.
struct Counts;

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
    fn any([lo, hi]: &[u64; 2], bit: u64) -> bool {
        (lo | hi) & bit != 0
    }
}

/// A four-tuple the watch keeps: a port of a host's per-destination pool, counted there, or
/// any other tuple, kept in the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Watched {
    Pooled { host: u16, pool: u32, port: u16 },
    Tuple(Tuple),
}

/// How the watch keeps the tuple `t` (as the client sees it) of a connection from host
/// `client`, whose client socket's per-destination pool is `pool` (or NONE).
fn watched(hosts: &[Host], client: u16, pool: u32, t: Tuple) -> Watched {
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
    len: Duration,
    host: u16,
    pool_high: u16,
    /// The end of the front entry.
    front: Instant,
    /// The end of the back entry.
    back: Instant,
    ends: VecDeque<u64>,
}

impl MarkedLane {
    #[inline(always)]
    fn push(&mut self, until: Instant, pool: u32, port: u16) {
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
    fn new(horizon: Instant) -> ReuseWatch {
        ReuseWatch {
            next_end: Instant::MAX,
            horizon,
            ..ReuseWatch::default()
        }
    }

    /// The tuple `watched` of a connection of `hosts` closes at `now` with no TIME-WAIT: it
    /// is watched for `len`.
    #[inline(always)]
    fn closed_without_tw(
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
    fn repeat(&mut self, host: u16, pool: u32, port: u16) {
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
    fn reused(&mut self, hosts: &mut [Host], watched: Watched, now: Instant) -> bool {
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

struct Lanes {
    tw_expire: usize,
    tw_reusable: usize,
}

impl Exchange {
    /// The index of the step of `kind`.
    fn step(&self, kind: StepKind) -> usize {
        self.steps
            .iter()
            .position(|&(_, k)| k == kind)
            .expect("every exchange has its steps")
    }

    /// Client sockets ESTABLISHED now (after a catch-up): established, FIN not yet sent.
    fn client_established(&self) -> u64 {
        self.next[self.step(StepKind::Established)] - self.next[self.step(StepKind::ClientFin)]
    }

    /// The packed `(at, key)` of the TIME-WAIT entry of `f`: `to_time_wait` after its
    /// connect(), keyed as its FIN-ACK.
    fn fin_of(&self, f: &Flight) -> u128 {
        let key = crate::engine::packet_key(f.origin, self.fin_stage);
        packed((f.at + self.to_time_wait).0, key)
    }

    /// The packed `(at, key)` of the next TIME-WAIT entry when entries are events (flight
    /// `entered`'s), else [`NO_EVENT`].
    #[inline]
    fn next_fin(&self) -> u128 {
        match self.flights.get((self.entered - self.popped) as usize) {
            Some(f) if !self.bulk_time_wait => self.fin_of(f),
            _ => NO_EVENT,
        }
    }

    /// Keeps connection `f`, just connected, until its TIME-WAIT entry: `fin`, the stream's
    /// next entry, if it is the only one waiting, or, where entries are applied in bulk, its
    /// expiry queued now. True when the connections kept call for a catch-up
    /// ([`Simulation::catch_up`]).
    #[inline(always)]
    fn keep(
        &mut self,
        f: Flight,
        fin: &mut u128,
        hosts: &[Host],
        lanes: &[Lanes],
        queue: &mut Queue<Event>,
    ) -> bool {
        self.flights.push_back(f);
        if *fin == NO_EVENT {
            *fin = self.next_fin();
        }
        if !self.bulk_time_wait {
            return false;
        }
        // Its TIME-WAIT entry is a step; only the expiry is an event.
        let h = &hosts[f.client as usize];
        let ev = match f.sock {
            NONE => Event::UnseenExpire {
                host: f.client,
                pool: f.pool,
                port: f.port,
            },
            sock => Event::TwExpire {
                host: f.client,
                sock,
                generation: h.sock(sock).generation,
            },
        };
        let expire = f.at + self.to_time_wait + h.profile.time_wait;
        let lane = lanes[f.client as usize].tw_expire;
        queue.push_lane_ordered(lane, expire, Class::Timer, ev);
        // Keep memory to the connections alive, whatever the bin width.
        self.flights.len() >= FLIGHTS_KEPT
    }

    /// Connections connected and not yet established (after a catch-up): in flight.
    fn in_flight(&self) -> u64 {
        self.popped + self.flights.len() as u64 - self.next[self.step(StepKind::Established)]
    }

    /// Client sockets of these connections counted SYN-SENT by their host: made at connect()
    /// and left SYN-SENT until the TIME-WAIT entry, unless made at the entry ([`Self::lazy`]).
    fn syn_sent_sockets(&self) -> u64 {
        if self.lazy {
            0
        } else {
            self.popped + self.flights.len() as u64 - self.entered
        }
    }

    /// The whole-exchange schedule of `w`, if nothing can disturb its connections between
    /// connect() and TIME-WAIT: an open loop (no closed-loop slot waits on a response), fixed
    /// delays with both one-way halves non-zero, the client closing without SO_LINGER 0, at
    /// most [`WHOLE_MAX_REQUESTS`] requests, the same for every connection (a request limit
    /// that is a whole number of connections); on every destination host, no workload whose
    /// server closes first or resets (its TIME-WAITs could hold a tuple) and no bind() or
    /// explicit-port workload (a socket on a listener's port); and for every workload of the
    /// same client to those hosts, a port freed after a TIME-WAIT entry cannot carry a SYN to
    /// the server before the previous connection's LAST-ACK has closed the server's socket.
    fn new(sc: &Scenario, w: &Workload) -> Option<Exchange> {
        let (Dist::Fixed(rtt), Dist::Fixed(service)) = (w.rtt, w.service_time) else {
            return None;
        };
        let up = Duration(rtt.0 / 2);
        let quiet = |host: u16| {
            sc.workloads.iter().all(|o| {
                let serves = o.destinations.iter().any(|d| d.host == host);
                let binds = o.sources.iter().any(|s| s.host == host)
                    && matches!(o.mode, Mode::Bind | Mode::Explicit { .. });
                !binds && (!serves || (o.closer == Closer::Client && !o.linger_zero))
            })
        };
        // The client's port can carry a new SYN this soon after a TIME-WAIT entry: at once
        // if the entry can be skipped (tcp_max_tw_buckets, nolocaltimewait), else when the
        // TIME-WAIT ends or becomes reusable.
        let client = &sc.hosts[w.sources[0].host as usize].profile;
        let client_host = &sc.hosts[w.sources[0].host as usize];
        let may_overflow =
            client.max_tw_buckets != u32::MAX && !time_wait_cannot_overflow(sc, w.sources[0].host);
        let skips_local = !client.local_time_wait
            && w.destinations
                .iter()
                .any(|d| crate::host::is_loopback(d.ip) || client_host.ips.contains(&d.ip));
        let free_after = if may_overflow || skips_local {
            0
        } else if client.tw_reuse != 0 {
            client
                .time_wait
                .0
                .min(u64::from(client.tw_reuse_delay_ms) * 1_000_000)
        } else {
            client.time_wait.0
        };
        // A SYN on a port must reach the server no earlier than the LAST-ACK of the port's
        // previous connection, whichever workload of this client each belongs to.
        let apart = |o: &Workload| {
            let (lo, hi) = one_way_bounds(o.rtt);
            // A loopback source is the same address on every host that has it.
            let lo_src = |x: &Workload| x.sources.iter().any(|s| crate::host::is_loopback(s.ip));
            let shares = (o.sources[0].host == w.sources[0].host || (lo_src(o) && lo_src(w)))
                && o.destinations
                    .iter()
                    .any(|d| w.destinations.iter().any(|e| e.host == d.host));
            !shares || (hi.is_some_and(|hi| free_after + up.0 >= hi) && free_after + lo >= up.0)
        };
        if matches!(w.arrival, Arrival::Closed { .. })
            || up.0 == 0
            || rtt.0 - up.0 == 0
            || w.closer != Closer::Client
            || w.linger_zero
            || w.requests_per_connection > WHOLE_MAX_REQUESTS
            || w.limit
                .requests
                .is_some_and(|r| r % u64::from(w.requests_per_connection) != 0)
            || !w.destinations.iter().all(|d| quiet(d.host))
            || !sc.workloads.iter().all(apart)
        {
            return None;
        }
        let n = w.requests_per_connection;
        let gap = rtt + service;
        let fin = Duration(rtt.0 + u64::from(n) * gap.0);
        let mut steps = vec![
            (rtt, StepKind::Established),
            (rtt + up, StepKind::ServerEstablished),
        ];
        steps.extend((1..=n).map(|k| {
            (
                Duration(rtt.0 + u64::from(k) * gap.0),
                StepKind::Response(k),
            )
        }));
        steps.push((fin, StepKind::ClientFin));
        steps.push((fin + up, StepKind::ServerFin));
        // Stable: steps at one offset keep the order stepping applies them in.
        steps.sort_by_key(|&(offset, _)| offset);
        Some(Exchange {
            rtt,
            gap,
            // SYN, SYN-ACK, ACK, the responses, FIN, FIN-ACK.
            fin_stage: 3 + n + 2,
            to_time_wait: fin + rtt,
            next: vec![0; steps.len()],
            steps,
            flights: VecDeque::new(),
            popped: 0,
            entered: 0,
            single_pool: None,
            bulk_time_wait: false,
            pooled: matches!(w.mode, Mode::Connect | Mode::BindNoPort),
            lazy: false,
            single_server: w
                .destinations
                .iter()
                .all(|d| d.host == w.destinations[0].host)
                .then_some(w.destinations[0].host),
        })
    }
}

/// The packed `(at, key)` of no event: it sorts after every event.
const NO_EVENT: u128 = u128::MAX;

/// An open-loop workload's events as one queue source: its next arrival and, for whole
/// exchanges whose TIME-WAIT entries are events, its next entry ([`Exchange::next_fin`]).
/// The source's event is the earlier; when it runs, the one after it runs at once if nothing
/// else comes first ([`Simulation::stream`]).
struct Stream {
    /// The queue source; `usize::MAX` for a closed loop, which has no stream.
    source: usize,
    /// The packed `(at, key)` of the next arrival (its key given when the arrival before it
    /// ran, as queueing it then would have), [`NO_EVENT`] once arrivals stop.
    arrival: u128,
    /// The packed `(at, key)` of the next TIME-WAIT entry of its whole exchanges when
    /// entries are events ([`Exchange::next_fin`]), else [`NO_EVENT`].
    fin: u128,
    /// The packed `(at, key)` the source is set to, [`NO_EVENT`] when not set.
    scheduled: u128,
}

impl Stream {
    /// The earliest pending event, packed; [`NO_EVENT`] for none.
    #[inline]
    fn head(&self) -> u128 {
        self.arrival.min(self.fin)
    }
}

/// A runnable scenario.
pub struct Simulation {
    now: Instant,
    end: Instant,
    queue: Queue<Event>,
    hosts: Vec<Host>,
    lanes: Vec<Lanes>,
    workloads: Vec<Workload>,
    runners: Vec<Runner>,
    /// Per workload, its events' source (open loops only).
    streams: Vec<Stream>,
    conns: Vec<Conn>,
    free_conns: Vec<u32>,
    /// Connections opened so far: the next one's number.
    origins: u64,
    live_conns: u64,
    rec: Recorder,
    watch: ReuseWatch,
    events: u64,
    info: (ScenarioInfo, u64, Duration),
    host_info: Vec<HostInfo>,
    pools: Vec<(u16, u32)>,
    /// Closed-loop workers waiting out an exhausted pool (see [`Parked`]).
    parked: Vec<Parked>,
    /// The sequence number the last virtual retry was queued after, and how many were
    /// queued after it: a virtual retry's place is `(after, sub)`.
    sub_for: (u64, u32),
    /// Count parked retries in bulk (off only to test that it changes nothing).
    bulk: bool,
    /// Exclusive-port pools of bind() workloads: (host, source IP, ports, kind), with the
    /// connections each established, counted at establishment by the socket's local IP.
    bind_pools: Vec<BindPool>,
    /// Start of the sustained window (see [`sustained_from`]).
    late_from: Instant,
    /// Per workload, the pool whose exhaustion lets its open-loop arrivals be counted in bulk
    /// ([`Simulation::arrivals_in_bulk`]): one source, one destination, a fixed RTT (no latency
    /// draw), `count` on error (it never stops), connect() or IP_BIND_ADDRESS_NO_PORT.
    open_loop_pools: Vec<Option<(u16, u32)>>,
    /// Per workload of connect() or IP_BIND_ADDRESS_NO_PORT, its (client host, pool) of each
    /// (source, destination): `[destination * sources + source]`, the order round robin
    /// takes them in.
    conn_pools: Vec<Vec<(u16, u32)>>,
    /// Per workload, its exchanges scheduled whole, if it qualifies ([`Exchange`]).
    exchanges: Vec<Option<Exchange>>,
    /// Every exchange enters TIME-WAIT in bulk ([`Exchange::bulk_time_wait`]).
    bulk_time_wait: bool,
    /// Per host, server sockets of whole exchanges that are ESTABLISHED.
    virtual_established: Vec<u32>,
    /// Checking mode: invariants asserted after every event (see [`Simulation::checking`]).
    check: bool,
    violation: Option<Violation>,
    /// The ports each report pool handed out, when asked for ([`Simulation::ports`]).
    port_use: Option<PortLog>,
}

/// The ports handed out, per pool in the report's order: connect pools by (host, pool id),
/// then bind pools.
struct PortLog {
    /// Per host, the report index of each of its connect pools.
    connect: Vec<Vec<u32>>,
    pools: Vec<PortUse>,
}

impl PortLog {
    /// A connection from `ip` on `host` took `port`, from connect pool `pool` or else the
    /// bind pool of its address.
    fn record(
        &mut self,
        bind_pools: &[BindPool],
        host: u16,
        pool: Option<u32>,
        ip: u32,
        port: u16,
    ) {
        let i = match pool {
            Some(p) => self.connect[host as usize][p as usize] as usize,
            None => {
                let at = bind_pools.iter().position(|b| (b.host, b.ip) == (host, ip));
                let connect_pools = self.pools.len() - bind_pools.len();
                connect_pools + at.expect("a bind pool per bound address")
            }
        };
        self.pools[i].record(port);
    }
}

/// An invariant the engine broke, found in checking mode: a bug in portsim, not in the input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub at: Instant,
    /// Events processed when it was found.
    pub event: u64,
    pub message: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "invariant broken at {:.9} s, event {}: {}",
            self.at.as_secs_f64(),
            self.event,
            self.message
        )
    }
}

/// Where the sustained window starts: the most whole TIME_WAIT periods that fit in the second
/// half of the run, ending with it, moved to the next bin edge; a run shorter than two periods
/// uses its second half. Connections established from then on, per second, are the rate a
/// pool sustains once the first burst and the returns of its ports have settled into their
/// period. [`crate::plot::manifest::sustained_window`] gives the same window from a report.
pub fn sustained_from(duration: Duration, tw: Duration, bin: Duration) -> Option<Instant> {
    let half = duration.0 / 2;
    let len = if tw.0 > 0 && tw.0 <= half {
        half / tw.0 * tw.0
    } else {
        half
    };
    let from = (duration.0 - len).div_ceil(bin.0.max(1)) * bin.0;
    (from < duration.0).then_some(Instant(from))
}

/// A closed-loop worker waiting out an exhausted pool, its retries not queued.
///
/// Its connect() failed on the `pool.free == 0` path, which changes no state and costs the
/// same probes each time, and its policy retries after a fixed `wait`. While its pool stays
/// exhausted every retry fails the same way, so the retries are counted in bulk, bin by bin,
/// as the run reaches them (O(1) per bin and worker, not per retry). Each virtual retry has
/// the place in the event order it would have had if queued: `(next, App, after, sub)`,
/// `after` being the last sequence number scheduled before it was (virtually) queued. A real
/// event runs before it if it sorts before that key. When an event leaves the pool with a
/// free port, the worker's next retry is queued for real at that same place
/// ([`Queue::push_between`]), so the report is the one stepping through every retry gives.
#[derive(Clone, Copy, Debug)]
struct Parked {
    wl: u32,
    slot: u32,
    host: u16,
    pool: u32,
    /// The retry number of the next attempt.
    retry: u32,
    /// Whether the retry number counts up (`retry` policy) or stays 0 (`count`).
    counting: bool,
    next: Instant,
    wait: Duration,
    after: u64,
    /// Among retries queued after the same event, queue order.
    sub: u32,
    errno: Errno,
    probes: u32,
}

/// A source IP's exclusive ports, as bind(ip, 0) or an explicit port range uses them (§1.6).
struct BindPool {
    host: u16,
    ip: u32,
    ports: u32,
    kind: &'static str,
    established: u64,
    established_late: u64,
}

impl Simulation {
    /// Builds the hosts, listeners, pools and initial events of a validated scenario.
    pub fn new(sc: &Scenario) -> Simulation {
        let mut queue = Queue::default();
        let mut hosts: Vec<Host> = Vec::new();
        let mut lanes = Vec::new();
        for h in &sc.hosts {
            let binds = sc.workloads.iter().any(|w| {
                w.mode.binds()
                    && w.sources
                        .iter()
                        .any(|s| sc.hosts[s.host as usize].name == h.name)
            });
            let mut host = Host::new(
                h.name.clone(),
                h.profile.clone(),
                h.ips.clone(),
                stream(sc.seed, &format!("host:{}", h.name)),
                stream(sc.seed, &format!("host:{}:bind", h.name)),
                binds,
            );
            for &(ip, port) in &h.listen {
                host.listen(ip, port);
            }
            hosts.push(host);
            lanes.push(Lanes {
                tw_expire: queue.add_lane(),
                tw_reusable: queue.add_lane(),
            });
        }
        let mut pools = Vec::new();
        let mut per_host = vec![0; hosts.len()];
        for w in &sc.workloads {
            if matches!(w.mode, Mode::Connect | Mode::BindNoPort) {
                for s in &w.sources {
                    per_host[s.host as usize] += w.destinations.len();
                }
            }
        }
        for (h, n) in hosts.iter_mut().zip(&per_host) {
            h.reserve_pools(*n);
        }
        for w in &sc.workloads {
            if matches!(w.mode, Mode::Connect | Mode::BindNoPort) {
                for s in &w.sources {
                    for d in &w.destinations {
                        let peer_ts = sc.hosts[d.host as usize].profile.timestamps;
                        let host = &mut hosts[s.host as usize];
                        let before = host.pools.len();
                        let id = host.add_pool(s.ip, d.ip, d.port, peer_ts);
                        if host.pools.len() > before {
                            pools.push((s.host, id));
                        }
                    }
                }
            }
        }
        for (i, h) in hosts.iter_mut().enumerate() {
            let i = i as u16;
            let looked_up = h.reuses_time_wait()
                || sc.workloads.iter().any(|w| {
                    w.destinations.iter().any(|d| d.host == i)
                        || (w.mode.binds() && w.sources.iter().any(|s| s.host == i))
                });
            h.index_tuples(looked_up);
        }
        let mut bind_pools: Vec<BindPool> = Vec::new();
        for w in &sc.workloads {
            let (kind, ports) = match w.mode {
                Mode::Bind => ("bind", None),
                Mode::Explicit { low, high } => ("explicit", Some(u32::from(high - low) + 1)),
                Mode::Connect | Mode::BindNoPort => continue,
            };
            for src in &w.sources {
                if !bind_pools
                    .iter()
                    .any(|b| b.host == src.host && b.ip == src.ip)
                {
                    bind_pools.push(BindPool {
                        host: src.host,
                        ip: src.ip,
                        ports: ports
                            .unwrap_or_else(|| hosts[src.host as usize].profile.usable_ports()),
                        kind,
                        established: 0,
                        established_late: 0,
                    });
                }
            }
        }
        let mut runners = Vec::new();
        let mut streams = Vec::new();
        for (i, w) in sc.workloads.iter().enumerate() {
            let name = &w.name;
            runners.push(Runner::new(
                w,
                stream(sc.seed, &format!("workload:{name}:arrivals")),
                stream(sc.seed, &format!("workload:{name}:latency")),
                stream(sc.seed, &format!("workload:{name}:spread")),
            ));
            match w.arrival {
                Arrival::Closed { concurrency } => {
                    for slot in 0..concurrency {
                        queue.push(
                            w.start,
                            Class::App,
                            Event::Start {
                                wl: i as u32,
                                slot,
                                retry: 0,
                            },
                        );
                    }
                    streams.push(Stream {
                        source: usize::MAX,
                        arrival: NO_EVENT,
                        fin: NO_EVENT,
                        scheduled: NO_EVENT,
                    });
                }
                _ => {
                    let arrival = runners[i]
                        .next_arrival(w)
                        .map_or(NO_EVENT, |t| packed(t.0, queue.next_key(Class::App)));
                    streams.push(Stream {
                        source: queue.add_source(Event::Stream { wl: i as u32 }),
                        arrival,
                        fin: NO_EVENT,
                        scheduled: NO_EVENT,
                    });
                }
            }
        }
        let open_loop_pools = sc
            .workloads
            .iter()
            .map(|w| {
                let eligible = !matches!(w.arrival, Arrival::Closed { .. })
                    && w.sources.len() == 1
                    && w.destinations.len() == 1
                    && w.spread == crate::workload::Spread::RoundRobin
                    && matches!(w.rtt, crate::workload::Dist::Fixed(_))
                    && matches!(w.on_error, crate::workload::OnError::Count { .. })
                    && matches!(w.mode, Mode::Connect | Mode::BindNoPort)
                    && !w.limit.is_set();
                let (src, dst) = (w.sources[0], w.destinations[0]);
                eligible
                    .then(|| hosts[src.host as usize].pool_of(src.ip, dst.ip, dst.port))
                    .flatten()
                    .map(|pool| (src.host, pool))
            })
            .collect();
        let mut exchanges: Vec<Option<Exchange>> =
            sc.workloads.iter().map(|w| Exchange::new(sc, w)).collect();
        let conn_pools = sc
            .workloads
            .iter()
            .map(|w| match w.mode {
                Mode::Connect | Mode::BindNoPort => w
                    .destinations
                    .iter()
                    .flat_map(|d| {
                        w.sources.iter().map(|s| {
                            let pool = hosts[s.host as usize].pool_of(s.ip, d.ip, d.port);
                            (s.host, pool.expect("pool registered at build"))
                        })
                    })
                    .collect(),
                _ => Vec::new(),
            })
            .collect::<Vec<Vec<(u16, u32)>>>();
        for (x, (w, pools)) in exchanges
            .iter_mut()
            .zip(sc.workloads.iter().zip(&conn_pools))
        {
            if let (Some(x), [pool]) = (x, pools.as_slice()) {
                debug_assert_eq!(pool.0, w.sources[0].host);
                x.single_pool = Some(*pool);
            }
        }
        // TIME-WAIT entries in bulk: when every connection of the scenario is a whole exchange
        // drawing its port from a connect() pool, no entry can overflow `tcp_max_tw_buckets`
        // (a host's pools cannot hold that many ports), none is skipped (`nolocaltimewait`)
        // and none becomes reusable (`tcp_tw_reuse`), the only other change to a TIME-WAIT
        // count is an expiry: entries applied in bulk before each expiry and at each bin edge
        // give the counts, the states and the peak that entering one by one gives.
        let bulk_time_wait = exchanges.iter().all(Option::is_some)
            && sc
                .workloads
                .iter()
                .all(|w| matches!(w.mode, Mode::Connect | Mode::BindNoPort))
            && hosts.iter().enumerate().all(|(i, h)| {
                let local = sc.workloads.iter().any(|w| {
                    w.sources.iter().any(|s| s.host as usize == i)
                        && w.destinations.iter().any(|d| h.has_ip(d.ip))
                });
                !h.reuses_time_wait()
                    && (h.profile.local_time_wait || !local)
                    && time_wait_cannot_overflow(sc, i as u16)
            });
        if bulk_time_wait {
            for x in exchanges.iter_mut().flatten() {
                x.bulk_time_wait = true;
                x.steps.push((x.to_time_wait, StepKind::TimeWait));
                x.next.push(0);
            }
        }
        // A client host that cannot see its sockets before their TIME-WAIT entry makes each
        // at its entry; where entries are applied in bulk, never (nothing can see or end a
        // TIME-WAIT early there: the host is not reached by SYNs and reuses none).
        for (x, w) in exchanges.iter_mut().zip(&sc.workloads) {
            if let Some(x) = x {
                x.lazy = x.pooled
                    && w.sources
                        .iter()
                        .all(|s| hosts[s.host as usize].sockets_unseen());
            }
        }
        let tw = pools
            .iter()
            .map(|&(h, _)| h)
            .chain(bind_pools.iter().map(|b| b.host))
            .map(|h| hosts[h as usize].profile.time_wait)
            .max();
        let late_from = tw
            .and_then(|tw| sustained_from(sc.duration, tw, sc.bin))
            .unwrap_or(Instant(u64::MAX));
        let watch = ReuseWatch::new(Instant::ZERO + sc.duration);
        let mut sim = Simulation {
            now: Instant::ZERO,
            end: Instant::ZERO + sc.duration,
            late_from,
            open_loop_pools,
            conn_pools,
            bulk_time_wait,
            exchanges,
            virtual_established: vec![0; sc.hosts.len()],
            check: cfg!(debug_assertions),
            violation: None,
            queue,
            hosts,
            lanes,
            workloads: sc.workloads.clone(),
            runners,
            streams,
            conns: Vec::new(),
            free_conns: Vec::new(),
            origins: 0,
            live_conns: 0,
            rec: Recorder::new(sc.bin, sc.workloads.len()),
            watch,
            events: 0,
            info: (
                ScenarioInfo {
                    name: sc.name.clone(),
                    file: sc.file.clone(),
                    description: sc.description.clone(),
                },
                sc.seed,
                sc.duration,
            ),
            host_info: sc
                .hosts
                .iter()
                .map(|h| HostInfo {
                    name: h.name.clone(),
                    profile: h.profile_name.clone(),
                    ips: h
                        .ips
                        .iter()
                        .map(|ip| Ipv4Addr::from(*ip).to_string())
                        .collect(),
                    listen: h
                        .listen
                        .iter()
                        .map(|&(ip, port)| format!("{}:{port}", Ipv4Addr::from(ip)))
                        .collect(),
                    knobs: h
                        .profile
                        .knob_values()
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v))
                        .collect(),
                })
                .collect(),
            pools,
            parked: Vec::new(),
            sub_for: (u64::MAX, 0),
            bulk: true,
            bind_pools,
            port_use: None,
        };
        for wl in 0..sim.workloads.len() {
            sim.stream_changed(wl as u32);
        }
        sim
    }

    /// Steps through every retry instead of counting parked retries in bulk: the same
    /// report, slower. For tests.
    pub fn stepping(mut self) -> Self {
        self.bulk = false;
        self
    }

    /// Queues every segment of every connection instead of scheduling exchanges whole: the
    /// same report, slower. For tests.
    pub fn stepping_segments(mut self) -> Self {
        for x in self.exchanges.iter_mut() {
            *x = None;
        }
        self.bulk_time_wait = false;
        self
    }

    /// Records the ports each pool hands out (the report's `pools[].port_use`).
    pub fn ports(mut self, on: bool) -> Self {
        self.port_use = on.then(|| {
            let mut connect = vec![Vec::new(); self.hosts.len()];
            let mut pools = Vec::new();
            for &(h, p) in &self.pools {
                let host = &self.hosts[h as usize];
                let slots: &mut Vec<u32> = &mut connect[h as usize];
                slots.resize(slots.len().max(p as usize + 1), NONE);
                slots[p as usize] = pools.len() as u32;
                let (lo, hi) = host.profile.port_range;
                pools.push(PortUse::new(lo, hi));
            }
            for b in &self.bind_pools {
                let (lo, hi) = self
                    .workloads
                    .iter()
                    .find_map(|w| match w.mode {
                        Mode::Explicit { low, high }
                            if w.sources.iter().any(|s| (s.host, s.ip) == (b.host, b.ip)) =>
                        {
                            Some((low, high))
                        }
                        _ => None,
                    })
                    .unwrap_or(self.hosts[b.host as usize].profile.port_range);
                pools.push(PortUse::new(lo, hi));
            }
            PortLog { connect, pools }
        });
        self
    }

    /// Whether every TIME-WAIT entry is applied in bulk ([`Exchange::bulk_time_wait`]).
    pub fn enters_time_wait_in_bulk(&self) -> bool {
        self.bulk_time_wait
    }

    /// Runs to the end of the scenario and returns the report.
    pub fn run(self) -> Report {
        self.run_counted().0
    }

    /// Runs to the end and returns the report with the number of events processed.
    pub fn run_counted(self) -> (Report, u64) {
        match self.run_checked() {
            Ok(r) => r,
            Err(v) => panic!("{v}"),
        }
    }

    /// Checking mode, on in debug builds and off in release unless asked for. After every
    /// event: time has not gone backwards; attempted = established + failed + in flight (a
    /// client socket in SYN-SENT); a TIME-WAIT that expired lasted exactly the profile's
    /// TIME_WAIT, and one made reusable is at least `tcp_tw_reuse_delay` old (§2.3). At every
    /// bin edge, each host's tables are recounted ([`Host::audit`]): no two sockets share a
    /// four-tuple, no port of a bind()-created bucket was handed out by connect(), counts and
    /// free ports match. The other ways a TIME-WAIT ends early are the reference's reuse rules:
    /// `tcp_tw_reuse` (§2.3), a SYN it accepts or an RST (§2.4), `nolocaltimewait` (§3.2).
    pub fn checking(mut self, on: bool) -> Self {
        self.check = on;
        self
    }

    /// Runs to the end, or to the first broken invariant in checking mode.
    pub fn run_checked(mut self) -> Result<(Report, u64), Violation> {
        loop {
            let next = self.queue.pop_keyed(self.end);
            if !self.parked.is_empty() {
                let until = next.as_ref().map_or((self.end, Class::Timer, (0, 0)), |e| {
                    let (class, place) = Queue::<Event>::place(e.1);
                    (e.0, class, place)
                });
                self.run_parked(until);
            }
            let Some((at, _, ev)) = next else {
                break;
            };
            self.begin_event(at);
            self.dispatch(ev);
            if !self.parked.is_empty() {
                self.release_parked();
            }
            if self.check {
                self.audit_event();
                if let Some(v) = self.violation.take() {
                    return Err(v);
                }
            }
        }
        while self.rec.bin_end <= self.end {
            let end = self.rec.bin_end;
            self.close_bin(end);
        }
        if self.rec.bin_end.0 - self.rec.bin.0 < self.end.0 {
            self.close_bin(self.end);
        }
        self.now = self.end;
        if self.check {
            self.audit_tables();
        }
        if let Some(v) = self.violation.take() {
            return Err(v);
        }
        let events = self.events;
        Ok((self.report(), events))
    }

    /// The run reaches the next event, due at `at`: the bins before it close.
    #[inline(always)]
    fn begin_event(&mut self, at: Instant) {
        self.close_bins_to(at);
        if self.check && at < self.now {
            self.violate(format!(
                "time went backwards from {:.9} s to {:.9} s",
                self.now.as_secs_f64(),
                at.as_secs_f64()
            ));
        }
        self.now = at;
        self.events += 1;
    }

    fn violate(&mut self, message: String) {
        if self.violation.is_none() {
            self.violation = Some(Violation {
                at: self.now,
                event: self.events,
                message,
            });
        }
    }

    /// Checking mode, between two events: the audits, unless a violation is found already;
    /// true while none is.
    fn audited(&mut self) -> bool {
        if self.violation.is_none() {
            self.audit_event();
        }
        self.violation.is_none()
    }

    /// The per-event checks of checking mode: O(hosts + workloads).
    fn audit_event(&mut self) {
        // A whole exchange's client socket stays SYN-SENT in the table until its TIME-WAIT
        // entry, or is not made until then: its in-flight count is its own.
        for wl in 0..self.exchanges.len() {
            self.catch_up(wl, self.now);
        }
        let (mut a, mut e, mut f) = (0u64, 0u64, 0u64);
        for w in &self.rec.workloads {
            a += w.attempted;
            e += w.established;
            f += w.failed.iter().sum::<u64>();
        }
        let exchanges = self.exchanges.iter().flatten();
        let syn_sent: u64 = self
            .hosts
            .iter()
            .map(|h| u64::from(h.counts[0][State::SynSent as usize]))
            .sum::<u64>()
            - exchanges
                .clone()
                .map(Exchange::syn_sent_sockets)
                .sum::<u64>()
            + exchanges.map(Exchange::in_flight).sum::<u64>();
        if a != e + f + syn_sent {
            self.violate(format!(
                "attempted {a} ≠ established {e} + failed {f} + in flight (SYN-SENT) {syn_sent}"
            ));
        }
        if let Some(m) = self.hosts.iter_mut().find_map(|h| h.violation.take()) {
            self.violate(m);
        }
    }

    fn audit_tables(&mut self) {
        if let Some(m) = self.hosts.iter().find_map(|h| h.audit().err()) {
            self.violate(m);
        }
    }

    /// Closes the bin ending at `end` with the gauges as they stand then.
    fn close_bin(&mut self, end: Instant) {
        for wl in 0..self.exchanges.len() {
            self.catch_up(wl, end);
        }
        let g = self.gauges();
        self.rec.close_bin(end, g);
    }

    /// Applies the steps of `wl`'s whole exchanges that come before `at`.
    fn catch_up(&mut self, wl: usize, at: Instant) {
        let Simulation {
            exchanges,
            hosts,
            rec,
            bind_pools,
            virtual_established,
            late_from,
            ..
        } = self;
        let Some(x) = &mut exchanges[wl] else {
            return;
        };
        let end = x.popped + x.flights.len() as u64;
        for (i, &(offset, kind)) in x.steps.iter().enumerate() {
            // Connections whose step comes before `at`: the next ones from the step's cursor
            // (flights are in connect() order, so the step's pending ones are a suffix).
            let Some(before) = at.0.checked_sub(offset.0) else {
                continue;
            };
            let first = x.next[i];
            let from = (first - x.popped) as usize;
            if x.flights.get(from).is_none_or(|f| f.at.0 >= before) {
                continue;
            }
            let n = x.popped + x.flights.partition_point(|f| f.at.0 < before) as u64;
            let count = n - first;
            let span = x.flights.range(from..(n - x.popped) as usize);
            match kind {
                StepKind::Established => {
                    // Flights are in connect() order: the late ones are a suffix.
                    let early = late_from.0.saturating_sub(offset.0);
                    let late = span.clone().rev().take_while(|f| f.at.0 >= early).count();
                    let on_time = span.len() - late;
                    match x.single_pool {
                        Some((h, pool)) => {
                            let e = &mut hosts[h as usize].established[pool as usize];
                            e.all += count;
                            e.late += late as u64;
                        }
                        // Every flight holds a connect() pool.
                        None if x.pooled => {
                            for (i, f) in span.enumerate() {
                                let e = &mut hosts[f.client as usize].established[f.pool as usize];
                                e.all += 1;
                                e.late += u64::from(i >= on_time);
                            }
                        }
                        None => {
                            for (i, f) in span.enumerate() {
                                let late = u64::from(i >= on_time);
                                let pool = (f.pool != NONE).then_some(f.pool);
                                let h = &mut hosts[f.client as usize];
                                count_in_pool(h, bind_pools, f.client, pool, f.ip, late);
                            }
                        }
                    }
                }
                StepKind::ServerEstablished | StepKind::ServerFin => {
                    let up = kind == StepKind::ServerEstablished;
                    match x.single_server {
                        Some(h) if up => virtual_established[h as usize] += count as u32,
                        Some(h) => virtual_established[h as usize] -= count as u32,
                        None => {
                            for f in span {
                                let v = &mut virtual_established[f.server as usize];
                                *v = if up { *v + 1 } else { *v - 1 };
                            }
                        }
                    }
                }
                StepKind::TimeWait => {
                    for f in span {
                        enter_in_bulk(&mut hosts[f.client as usize], f, f.at + offset);
                    }
                    x.entered += count;
                    // No TIME-WAIT ended since the previous entry: the count now is a peak.
                    note_time_wait(hosts, rec);
                }
                StepKind::Response(_) | StepKind::ClientFin => {}
            }
            x.next[i] = n;
            match kind {
                StepKind::Established => rec.established_n(wl, x.rtt, count),
                StepKind::Response(k) => {
                    let latency = if k == 1 { offset } else { x.gap };
                    rec.requests_done_n(wl, latency, count);
                }
                _ => {}
            }
        }
        // A connection's flight is kept until its TIME-WAIT entry, which reads it.
        let done = x.next.iter().copied().min().unwrap_or(end).min(x.entered);
        if done > x.popped {
            x.flights.drain(..(done - x.popped) as usize);
            x.popped = done;
        }
    }

    /// Applies the TIME-WAIT entries of whole exchanges that come before `at`
    /// ([`Exchange::bulk_time_wait`]); their other steps change only what bin edges and
    /// audits read, and those catch up first.
    fn enter_time_wait_in_bulk(&mut self, at: Instant) {
        let Simulation {
            exchanges,
            hosts,
            rec,
            ..
        } = self;
        let mut entered = false;
        for x in exchanges.iter_mut().flatten() {
            // The last step: its cursor walks the flights one entry at a time.
            let i = x.steps.len() - 1;
            debug_assert_eq!(x.steps[i].1, StepKind::TimeWait);
            let Some(before) = at.0.checked_sub(x.to_time_wait.0) else {
                continue;
            };
            let first = x.next[i];
            let mut n = first;
            while let Some(f) = x.flights.get((n - x.popped) as usize)
                && f.at.0 < before
            {
                enter_in_bulk(&mut hosts[f.client as usize], f, f.at + x.to_time_wait);
                n += 1;
            }
            x.next[i] = n;
            x.entered += n - first;
            entered |= n > first;
        }
        if entered {
            note_time_wait(hosts, rec);
        }
    }

    /// Closes every bin that ends at or before `at`.
    #[inline(always)]
    fn close_bins_to(&mut self, at: Instant) {
        while at >= self.rec.bin_end {
            let end = self.rec.bin_end;
            self.close_bin(end);
            if self.check {
                self.audit_tables();
            }
        }
    }

    /// Events processed so far.
    pub fn events(&self) -> u64 {
        self.events
    }

    #[inline(always)]
    fn dispatch(&mut self, ev: Event) {
        match ev {
            Event::Stream { wl } => self.stream(wl),
            Event::Start { wl, slot, retry } if slot == NONE => {
                self.start_open(wl, retry);
                self.stream_changed(wl);
            }
            Event::Start { wl, slot, retry } => {
                self.start(wl, slot, retry);
            }
            Event::Syn { conn, generation } => self.on_live(conn, generation, Self::syn),
            Event::SynAck { conn, generation } => self.on_live(conn, generation, Self::syn_ack),
            Event::Ack { conn, generation } => self.on_live(conn, generation, Self::ack),
            Event::Response { conn, generation } => self.on_live(conn, generation, Self::response),
            Event::ServerClose { conn, generation } => {
                self.on_live(conn, generation, Self::server_close)
            }
            Event::FinAtPassive { conn, generation } => {
                self.on_live(conn, generation, Self::fin_at_passive)
            }
            Event::FinAtActive { conn, generation } => {
                self.on_live(conn, generation, Self::fin_at_active)
            }
            Event::LastAck { conn, generation } => self.on_live(conn, generation, Self::last_ack),
            Event::Rst { conn, generation } => self.on_live(conn, generation, Self::rst),
            Event::SynRetransmit {
                conn,
                generation,
                tries,
            } => {
                if self.conns[conn as usize].generation == generation {
                    self.syn_retransmit(conn, tries);
                }
            }
            Event::TwRst {
                host,
                sock,
                generation,
            } => {
                if self.time_wait_alive(host, sock, generation) {
                    self.hosts[host as usize].destroy(sock);
                    self.rec.count(Counter::TwKilledByRst);
                }
            }
            Event::TwExpire {
                host,
                sock,
                generation,
            } => {
                if self.bulk_time_wait {
                    self.enter_time_wait_in_bulk(self.now);
                }
                // The lane is in expiry order: bring the next ones' sockets and table slots
                // into cache.
                let lane = self.lanes[host as usize].tw_expire;
                for (k, slot) in [(PREFETCH_SOCKET, false), (PREFETCH_SLOT, true)] {
                    if let Some(&Event::TwExpire { host, sock, .. }) = self.queue.lane_peek(lane, k)
                    {
                        let h = &self.hosts[host as usize];
                        if slot {
                            h.prefetch_slot(sock);
                        } else {
                            h.prefetch_socket(sock);
                        }
                    }
                }
                if self.time_wait_alive(host, sock, generation) {
                    let h = &self.hosts[host as usize];
                    let lived = self.now - h.sock(sock).tw.entry;
                    if self.check && lived != h.profile.time_wait {
                        let msg = format!(
                            "host {}: TIME-WAIT of {} expired after {:.9} s, not {:.9} s",
                            h.name,
                            h.sock(sock).tuple,
                            lived.as_secs_f64(),
                            h.profile.time_wait.as_secs_f64()
                        );
                        self.violate(msg);
                    }
                    self.hosts[host as usize].destroy(sock);
                    self.rec.count(Counter::TwExpired);
                    self.rec.first_tw_expiry.get_or_insert(self.now);
                }
            }
            Event::UnseenExpire { host, pool, port } => {
                self.enter_time_wait_in_bulk(self.now);
                self.hosts[host as usize].expire_unseen(pool, port);
                self.rec.count(Counter::TwExpired);
                self.rec.first_tw_expiry.get_or_insert(self.now);
            }
            Event::TwReusable {
                host,
                sock,
                generation,
            } => {
                if self.time_wait_alive(host, sock, generation) {
                    let h = &self.hosts[host as usize];
                    let age = self.now - h.sock(sock).tw.entry;
                    if self.check && age < h.tw_reuse_delay() {
                        let msg = format!(
                            "host {}: TIME-WAIT of {} reusable after {:.9} s, before tcp_tw_reuse_delay {:.9} s",
                            h.name,
                            h.sock(sock).tuple,
                            age.as_secs_f64(),
                            h.tw_reuse_delay().as_secs_f64()
                        );
                        self.violate(msg);
                    }
                    self.hosts[host as usize].mark_reusable(sock);
                }
            }
        }
    }

    /// Sets `wl`'s source to its stream's earliest event, after a change made outside the
    /// stream's own events (at build, by a retry).
    fn stream_changed(&mut self, wl: u32) {
        let s = &mut self.streams[wl as usize];
        let head = s.head();
        if s.scheduled == head {
            return;
        }
        if s.scheduled != NO_EVENT {
            self.queue.clear_source(s.source);
        }
        if head != NO_EVENT {
            self.queue
                .set_source(s.source, Instant((head >> 64) as u64), head as u64);
        }
        s.scheduled = head;
    }

    /// Runs the event of `wl`'s stream that its source stood for, then, while its next event
    /// would be the next the queue gives (and nothing is parked), that one too, as the run
    /// loop would run it; then sets the source to the next.
    // Not inlined into the run loop: the arrival and TIME-WAIT paths inline here instead.
    #[inline(never)]
    fn stream(&mut self, wl: u32) {
        let w = wl as usize;
        loop {
            let s = &self.streams[w];
            if s.fin < s.arrival {
                self.exchange_fin(w);
            } else {
                self.arrival(wl);
            }
            let head = self.streams[w].head();
            let at = Instant((head >> 64) as u64);
            let next = head < self.queue.peek_packed() && at < self.end && self.parked.is_empty();
            // Only checking mode finds violations.
            if !next || (self.check && !self.audited()) {
                let s = &mut self.streams[w];
                s.scheduled = head;
                if head != NO_EVENT {
                    self.queue.set_source(s.source, at, head as u64);
                }
                return;
            }
            self.begin_event(at);
        }
    }

    /// An open-loop arrival of `wl`: the next one drawn, this one's connection started.
    #[inline(always)]
    fn arrival(&mut self, wl: u32) {
        if self.bulk
            && self.parked.is_empty()
            && let Some((host, pool)) = self.open_loop_pools[wl as usize]
            && self.hosts[host as usize].pools[pool as usize].free == 0
        {
            self.arrivals_in_bulk(wl);
            return;
        }
        let w = &self.workloads[wl as usize];
        let next = match self.runners[wl as usize].stopped {
            false => self.runners[wl as usize].next_arrival(w),
            true => None,
        };
        let next = next.map_or(NO_EVENT, |t| packed(t.0, self.queue.next_key(Class::App)));
        self.streams[wl as usize].arrival = next;
        self.start_open(wl, 0);
    }

    fn on_live(&mut self, conn: u32, generation: u32, f: fn(&mut Self, u32)) {
        if self.conns[conn as usize].generation == generation {
            f(self, conn);
        }
    }

    fn time_wait_alive(&self, host: u16, sock: SockId, generation: u32) -> bool {
        let s = self.hosts[host as usize].sock(sock);
        s.generation == generation && s.state == State::TimeWait
    }

    fn send(&mut self, at: Instant, conn: u32, make: fn(u32, u32) -> Event) {
        let key = self.next_packet_key(conn);
        let generation = self.conns[conn as usize].generation;
        debug_assert!(at >= self.now, "a packet sent into the past");
        // A fixed one-way latency recurs: the queue gives it a FIFO lane.
        let delay = at.0.saturating_sub(self.now.0);
        self.queue
            .push_after_keyed(self.now, delay, key, make(conn, generation));
    }

    /// The key of the next segment `conn` sends.
    fn next_packet_key(&mut self, conn: u32) -> u64 {
        let c = &mut self.conns[conn as usize];
        c.stage = c.stage.saturating_add(1);
        crate::engine::packet_key(c.origin, c.stage)
    }

    fn new_conn(&mut self, c: Conn) -> u32 {
        self.live_conns += 1;
        let c = Conn {
            origin: self.origins,
            stage: 0,
            ..c
        };
        self.origins += 1;
        match self.free_conns.pop() {
            Some(id) => {
                let generation = self.conns[id as usize].generation;
                self.conns[id as usize] = Conn { generation, ..c };
                id
            }
            None => {
                self.conns.push(c);
                (self.conns.len() - 1) as u32
            }
        }
    }

    fn free_conn(&mut self, id: u32) {
        let c = &mut self.conns[id as usize];
        c.generation = c.generation.wrapping_add(1);
        self.live_conns -= 1;
        self.free_conns.push(id);
    }

    /// A four-tuple closed with no TIME-WAIT, watched for `len`.
    #[inline(always)]
    fn watch_closed(&mut self, watched: Watched, len: Duration) {
        self.watch
            .closed_without_tw(&mut self.hosts, watched, self.now, len);
    }

    fn note_time_wait(&mut self) {
        note_time_wait(&self.hosts, &mut self.rec);
    }

    // ---- the application side ------------------------------------------------------

    /// The application opens a connection: socket, optional bind, connect().
    /// Starts a connection; returns the error and probes when connect() failed at once.
    fn start(&mut self, wl: u32, slot: u32, retry: u32) -> Option<(Errno, u32)> {
        let w = &self.workloads[wl as usize];
        let r = &mut self.runners[wl as usize];
        let requests = r.take(w, self.now, retry > 0, slot == NONE)?;
        let (si, di) = r.pick_index(w);
        let (src, dst) = (w.sources[si], w.destinations[di]);
        let conn_pool = self.conn_pools[wl as usize]
            .get(di * w.sources.len() + si)
            .map(|&(_, pool)| pool);
        let rtt = w.rtt.sample(&mut r.latency);
        let (mode, range, reuse) = (w.mode, w.local_port_range, w.reuseaddr);
        let up = Duration(rtt.0 / 2);
        // A whole exchange needs no connection record: the one event queued for it, its
        // TIME-WAIT entry or expiry, finds the connection in `flights` or names the socket.
        let origin = self.origins;
        let conn = if self.exchanges[wl as usize].is_some() {
            self.origins += 1;
            NONE
        } else {
            self.new_conn(Conn {
                wl,
                slot,
                retry,
                client: src.host,
                server: dst.host,
                csock: NONE,
                ssock: NONE,
                pool: NONE,
                started: self.now,
                req_start: self.now,
                syn_sent: self.now,
                up,
                down: Duration(rtt.0 - up.0),
                requests_left: requests,
                ..Conn::default()
            })
        };
        self.rec.attempt(wl as usize, retry > 0);
        let host = &mut self.hosts[src.host as usize];
        let r = &mut self.runners[wl as usize];
        let placed = match mode {
            Mode::Connect | Mode::BindNoPort => host
                .connect_in(
                    conn_pool.expect("pool registered at build"),
                    self.now,
                    src.ip,
                    dst.ip,
                    dst.port,
                    range,
                    conn,
                )
                .map(|p| (p.sock, p.probes, p.recycled))
                .map_err(|e| (e.errno, e.probes)),
            Mode::Bind => match host.bind_any(src.ip, reuse, conn) {
                Err(e) => Err((e.errno, e.probes)),
                Ok(p) => match host.connect_bound(p.sock, dst.ip, dst.port) {
                    Ok(recycled) => Ok((p.sock, p.probes, recycled)),
                    Err(errno) => {
                        host.destroy(p.sock);
                        Err((errno, p.probes))
                    }
                },
            },
            Mode::Explicit { low, high } => {
                let span = u32::from(high) - u32::from(low) + 1;
                let mut bound = None;
                let mut tries = 0;
                while tries < span {
                    let port = r.cursor;
                    r.cursor = if port >= high { low } else { port + 1 };
                    tries += 1;
                    if let Ok(sock) = host.bind_port(src.ip, port, reuse, conn) {
                        bound = Some(sock);
                        break;
                    }
                }
                match bound {
                    None => Err((Errno::AddrInUse, tries)),
                    Some(sock) => match host.connect_bound(sock, dst.ip, dst.port) {
                        Ok(recycled) => Ok((sock, tries, recycled)),
                        Err(errno) => {
                            host.destroy(sock);
                            Err((errno, tries))
                        }
                    },
                }
            }
        };
        match placed {
            Err((errno, probes)) => {
                self.rec.probes(probes);
                if conn != NONE {
                    self.free_conn(conn);
                }
                if self.bulk && slot != NONE && matches!(mode, Mode::Connect | Mode::BindNoPort) {
                    let host = &self.hosts[src.host as usize];
                    let exhausted = conn_pool.filter(|p| host.pools[*p as usize].free == 0);
                    if let Some(pool) = exhausted
                        && self.park(wl, slot, retry, errno, probes, (src.host, pool))
                    {
                        return Some((errno, probes));
                    }
                }
                self.fail(wl, slot, retry, errno);
                Some((errno, probes))
            }
            Ok((sock, probes, recycled)) => {
                self.rec.probes(probes);
                if recycled {
                    self.rec.count(Counter::TwRecycled);
                }
                let host = &mut self.hosts[src.host as usize];
                let tuple = host.sock(sock).tuple;
                let whole = self.exchanges[wl as usize].is_some();
                let (isn, ts_off) = if !whole || host.isn_draw_has_effects() {
                    (host.isn(&tuple, self.now), host.ts_offset(&tuple))
                } else {
                    (0, 0)
                };
                let pool = host.sock(sock).pool;
                let pool_or_wide = host.pool_of_socket(sock);
                if let Some(log) = &mut self.port_use {
                    let (ip, port) = (tuple.local_ip, tuple.local_port);
                    log.record(&self.bind_pools, src.host, pool_or_wide, ip, port);
                }
                let watched = watched(&self.hosts, src.host, pool, tuple);
                if self.watch.reused(&mut self.hosts, watched, self.now) {
                    self.rec.unprotected_reuse += 1;
                }
                if let Some(x) = &mut self.exchanges[wl as usize] {
                    let ts_seen = self.hosts[src.host as usize].profile.timestamps != 0
                        && self.hosts[dst.host as usize].profile.timestamps != 0;
                    let catch_up = x.keep(
                        Flight {
                            at: self.now,
                            origin,
                            pool: pool_or_wide.unwrap_or(NONE),
                            ip: tuple.local_ip,
                            client: src.host,
                            server: dst.host,
                            sock,
                            port: tuple.local_port,
                            ts_seen,
                        },
                        &mut self.streams[wl as usize].fin,
                        &self.hosts,
                        &self.lanes,
                        &mut self.queue,
                    );
                    if catch_up {
                        self.catch_up(wl as usize, self.now);
                    }
                } else {
                    self.conns[conn as usize].attach(sock, tuple, isn, ts_off, pool);
                    let at = self.now + up;
                    self.send(at, conn, |conn, generation| Event::Syn { conn, generation });
                }
                None
            }
        }
    }

    /// An open-loop arrival, or its retry number `retry`, starts a connection.
    #[inline(always)]
    fn start_open(&mut self, wl: u32, retry: u32) {
        if self.exchanges[wl as usize]
            .as_ref()
            .is_some_and(|x| x.pooled)
        {
            self.start_whole(wl, retry);
        } else {
            self.start(wl, NONE, retry);
        }
    }

    /// [`Simulation::start`] for an open-loop connection of a whole exchange drawing its port
    /// from a connect() pool: connect(), the reuse watch, and the connection kept as a
    /// flight whose next event is its TIME-WAIT entry (or, in bulk, its expiry).
    #[inline(always)]
    fn start_whole(&mut self, wl: u32, retry: u32) {
        let w = &self.workloads[wl as usize];
        let r = &mut self.runners[wl as usize];
        if r.take(w, self.now, retry > 0, true).is_none() {
            return;
        }
        let (si, di) = r.pick_index(w);
        let (src, dst) = (w.sources[si], w.destinations[di]);
        let pools = &self.conn_pools[wl as usize];
        let k = di * w.sources.len() + si;
        let pool = pools[k].1;
        // Round robin takes the pools in order: bring the one after next into cache, and
        // what the next will read beyond itself (a pipeline across arrivals; hints only).
        if w.spread == Spread::RoundRobin && pools.len() > 1 {
            let after = |k: usize| if k + 1 == pools.len() { 0 } else { k + 1 };
            let (next, then) = (after(k), after(after(k)));
            let (h2, p2) = pools[then];
            self.hosts[h2 as usize].prefetch_pool(p2);
            let (h1, p1) = pools[next];
            self.hosts[h1 as usize].prefetch_connect(p1);
        }
        let range = w.local_port_range;
        let origin = self.origins;
        self.origins += 1;
        self.rec.attempt(wl as usize, retry > 0);
        let Some(x) = &mut self.exchanges[wl as usize] else {
            unreachable!("a whole exchange without its exchange");
        };
        let host = &mut self.hosts[src.host as usize];
        let now = self.now;
        let placed = if x.lazy {
            host.connect_port(pool, now, src.ip, dst.ip, dst.port, range)
                .map(|(port, probes)| (NONE, port, probes, false))
        } else {
            host.connect_in(pool, now, src.ip, dst.ip, dst.port, range, NONE)
                .map(|p| {
                    (
                        p.sock,
                        host.sock(p.sock).tuple.local_port,
                        p.probes,
                        p.recycled,
                    )
                })
        };
        let (sock, port, probes, recycled) = match placed {
            Ok(p) => p,
            Err(Refused { errno, probes }) => {
                self.rec.probes(probes);
                self.fail(wl, NONE, retry, errno);
                return;
            }
        };
        self.rec.probes(probes);
        if recycled {
            self.rec.count(Counter::TwRecycled);
        }
        let tuple = Tuple {
            local_ip: src.ip,
            local_port: port,
            remote_ip: dst.ip,
            remote_port: dst.port,
        };
        if let Some(log) = &mut self.port_use {
            log.record(&self.bind_pools, src.host, Some(pool), src.ip, port);
        }
        if host.isn_draw_has_effects() {
            host.isn(&tuple, now);
            host.ts_offset(&tuple);
        }
        let four_tuple = host.profile.scope == crate::profile::Scope::FourTuple;
        let ts_seen =
            host.profile.timestamps != 0 && self.hosts[dst.host as usize].profile.timestamps != 0;
        let watched = match four_tuple {
            true => Watched::Pooled {
                host: src.host,
                pool,
                port,
            },
            false => Watched::Tuple(tuple),
        };
        if self.watch.reused(&mut self.hosts, watched, now) {
            self.rec.unprotected_reuse += 1;
        }
        let flight = Flight {
            at: now,
            origin,
            pool,
            ip: src.ip,
            client: src.host,
            server: dst.host,
            sock,
            port,
            ts_seen,
        };
        let fin = &mut self.streams[wl as usize].fin;
        if x.keep(flight, fin, &self.hosts, &self.lanes, &mut self.queue) {
            self.catch_up(wl as usize, now);
        }
    }

    /// Parks a closed-loop worker whose connect() found its pool exhausted, if its next
    /// attempts are certain to repeat this one: one source and destination (the pick does
    /// not vary), a fixed RTT (no random draw per attempt), no limit and no stop before the
    /// end of the run (every retry is made), and a retry period that stays fixed (`count`,
    /// or `retry` with no backoff and no retry limit), the same period as the workers already
    /// parked (equal periods keep their order from round to round).
    /// Counts this failure as `fail` would. False when the worker must step.
    fn park(
        &mut self,
        wl: u32,
        slot: u32,
        retry: u32,
        errno: Errno,
        probes: u32,
        (host, pool): (u16, u32),
    ) -> bool {
        let w = &self.workloads[wl as usize];
        if w.sources.len() != 1
            || w.destinations.len() != 1
            || w.spread != crate::workload::Spread::RoundRobin
            || !matches!(w.rtt, crate::workload::Dist::Fixed(_))
            || w.limit.is_set()
            || w.stop < self.end
            || self.parked.len() >= 1 << 16
        {
            return false;
        }
        let counting = match w.on_error {
            crate::workload::OnError::Count { .. } => false,
            crate::workload::OnError::Retry {
                backoff,
                max_retries,
                ..
            } if backoff == 1.0 && max_retries == u32::MAX => true,
            _ => return false,
        };
        let (next, gave_up) = w.on_error.after_failure(retry, true);
        let AfterFailure::Start { wait, retry: again } = next else {
            return false;
        };
        if gave_up || wait.0 == 0 || self.parked.first().is_some_and(|p| p.wait != wait) {
            return false;
        }
        self.rec.failed(self.now, wl as usize, errno);
        let (after, sub) = self.next_place();
        self.parked.push(Parked {
            wl,
            slot,
            host,
            pool,
            retry: again,
            counting,
            next: self.now + wait,
            wait,
            after,
            sub,
            errno,
            probes,
        });
        true
    }

    /// The place in the event order of a retry queued now: after the latest scheduled event
    /// and after the virtual retries already queued since.
    fn next_place(&mut self) -> (u64, u32) {
        let after = self.queue.seq();
        if self.sub_for.0 != after {
            self.sub_for = (after, 0);
        }
        self.sub_for.1 = self.sub_for.1.saturating_add(1);
        self.sub_for
    }

    /// Runs, as failures counted in bulk, the parked retries that come before the next event
    /// `(at, class, place)`, closing the bins they cross (nothing else ran, so the gauges are
    /// as they were).
    fn run_parked(&mut self, (at, class, place): (Instant, Class, (u64, u32))) {
        let mut parked = std::mem::take(&mut self.parked);
        // Stepping order: by the place each worker's pending retry was queued at.
        parked.sort_by_key(|p| (p.after, p.sub));
        let mut ran = vec![false; parked.len()];
        // Retries strictly before `at`, bin by bin.
        loop {
            let seg_end = Instant(self.rec.bin_end.0.min(at.0));
            for (i, p) in parked.iter_mut().enumerate() {
                if p.next >= seg_end {
                    continue;
                }
                let n = (seg_end.0 - p.next.0).div_ceil(p.wait.0);
                self.count_parked(p, n);
                ran[i] = true;
            }
            if seg_end >= at {
                break;
            }
            let end = self.rec.bin_end;
            self.close_bin(end);
        }
        // Each queued its next retry as it ran; workers of one period that ran in this gap
        // keep the order they ran in.
        for (i, p) in parked.iter_mut().enumerate() {
            if ran[i] {
                (p.after, p.sub) = self.next_place();
            }
        }
        // A retry at `at` itself runs first if the next event sorts after it: an App event
        // scheduled after the retry was (virtually) queued.
        if class == Class::App {
            parked.sort_by_key(|p| (p.after, p.sub));
            for p in parked.iter_mut() {
                if p.next == at && place > (p.after, p.sub) {
                    self.close_bins_to(at);
                    self.count_parked(p, 1);
                    (p.after, p.sub) = self.next_place();
                }
            }
        }
        self.parked = parked;
    }

    /// Counts `n` failed retries of a parked worker, from its next one on.
    fn count_parked(&mut self, p: &mut Parked, n: u64) {
        self.count_failures(p.wl, p.retry > 0, p.errno, p.probes, n);
        p.next = p.next + Duration(n * p.wait.0);
        if p.counting {
            p.retry = p.retry.saturating_add(n.min(u64::from(u32::MAX)) as u32);
        }
    }

    /// Queues for real the next retry of each parked worker whose pool has a free port now,
    /// at the place in the order it had.
    fn release_parked(&mut self) {
        let freed = |s: &Self, p: &Parked| s.hosts[p.host as usize].pools[p.pool as usize].free > 0;
        if !self.parked.iter().any(|p| freed(self, p)) {
            return;
        }
        let parked = std::mem::take(&mut self.parked);
        for p in &parked {
            if freed(self, p) {
                self.queue.push_between(
                    p.next,
                    Class::App,
                    p.after,
                    p.sub,
                    Event::Start {
                        wl: p.wl,
                        slot: p.slot,
                        retry: p.retry,
                    },
                );
            } else {
                self.parked.push(*p);
            }
        }
    }

    /// Open-loop arrivals into an exhausted pool, counted in bulk. This arrival runs as
    /// stepping runs it; the arrivals after it that come strictly before the next queued
    /// event (nothing else happens in between, so each fails the same way: `pool.free == 0`
    /// returns the same probes and changes no state) are counted bin by bin without being
    /// queued; the first one at or after it is queued. It sorts after every event queued now,
    /// as it would have if queued by the arrival before it, and before every event queued
    /// later.
    fn arrivals_in_bulk(&mut self, wl: u32) {
        let w = &self.workloads[wl as usize];
        let mut next = self.runners[wl as usize].next_arrival(w);
        // This connect() fails as `start` would make it fail, changing nothing but counts.
        let (src, dst) = (w.sources[0], w.destinations[0]);
        let pool = self.conn_pools[wl as usize][0].1;
        let refused = self.hosts[src.host as usize].connect_in(
            pool,
            self.now,
            src.ip,
            dst.ip,
            dst.port,
            w.local_port_range,
            NONE,
        );
        let Err(Refused { errno, probes }) = refused else {
            unreachable!("a connect into an exhausted pool succeeded");
        };
        self.rec.workloads[wl as usize]
            .first_failure
            .get_or_insert(self.now);
        // The next event: the queue's, or this stream's next TIME-WAIT entry.
        let fin = self.streams[wl as usize].fin;
        let fin = Instant((fin >> 64).min(u128::from(self.end.0)) as u64);
        let horizon = self.queue.next_time().unwrap_or(self.end).min(fin);
        let mut pending = 1u64;
        loop {
            // The arrivals of this bin before the horizon, then a bin edge or the horizon.
            let w = &self.workloads[wl as usize];
            let bound = horizon.min(self.rec.bin_end);
            let (n, last, after) = self.runners[wl as usize].arrivals_before(w, next, bound);
            pending += n;
            if let Some(t) = last {
                self.now = t;
            }
            next = after;
            match next {
                Some(t) if t < horizon => {
                    self.count_failures(wl, false, errno, probes, pending);
                    pending = 0;
                    self.close_bins_to(t);
                }
                _ => break,
            }
        }
        self.count_failures(wl, false, errno, probes, pending);
        let next = next.map_or(NO_EVENT, |t| packed(t.0, self.queue.next_key(Class::App)));
        self.streams[wl as usize].arrival = next;
    }

    /// `n` connects of `wl` that failed at once on an exhausted pool, as `start` and `fail`
    /// record them: counted, the round-robin position moved on, and the conn slot each took
    /// from the top of the free list given back one generation on.
    fn count_failures(&mut self, wl: u32, retry: bool, errno: Errno, probes: u32, n: u64) {
        if n == 0 {
            return;
        }
        self.rec
            .failed_attempts(wl as usize, retry, errno, probes, n);
        self.runners[wl as usize].skip(&self.workloads[wl as usize], n);
        if let Some(&id) = self.free_conns.last() {
            let c = &mut self.conns[id as usize];
            c.generation = c.generation.wrapping_add(n as u32);
        }
    }

    /// A connect attempt failed with `errno`: count it and apply the workload's policy.
    fn fail(&mut self, wl: u32, slot: u32, retry: u32, errno: Errno) {
        self.rec.failed(self.now, wl as usize, errno);
        let policy = self.workloads[wl as usize].on_error;
        let (next, gave_up) = policy.after_failure(retry, slot != NONE);
        if gave_up {
            self.rec.request_failed(wl as usize);
        }
        match next {
            AfterFailure::Start { wait, retry } => {
                self.queue.push(
                    self.now + wait,
                    Class::App,
                    Event::Start { wl, slot, retry },
                );
            }
            AfterFailure::Idle => {}
            AfterFailure::Stop => {
                self.runners[wl as usize].stopped = true;
                self.rec.workloads[wl as usize]
                    .stopped_at
                    .get_or_insert(self.now);
            }
        }
    }

    /// The client application is done with a connection: a closed-loop slot starts the next.
    fn app_done(&mut self, conn: u32) {
        let c = self.conns[conn as usize];
        if c.slot != NONE {
            self.queue.push(
                self.now,
                Class::App,
                Event::Start {
                    wl: c.wl,
                    slot: c.slot,
                    retry: 0,
                },
            );
        }
    }

    // ---- segments ------------------------------------------------------------------

    fn timestamps_on(&self, c: &Conn) -> bool {
        self.hosts[c.client as usize].profile.timestamps != 0
            && self.hosts[c.server as usize].profile.timestamps != 0
    }

    fn syn(&mut self, conn: u32) {
        let c = self.conns[conn as usize];
        let client = &self.hosts[c.client as usize];
        let ts = (self.timestamps_on(&c)
            && client
                .profile
                .syn_drop_ts_after
                .is_none_or(|n| c.syn_tries < n))
        .then(|| client.ts_clock(c.syn_sent).wrapping_add(c.ts_off));
        let server = &mut self.hosts[c.server as usize];
        let t = c.tuple.mirror();
        match server.syn_on_tuple(&t, c.isn, ts) {
            SynOnTuple::Free => {}
            SynOnTuple::TimeWaitAccepted => self.rec.count(Counter::TwSynAccepted),
            SynOnTuple::TimeWaitRejected { sock: tw, ack } => {
                self.rec.count(Counter::TwSynRejected);
                if ack {
                    {
                        // The client answers the ACK with RST, which kills the TIME-WAIT
                        // unless the kernel ignores RSTs there (§2.4, §3.4).
                        let ack_at_client = self.now + c.down;
                        if server.profile.tw_rst_kills {
                            let generation = server.sock(tw).generation;
                            let ev = Event::TwRst {
                                host: c.server,
                                sock: tw,
                                generation,
                            };
                            let key = self.next_packet_key(conn);
                            self.queue.push_keyed(ack_at_client + c.up, key, ev);
                        }
                        self.arm_syn_retransmit(conn, Some(ack_at_client));
                    }
                } else {
                    self.arm_syn_retransmit(conn, None);
                }
                return;
            }
            SynOnTuple::Live(_) => {
                self.rec.count(Counter::SynOnLiveSocket);
                let ack_at_client = self.now + c.down;
                self.arm_syn_retransmit(conn, Some(ack_at_client));
                return;
            }
        }
        let ssock = self.hosts[c.server as usize].accept_syn(t, conn);
        self.conns[conn as usize].ssock = ssock;
        self.send(self.now + c.down, conn, |conn, generation| Event::SynAck {
            conn,
            generation,
        });
    }

    /// The SYN got no SYN-ACK: it was dropped, or answered by an ACK that does not
    /// acknowledge it (`bad_ack_at`, when the client answered that with RST). The next SYN
    /// leaves after the profile's backed-off interval, capped by its connect timeout. On the
    /// first bad ACK Linux re-arms the timer to `TCP_TIMEOUT_MIN` (measured 8–12 ms at
    /// HZ=250, notes/linux-observations I).
    fn arm_syn_retransmit(&mut self, conn: u32, bad_ack_at: Option<Instant>) {
        let c = self.conns[conn as usize];
        let p = &self.hosts[c.client as usize].profile;
        let mut at = match (bad_ack_at, p.syn_rearm) {
            (Some(t), Some(rearm)) if c.syn_tries == 0 => t + rearm,
            _ => {
                let local = self.hosts[c.client as usize].has_ip(c.tuple.remote_ip);
                c.syn_sent + p.syn_interval(c.syn_tries, local)
            }
        };
        if let Some(limit) = p.connect_timeout {
            at = at.min(c.started + limit);
        }
        let ev = Event::SynRetransmit {
            conn,
            generation: c.generation,
            tries: c.syn_tries,
        };
        self.queue.push(at, Class::Timer, ev);
    }

    fn syn_retransmit(&mut self, conn: u32, tries: u8) {
        let c = self.conns[conn as usize];
        if c.syn_tries != tries
            || self.hosts[c.client as usize].sock(c.csock).state != State::SynSent
        {
            return;
        }
        let p = &self.hosts[c.client as usize].profile;
        let timed_out = p
            .connect_timeout
            .is_some_and(|limit| self.now >= c.started + limit);
        if tries >= p.syn_retries || timed_out {
            self.hosts[c.client as usize].destroy(c.csock);
            self.free_conn(conn);
            self.fail(c.wl, c.slot, c.retry, Errno::TimedOut);
            return;
        }
        self.rec.count(Counter::SynRetransmits);
        let cm = &mut self.conns[conn as usize];
        cm.syn_tries += 1;
        cm.syn_sent = self.now;
        self.send(self.now + c.up, conn, |conn, generation| Event::Syn {
            conn,
            generation,
        });
    }

    fn syn_ack(&mut self, conn: u32) {
        let c = self.conns[conn as usize];
        let client = &mut self.hosts[c.client as usize];
        client.set_state(c.csock, State::Established);
        self.count_established(c.client, c.csock, self.now);
        self.rec.established(c.wl as usize, self.now - c.started);
        if c.syn_tries > 0 {
            self.rec.stalled(self.now - c.started);
        }
        self.send(self.now + c.up, conn, |conn, generation| Event::Ack {
            conn,
            generation,
        });
        if c.requests_left == 0 && self.workloads[c.wl as usize].closer == Closer::Client {
            self.client_close(conn);
        }
    }

    /// A client socket established at `at`, counted for its pool.
    fn count_established(&mut self, host: u16, sock: SockId, at: Instant) {
        let late = u64::from(at >= self.late_from);
        let client = &mut self.hosts[host as usize];
        let pool = client.pool_of_socket(sock);
        let ip = client.sock(sock).tuple.local_ip;
        count_in_pool(client, &mut self.bind_pools, host, pool, ip, late);
    }

    /// Schedules the response to a request that reaches the server at `at_server`.
    fn serve(&mut self, conn: u32, at_server: Instant) {
        let c = self.conns[conn as usize];
        let w = &self.workloads[c.wl as usize];
        let service = w
            .service_time
            .sample(&mut self.runners[c.wl as usize].latency);
        let sent = at_server + service;
        if c.requests_left == 1 && w.closer == Closer::Server {
            self.send(sent, conn, |conn, generation| Event::ServerClose {
                conn,
                generation,
            });
        }
        self.send(sent + c.down, conn, |conn, generation| Event::Response {
            conn,
            generation,
        });
    }

    fn ack(&mut self, conn: u32) {
        let c = self.conns[conn as usize];
        let server = &mut self.hosts[c.server as usize];
        if server.sock(c.ssock).state == State::SynReceived {
            server.set_state(c.ssock, State::Established);
        }
        if c.requests_left > 0 {
            self.serve(conn, self.now);
        } else if self.workloads[c.wl as usize].closer == Closer::Server {
            self.server_close(conn);
        }
    }

    fn response(&mut self, conn: u32) {
        let wl = self.conns[conn as usize].wl;
        let latency = self.now - self.conns[conn as usize].req_start;
        self.rec.request_done(wl as usize, latency);
        let c = &mut self.conns[conn as usize];
        c.req_start = self.now;
        c.requests_left -= 1;
        c.bytes = c
            .bytes
            .wrapping_add(self.workloads[wl as usize].request_bytes);
        let c = *c;
        if c.requests_left > 0 {
            self.serve(conn, self.now + c.up);
            return;
        }
        let w = &self.workloads[wl as usize];
        match w.closer {
            Closer::Client => self.client_close(conn),
            Closer::Server => {
                if !w.linger_zero {
                    // The FIN came with the response: CLOSE-WAIT, the application reads EOF
                    // and closes at once: LAST-ACK, FIN to the server.
                    self.hosts[c.client as usize].set_state(c.csock, State::LastAck);
                    self.conns[conn as usize].client_fin_at = self.now;
                    self.send(self.now + c.up, conn, |conn, generation| {
                        Event::FinAtActive { conn, generation }
                    });
                }
                self.app_done(conn);
            }
        }
    }

    fn client_close(&mut self, conn: u32) {
        let c = self.conns[conn as usize];
        if self.workloads[c.wl as usize].linger_zero {
            self.hosts[c.client as usize].destroy(c.csock);
            self.conns[conn as usize].csock = NONE;
            self.rec.count(Counter::LingerResets);
            let len = self.hosts[c.client as usize].profile.time_wait;
            self.watch_closed(watched(&self.hosts, c.client, c.pool, c.tuple), len);
            self.send(self.now + c.up, conn, |conn, generation| Event::Rst {
                conn,
                generation,
            });
        } else {
            self.hosts[c.client as usize].set_state(c.csock, State::FinWait1);
            self.conns[conn as usize].client_fin_at = self.now;
            self.send(self.now + c.up, conn, |conn, generation| {
                Event::FinAtPassive { conn, generation }
            });
        }
        self.app_done(conn);
    }

    fn server_close(&mut self, conn: u32) {
        let c = self.conns[conn as usize];
        if self.workloads[c.wl as usize].linger_zero {
            self.hosts[c.server as usize].destroy(c.ssock);
            self.conns[conn as usize].ssock = NONE;
            self.rec.count(Counter::LingerResets);
            let len = self.hosts[c.server as usize].profile.time_wait;
            self.watch_closed(watched(&self.hosts, c.client, c.pool, c.tuple), len);
            self.send(self.now + c.down, conn, |conn, generation| Event::Rst {
                conn,
                generation,
            });
        } else {
            self.hosts[c.server as usize].set_state(c.ssock, State::FinWait1);
        }
    }

    /// The client's FIN at the server: CLOSE-WAIT, the server closes at once: LAST-ACK.
    fn fin_at_passive(&mut self, conn: u32) {
        let c = self.conns[conn as usize];
        self.hosts[c.server as usize].set_state(c.ssock, State::LastAck);
        self.send(self.now + c.down, conn, |conn, generation| {
            Event::FinAtActive { conn, generation }
        });
    }

    /// The active closer receives the peer's FIN (and the ACK of its own): TIME-WAIT.
    fn fin_at_active(&mut self, conn: u32) {
        let c = self.conns[conn as usize];
        let ts_seen = self.timestamps_on(&c);
        let client_closes = self.workloads[c.wl as usize].closer == Closer::Client;
        let (h, sock, back, peer) = if client_closes {
            (c.client, c.csock, c.up, c.tuple.remote_ip)
        } else {
            (c.server, c.ssock, c.down, c.tuple.local_ip)
        };
        let tw = if client_closes {
            TimeWait {
                entry: self.now,
                rcv_nxt: 0,
                ts_recent: 0,
                ts_seen,
            }
        } else {
            // The server's record of the client's sequence space and last timestamp (§2.4).
            let client = &self.hosts[c.client as usize];
            TimeWait {
                entry: self.now,
                rcv_nxt: c.isn.wrapping_add(1).wrapping_add(c.bytes).wrapping_add(1),
                ts_recent: client.ts_clock(c.client_fin_at).wrapping_add(c.ts_off),
                ts_seen,
            }
        };
        let watched = watched(&self.hosts, c.client, c.pool, c.tuple);
        self.active_close(h, Closing::Socket(sock, peer), tw, watched);
        if client_closes {
            self.conns[conn as usize].csock = NONE;
        } else {
            self.conns[conn as usize].ssock = NONE;
        }
        self.send(self.now + back, conn, |conn, generation| Event::LastAck {
            conn,
            generation,
        });
    }

    /// [`Self::fin_at_active`] for the next connection of `wl`'s whole exchanges to enter
    /// TIME-WAIT: entries come in connect() order, so it is flight `entered`. The client
    /// closes; the server's LAST-ACK ends `down` from now, and its socket was never made.
    fn exchange_fin(&mut self, wl: usize) {
        let Some(x) = &mut self.exchanges[wl] else {
            unreachable!("a whole exchange's FIN without its exchange");
        };
        let f = x.flights[(x.entered - x.popped) as usize];
        x.entered += 1;
        self.streams[wl].fin = x.next_fin();
        // Keep memory to the connections alive, whatever the bin width.
        if x.entered - x.popped >= FLIGHTS_KEPT as u64 {
            self.catch_up(wl, self.now);
        }
        let tw = TimeWait {
            entry: self.now,
            rcv_nxt: 0,
            ts_recent: 0,
            ts_seen: f.ts_seen,
        };
        let (closing, watched) = if f.sock == NONE {
            let (pool, port) = (f.pool, f.port);
            let host = f.client;
            let closing = Closing::Port {
                pool,
                ip: f.ip,
                port,
            };
            (closing, Watched::Pooled { host, pool, port })
        } else {
            let s = self.hosts[f.client as usize].sock(f.sock);
            let watched = watched(&self.hosts, f.client, s.pool, s.tuple);
            (Closing::Socket(f.sock, s.tuple.remote_ip), watched)
        };
        self.active_close(f.client, closing, tw, watched);
    }

    /// A connection of host `h` closes actively: TIME-WAIT `tw`, or closed at once
    /// (`nolocaltimewait`, `tcp_max_tw_buckets`) with its four-tuple watched for reuse.
    #[inline(always)]
    fn active_close(&mut self, h: u16, closing: Closing, tw: TimeWait, watched: Watched) {
        let host = &mut self.hosts[h as usize];
        let len = host.profile.time_wait;
        let peer = |host: &Host| match closing {
            Closing::Socket(_, peer) => peer,
            Closing::Port { pool, .. } => host.pools[pool as usize].daddr,
        };
        if !host.profile.local_time_wait && host.has_ip(peer(host)) {
            // FreeBSD nolocaltimewait: the connection is closed at once (§3.2).
            match closing {
                Closing::Socket(sock, _) => host.destroy(sock),
                Closing::Port { pool, port, .. } => host.release_pool_port(pool, port),
            }
            self.rec.count(Counter::TwSkippedLocal);
            self.watch_closed(watched, len);
            return;
        }
        let entered = match closing {
            Closing::Socket(sock, _) => host.enter_time_wait(sock, tw).then_some(sock),
            Closing::Port { pool, ip, port } => host.time_wait_port(pool, ip, port, tw),
        };
        match entered {
            Some(sock) => self.time_wait_entered(h, sock),
            None => {
                self.rec.count(Counter::TwOverflow);
                self.watch_closed(watched, len);
            }
        }
    }

    /// Socket `sock` of host `h` has entered TIME-WAIT: its expiry queued, and the moment
    /// `tcp_tw_reuse` may take its tuple over.
    #[inline(never)]
    fn time_wait_entered(&mut self, h: u16, sock: SockId) {
        let host = &self.hosts[h as usize];
        let pool = host.sock(sock).pool;
        let generation = host.sock(sock).generation;
        let expire = self.now + host.profile.time_wait;
        let lanes = &self.lanes[h as usize];
        self.queue.push_lane(
            lanes.tw_expire,
            expire,
            Class::Timer,
            Event::TwExpire {
                host: h,
                sock,
                generation,
            },
        );
        if pool != NONE && host.pools[pool as usize].tw_reuse {
            let at = host.ms_deadline(self.now, host.profile.tw_reuse_delay_ms);
            self.queue.push_lane(
                lanes.tw_reusable,
                at,
                Class::Timer,
                Event::TwReusable {
                    host: h,
                    sock,
                    generation,
                },
            );
        }
        self.note_time_wait();
    }

    /// The passive closer gets the last ACK: CLOSED, the connection is over.
    fn last_ack(&mut self, conn: u32) {
        let c = self.conns[conn as usize];
        let client_closes = self.workloads[c.wl as usize].closer == Closer::Client;
        let (h, sock) = if client_closes {
            (c.server, c.ssock)
        } else {
            (c.client, c.csock)
        };
        self.hosts[h as usize].destroy(sock);
        self.free_conn(conn);
    }

    /// An SO_LINGER {on, 0} RST reaches the peer, which closes at once.
    fn rst(&mut self, conn: u32) {
        let c = self.conns[conn as usize];
        let client_closes = self.workloads[c.wl as usize].closer == Closer::Client;
        let (h, sock) = if client_closes {
            (c.server, c.ssock)
        } else {
            (c.client, c.csock)
        };
        if sock != NONE {
            self.hosts[h as usize].destroy(sock);
        }
        self.free_conn(conn);
    }

    // ---- reporting -----------------------------------------------------------------

    fn gauges(&self) -> Gauges {
        let mut g = Gauges::default();
        for h in &self.hosts {
            g.time_wait_client += h.counts[0][State::TimeWait as usize];
            g.time_wait_server += h.counts[1][State::TimeWait as usize];
            g.established_client += h.counts[0][State::Established as usize];
            g.established_server += h.counts[1][State::Established as usize];
        }
        g.established_server += self.virtual_established.iter().sum::<u32>();
        g.established_client += self
            .exchanges
            .iter()
            .flatten()
            .map(|x| x.client_established() as u32)
            .sum::<u32>();
        g.free_ports = self
            .pools
            .iter()
            .map(|&(h, p)| self.hosts[h as usize].pool_free(p))
            .collect();
        g
    }

    /// Connects still in SYN-SENT at the end having retransmitted, and the time they waited.
    fn stalled_at_end(&self) -> (u64, Duration) {
        let mut free = vec![false; self.conns.len()];
        for &id in &self.free_conns {
            free[id as usize] = true;
        }
        let mut out = (0, Duration::ZERO);
        for (c, _) in self.conns.iter().zip(&free).filter(|(_, f)| !**f) {
            let sent = c.csock != NONE
                && self.hosts[c.client as usize].sock(c.csock).state == State::SynSent;
            if sent && c.syn_tries > 0 {
                out = (out.0 + 1, out.1 + (self.end - c.started));
            }
        }
        out
    }

    fn report(self) -> Report {
        let g = self.gauges();
        let (waiting, waited) = self.stalled_at_end();
        let (info, seed, duration) = self.info;
        let rec = self.rec;
        let attempted: u64 = rec.workloads.iter().map(|w| w.attempted).sum();
        let established: u64 = rec.workloads.iter().map(|w| w.established).sum();
        let mut failed_by = [0u64; 3];
        for w in &rec.workloads {
            for (i, n) in w.failed.iter().enumerate() {
                failed_by[i] += n;
            }
        }
        let failed: u64 = failed_by.iter().sum();
        let first_failure = rec.workloads.iter().filter_map(|w| w.first_failure).min();
        let lat = |q| rec.latency.percentile(q) as f64 / 1e6;
        let req = |q| rec.request_latency.percentile(q) as f64 / 1e6;
        let duration_s = duration.as_secs_f64();
        let late_s =
            (self.late_from.0 < duration.0).then(|| (duration.0 - self.late_from.0) as f64 / 1e9);
        let late = |n: u64| late_s.map(|s| n as f64 / s);
        let mut pools: Vec<PoolInfo> = self
            .pools
            .iter()
            .map(|&(h, p)| {
                let host = &self.hosts[h as usize];
                let pool = &host.pools[p as usize];
                let ports = host.profile.usable_ports();
                let tw = host.profile.time_wait.as_secs_f64();
                let est = host.established[p as usize].all;
                PoolInfo {
                    kind: if pool.host_wide {
                        "connect (host-wide)"
                    } else {
                        "connect"
                    },
                    host: host.name.clone(),
                    source: if pool.host_wide {
                        "any".into()
                    } else {
                        Ipv4Addr::from(pool.saddr).to_string()
                    },
                    destination: (!pool.host_wide)
                        .then(|| format!("{}:{}", Ipv4Addr::from(pool.daddr), pool.dport)),
                    ports,
                    time_wait_s: tw,
                    formula_limit_per_s: f64::from(ports) / tw,
                    established: est,
                    achieved_per_s: est as f64 / duration_s,
                    sustained_per_s: late(host.established[p as usize].late),
                    port_use: None,
                }
            })
            .collect();
        pools.extend(self.bind_pools.iter().map(|b| {
            let host = &self.hosts[b.host as usize];
            let tw = host.profile.time_wait.as_secs_f64();
            PoolInfo {
                kind: b.kind,
                host: host.name.clone(),
                source: Ipv4Addr::from(b.ip).to_string(),
                destination: None,
                ports: b.ports,
                time_wait_s: tw,
                formula_limit_per_s: f64::from(b.ports) / tw,
                established: b.established,
                achieved_per_s: b.established as f64 / duration_s,
                sustained_per_s: late(b.established_late),
                port_use: None,
            }
        }));
        if let Some(log) = self.port_use {
            for (p, u) in pools.iter_mut().zip(log.pools) {
                p.port_use = Some(u);
            }
        }
        let hosts = self.host_info;
        let mut all_errors = std::collections::BTreeMap::new();
        let mut error_numbers = std::collections::BTreeMap::new();
        let workloads = self
            .workloads
            .iter()
            .zip(rec.workloads.iter().zip(&self.runners))
            .map(|(w, (t, r))| WorkloadSummary {
                name: w.name.clone(),
                attempted: t.attempted,
                established: t.established,
                failed: t.failed.iter().sum(),
                errors: {
                    let names = &self.hosts[w.sources[0].host as usize].profile.errors;
                    let mut e = std::collections::BTreeMap::new();
                    add_named_errors(&t.failed, names, &mut e, &mut error_numbers);
                    for (k, v) in &e {
                        *all_errors.entry(*k).or_default() += v;
                    }
                    e
                },
                retries: t.retries,
                requests_completed: t.requests_completed,
                requests_failed: t.requests_failed,
                first_failure_s: t.first_failure.map(Instant::as_secs_f64),
                stopped_s: t.stopped_at.or(r.spent_at).map(Instant::as_secs_f64),
            })
            .collect();
        let summary = Summary {
            connections: Connections {
                attempted,
                established,
                failed,
                in_flight: attempted - established - failed,
                retries: rec.workloads.iter().map(|w| w.retries).sum(),
                stalled: rec.stalled + waiting,
                stall_s: (rec.stall + waited).as_secs_f64(),
            },
            errors: all_errors,
            error_numbers,
            requests: Requests {
                completed: rec.workloads.iter().map(|w| w.requests_completed).sum(),
                failed: rec.workloads.iter().map(|w| w.requests_failed).sum(),
            },
            first_failure_s: first_failure.map(Instant::as_secs_f64),
            time_wait: TimeWaitSummary {
                peak: rec.tw_peak,
                at_end: g.time_wait_client + g.time_wait_server,
                peak_client: rec.tw_peak_client,
                peak_server: rec.tw_peak_server,
                first_expiry_s: rec.first_tw_expiry.map(Instant::as_secs_f64),
            },
            connect_latency_ms: LatencySummary {
                p50: lat(0.5),
                p90: lat(0.9),
                p99: lat(0.99),
                max: rec.latency.max() as f64 / 1e6,
                mean: (rec.latency.mean() / 1e3).round() / 1e3,
            },
            request_latency_ms: LatencySummary {
                p50: req(0.5),
                p90: req(0.9),
                p99: req(0.99),
                max: rec.request_latency.max() as f64 / 1e6,
                mean: (rec.request_latency.mean() / 1e3).round() / 1e3,
            },
            probes_per_connect: {
                let probes = rec.probes.hist();
                ProbeSummary {
                    mean: (probes.mean() * 1000.0).round() / 1000.0,
                    p99: probes.percentile(0.99),
                    max: probes.max(),
                }
            },
            kernel_counters: Counter::ALL
                .iter()
                .map(|c| (c.name(), rec.counters[*c as usize]))
                .collect(),
            unprotected_reuse: rec.unprotected_reuse,
        };
        let bin_s = rec.bin.as_secs_f64();
        let series = rec.into_bins();
        Report {
            schema: "portsim.report/1",
            portsim_version: env!("CARGO_PKG_VERSION"),
            scenario: info,
            seed,
            duration_s,
            bin_s,
            hosts,
            pools,
            summary,
            workloads,
            series,
            replicates: None,
            stats: None,
        }
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
