//! The simulation: hosts, workloads, and the TCP connection lifecycle between them.
//!
//! [`Simulation::new`] builds a run from a validated scenario (`build.rs`): the hosts with
//! their port state ([`crate::host`]), the pools, each workload's runner and first events.
//! [`Simulation::run`] takes events from the queue in time order (`run.rs`) until the
//! scenario ends, and returns the report (`record.rs`).
//!
//! A connection is a client socket, a server socket and the segments between them; each
//! segment is an event at the receiving host, one-way delay after it was sent, having
//! crossed the middleboxes of its path (`path.rs`):
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
//! # Files
//!
//! - `build.rs`: scenario → hosts, pools, runners, first events; which fast paths apply.
//! - `run.rs`: the run loop, the events, and their order at one instant.
//! - `connect.rs`: the application side: socket, bind(), connect(), a failure's policy.
//! - `lifecycle.rs`: the connection stepped segment by segment: the reference semantics.
//! - `time_wait.rs`: an active close: TIME-WAIT entered, skipped or overflowed, and its
//!   timers (expiry, `tcp_tw_reuse`, an RST).
//! - `path.rs`: the hops between two hosts: links and middleboxes.
//! - `pool.rs`: a client library's connection pool: which connections it keeps, which it
//!   closes.
//! - `reuse_watch.rs`: four-tuples closed without TIME-WAIT, watched for unprotected reuse.
//! - `fast/`: the fast paths. Each gives the report stepping gives, under a condition its
//!   file states first, with the test that compares the two.
//! - `check.rs`: checking mode, the invariants asserted after every event.
//! - `record.rs`: gauges at bin edges, the pools' counts, the report.
//!
//! [`Simulation::stepping`] and [`Simulation::stepping_segments`] turn every fast path off:
//! every retry, arrival and segment is then an event of its own.

mod build;
mod check;
mod connect;
mod fast;
mod lifecycle;
pub mod path;
mod pool;
mod record;
mod reuse_watch;
mod run;
mod time_wait;

pub use check::Violation;
pub use record::sustained_from;

use crate::engine::Queue;
use crate::host::Host;
use crate::report::{HostInfo, Recorder, ScenarioInfo};
use crate::time::{Duration, Instant};
use crate::workload::{Runner, Workload};
use fast::exchange::Exchange;
use fast::parked::Parked;
use fast::stream::Stream;
use lifecycle::Conn;
use path::Paths;
use record::{PoolGroups, PortLog};
use reuse_watch::ReuseWatch;
use run::Event;

struct Lanes {
    tw_expire: usize,
    tw_reusable: usize,
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
    /// The report's pool entries: a fleet's pools in one per destination ([`PoolGroups`]).
    groups: PoolGroups,
    /// Closed-loop workers waiting out an exhausted pool (see [`Parked`]).
    parked: Vec<Parked>,
    /// The sequence number the last virtual retry was queued after, and how many were
    /// queued after it: a virtual retry's place is `(after, sub)`.
    sub_for: (u64, u32),
    /// Count parked retries and arrivals into an exhausted pool in bulk (off only to test
    /// that it changes nothing).
    bulk: bool,
    /// Run a stream's next event at once when it comes next ([`Simulation::stream`]); off
    /// only to test that it changes nothing.
    chain: bool,
    /// Exclusive-port pools of bind() workloads: (host, source IP, ports, kind), with the
    /// connections each established, counted at establishment by the socket's local IP.
    bind_pools: Vec<BindPool>,
    /// Start of the sustained window (see [`sustained_from`]).
    late_from: Instant,
    /// Per workload, the pool whose exhaustion lets its open-loop arrivals be counted in bulk
    /// ([`Simulation::arrivals_in_bulk`], `fast::bulk_arrivals::pool`).
    open_loop_pools: Vec<Option<(u16, u32)>>,
    /// Per workload of connect() or IP_BIND_ADDRESS_NO_PORT, its (client host, pool) of each
    /// (source, destination): `[destination * sources + source]`, the order round robin
    /// takes them in.
    conn_pools: Vec<Vec<(u16, u32)>>,
    /// Per workload, the (source, destination) picks drawn ahead of their connections
    /// (`fast::exchange::pick`).
    picks: Vec<std::collections::VecDeque<(usize, usize)>>,
    /// Per workload, its exchanges scheduled whole, if it qualifies ([`Exchange`]).
    exchanges: Vec<Option<Exchange>>,
    /// The exchanges with TIME-WAIT entries to apply in bulk (`fast::exchange::TimeWaitDue`).
    time_wait_due: fast::exchange::TimeWaitDue,
    /// Every exchange enters TIME-WAIT in bulk ([`Exchange::bulk_time_wait`]).
    bulk_time_wait: bool,
    /// Per host, server sockets of whole exchanges that are ESTABLISHED.
    virtual_established: Vec<u32>,
    /// Checking mode: invariants asserted after every event (see [`Simulation::checking`]).
    check: bool,
    violation: Option<Violation>,
    /// The ports each report pool handed out, when asked for ([`Simulation::ports`]).
    port_use: Option<PortLog>,
    /// The path between each pair of hosts ([`path`]).
    paths: Paths,
    /// The scenario's NATs: their middlebox indices in `paths`, in the scenario's order.
    nats: Vec<usize>,
    /// The cloud gateways whole exchanges cross (`fast/gateway.rs`).
    gateways: fast::gateway::Gateways,
    /// Client libraries' connection pools, per workload ([`pool`]).
    client_pools: pool::ClientPools,
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
    /// Steps through every retry and arrival instead of counting them in bulk, and queues a
    /// stream's every event instead of running the next at once: the same report, slower.
    /// For tests.
    pub fn stepping(mut self) -> Self {
        self.bulk = false;
        self.chain = false;
        self
    }

    /// Queues every segment of every connection instead of scheduling exchanges whole: the
    /// same report, slower. For tests.
    pub fn stepping_segments(mut self) -> Self {
        for x in self.exchanges.iter_mut() {
            *x = None;
        }
        self.bulk_time_wait = false;
        self.gateways.off(&mut self.paths);
        self
    }

    /// Whether every TIME-WAIT entry is applied in bulk (`src/sim/fast/bulk_time_wait.rs`).
    pub fn enters_time_wait_in_bulk(&self) -> bool {
        self.bulk_time_wait
    }

    /// Whether some whole exchange makes its client sockets only at their TIME-WAIT entry
    /// (`src/sim/fast/unseen.rs`).
    pub fn makes_sockets_at_time_wait(&self) -> bool {
        self.exchanges.iter().flatten().any(|x| x.lazy)
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

    /// Events processed so far.
    pub fn events(&self) -> u64 {
        self.events
    }
}
