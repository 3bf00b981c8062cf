//! Workloads: who connects where, how often, and what each connection does.
//!
//! A workload runs on one or more client hosts, spreads its connections over source IPs and
//! destinations, and is either open loop (constant rate, Poisson, a step schedule of rates, or
//! bursts of connections opened at once) or closed loop (a fixed number of concurrent
//! connections, like `oha -c` or `wrk -c`). It opens connections from its `start` until its
//! `stop`, and ends early at its [`Limit`] (`ab -n`, `hey -n`) or at a failure under
//! `on_error = "stop"`.

use crate::rng::{Ziggurat, exp1, exp1_in, ziggurat};
use crate::time::{Duration, Instant};
use rand::RngExt;
use rand_chacha::ChaCha8Rng;

/// An exact rate in events per second: `num / den`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    pub num: u64,
    pub den: u64,
}

impl Rate {
    /// Parses a positive decimal such as `500`, `272.5` or `0.25` exactly.
    pub fn parse_decimal(text: &str) -> Option<Rate> {
        let (int, frac) = text.split_once('.').unwrap_or((text, ""));
        if int.is_empty() && frac.is_empty() || frac.len() > 9 {
            return None;
        }
        let den = 10u64.pow(frac.len() as u32);
        let i: u64 = if int.is_empty() { 0 } else { int.parse().ok()? };
        let f: u64 = if frac.is_empty() {
            0
        } else {
            frac.parse().ok()?
        };
        let num = i.checked_mul(den)?.checked_add(f)?;
        Some(Rate { num, den })
    }
    pub fn per_sec(self) -> f64 {
        self.num as f64 / self.den as f64
    }
    /// The offset of the `k`-th event (0-based) of a constant-rate stream.
    pub fn nth(self, k: u64) -> Duration {
        Duration(
            (u128::from(k) * 1_000_000_000 * u128::from(self.den) / u128::from(self.num)) as u64,
        )
    }
}

/// A random duration.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Dist {
    Fixed(Duration),
    /// Uniform on `[min, max]`.
    Uniform(Duration, Duration),
    /// Exponential with the given mean.
    Exponential(Duration),
}

impl Dist {
    /// A draw; a fixed value takes none.
    #[inline]
    pub fn sample(&self, rng: &mut ChaCha8Rng) -> Duration {
        match *self {
            Dist::Fixed(d) => d,
            _ => self.draw(rng),
        }
    }
    fn draw(&self, rng: &mut ChaCha8Rng) -> Duration {
        match *self {
            Dist::Fixed(d) => d,
            Dist::Uniform(a, b) => Duration(rng.random_range(a.0..=b.0)),
            Dist::Exponential(mean) => Duration(round_ns(exp1(rng) * mean.0 as f64)),
        }
    }
    pub fn mean(&self) -> Duration {
        match *self {
            Dist::Fixed(d) | Dist::Exponential(d) => d,
            Dist::Uniform(a, b) => Duration((a.0 + b.0) / 2),
        }
    }
    pub fn is_random(&self) -> bool {
        !matches!(self, Dist::Fixed(_))
    }
}

/// `x.round() as u64` (half away from zero, saturating, NaN to 0) without the library call
/// that `round` costs on baseline x86-64: `x - trunc(x)` is exact for every finite `x`.
#[inline]
pub fn round_ns(x: f64) -> u64 {
    if (0.0..9.0e18).contains(&x) {
        // The signed conversions are single instructions, exact in this range; the half is
        // added without a branch (which way it goes is a coin toss for random draws).
        let i = x as i64;
        return i as u64 + u64::from(x - i as f64 >= 0.5);
    }
    let i = x as u64;
    if x - i as f64 >= 0.5 {
        i.saturating_add(1)
    } else {
        i
    }
}

/// How connections arrive.
#[derive(Clone, Debug, PartialEq)]
pub enum Arrival {
    /// One connection every `1/rate`, the first at the workload's start.
    Constant(Rate),
    /// A Poisson process.
    Poisson(Rate),
    /// Rates over time, each step starting at its offset from the workload's start.
    Steps {
        steps: Vec<(Duration, Rate)>,
        poisson: bool,
    },
    /// A fixed number of connections at once; a new one starts when one ends.
    Closed { concurrency: u32 },
    /// Connections opened all at once, `count` at each offset from the workload's start, as a
    /// script that opens N sockets in a loop does.
    Bursts(Vec<(Duration, u64)>),
}

impl Arrival {
    /// New connections per second of a rate-driven open loop, at its highest step; none for
    /// a closed loop, whose rate depends on how long its connections last, or for bursts.
    pub fn peak_rate(&self) -> Option<f64> {
        match self {
            Arrival::Constant(r) | Arrival::Poisson(r) => Some(r.per_sec()),
            Arrival::Steps { steps, .. } => {
                Some(steps.iter().map(|s| s.1.per_sec()).fold(0.0, f64::max))
            }
            Arrival::Closed { .. } | Arrival::Bursts(_) => None,
        }
    }

    /// Arrivals an open loop makes in `secs` of activity, at most (its peak rate, or every
    /// burst); none for a closed loop.
    pub fn arrivals_in(&self, secs: f64) -> Option<f64> {
        match self {
            Arrival::Bursts(bursts) => Some(bursts.iter().map(|b| b.1 as f64).sum()),
            a => a.peak_rate().map(|r| r * secs),
        }
    }
}

/// Where a workload ends before its `stop`: after `connections` connect() calls (a retry is
/// one) or `requests` requests (`ab -n`, `hey -n`, `memtier -n`, `redis-benchmark -n`). Each
/// new connection takes up to `requests_per_connection` of the requests left, so the last one
/// may carry fewer; a retry carries the request it retries. Connections already open finish.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limit {
    pub connections: Option<u64>,
    pub requests: Option<u64>,
}

impl Limit {
    /// Whether the workload has a limit at all.
    pub fn is_set(&self) -> bool {
        self.connections.is_some() || self.requests.is_some()
    }
}

/// How a socket gets its local port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// connect() on an unbound socket: the kernel autoselects, shared per four-tuple.
    Connect,
    /// bind(ip, 0) with IP_BIND_ADDRESS_NO_PORT, then connect(): autoselect at connect.
    BindNoPort,
    /// bind(ip, 0) then connect(): an exclusive port per source IP (EADDRINUSE when out).
    Bind,
    /// bind(ip, port) over an application-chosen range, trying the next port on EADDRINUSE.
    Explicit { low: u16, high: u16 },
}

impl Mode {
    pub fn name(&self) -> &'static str {
        match self {
            Mode::Connect => "connect",
            Mode::BindNoPort => "bind_no_port",
            Mode::Bind => "bind",
            Mode::Explicit { .. } => "explicit",
        }
    }
    pub fn binds(&self) -> bool {
        matches!(self, Mode::Bind | Mode::Explicit { .. })
    }
}

/// Who sends the first FIN (and so holds TIME-WAIT).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Closer {
    #[default]
    Client,
    Server,
}

/// What the application does when connect() fails.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OnError {
    /// Count the failure and go on (httperf). A closed-loop slot starts its next connection
    /// after `delay` (a failed connect() costs time; zero would spin at one instant).
    Count { delay: Duration },
    /// Retry the same request after `delay · backoff^n`, capped at `max_delay`, at most
    /// `max_retries` times; then count the request as failed.
    Retry {
        delay: Duration,
        backoff: f64,
        max_delay: Duration,
        max_retries: u32,
    },
    /// Stop the workload at the first failure.
    Stop,
}

/// What the application does next after a failed connect attempt.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum AfterFailure {
    /// Start again after `wait`, as attempt `retry` (0: a new request).
    Start { wait: Duration, retry: u32 },
    /// Nothing: an open-loop arrival is simply over.
    Idle,
    /// Stop the whole workload.
    Stop,
}

impl OnError {
    /// The policy applied to a failure of attempt `retry` (0 = first) by a closed-loop slot
    /// or an open-loop arrival. The flag is true when the request is given up for good.
    pub fn after_failure(&self, retry: u32, closed_loop: bool) -> (AfterFailure, bool) {
        let next_request = |delay| {
            if closed_loop {
                AfterFailure::Start {
                    wait: delay,
                    retry: 0,
                }
            } else {
                AfterFailure::Idle
            }
        };
        match *self {
            OnError::Count { delay } => (next_request(delay), false),
            OnError::Retry {
                delay,
                backoff,
                max_delay,
                max_retries,
            } => {
                if retry < max_retries {
                    let wait =
                        (delay.0 as f64 * backoff.powi(retry as i32)).min(max_delay.0 as f64);
                    let again = AfterFailure::Start {
                        wait: Duration(wait.round() as u64),
                        retry: retry + 1,
                    };
                    (again, false)
                } else {
                    (next_request(delay), true)
                }
            }
            OnError::Stop => (AfterFailure::Stop, false),
        }
    }
}

/// How connections are spread over sources and destinations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spread {
    RoundRobin,
    Random,
}

/// A source: a client host and one of its IPs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Source {
    pub host: u16,
    pub ip: u32,
}

/// A destination: the host that owns the address, the address and the port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Destination {
    pub host: u16,
    pub ip: u32,
    pub port: u16,
}

/// A workload on fleets (hosts with `count` > 1): it runs on each instance, each with its
/// own arrivals at the rate the file gives and its own round robin over its sources and
/// the destinations.
///
/// The instances' Poisson streams (of rate R each, N instances) are run as ONE stream of rate
/// R × N (the scenario stores that aggregate rate in [`Workload::arrival`]) whose every
/// connection is given to an instance drawn uniformly at random. This is exact in
/// distribution: the superposition of N independent Poisson processes of rate R is a Poisson
/// process of rate R × N, and each of its points comes from instance k with probability 1/N
/// independently of the others (a Poisson process with independent uniform marks), which
/// thinned by mark gives back the N independent processes. The same holds step by step for
/// Poisson rate steps (inhomogeneous processes of one intensity). Arrival kinds whose
/// instances would move in lock step (constant rate, constant steps, bursts) or wait on each
/// other (closed loops), a workload [`Limit`], and `on_error` other than `count` (a retry
/// or a stop belongs to one instance) are refused at load rather than approximated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PerInstance {
    /// Where each instance's sources start in [`Workload::sources`] (instance by instance,
    /// in order), then `sources.len()`.
    pub starts: Vec<u32>,
}

impl PerInstance {
    /// The instances of `sources`, laid out host by host.
    pub fn of(sources: &[Source]) -> PerInstance {
        let mut starts: Vec<u32> = Vec::new();
        for (i, s) in sources.iter().enumerate() {
            if i == 0 || sources[i - 1].host != s.host {
                starts.push(i as u32);
            }
        }
        starts.push(sources.len() as u32);
        PerInstance { starts }
    }

    /// How many instances run the workload.
    pub fn instances(&self) -> usize {
        self.starts.len() - 1
    }
}

/// A validated workload.
#[derive(Clone, Debug)]
pub struct Workload {
    pub name: String,
    pub sources: Vec<Source>,
    /// On fleets: each instance's sources ([`PerInstance`]); `None` for listed hosts,
    /// which share the workload's one stream and round robin.
    pub per_instance: Option<PerInstance>,
    pub destinations: Vec<Destination>,
    pub spread: Spread,
    pub arrival: Arrival,
    pub requests_per_connection: u32,
    pub rtt: Dist,
    pub service_time: Dist,
    pub request_bytes: u32,
    pub closer: Closer,
    pub linger_zero: bool,
    pub mode: Mode,
    pub reuseaddr: bool,
    /// IP_LOCAL_PORT_RANGE set on each socket.
    pub local_port_range: Option<(u16, u16)>,
    pub on_error: OnError,
    /// No connect() before `start` or from `stop` on, first attempt or retry; connections
    /// open at `stop` run to their end.
    pub start: Instant,
    pub stop: Instant,
    pub limit: Limit,
    /// Application threads a closed loop's connections share (memtier `-t`, wrk `-t`):
    /// slot `s` runs on thread `s mod threads`, and while a thread is in connect() its other
    /// connections wait for it ([`Threads`]). `None`: a thread per connection.
    pub threads: Option<u32>,
    /// A client library's connection pool: requests, not connections, arrive; each takes an
    /// idle connection or opens one ([`crate::client::pool`], `src/sim/pool.rs`).
    pub pool: Option<crate::client::pool::Pool>,
}

impl Workload {
    /// Whether a connect() may start at `now`: from `start`, before `stop`.
    #[inline]
    pub fn opens_at(&self, now: Instant) -> bool {
        now >= self.start && now < self.stop
    }

    /// Seconds the workload runs within a scenario of `total` length.
    pub fn active_secs(&self, total: Duration) -> f64 {
        self.stop.0.min(total.0).saturating_sub(self.start.0) as f64 / 1e9
    }
}

/// The application threads a closed loop's slots share, each busy while one of its slots is
/// in connect() (the port search's CPU time, [`crate::profile::ConnectCost`]): a slot that
/// wants to connect meanwhile waits, in the order they asked. The wait is for connect()
/// calls only: an application thread's other work (reading a response, closing) is not
/// charged, since a reconnecting client (memtier `--reconnect-interval 1`) begins every
/// request with a connect().
#[derive(Clone, Debug, Default)]
pub struct Threads {
    /// When each thread is next free.
    busy: Vec<Instant>,
    /// Per thread, the slots waiting for it: (slot, retry, since when), the first one's
    /// start queued for when the thread is free.
    waiting: Vec<std::collections::VecDeque<(u32, u32, Instant)>>,
}

/// Whether a slot's connect() runs now ([`Threads::admit`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    /// It runs now; the application asked at `since` (its wait is in the connect latency).
    Now { since: Instant },
    /// It waits for its thread; queue its start at the time given, if any (it is the
    /// first waiting).
    Wait(Option<Instant>),
}

impl Threads {
    /// `n` threads; 0 is a thread per slot (nothing ever waits).
    pub fn new(n: u32) -> Threads {
        Threads {
            busy: vec![Instant::ZERO; n as usize],
            waiting: vec![std::collections::VecDeque::new(); n as usize],
        }
    }

    fn of(&self, slot: u32) -> Option<usize> {
        (!self.busy.is_empty()).then(|| slot as usize % self.busy.len())
    }

    /// Slot `slot` (attempt `retry`) asks to connect at `now`.
    #[inline]
    pub fn admit(&mut self, slot: u32, retry: u32, now: Instant) -> Admit {
        let Some(t) = self.of(slot) else {
            return Admit::Now { since: now };
        };
        let q = &mut self.waiting[t];
        if let Some(&(first, _, since)) = q.front()
            && first == slot
            && now >= self.busy[t]
        {
            q.pop_front();
            return Admit::Now { since };
        }
        if self.busy[t] > now || !q.is_empty() {
            q.push_back((slot, retry, now));
            return Admit::Wait((q.len() == 1).then_some(self.busy[t].max(now)));
        }
        Admit::Now { since: now }
    }

    /// Slot `slot`'s connect() holds its thread until `until`: the next slot waiting for
    /// it, (slot, retry), whose start is to be queued then.
    #[inline]
    pub fn release(&mut self, slot: u32, until: Instant) -> Option<(u32, u32)> {
        let t = self.of(slot)?;
        self.busy[t] = until;
        self.waiting[t].front().map(|&(s, r, _)| (s, r))
    }
}

/// A workload's state while the simulation runs.
pub struct Runner {
    /// Connections started so far.
    started: u64,
    /// The round-robin position: (source, destination) of connection `started`.
    turn: (usize, usize),
    /// On fleets ([`PerInstance`]): connections each instance has started, its own round robin.
    turns: Vec<u64>,
    /// Index of the next open-loop arrival in the current step.
    next_k: u64,
    step: usize,
    /// Start of the current step (and, for Poisson, the last arrival).
    anchor: Instant,
    arrivals: ChaCha8Rng,
    zig: &'static Ziggurat,
    pub latency: ChaCha8Rng,
    spread: ChaCha8Rng,
    /// Mean gap of an [`Arrival::Poisson`] stream in ns, as each draw scales it.
    poisson_mean_ns: f64,
    /// Next port for [`Mode::Explicit`].
    pub cursor: u16,
    /// The workload starts no new request: its limit was reached, or `on_error` stopped it.
    pub stopped: bool,
    /// Whether the workload has a [`Limit`], what is left of it, and when it was spent.
    limited: bool,
    pub spent_at: Option<Instant>,
    connections_left: u64,
    requests_left: u64,
    /// The application threads of a closed loop with `threads` set.
    pub threads: Threads,
}

impl Runner {
    pub fn new(
        w: &Workload,
        arrivals: ChaCha8Rng,
        latency: ChaCha8Rng,
        spread: ChaCha8Rng,
    ) -> Self {
        Runner {
            started: 0,
            turn: (0, 0),
            turns: w
                .per_instance
                .as_ref()
                .map_or(Vec::new(), |p| vec![0; p.instances()]),
            poisson_mean_ns: match w.arrival {
                Arrival::Poisson(r) => 1e9 * r.den as f64 / r.num as f64,
                _ => 0.0,
            },
            next_k: 0,
            step: 0,
            anchor: w.start,
            arrivals,
            zig: ziggurat(),
            latency,
            spread,
            cursor: match w.mode {
                Mode::Explicit { low, .. } => low,
                _ => 0,
            },
            stopped: false,
            limited: w.limit.is_set(),
            spent_at: None,
            connections_left: w.limit.connections.unwrap_or(u64::MAX),
            requests_left: w.limit.requests.unwrap_or(u64::MAX),
            threads: Threads::new(w.threads.unwrap_or(0)),
        }
    }

    /// Takes one connect() attempt at `now`: the requests the connection carries
    /// (`requests_per_connection`, fewer for the last of a request limit; a retry carries
    /// its own), or `None` when no attempt may start: outside the workload's `[start, stop)`
    /// (an open-loop arrival's first attempt, `arrival`, lies inside by construction), a
    /// new request once the workload is `stopped`, a retry once no connection is left of its
    /// [`Limit`]. The attempt that spends the limit sets `stopped` and `spent_at`.
    #[inline(always)]
    pub fn take(&mut self, w: &Workload, now: Instant, retry: bool, arrival: bool) -> Option<u32> {
        if (!arrival || retry) && !w.opens_at(now) {
            return None;
        }
        if !self.limited {
            // `on_error = "stop"`, the only other stop, never retries.
            return (!self.stopped).then_some(w.requests_per_connection);
        }
        self.take_limited(w, now, retry)
    }

    fn take_limited(&mut self, w: &Workload, now: Instant, retry: bool) -> Option<u32> {
        if self.connections_left == 0 || (self.stopped && !retry) {
            return None;
        }
        let requests = if retry || w.limit.requests.is_none() {
            w.requests_per_connection
        } else {
            let k = u64::from(w.requests_per_connection).min(self.requests_left);
            self.requests_left -= k;
            k as u32
        };
        if w.limit.connections.is_some() {
            self.connections_left -= 1;
        }
        if !self.stopped && (self.connections_left == 0 || self.requests_left == 0) {
            self.stopped = true;
            self.spent_at = Some(now);
        }
        Some(requests)
    }
    /// The next open-loop arrival after the previous one, or `None` past the stop time.
    #[inline(always)]
    pub fn next_arrival(&mut self, w: &Workload) -> Option<Instant> {
        // A Poisson stream past its first arrival: the gap's mean is the stream's own.
        if let Arrival::Poisson(r) = w.arrival
            && self.next_k > 0
            && r.num != 0
        {
            let gap = round_ns(exp1_in(self.zig, &mut self.arrivals) * self.poisson_mean_ns);
            self.next_k += 1;
            let t = self.anchor + Duration(gap);
            if t < w.stop {
                self.anchor = t;
                return Some(t);
            }
            return None;
        }
        self.next_arrival_stepped(w)
    }

    /// Takes the arrivals from `next` on while they come before `bound`: how many, the last
    /// of them, and the first one at or after `bound` (what `next_arrival` gives next).
    pub fn arrivals_before(
        &mut self,
        w: &Workload,
        mut next: Option<Instant>,
        bound: Instant,
    ) -> (u64, Option<Instant>, Option<Instant>) {
        let (mut n, mut last) = (0, None);
        while let Some(t) = next
            && t < bound
        {
            n += 1;
            last = Some(t);
            next = self.next_arrival(w);
        }
        (n, last, next)
    }

    /// [`Runner::next_arrival`] for every stream: steps, a constant rate, bursts, a first
    /// arrival.
    fn next_arrival_stepped(&mut self, w: &Workload) -> Option<Instant> {
        if let Arrival::Bursts(bursts) = &w.arrival {
            return self.next_in_burst(w, bursts);
        }
        loop {
            let (rate, poisson, step_end) = match &w.arrival {
                Arrival::Constant(r) => (*r, false, w.stop),
                Arrival::Poisson(r) => (*r, true, w.stop),
                Arrival::Steps { steps, poisson } => {
                    let (_, r) = *steps.get(self.step)?;
                    let end = steps
                        .get(self.step + 1)
                        .map_or(w.stop, |(at, _)| w.start + *at);
                    (r, *poisson, end.min(w.stop))
                }
                Arrival::Closed { .. } | Arrival::Bursts(_) => return None,
            };
            let t = if rate.num == 0 {
                step_end
            } else if poisson {
                let mean_ns = 1e9 * rate.den as f64 / rate.num as f64;
                let gap = round_ns(exp1_in(self.zig, &mut self.arrivals) * mean_ns);
                let first = self.next_k == 0;
                self.next_k += 1;
                if first && self.step == 0 {
                    self.anchor
                } else {
                    self.anchor + Duration(gap)
                }
            } else {
                let t = self.anchor + rate.nth(self.next_k);
                self.next_k += 1;
                t
            };
            if t < step_end {
                if poisson {
                    self.anchor = t;
                }
                return Some(t);
            }
            // Past this step: move to the next one (a Poisson draw restarts there, which is
            // exact because the exponential is memoryless).
            match &w.arrival {
                Arrival::Steps { steps, .. }
                    if self.step + 1 < steps.len() && step_end < w.stop =>
                {
                    self.step += 1;
                    self.anchor = w.start + steps[self.step].0;
                    self.next_k = 0;
                    if poisson {
                        // The first arrival of a Poisson step is one gap after its start.
                        self.next_k = 1;
                    }
                }
                _ => return None,
            }
        }
    }

    /// The next arrival of a burst schedule: burst `step` gives its `count` arrivals at its
    /// offset from the start, then the next burst its own.
    fn next_in_burst(&mut self, w: &Workload, bursts: &[(Duration, u64)]) -> Option<Instant> {
        while let Some(&(at, count)) = bursts.get(self.step) {
            if self.next_k < count {
                self.next_k += 1;
                let t = w.start + at;
                return (t < w.stop).then_some(t);
            }
            self.step += 1;
            self.next_k = 0;
        }
        None
    }

    /// The source and destination of the next connection.
    pub fn pick(&mut self, w: &Workload) -> (Source, Destination) {
        let (si, di) = self.pick_index(w);
        (w.sources[si], w.destinations[di])
    }

    /// The indices into the workload's sources and destinations of the next connection:
    /// round robin takes connection `n` from source `n mod S` and destination
    /// `(n div S) mod D`.
    /// On fleets, [`Runner::pick_instance`].
    #[inline]
    pub fn pick_index(&mut self, w: &Workload) -> (usize, usize) {
        self.started += 1;
        if let Some(p) = &w.per_instance {
            return self.pick_instance(w, p);
        }
        match w.spread {
            Spread::RoundRobin => {
                let at = self.turn;
                self.turn.0 += 1;
                if self.turn.0 == w.sources.len() {
                    self.turn.0 = 0;
                    self.turn.1 += 1;
                    if self.turn.1 == w.destinations.len() {
                        self.turn.1 = 0;
                    }
                }
                at
            }
            Spread::Random => {
                let (ns, nd) = (w.sources.len() as u64, w.destinations.len() as u64);
                (
                    self.spread.random_range(0..ns) as usize,
                    self.spread.random_range(0..nd) as usize,
                )
            }
        }
    }

    /// [`Runner::pick_index`] on fleets: the instance drawn uniformly at random (the marks
    /// of [`PerInstance`]'s aggregate stream), then its own source and destination as
    /// `spread` takes them on one host: round robin by the instance's own count, or random.
    fn pick_instance(&mut self, w: &Workload, p: &PerInstance) -> (usize, usize) {
        let i = self.spread.random_range(0..p.instances() as u64) as usize;
        let first = p.starts[i] as usize;
        let ns = p.starts[i + 1] as usize - first;
        let nd = w.destinations.len();
        match w.spread {
            Spread::RoundRobin => {
                let k = self.turns[i];
                self.turns[i] += 1;
                let ns = ns as u64;
                (first + (k % ns) as usize, ((k / ns) % nd as u64) as usize)
            }
            Spread::Random => {
                let s = if ns > 1 {
                    self.spread.random_range(0..ns as u64) as usize
                } else {
                    0
                };
                (first + s, self.spread.random_range(0..nd as u64) as usize)
            }
        }
    }

    /// Moves the round-robin position on by `n` connections that were never picked one by
    /// one (never on fleets: their picks draw at random).
    pub fn skip(&mut self, w: &Workload, n: u64) {
        debug_assert!(w.per_instance.is_none(), "a fleet's picks are drawn");
        self.started += n;
        let (ns, nd) = (w.sources.len() as u64, w.destinations.len() as u64);
        self.turn = (
            (self.started % ns) as usize,
            ((self.started / ns) % nd) as usize,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::stream;

    fn workload(arrival: Arrival) -> Workload {
        Workload {
            name: "w".into(),
            sources: vec![Source { host: 0, ip: 1 }],
            per_instance: None,
            destinations: vec![Destination {
                host: 1,
                ip: 2,
                port: 80,
            }],
            spread: Spread::RoundRobin,
            arrival,
            requests_per_connection: 1,
            rtt: Dist::Fixed(Duration::from_micros(100)),
            service_time: Dist::Fixed(Duration::ZERO),
            request_bytes: 100,
            closer: Closer::Client,
            linger_zero: false,
            mode: Mode::Connect,
            reuseaddr: false,
            local_port_range: None,
            on_error: OnError::Count {
                delay: Duration::from_millis(1),
            },
            start: Instant::ZERO,
            stop: Instant(Duration::from_secs(10).0),
            limit: Limit::default(),
            threads: None,
            pool: None,
        }
    }

    fn runner(w: &Workload) -> Runner {
        Runner::new(w, stream(1, "a"), stream(1, "b"), stream(1, "c"))
    }

    #[test]
    fn a_busy_thread_makes_its_other_slots_wait_in_order() {
        let at = |us| Instant(Duration::from_micros(us).0);
        let mut t = Threads::new(1);
        assert_eq!(t.admit(0, 0, at(0)), Admit::Now { since: at(0) });
        assert_eq!(t.release(0, at(10)), None);
        // Slots 1 and 2 ask while slot 0 searches: 1 is queued for when the thread is free.
        assert_eq!(t.admit(1, 0, at(2)), Admit::Wait(Some(at(10))));
        assert_eq!(t.admit(2, 0, at(3)), Admit::Wait(None));
        // At 10 slot 2 is not first: it waits on; slot 1 runs, asked at 2.
        assert_eq!(t.admit(1, 0, at(10)), Admit::Now { since: at(2) });
        assert_eq!(t.release(1, at(25)), Some((2, 0)));
        assert_eq!(t.admit(2, 0, at(25)), Admit::Now { since: at(3) });
        assert_eq!(t.release(2, at(30)), None);
        assert_eq!(t.admit(0, 0, at(40)), Admit::Now { since: at(40) });
        // A thread per slot: nothing waits.
        let mut free = Threads::new(0);
        assert_eq!(free.admit(5, 0, at(1)), Admit::Now { since: at(1) });
        assert_eq!(free.release(5, at(100)), None);
        assert_eq!(free.admit(6, 0, at(2)), Admit::Now { since: at(2) });
    }

    #[test]
    fn round_ns_is_round() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut cases = vec![
            0.0,
            0.5,
            1.5,
            2.5,
            0.49999999999999994,
            -0.3,
            -0.7,
            4.5e15 + 0.5,
        ];
        cases.extend([f64::NAN, 1e300, 2f64.powi(53) - 0.5, 2f64.powi(64), -1e30]);
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            cases.push(f64::from_bits(x >> 2) % 1e13);
        }
        for c in cases {
            assert_eq!(round_ns(c), c.round() as u64, "{c}");
        }
    }

    #[test]
    fn constant_rate_arrivals_are_exact() {
        let w = workload(Arrival::Constant(Rate::parse_decimal("500").unwrap()));
        let mut r = runner(&w);
        let times: Vec<_> = std::iter::from_fn(|| r.next_arrival(&w)).collect();
        assert_eq!(times.len(), 5000);
        assert_eq!(times[1].0, 2_000_000);
        assert_eq!(times[4999].0, 9_998_000_000);
    }

    #[test]
    fn fractional_rates_do_not_drift() {
        let r = Rate::parse_decimal("272.5").unwrap();
        assert_eq!(r, Rate { num: 2725, den: 10 });
        // 2725 arrivals in exactly 10 s: the 2725th (index 2725) falls at 10 s.
        assert_eq!(r.nth(2725), Duration::from_secs(10));
    }

    #[test]
    fn poisson_counts_match_the_rate() {
        let w = workload(Arrival::Poisson(Rate::parse_decimal("1000").unwrap()));
        let mut r = runner(&w);
        let n = std::iter::from_fn(|| r.next_arrival(&w)).count();
        // Mean 10,000, standard deviation 100: within 5 sigma.
        assert!((9_500..=10_500).contains(&n), "{n}");
    }

    #[test]
    fn steps_change_the_rate_at_their_offsets() {
        let w = workload(Arrival::Steps {
            steps: vec![
                (Duration::ZERO, Rate::parse_decimal("100").unwrap()),
                (Duration::from_secs(5), Rate::parse_decimal("0").unwrap()),
                (Duration::from_secs(8), Rate::parse_decimal("10").unwrap()),
            ],
            poisson: false,
        });
        let mut r = runner(&w);
        let times: Vec<_> = std::iter::from_fn(|| r.next_arrival(&w)).collect();
        assert_eq!(times.len(), 500 + 20);
        assert!(
            times
                .iter()
                .all(|t| t.0 < 5_000_000_000 || t.0 >= 8_000_000_000)
        );
    }
}
