//! Whole exchanges: a connection's segments scheduled at connect(), not queued one by one.
//!
//! **Equals stepping when** every path of the scenario is direct and the workload qualifies
//! ([`Exchange::new`]): an open loop, fixed delays with both one-way halves non-zero, the
//! client closing without SO_LINGER 0, no port-search cost on its clients (a connection's
//! SYN would leave a cost after connect() that depends on its probes, so the steps would
//! not be fixed offsets from connect()), at most [`WHOLE_MAX_REQUESTS`] requests per
//! connection (a request limit a whole number of connections), no workload on its
//! destination hosts whose server closes first, resets or binds, and no port of its client
//! able to carry a SYN to the server before the previous connection's LAST-ACK. Then nothing
//! can disturb a connection between connect() and its TIME-WAIT entry: the entry is an event
//! with the key stepping gives it ([`crate::engine::packet_key`]) and the counts in between
//! (ESTABLISHED at both ends, requests, latencies) are applied in bulk at bin edges and
//! audits ([`Simulation::catch_up`]). **Proved by** `exchanges_scheduled_whole_give_the_report_every_segment_gives`
//! (tests/scenarios.rs), the property test (tests/properties.rs) and
//! `every_shipped_scenario_gives_one_report_with_every_shortcut_off`. **Paths:** direct,
//! and across a cloud NAT gateway where `gateway.rs` applies (the gateway takes each SYN;
//! its later segments follow a schedule); any other middlebox must see each segment.
//! Design: `notes/whole-exchanges.md`.

use crate::engine::{Class, Queue, packed};
use crate::host::{Host, NONE, Refused, SockId, TimeWait, Tuple};
use crate::report::{Counter, Lifetimes};
use crate::scenario::Scenario;
use crate::sim::fast::bulk_time_wait::{enter_in_bulk, time_wait_cannot_overflow};
use crate::sim::fast::gateway::Gateways;
use crate::sim::fast::stream::NO_EVENT;
use crate::sim::path::Paths;
use crate::sim::record::{count_in_pool, note_time_wait_of};
use crate::sim::reuse_watch::{Watched, watched};
use crate::sim::run::Event;
use crate::sim::time_wait::Closing;
use crate::sim::{BindPool, Lanes, Simulation};
use crate::time::{Duration, Instant};
use crate::workload::{Arrival, Closer, Dist, Mode, Runner, Spread, Workload};
use std::collections::VecDeque;

/// Each workload's whole exchanges, if it qualifies ([`Exchange::new`]; its paths direct or
/// across cloud gateways that qualify, [`super::gateway::plan`]; the gateways returned),
/// and whether their TIME-WAIT entries are applied in bulk
/// ([`super::bulk_time_wait::applies`]); each exchange's sockets made lazily where nothing
/// sees them before ([`super::unseen::applies`]).
pub(in crate::sim) fn plan(
    sc: &Scenario,
    hosts: &[Host],
    conn_pools: &[Vec<(u16, u32)>],
    paths: &mut Paths,
    gateways_allowed: bool,
) -> (Vec<Option<Exchange>>, bool, Gateways) {
    let mut exchanges: Vec<Option<Exchange>> =
        sc.workloads.iter().map(|w| Exchange::new(sc, w)).collect();
    let gateways = super::gateway::plan(sc, paths, &mut exchanges, gateways_allowed);
    for (x, (w, pools)) in exchanges
        .iter_mut()
        .zip(sc.workloads.iter().zip(conn_pools))
    {
        if let (Some(x), [pool]) = (x, pools.as_slice()) {
            debug_assert_eq!(pool.0, w.sources[0].host);
            x.single_pool = Some(*pool);
        }
    }
    let bulk_time_wait = super::bulk_time_wait::applies(sc, hosts, &exchanges);
    if bulk_time_wait {
        for x in exchanges.iter_mut().flatten() {
            x.bulk_time_wait = true;
            x.steps.push((x.to_time_wait, StepKind::TimeWait));
            x.next.push(0);
        }
    }
    for (x, w) in exchanges.iter_mut().zip(&sc.workloads) {
        if let Some(x) = x {
            x.lazy = super::unseen::applies(x, w, hosts);
        }
    }
    (exchanges, bulk_time_wait, gateways)
}

/// Connections of a whole exchange kept past their TIME-WAIT entry before all their steps
/// are applied at once.
const FLIGHTS_KEPT: usize = 1024;

/// Most requests per connection for an exchange scheduled whole (one step each).
const WHOLE_MAX_REQUESTS: u32 = 8;

/// What a step of a whole exchange does ([`Exchange`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::sim) enum StepKind {
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

/// A connection of a whole exchange.
#[derive(Clone, Copy, Debug)]
pub(in crate::sim) struct Flight {
    /// When connect() ran.
    pub(in crate::sim) at: Instant,
    /// The connection's number: its packets' keys ([`crate::engine::packet_key`]).
    pub(in crate::sim) origin: u64,
    /// The client socket's connect pool, or NONE (a bind() pool's, by `ip`).
    pub(in crate::sim) pool: u32,
    /// The client socket's address.
    pub(in crate::sim) ip: u32,
    pub(in crate::sim) client: u16,
    pub(in crate::sim) server: u16,
    /// The client socket (NONE until its TIME-WAIT entry where sockets are made then,
    /// [`Exchange::lazy`]), its port, and whether both ends use timestamps (its TIME-WAIT's
    /// `ts_seen`).
    pub(in crate::sim) sock: SockId,
    pub(in crate::sim) port: u16,
    pub(in crate::sim) ts_seen: bool,
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
pub(in crate::sim) struct Exchange {
    pub(in crate::sim) rtt: Duration,
    /// Segments sent up to the TIME-WAIT entry's: the FIN-ACK's segment number.
    pub(in crate::sim) fin_stage: u32,
    /// From connect() to the TIME-WAIT entry.
    pub(in crate::sim) to_time_wait: Duration,
    /// (offset from connect(), step), in the order stepping applies them.
    pub(in crate::sim) steps: Vec<(Duration, StepKind)>,
    /// Connections in connect() order.
    pub(in crate::sim) flights: VecDeque<Flight>,
    /// Between two responses: RTT plus service time.
    pub(in crate::sim) gap: Duration,
    /// Connections dropped from the front of `flights`.
    pub(in crate::sim) popped: u64,
    /// Per step, the number of the first connection it has not been applied to.
    pub(in crate::sim) next: Vec<u64>,
    /// Connections that have entered TIME-WAIT.
    pub(in crate::sim) entered: u64,
    /// The (host, pool) every connection draws from, when there is only one.
    pub(in crate::sim) single_pool: Option<(u16, u32)>,
    /// The server host of every connection, when there is only one.
    pub(in crate::sim) single_server: Option<u16>,
    /// TIME-WAIT entries are a step applied in bulk, not an event: each connection's expiry
    /// is queued at connect() and nothing else is (see [`super::bulk_time_wait::applies`] for when).
    pub(in crate::sim) bulk_time_wait: bool,

    /// Connections draw their ports from connect() pools (connect() or
    /// IP_BIND_ADDRESS_NO_PORT): [`Simulation::start_whole`] starts them.
    pub(in crate::sim) pooled: bool,
    /// The client socket is made at the TIME-WAIT entry, not at connect(): nothing on the
    /// client host can see it before ([`Host::sockets_unseen`]); the flight holds the port.
    pub(in crate::sim) lazy: bool,
    /// With entries in bulk, whether the exchange is in [`TimeWaitDue`] (it is whenever one
    /// of its entries is not yet applied).
    pub(in crate::sim) due: bool,
}

/// Exchanges whose TIME-WAIT entries are applied in bulk and not all applied, each as
/// (no later than its first entry not yet applied, in ns; workload), the least first: an
/// expiry applies the entries before it from these alone, not from every workload
/// ([`Simulation::enter_time_wait_in_bulk`]).
pub(in crate::sim) type TimeWaitDue = std::collections::BinaryHeap<std::cmp::Reverse<(u64, u32)>>;

impl Exchange {
    /// The index of the step of `kind`.
    pub(in crate::sim) fn step(&self, kind: StepKind) -> usize {
        self.steps
            .iter()
            .position(|&(_, k)| k == kind)
            .expect("every exchange has its steps")
    }

    /// Client sockets ESTABLISHED now (after a catch-up): established, FIN not yet sent.
    pub(in crate::sim) fn client_established(&self) -> u64 {
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
    pub(in crate::sim) fn next_fin(&self) -> u128 {
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
    #[allow(clippy::too_many_arguments)]
    pub(in crate::sim) fn keep(
        &mut self,
        f: Flight,
        fin: &mut u128,
        hosts: &[Host],
        lanes: &[Lanes],
        queue: &mut Queue<Event>,
        (due, wl): (&mut TimeWaitDue, u32),
        (ended, end): (&mut Lifetimes, Instant),
    ) -> bool {
        self.flights.push_back(f);
        if *fin == NO_EVENT {
            *fin = self.next_fin();
        }
        if !self.bulk_time_wait {
            return false;
        }
        if !self.due {
            // Its first entry not yet applied: the exchange's next.
            due.push(std::cmp::Reverse(((f.at + self.to_time_wait).0, wl)));
            self.due = true;
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
        let entry = f.at + self.to_time_wait;
        let expire = h.tw_expiry(entry);
        if f.sock == NONE && expire < end {
            // Nothing ends a TIME-WAIT without a socket early: it lasts to its expiry, which
            // the run reaches.
            ended.add(expire - entry);
        }
        let lane = lanes[f.client as usize].tw_expire;
        queue.push_lane_ordered(lane, expire, Class::Timer, ev);
        // Keep memory to the connections alive, whatever the bin width.
        self.flights.len() >= FLIGHTS_KEPT
    }

    /// Connections connected and not yet established (after a catch-up): in flight.
    pub(in crate::sim) fn in_flight(&self) -> u64 {
        self.popped + self.flights.len() as u64 - self.next[self.step(StepKind::Established)]
    }

    /// Client sockets of these connections counted SYN-SENT by their host: made at connect()
    /// and left SYN-SENT until the TIME-WAIT entry, unless made at the entry ([`Self::lazy`]).
    pub(in crate::sim) fn syn_sent_sockets(&self) -> u64 {
        if self.lazy {
            0
        } else {
            self.popped + self.flights.len() as u64 - self.entered
        }
    }

    /// The whole-exchange schedule of `w`, if nothing can disturb its connections between
    /// connect() and TIME-WAIT: an open loop (no closed-loop slot waits on a response) and
    /// no client pool (its requests wait on each other's connections), fixed
    /// delays with both one-way halves non-zero, the client closing without SO_LINGER 0, at
    /// most [`WHOLE_MAX_REQUESTS`] requests, the same for every connection (a request limit
    /// that is a whole number of connections); on every destination host, no workload whose
    /// server closes first or resets (its TIME-WAITs could hold a tuple) and no bind() or
    /// explicit-port workload (a socket on a listener's port); and for every workload of the
    /// same client to those hosts, a port freed after a TIME-WAIT entry cannot carry a SYN to
    /// the server before the previous connection's LAST-ACK has closed the server's socket.
    pub(in crate::sim) fn new(sc: &Scenario, w: &Workload) -> Option<Exchange> {
        let (Dist::Fixed(rtt), Dist::Fixed(service)) = (w.rtt, w.service_time) else {
            return None;
        };
        let up = Duration(rtt.0 / 2);
        let free_after = port_free_after(sc, w);
        if matches!(w.arrival, Arrival::Closed { .. })
            || w.pool.is_some()
            || up.0 == 0
            || rtt.0 - up.0 == 0
            || w.closer != Closer::Client
            || w.linger_zero
            || w.sources
                .iter()
                .any(|s| !sc.hosts[s.host as usize].profile.connect_cost.is_zero())
            || w.requests_per_connection > WHOLE_MAX_REQUESTS
            || w.limit
                .requests
                .is_some_and(|r| r % u64::from(w.requests_per_connection) != 0)
            || !w.destinations.iter().all(|d| quiet(sc, d.host))
            || !sc
                .workloads
                .iter()
                .all(|o| syn_after_last_ack(w, o, free_after, up))
        {
            return None;
        }
        let n = w.requests_per_connection;
        let gap = rtt + service;
        let fin = Duration(rtt.0 + u64::from(n) * gap.0);
        let steps = steps(rtt, up, n, gap);
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
            due: false,
            single_server: w
                .destinations
                .iter()
                .all(|d| d.host == w.destinations[0].host)
                .then_some(w.destinations[0].host),
        })
    }
}

/// Whether no workload can disturb a connection's server side on `host`: none binds there
/// (a socket on a listener's port) and every one it serves is closed by its client without
/// `count` flights of a whole exchange established (`span`, the last `late` of them in the
/// sustained window), counted for their pools: the single pool of the workload, each flight's
/// connect() pool, or the pool of its source address. `pools` is the exchange's
/// (`single_pool`, `pooled`).
#[inline]
fn count_established(
    hosts: &mut [Host],
    bind_pools: &mut [BindPool],
    pools: (Option<(u16, u32)>, bool),
    span: std::collections::vec_deque::Iter<'_, Flight>,
    count: u64,
    late: usize,
) {
    let on_time = span.len() - late;
    match pools {
        (Some((h, pool)), _) => {
            let e = &mut hosts[h as usize].established[pool as usize];
            e.all += count;
            e.late += late as u64;
        }
        // Every flight holds a connect() pool.
        (None, true) => {
            // Flights of many hosts: their counts brought into cache a few flights ahead.
            let mut ahead = span.clone().skip(PREFETCH_FLIGHTS);
            for (i, f) in span.enumerate() {
                if let Some(a) = ahead.next() {
                    hosts[a.client as usize].prefetch_established(a.pool);
                }
                let e = &mut hosts[f.client as usize].established[f.pool as usize];
                e.all += 1;
                e.late += u64::from(i >= on_time);
            }
        }
        (None, false) => {
            for (i, f) in span.enumerate() {
                let late = u64::from(i >= on_time);
                let pool = (f.pool != NONE).then_some(f.pool);
                let h = &mut hosts[f.client as usize];
                count_in_pool(h, bind_pools, f.client, pool, f.ip, late);
            }
        }
    }
}

/// Round robin takes a workload's `pools` in order, this arrival pool `k`: brings the one
/// after next into cache, and what the next will read beyond itself (a pipeline across
/// arrivals; hints only).
#[inline(always)]
fn prefetch_round_robin(hosts: &[Host], pools: &[(u16, u32)], k: usize) {
    let after = |k: usize| if k + 1 == pools.len() { 0 } else { k + 1 };
    let (next, then) = (after(k), after(after(k)));
    let (h2, p2) = pools[then];
    hosts[h2 as usize].prefetch_pool(p2);
    let (h1, p1) = pools[next];
    hosts[h1 as usize].prefetch_connect(p1);
}

/// Flights ahead of the one counted whose host's counts a catch-up brings into cache.
const PREFETCH_FLIGHTS: usize = 8;

/// Connections whose (source, destination) a random spread draws ahead of their connect():
/// [`pick_prefetching`].
const PICKS_AHEAD: usize = 3;

/// The (source, destination) of a workload's next connection: the first of those drawn
/// ahead (`ahead`), if any, else drawn now. Every connection of a workload takes its pick
/// here, so picks drawn ahead are taken in the order drawn.
#[inline(always)]
pub(in crate::sim) fn pick(
    w: &Workload,
    r: &mut Runner,
    ahead: &mut VecDeque<(usize, usize)>,
) -> (usize, usize) {
    ahead.pop_front().unwrap_or_else(|| r.pick_index(w))
}

/// [`pick`] for a random spread over `pools`, keeping [`PICKS_AHEAD`] picks drawn ahead and
/// bringing what their connect()s will read into cache by stages (the host's fields three
/// connections ahead, the pool two ahead, the selector's entry and the port set's word one
/// ahead; each stage reads what the one before brought in). A random spread draws its picks
/// from a stream nothing else reads, so drawing them early changes no pick; a fleet's
/// connect()s otherwise wait on memory for each of these in turn. Hints only.
#[inline(always)]
fn pick_prefetching(
    hosts: &[Host],
    pools: &[(u16, u32)],
    w: &Workload,
    r: &mut Runner,
    ahead: &mut VecDeque<(usize, usize)>,
) -> (usize, usize) {
    while ahead.len() <= PICKS_AHEAD {
        ahead.push_back(r.pick_index(w));
    }
    let at = |k: usize| {
        let (si, di) = ahead[k];
        pools[di * w.sources.len() + si]
    };
    let (h3, _) = at(PICKS_AHEAD);
    hosts[h3 as usize].prefetch_host();
    let (h2, p2) = at(2);
    hosts[h2 as usize].prefetch_pool(p2);
    let (h1, p1) = at(1);
    hosts[h1 as usize].prefetch_connect(p1);
    ahead.pop_front().unwrap_or_else(|| r.pick_index(w))
}

/// SO_LINGER 0 (a server's TIME-WAIT or RST could hold or end a tuple).
fn quiet(sc: &Scenario, host: u16) -> bool {
    sc.workloads.iter().all(|o| {
        let serves = o.destinations.iter().any(|d| d.host == host);
        let binds = o.sources.iter().any(|s| s.host == host)
            && matches!(o.mode, Mode::Bind | Mode::Explicit { .. });
        !binds && (!serves || (o.closer == Closer::Client && !o.linger_zero))
    })
}

/// How soon after a TIME-WAIT entry `w`'s client port can carry a new SYN: at once if the
/// entry can be skipped (`tcp_max_tw_buckets` §2.2, `nolocaltimewait` §3.2), else when the
/// TIME-WAIT ends (§2.1) or becomes reusable (`tcp_tw_reuse` §2.3).
fn port_free_after(sc: &Scenario, w: &Workload) -> u64 {
    let client_host = &sc.hosts[w.sources[0].host as usize];
    let client = &client_host.profile;
    let may_overflow =
        client.max_tw_buckets != u32::MAX && !time_wait_cannot_overflow(sc, w.sources[0].host);
    let skips_local = !client.local_time_wait
        && w.destinations
            .iter()
            .any(|d| crate::host::is_loopback(d.ip) || client_host.ips.contains(&d.ip));
    // The death row may end a TIME-WAIT up to one period early.
    let ends = crate::tw_timer::TwClock::new(client.tw_timer, 0, client.time_wait).min_lifetime();
    if may_overflow || skips_local {
        0
    } else if client.tw_reuse != 0 {
        ends.0.min(client.tw_reuse_min_age().0)
    } else {
        ends.0
    }
}

/// Whether a SYN of `o` on a port `w` freed `free_after` after its TIME-WAIT entry reaches
/// the server no earlier than the LAST-ACK (`up` after that entry) of `w`'s connection: true
/// when the two share no client and server.
fn syn_after_last_ack(w: &Workload, o: &Workload, free_after: u64, up: Duration) -> bool {
    let (lo, hi) = one_way_bounds(o.rtt);
    // A loopback source is the same address on every host that has it.
    let lo_src = |x: &Workload| x.sources.iter().any(|s| crate::host::is_loopback(s.ip));
    let shares = (o.sources[0].host == w.sources[0].host || (lo_src(o) && lo_src(w)))
        && o.destinations
            .iter()
            .any(|d| w.destinations.iter().any(|e| e.host == d.host));
    !shares || (hi.is_some_and(|hi| free_after + up.0 >= hi) && free_after + lo >= up.0)
}

/// The steps of an exchange of `n` requests, (offset from connect(), step), in the order
/// stepping applies them.
fn steps(rtt: Duration, up: Duration, n: u32, gap: Duration) -> Vec<(Duration, StepKind)> {
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
    steps
}

impl Simulation {
    /// Applies the steps of `wl`'s whole exchanges that come before `at`.
    pub(in crate::sim) fn catch_up(&mut self, wl: usize, at: Instant) {
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
                    let pools = (x.single_pool, x.pooled);
                    count_established(hosts, bind_pools, pools, span, count, late);
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
                    let mut ahead = span.clone().skip(PREFETCH_FLIGHTS);
                    for f in span {
                        if let Some(a) = ahead.next() {
                            hosts[a.client as usize].prefetch_counts();
                        }
                        enter_in_bulk(&mut hosts[f.client as usize], f, f.at + offset);
                    }
                    x.entered += count;
                    // No TIME-WAIT ended since the previous entry: the count now is a peak.
                    note_time_wait_of(hosts, rec);
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

    /// [`Simulation::start`] for an open-loop connection of a whole exchange drawing its port
    /// from a connect() pool: connect(), the reuse watch, and the connection kept as a
    /// flight whose next event is its TIME-WAIT entry (or, in bulk, its expiry).
    #[inline(always)]
    pub(in crate::sim) fn start_whole(&mut self, wl: u32, retry: u32) {
        let w = &self.workloads[wl as usize];
        let r = &mut self.runners[wl as usize];
        if r.take(w, self.now, retry > 0, true).is_none() {
            return;
        }
        let pools = &self.conn_pools[wl as usize];
        let (si, di) = match w.spread {
            Spread::Random if pools.len() > 1 => {
                pick_prefetching(&self.hosts, pools, w, r, &mut self.picks[wl as usize])
            }
            _ => pick(w, r, &mut self.picks[wl as usize]),
        };
        let (src, dst) = (w.sources[si], w.destinations[di]);
        let k = di * w.sources.len() + si;
        let pool = pools[k].1;
        if w.spread == Spread::RoundRobin && pools.len() > 1 {
            prefetch_round_robin(&self.hosts, pools, k);
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
        // The steps of `Simulation::connected` (port log, reuse watch, flight kept), written
        // out: through its shared helpers this path cost 0.2–0.7 % more instructions.
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
        self.syn_to_gateway(wl, src.host, dst.host, tuple);
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
        self.keep_flight(wl, flight);
    }

    /// Keeps `flight`, just connected, as a whole exchange of `wl` ([`Exchange::keep`]),
    /// catching up when the flights kept call for it.
    #[inline(always)]
    pub(in crate::sim) fn keep_flight(&mut self, wl: u32, flight: Flight) {
        let Some(x) = &mut self.exchanges[wl as usize] else {
            unreachable!("a flight without its exchange");
        };
        let fin = &mut self.streams[wl as usize].fin;
        let due = &mut self.time_wait_due;
        if x.keep(
            flight,
            fin,
            &self.hosts,
            &self.lanes,
            &mut self.queue,
            (due, wl),
            (&mut self.rec.tw_lifetimes, self.end),
        ) {
            self.catch_up(wl as usize, self.now);
        }
    }

    /// [`Self::fin_at_active`] for the next connection of `wl`'s whole exchanges to enter
    /// TIME-WAIT: entries come in connect() order, so it is flight `entered`. The client
    /// closes; the server's LAST-ACK ends `up` from now, and its socket was never made.
    pub(in crate::sim) fn exchange_fin(&mut self, wl: usize) {
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
}
