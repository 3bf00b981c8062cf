//! What a run measured: counters, binned time series, latency distributions, and their
//! renderings as JSON (stable schema `portsim.report/1`), CSV and a terminal summary.
//!
//! Series are binned while the run produces them, so memory grows with the number of bins,
//! never with the number of connections.

use crate::host::Errno;
use crate::time::{Duration, Instant};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Values kept exactly up to this many distinct values, then in log buckets.
const EXACT_LIMIT: usize = 2048;
/// Log buckets: 2^7 per power of two, so a bucket spans under 0.8 % of its value.
const SUB_BITS: u32 = 7;

/// A distribution of non-negative integers (latencies in ns, probe counts).
///
/// Exact while it holds at most 2,048 distinct values (fixed RTTs give a handful); beyond
/// that, log-linear buckets under 0.8 % wide. Percentiles use the nearest-rank definition.
#[derive(Clone, Debug, Default)]
pub struct Hist {
    /// Counts by value while exact (sorted when read).
    map: crate::host::Table<u64, u64>,
    /// Counts by bucket once bucketed (a bucket number is below 7,424).
    dense: Vec<u64>,
    /// Records of the most recent key not yet added to `map` (none once bucketed): a run of
    /// equal values (a fixed RTT gives millions) costs a compare and an add instead of a
    /// tree lookup each.
    pending: (u64, u64),
    bucketed: bool,
    count: u64,
    sum: u128,
    min: u64,
    max: u64,
}

fn bucket_of(v: u64) -> u64 {
    if v < (1 << SUB_BITS) {
        return v;
    }
    let e = 63 - v.leading_zeros();
    let m = (v >> (e - SUB_BITS)) & ((1 << SUB_BITS) - 1);
    (u64::from(e - SUB_BITS + 1) << SUB_BITS) | m
}

fn bucket_mid(b: u64) -> u64 {
    if b < (1 << SUB_BITS) {
        return b;
    }
    let e = (b >> SUB_BITS) as u32 + SUB_BITS - 1;
    let m = b & ((1 << SUB_BITS) - 1);
    let lo = (1u64 << e) | (m << (e - SUB_BITS));
    lo + (1u64 << (e - SUB_BITS)) / 2
}

impl Hist {
    #[inline]
    pub fn record(&mut self, v: u64) {
        self.record_n(v, 1);
    }

    /// Records `v` `n` times, exactly as `n` calls of [`Hist::record`] would.
    #[inline(always)]
    pub fn record_n(&mut self, v: u64, n: u64) {
        if n == 0 {
            return;
        }
        if self.count == 0 || v < self.min {
            self.min = v;
        }
        self.max = self.max.max(v);
        self.count += n;
        self.sum += u128::from(v) * u128::from(n);
        if self.bucketed {
            // Nothing is pending once bucketed: an add costs an index.
            self.add_bucket(bucket_of(v), n);
            return;
        }
        if self.pending.1 > 0 && self.pending.0 == v {
            self.pending.1 += n;
            return;
        }
        self.settle();
        // The pending key counts toward the exact limit, so that the switch to buckets
        // depends on the values recorded, not on their order.
        if !self.bucketed && self.map.len() >= EXACT_LIMIT && !self.map.contains_key(&v) {
            self.rebucket();
        }
        if self.bucketed {
            self.add(bucket_of(v), n);
        } else {
            self.pending = (v, n);
        }
    }

    /// Moves the pending run into the map, switching to buckets past the exact limit.
    fn settle(&mut self) {
        let (k, n) = std::mem::take(&mut self.pending);
        if n == 0 {
            return;
        }
        self.add(k, n);
    }

    /// Adds `n` to key `k` (a value, or a bucket once bucketed), switching to buckets past
    /// the exact limit.
    fn add(&mut self, k: u64, n: u64) {
        if self.bucketed {
            self.add_bucket(k, n);
            return;
        }
        *self.map.entry(k).or_insert(0) += n;
        if self.map.len() > EXACT_LIMIT {
            self.rebucket();
        }
    }

    /// Adds `n` to bucket `b`.
    #[inline]
    fn add_bucket(&mut self, b: u64, n: u64) {
        let i = b as usize;
        if self.dense.len() <= i {
            self.dense.resize(i + 1, 0);
        }
        self.dense[i] += n;
    }

    /// The stored (key, count) pairs in key order.
    fn stored(&self) -> Box<dyn Iterator<Item = (u64, u64)> + '_> {
        if self.bucketed {
            Box::new(
                self.dense
                    .iter()
                    .enumerate()
                    .filter(|(_, n)| **n > 0)
                    .map(|(k, n)| (k as u64, *n)),
            )
        } else {
            let mut v: Vec<(u64, u64)> = self.map.iter().map(|(k, n)| (*k, *n)).collect();
            v.sort_unstable();
            Box::new(v.into_iter())
        }
    }

    /// The (key, count) pairs in key order, the pending run included.
    fn entries(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        let (pk, pn) = self.pending;
        let present = if self.bucketed {
            self.dense.get(pk as usize).is_some_and(|n| *n > 0)
        } else {
            self.map.contains_key(&pk)
        };
        let mut extra = (pn > 0 && !present).then_some((pk, pn));
        let mut it = self.stored().peekable();
        std::iter::from_fn(move || {
            let next = it.peek().copied();
            match (next, extra) {
                (Some((k, _)), Some((ek, en))) if ek < k => {
                    extra = None;
                    Some((ek, en))
                }
                (Some((k, n)), _) => {
                    it.next();
                    Some((k, if pn > 0 && k == pk { n + pn } else { n }))
                }
                (None, e) => {
                    extra = None;
                    e
                }
            }
        })
    }

    /// Switches from exact values to log-linear buckets.
    fn rebucket(&mut self) {
        let mut old: Vec<(u64, u64)> = std::mem::take(&mut self.map).into_iter().collect();
        old.sort_unstable();
        self.bucketed = true;
        for (v, n) in old {
            self.add(bucket_of(v), n);
        }
        let (v, n) = std::mem::take(&mut self.pending);
        if n > 0 {
            self.add(bucket_of(v), n);
        }
    }

    /// Adds every value of `other`.
    pub fn merge(&mut self, other: &Hist) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 || other.min < self.min {
            self.min = other.min;
        }
        self.max = self.max.max(other.max);
        self.count += other.count;
        self.sum += other.sum;
        self.settle();
        if other.bucketed && !self.bucketed {
            self.rebucket();
        }
        for (k, n) in other.entries() {
            let k = if self.bucketed && !other.bucketed {
                bucket_of(k)
            } else {
                k
            };
            self.add(k, n);
        }
    }
    pub fn count(&self) -> u64 {
        self.count
    }
    pub fn max(&self) -> u64 {
        self.max
    }
    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum as f64 / self.count as f64
        }
    }
    /// Nearest-rank percentile, `q` in (0, 1].
    pub fn percentile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for (k, n) in self.entries() {
            seen += n;
            if seen >= rank {
                let v = if self.bucketed { bucket_mid(k) } else { k };
                return v.clamp(self.min, self.max);
            }
        }
        self.max
    }
}

/// Lifetimes: exact extremes, and counts per millisecond for the median.
#[derive(Clone, Debug, Default)]
pub struct Lifetimes {
    min: Option<Duration>,
    max: Duration,
    /// Counts per millisecond from `base_ms`.
    per_ms: Vec<u64>,
    base_ms: u64,
    count: u64,
}

impl Lifetimes {
    #[inline]
    pub fn add(&mut self, d: Duration) {
        self.min = Some(self.min.map_or(d, |m| m.min(d)));
        self.max = self.max.max(d);
        let ms = d.0 / 1_000_000;
        if self.per_ms.is_empty() {
            self.base_ms = ms;
        } else if ms < self.base_ms {
            let mut grown = vec![0; (self.base_ms - ms) as usize];
            grown.append(&mut self.per_ms);
            self.per_ms = grown;
            self.base_ms = ms;
        }
        let i = (ms - self.base_ms) as usize;
        if i >= self.per_ms.len() {
            self.per_ms.resize(i + 1, 0);
        }
        self.per_ms[i] += 1;
        self.count += 1;
    }

    /// `{count, min, p50, max}` in seconds; the median to the millisecond below it.
    pub fn summary(&self) -> Option<DurationSummary> {
        let min = self.min?;
        let half = self.count.div_ceil(2);
        let mut seen = 0;
        let p50_ms = self.per_ms.iter().enumerate().find_map(|(i, &n)| {
            seen += n;
            (seen >= half).then_some(self.base_ms + i as u64)
        })?;
        Some(DurationSummary {
            count: self.count,
            min: min.as_secs_f64(),
            p50: (p50_ms as f64 / 1e3).max(min.as_secs_f64()),
            max: self.max.as_secs_f64(),
        })
    }
}

/// The spread of a set of durations, in seconds.
#[derive(Serialize, Debug, Clone, Copy, PartialEq)]
pub struct DurationSummary {
    pub count: u64,
    pub min: f64,
    pub p50: f64,
    pub max: f64,
}

/// Kernel-side counters, named after the Linux MIB counters where one exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// `TIMEWAITRECYCLED`: connect() took over a TIME-WAIT four-tuple (tw_reuse or bound port).
    TwRecycled,
    /// `TCPTimeWaitOverflow`: a close found `tcp_max_tw_buckets` full and skipped TIME-WAIT.
    TwOverflow,
    /// A SYN reopened a server-side TIME-WAIT four-tuple (RFC 1122 §4.2.2.13).
    TwSynAccepted,
    /// A SYN found a TIME-WAIT four-tuple that refused it (ACK, or a silent drop on FreeBSD).
    TwSynRejected,
    /// The client's RST answering that ACK killed the TIME-WAIT (`tcp_rfc1337 = 0`).
    TwKilledByRst,
    /// An active close toward a local address skipped TIME-WAIT (FreeBSD
    /// `net.inet.tcp.nolocaltimewait`, §3.2).
    TwSkippedLocal,
    /// A SYN found a live socket on its four-tuple (challenge ACK).
    SynOnLiveSocket,
    /// SYNs retransmitted.
    SynRetransmits,
    /// Connections closed with RST by SO_LINGER {on, 0}.
    LingerResets,
    /// TIME-WAIT entries that ran their full length.
    TwExpired,
    /// A SYN that PAWS rejected restarted a TIME-WAIT's timer (Linux
    /// `inet_twsk_reschedule`, `PAWSTimewait` counts the rejections).
    TwRearmed,
    /// `TCPACKSkippedTimeWait`: a refused SYN got no ACK, one was sent within
    /// `tcp_invalid_ratelimit`.
    TwAckRateLimited,
}

impl Counter {
    pub const ALL: [Counter; 12] = [
        Counter::TwRecycled,
        Counter::TwOverflow,
        Counter::TwSynAccepted,
        Counter::TwSynRejected,
        Counter::TwKilledByRst,
        Counter::TwSkippedLocal,
        Counter::SynOnLiveSocket,
        Counter::SynRetransmits,
        Counter::LingerResets,
        Counter::TwExpired,
        Counter::TwRearmed,
        Counter::TwAckRateLimited,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Counter::TwRecycled => "tw_recycled",
            Counter::TwOverflow => "tw_overflow",
            Counter::TwSynAccepted => "tw_syn_accepted",
            Counter::TwSynRejected => "tw_syn_rejected",
            Counter::TwKilledByRst => "tw_killed_by_rst",
            Counter::TwSkippedLocal => "tw_skipped_local",
            Counter::SynOnLiveSocket => "syn_on_live_socket",
            Counter::SynRetransmits => "syn_retransmits",
            Counter::LingerResets => "linger_resets",
            Counter::TwExpired => "tw_expired",
            Counter::TwRearmed => "tw_rearmed",
            Counter::TwAckRateLimited => "tw_ack_rate_limited",
        }
    }
}

/// Gauges sampled at the end of each bin.
#[derive(Clone, Debug, Default)]
pub struct Gauges {
    pub time_wait_client: u32,
    pub time_wait_server: u32,
    pub established_client: u32,
    pub established_server: u32,
    pub free_ports: Vec<u32>,
    /// Per NAT, in the scenario's order.
    pub nat: Vec<crate::nat::NatGauges>,
}

#[derive(Clone, Debug, Default)]
struct BinAcc {
    attempts: u64,
    established: u64,
    failed: [u64; 3],
    requests: u64,
    latency: Hist,
    probes: Tally,
}

/// Counts by value, exact, for small values such as probe counts: a record costs an index
/// where a [`Hist`] costs a table lookup. Read as the [`Hist`] of the same values, which
/// depends only on the values recorded, not on their order.
#[derive(Clone, Debug, Default)]
pub struct ByValue {
    counts: Vec<u64>,
    /// Values from [`BY_VALUE_LIMIT`] up.
    large: Hist,
}

/// Values below this are counted in [`ByValue::counts`] (at most 8 MiB of counts).
const BY_VALUE_LIMIT: u64 = 1 << 20;

impl ByValue {
    #[inline]
    pub fn record_n(&mut self, v: u64, n: u64) {
        match self.counts.get_mut(v as usize) {
            Some(c) => *c += n,
            None => self.record_new(v, n),
        }
    }

    #[cold]
    fn record_new(&mut self, v: u64, n: u64) {
        if v < BY_VALUE_LIMIT {
            self.counts.resize(v as usize + 1, 0);
            self.counts[v as usize] += n;
        } else {
            self.large.record_n(v, n);
        }
    }

    /// The histogram of the values recorded.
    pub fn hist(&self) -> Hist {
        let mut h = self.large.clone();
        for (v, &n) in self.counts.iter().enumerate() {
            h.record_n(v as u64, n);
        }
        h
    }
}

/// Count, sum and largest of the values recorded: all a bin reports of its probe counts.
#[derive(Clone, Copy, Debug, Default)]
struct Tally {
    count: u64,
    sum: u128,
    max: u64,
}

impl Tally {
    #[inline]
    fn record_n(&mut self, v: u64, n: u64) {
        if n > 0 {
            self.count += n;
            self.sum += u128::from(v) * u128::from(n);
            self.max = self.max.max(v);
        }
    }
    /// The mean as [`Hist::mean`] computes it.
    fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum as f64 / self.count as f64
        }
    }
}

/// Per-workload totals.
#[derive(Clone, Debug, Default)]
pub struct WorkloadTotals {
    pub attempted: u64,
    pub established: u64,
    pub failed: [u64; 3],
    pub retries: u64,
    pub requests_completed: u64,
    pub requests_failed: u64,
    pub first_failure: Option<Instant>,
    pub stopped_at: Option<Instant>,
    /// CPU time its port searches held its threads ([`crate::profile::ConnectCost`]).
    pub port_search_cpu: Duration,
}

/// Collects measurements while the simulation runs.
pub struct Recorder {
    pub bin: Duration,
    pub bin_end: Instant,
    acc: BinAcc,
    bins: Vec<Bin>,
    pub workloads: Vec<WorkloadTotals>,
    /// Connect latency of the whole run, merged from each bin as it closes.
    pub latency: Hist,
    /// Request latency as a load generator measures it: from the application's connect() (or
    /// the previous response, on a kept-alive connection) to the response.
    pub request_latency: Hist,
    /// Ports probed per connect().
    pub probes: ByValue,
    pub counters: [u64; Counter::ALL.len()],
    pub tw_peak: u32,
    pub tw_peak_client: u32,
    pub tw_peak_server: u32,
    pub unprotected_reuse: u64,
    /// When the first TIME-WAIT ran its full length and ended.
    pub first_tw_expiry: Option<Instant>,
    /// How long the TIME-WAITs that ran their full length lasted.
    pub tw_lifetimes: Lifetimes,
    /// Connects established after a SYN retransmission, and their connect time in all.
    pub stalled: u64,
    pub stall: Duration,
}

impl Recorder {
    pub fn new(bin: Duration, workloads: usize) -> Self {
        Recorder {
            bin,
            bin_end: Instant::ZERO + bin,
            acc: BinAcc::default(),
            bins: Vec::new(),
            workloads: vec![WorkloadTotals::default(); workloads],
            latency: Hist::default(),
            request_latency: Hist::default(),
            probes: ByValue::default(),
            counters: [0; Counter::ALL.len()],
            tw_peak: 0,
            tw_peak_client: 0,
            tw_peak_server: 0,
            unprotected_reuse: 0,
            first_tw_expiry: None,
            tw_lifetimes: Lifetimes::default(),
            stalled: 0,
            stall: Duration::ZERO,
        }
    }
    pub fn attempt(&mut self, wl: usize, retry: bool) {
        self.acc.attempts += 1;
        let w = &mut self.workloads[wl];
        w.attempted += 1;
        w.retries += u64::from(retry);
    }
    pub fn probes(&mut self, n: u32) {
        self.acc.probes.record_n(u64::from(n), 1);
        self.probes.record_n(u64::from(n), 1);
    }
    /// `n` failed attempts of workload `wl` at once, each probing `probes` ports: what `n`
    /// calls of `attempt`, `probes` and `failed` record (the first failure is already set).
    pub fn failed_attempts(&mut self, wl: usize, retry: bool, errno: Errno, probes: u32, n: u64) {
        self.acc.attempts += n;
        self.acc.failed[errno.index()] += n;
        self.acc.probes.record_n(u64::from(probes), n);
        self.probes.record_n(u64::from(probes), n);
        let w = &mut self.workloads[wl];
        w.attempted += n;
        w.retries += if retry { n } else { 0 };
        w.failed[errno.index()] += n;
    }
    pub fn established(&mut self, wl: usize, latency: Duration) {
        self.established_n(wl, latency, 1);
    }
    /// `n` connections established, each after `latency`.
    pub fn established_n(&mut self, wl: usize, latency: Duration, n: u64) {
        self.acc.established += n;
        self.acc.latency.record_n(latency.0, n);
        self.workloads[wl].established += n;
    }
    pub fn failed(&mut self, now: Instant, wl: usize, errno: Errno) {
        self.acc.failed[errno.index()] += 1;
        let w = &mut self.workloads[wl];
        w.failed[errno.index()] += 1;
        w.first_failure.get_or_insert(now);
    }
    pub fn request_done(&mut self, wl: usize, latency: Duration) {
        self.requests_done_n(wl, latency, 1);
    }
    /// `n` requests completed, each after `latency`.
    pub fn requests_done_n(&mut self, wl: usize, latency: Duration, n: u64) {
        self.request_latency.record_n(latency.0, n);
        self.acc.requests += n;
        self.workloads[wl].requests_completed += n;
    }
    /// A connect established after `latency`, past at least one SYN retransmission.
    pub fn stalled(&mut self, latency: Duration) {
        self.stalled += 1;
        self.stall = self.stall + latency;
    }
    pub fn request_failed(&mut self, wl: usize) {
        self.workloads[wl].requests_failed += 1;
    }
    pub fn count(&mut self, c: Counter) {
        self.counters[c as usize] += 1;
    }
    /// A TIME-WAIT's timer ended it after `lived`.
    #[inline]
    pub fn time_wait_ended(&mut self, lived: Duration) {
        self.tw_lifetimes.add(lived);
    }
    pub fn time_wait(&mut self, client: u32, server: u32) {
        self.tw_peak = self.tw_peak.max(client + server);
        self.tw_peak_client = self.tw_peak_client.max(client);
        self.tw_peak_server = self.tw_peak_server.max(server);
    }
    /// Closes the current bin with the gauges as they stand at its end.
    pub fn close_bin(&mut self, end: Instant, g: Gauges) {
        let acc = std::mem::take(&mut self.acc);
        // The run's connect latencies are the union of the bins'.
        self.latency.merge(&acc.latency);
        let start = Instant(self.bins.len() as u64 * self.bin.0);
        let width = (end.0 - start.0) as f64 / 1e9;
        let lat = |q| acc.latency.percentile(q) as f64 / 1e6;
        self.bins.push(Bin {
            t_s: start.as_secs_f64(),
            attempts: acc.attempts,
            established: acc.established,
            failed: errors_map(&acc.failed),
            established_per_s: if width > 0.0 {
                acc.established as f64 / width
            } else {
                0.0
            },
            requests_completed: acc.requests,
            time_wait_client: g.time_wait_client,
            time_wait_server: g.time_wait_server,
            established_sockets_client: g.established_client,
            established_sockets_server: g.established_server,
            free_ports_min: g.free_ports.iter().copied().min(),
            free_ports: g.free_ports,
            connect_latency_ms: (acc.latency.count() > 0).then(|| Percentiles {
                p50: lat(0.5),
                p99: lat(0.99),
                max: acc.latency.max() as f64 / 1e6,
            }),
            probes_per_connect: (acc.probes.count > 0).then(|| ProbeStats {
                mean: round3(acc.probes.mean()),
                max: acc.probes.max,
            }),
            nat_ports_in_use: g.nat.iter().map(|n| n.ports_in_use).collect(),
            conntrack_entries: g.nat.iter().map(|n| n.entries).collect(),
            conntrack_states: g.nat.iter().map(|n| n.states()).collect(),
        });
        self.bin_end = Instant(end.0 + self.bin.0);
    }
    pub fn into_bins(self) -> Vec<Bin> {
        self.bins
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Error kind (by its Linux name) → count, for the kinds that occurred. Series and CSV
/// columns use these kind names whatever the kernel.
pub fn errors_map(counts: &[u64; 3]) -> BTreeMap<&'static str, u64> {
    Errno::ALL
        .iter()
        .filter(|e| counts[e.index()] > 0)
        .map(|e| (e.kind(), counts[e.index()]))
        .collect()
}

/// Error name → count under a kernel's own names (`WSAENOBUFS`, or `EADDRNOTAVAIL` = 49 on
/// BSD), adding into `into`; `numbers` collects each name's number.
pub fn add_named_errors(
    counts: &[u64; 3],
    names: &[(&'static str, u16); 3],
    into: &mut BTreeMap<&'static str, u64>,
    numbers: &mut BTreeMap<&'static str, u16>,
) {
    for e in Errno::ALL {
        let n = counts[e.index()];
        if n > 0 {
            let (name, num) = names[e.index()];
            *into.entry(name).or_default() += n;
            numbers.insert(name, num);
        }
    }
}

// ---- the report ---------------------------------------------------------------------

/// The full report (`--format json`). Field order is the schema's order.
#[derive(Serialize, Debug)]
pub struct Report {
    pub schema: &'static str,
    pub portsim_version: &'static str,
    pub scenario: ScenarioInfo,
    pub seed: u64,
    pub duration_s: f64,
    pub bin_s: f64,
    pub hosts: Vec<HostInfo>,
    pub pools: Vec<PoolInfo>,
    /// The NATs on the paths, in the scenario's order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nat: Vec<NatInfo>,
    pub summary: Summary,
    pub workloads: Vec<WorkloadSummary>,
    pub series: Vec<Bin>,
    /// A replicated run's distributions over its seeds (`--seeds A..B`); the rest of the
    /// report is the first seed's run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicates: Option<crate::replicate::Replicates>,
    /// How fast the engine ran (`portsim run --stats`): wall time varies between runs, so
    /// it is in the report only when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stats: Option<Stats>,
}

/// A NAT on the path: its limits, peaks and what it dropped.
#[derive(Serialize, Debug, Clone)]
pub struct NatInfo {
    pub name: String,
    pub profile: String,
    pub ips: Vec<String>,
    /// The hosts behind it.
    pub behind: Vec<String>,
    /// Ports per address toward one destination (address and port): its range's size.
    pub ports: u32,
    /// Peak of distinct (address, port) pairs held.
    pub allocated_peak: u64,
    pub entries_peak: u64,
    /// SYNs dropped, by reason.
    pub drops: BTreeMap<&'static str, u64>,
    /// `conntrack -S`'s counters (`insert_failed`, `drop`, `early_drop`) and the model's
    /// (`evicted`, `reopened`, `invalid`).
    pub counters: BTreeMap<&'static str, u64>,
    pub knobs: BTreeMap<String, String>,
    /// What follows from UNVERIFIED parameters.
    pub assumptions: Vec<String>,
    /// A cloud gateway that gives each VM its own ports: how many at start, the most one
    /// VM held (dynamic allocation grows them) and the VMs the addresses left without any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ports_per_vm: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ports_per_vm_peak: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vms_without_ports: Option<u64>,
}

/// Engine throughput for one run.
#[derive(Serialize, Debug, Clone)]
pub struct Stats {
    pub events: u64,
    pub attempts: u64,
    pub wall_s: f64,
    pub attempts_per_s: f64,
}

impl Stats {
    pub fn text(&self) -> String {
        format!(
            "stats         {} events · {} attempts · {:.3} s wall · {} attempts/s",
            group(self.events),
            group(self.attempts),
            self.wall_s,
            group(self.attempts_per_s.round() as u64)
        )
    }
}

#[derive(Serialize, Debug)]
pub struct ScenarioInfo {
    pub name: String,
    pub file: String,
    pub description: String,
}

#[derive(Serialize, Debug)]
pub struct HostInfo {
    /// A fleet's (`count` > 1) name, for its one entry.
    pub name: String,
    pub profile: String,
    #[serde(skip)]
    pub kernel: crate::profile::Kernel,
    /// A fleet's first instance's; instance k has each plus k − 1.
    pub ips: Vec<String>,
    /// A fleet's `count`; absent for a single host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instances: Option<u32>,
    pub listen: Vec<String>,
    pub knobs: BTreeMap<String, String>,
}

/// A pool of ports: `connect` pools are (source IP → destination), shared by four-tuple;
/// `bind` pools are a source IP's exclusive ports (bind(ip, 0) and explicit binds).
///
/// A fleet's pools (one per instance) are one entry per (fleet, source address as the
/// fleet's `ips` writes it, destination): `host` names the fleet, `instances` is its count,
/// `source` the first to the last instance's address; `ports`, `time_wait_s` and
/// `formula_limit_per_s` are one instance's (each has its own pool), `established`,
/// `achieved_per_s` and `sustained_per_s` the totals over the instances, and `per_instance`
/// their spread.
#[derive(Serialize, Debug, Clone)]
pub struct PoolInfo {
    pub kind: &'static str,
    pub host: String,
    /// The fleet's count, on a fleet's entry; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instances: Option<u32>,
    pub source: String,
    pub destination: Option<String>,
    pub ports: u32,
    pub time_wait_s: f64,
    /// `ports / TIME_WAIT`: the seed's sustainable churn when the client closes first.
    pub formula_limit_per_s: f64,
    pub established: u64,
    pub achieved_per_s: f64,
    /// Established per second over the sustained window: the last whole TIME_WAIT periods
    /// of the run's second half (none when the run is too short to have one).
    pub sustained_per_s: Option<f64>,
    /// On a fleet's entry: `established`, `achieved_per_s` and `sustained_per_s` of one
    /// instance's pool, their least, mean and most over the instances.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_instance: Option<PerInstancePool>,
    /// The ports this pool handed out (`portsim run --ports`; on a fleet's entry, the first
    /// instance's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port_use: Option<PortUse>,
}

/// A fleet's pool entry, instance by instance ([`PoolInfo::per_instance`]).
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct PerInstancePool {
    pub established: MinMeanMax,
    pub achieved_per_s: MinMeanMax,
    /// Null when the run is too short for the sustained window.
    pub sustained_per_s: Option<MinMeanMax>,
}

/// The least, mean and most of one number over a fleet's instances.
#[derive(Serialize, Debug, Clone, Copy, PartialEq)]
pub struct MinMeanMax {
    pub min: f64,
    pub mean: f64,
    pub max: f64,
}

impl MinMeanMax {
    /// Of `counts`, each divided by `per` (1 for the counts themselves, seconds for a rate);
    /// `None` when there are none.
    pub fn of(counts: &[u64], per: f64) -> Option<MinMeanMax> {
        let (min, max) = (counts.iter().min()?, counts.iter().max()?);
        let sum: u64 = counts.iter().sum();
        Some(MinMeanMax {
            min: *min as f64 / per,
            mean: sum as f64 / counts.len() as f64 / per,
            max: *max as f64 / per,
        })
    }
}

/// Ports handed out first, kept in order.
pub const FIRST_PORTS: usize = 1000;
/// Most bars of a port histogram.
const PORT_BARS: u32 = 64;

/// The ports a pool handed out, to set against `ss` or a capture: the first
/// [`FIRST_PORTS`] in the order connect() or bind() took them, each port's parity, and how
/// many connections each stretch of the range carried.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct PortUse {
    pub first: Vec<u16>,
    pub even: u64,
    pub odd: u64,
    pub histogram: PortHistogram,
}

/// Connections by port: bar `k` counts ports `low + k·width` to `low + (k+1)·width − 1`.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct PortHistogram {
    pub low: u16,
    pub width: u32,
    pub counts: Vec<u64>,
}

impl PortUse {
    /// An empty record for a pool whose ports lie in `low..=high`.
    pub fn new(low: u16, high: u16) -> PortUse {
        let span = u32::from(high.max(low) - low) + 1;
        let width = span.div_ceil(PORT_BARS);
        PortUse {
            first: Vec::new(),
            even: 0,
            odd: 0,
            histogram: PortHistogram {
                low,
                width,
                counts: vec![0; span.div_ceil(width) as usize],
            },
        }
    }

    /// One connection took `port`.
    pub fn record(&mut self, port: u16) {
        if self.first.len() < FIRST_PORTS {
            self.first.push(port);
        }
        if port.is_multiple_of(2) {
            self.even += 1;
        } else {
            self.odd += 1;
        }
        let h = &mut self.histogram;
        let bar = (u32::from(port.saturating_sub(h.low)) / h.width) as usize;
        let last = h.counts.len() - 1;
        h.counts[bar.min(last)] += 1;
    }
}

#[derive(Serialize, Debug)]
pub struct Summary {
    pub connections: Connections,
    /// Failed connects by the error name the client's kernel uses.
    pub errors: BTreeMap<&'static str, u64>,
    /// The number of each error name (Linux EADDRNOTAVAIL 99, BSD 49, Windows WSAENOBUFS 10055).
    pub error_numbers: BTreeMap<&'static str, u16>,
    pub requests: Requests,
    pub first_failure_s: Option<f64>,
    pub time_wait: TimeWaitSummary,
    pub connect_latency_ms: LatencySummary,
    /// Completed requests, from connect() (or the previous response) to the response: what
    /// `oha`, `wrk` or `httperf` print as request latency. Requests still waiting at the end
    /// are not in it.
    pub request_latency_ms: LatencySummary,
    pub probes_per_connect: ProbeSummary,
    pub kernel_counters: BTreeMap<&'static str, u64>,
    /// Connections that reused a four-tuple within TIME-WAIT of its last use, when that use
    /// ended with no TIME-WAIT (SO_LINGER 0 or `tcp_max_tw_buckets` overflow): the seed's
    /// "silent data corruption" exposure.
    pub unprotected_reuse: u64,
}

#[derive(Serialize, Debug)]
pub struct Connections {
    pub attempted: u64,
    pub established: u64,
    pub failed: u64,
    pub in_flight: u64,
    pub retries: u64,
    /// Connects slower than the kernel's first SYN retransmission: established after one, or
    /// still waiting at the end having sent one (failed ones are in `failed`).
    pub stalled: u64,
    /// The time those connects spent from connect() until established (or the end).
    pub stall_s: f64,
}

#[derive(Serialize, Debug)]
pub struct Requests {
    pub completed: u64,
    pub failed: u64,
}

#[derive(Serialize, Debug)]
pub struct TimeWaitSummary {
    pub peak: u32,
    pub at_end: u32,
    pub peak_client: u32,
    pub peak_server: u32,
    /// When the first TIME-WAIT expired: from then on, ports come back.
    pub first_expiry_s: Option<f64>,
    /// How long the TIME-WAITs whose timer ended them lasted, entry to expiry: TIME_WAIT,
    /// rounded by the kernel's timer wheel (`tw_timer`). Those a SYN, an RST or
    /// `tcp_tw_reuse` ended early are not in it.
    pub duration_s: Option<DurationSummary>,
}

#[derive(Serialize, Debug)]
pub struct LatencySummary {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

#[derive(Serialize, Debug)]
pub struct ProbeSummary {
    pub mean: f64,
    pub p99: u64,
    pub max: u64,
}

#[derive(Serialize, Debug)]
pub struct WorkloadSummary {
    pub name: String,
    pub attempted: u64,
    pub established: u64,
    pub failed: u64,
    pub errors: BTreeMap<&'static str, u64>,
    pub retries: u64,
    pub requests_completed: u64,
    pub requests_failed: u64,
    pub first_failure_s: Option<f64>,
    pub stopped_s: Option<f64>,
    /// CPU time its connect() and bind() port searches took, in seconds; absent when the
    /// profile gives them no cost.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port_search_cpu_s: Option<f64>,
    /// What its client pool did (`[workload.pool]`, `[workload.library]`); absent without one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pool: Option<PoolSummary>,
}

/// A client pool's connections and requests (`src/sim/pool.rs`): counted as the pool
/// decides, not at the kernel.
#[derive(Serialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolCounts {
    /// Connections the pool opened (connect() gave a port).
    pub opened: u64,
    /// Requests answered on its connections.
    pub requests: u64,
    /// Requests that waited for a connection (`max_conns_per_host`).
    pub waited: u64,
    /// Closed by the client: the idle list was full (per host, or the global `max_idle`).
    pub closed_idle_full: u64,
    /// Closed by the client at its idle timeout.
    pub closed_idle_timeout: u64,
    /// Closed by the client at their lifetime.
    pub closed_lifetime: u64,
    /// Closed by the server (keep-alive timeout or requests, or keep-alive off with the
    /// server closing): server TIME-WAIT.
    pub closed_by_server: u64,
    /// Closed by the client after one request, keep-alive off.
    pub closed_no_keep_alive: u64,
}

/// [`PoolCounts`] with the reuse ratio.
#[derive(Serialize, Debug, Clone, Copy, PartialEq)]
pub struct PoolSummary {
    #[serde(flatten)]
    pub counts: PoolCounts,
    /// Requests per connection opened (0 when none was).
    pub requests_per_connection: f64,
}

impl PoolSummary {
    pub fn of(counts: PoolCounts) -> PoolSummary {
        let ratio = if counts.opened == 0 {
            0.0
        } else {
            counts.requests as f64 / counts.opened as f64
        };
        PoolSummary {
            counts,
            requests_per_connection: ratio,
        }
    }

    /// The text report's line.
    pub fn line(&self, name: &str) -> String {
        let c = &self.counts;
        format!(
            "pool          {name}: {} opened · {} requests · {:.2} requests/connection · client \
             closed {} idle-full, {} idle-timeout, {} lifetime, {} no-keep-alive · server closed {}{}",
            group(c.opened),
            group(c.requests),
            self.requests_per_connection,
            group(c.closed_idle_full),
            group(c.closed_idle_timeout),
            group(c.closed_lifetime),
            group(c.closed_no_keep_alive),
            group(c.closed_by_server),
            if c.waited > 0 {
                format!(" · {} waited", group(c.waited))
            } else {
                String::new()
            }
        )
    }
}

#[derive(Serialize, Debug, Clone)]
pub struct Percentiles {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

#[derive(Serialize, Debug, Clone)]
pub struct ProbeStats {
    pub mean: f64,
    pub max: u64,
}

/// One bin of the time series: counts of events in `[t_s, t_s + bin_s)`, gauges at its end.
#[derive(Serialize, Debug, Clone)]
pub struct Bin {
    pub t_s: f64,
    pub attempts: u64,
    pub established: u64,
    pub failed: BTreeMap<&'static str, u64>,
    pub established_per_s: f64,
    pub requests_completed: u64,
    pub time_wait_client: u32,
    pub time_wait_server: u32,
    pub established_sockets_client: u32,
    pub established_sockets_server: u32,
    pub free_ports_min: Option<u32>,
    /// Free ports per connect pool, in the order of `pools` (bind pools, listed after them,
    /// have no free-port series); for a fleet's entry, the fewest any instance has.
    pub free_ports: Vec<u32>,
    pub connect_latency_ms: Option<Percentiles>,
    pub probes_per_connect: Option<ProbeStats>,
    /// Per NAT, in the order of `nat`: distinct (address, port) pairs its entries hold.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nat_ports_in_use: Vec<u64>,
    /// Per NAT: its conntrack entries.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conntrack_entries: Vec<u64>,
    /// Per NAT: its conntrack entries by TCP state (`conntrack -L`'s names), the states
    /// some entry is in.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conntrack_states: Vec<BTreeMap<&'static str, u64>>,
}

impl Report {
    /// Long port searches the run charged no time for: every connect() of a Linux client
    /// took no CPU time, so a thread-bound client (one thread, many connections) runs too
    /// fast once the searches are long. The figure is the reference machine's calibration
    /// ([`crate::profile::cost::LINUX_CALIBRATED`]), not the user's.
    fn uncharged_search_note(&self) -> Option<String> {
        const LONG: u64 = 1_000;
        let max = self.summary.probes_per_connect.max;
        let linux = self
            .hosts
            .iter()
            .any(|h| h.kernel == crate::profile::Kernel::Linux);
        if max < LONG || !linux {
            return None;
        }
        let probes = u32::try_from(max).unwrap_or(u32::MAX);
        let ms = crate::profile::cost::LINUX_CALIBRATED.of(probes).0 as f64 / 1e6;
        Some(format!(
            "              the searches cost no time in this run (connect_cost_* = 0): {} ports \
             take about {ms:.2} ms of a thread on the reference machine; `portsim live \
             --calibrate` measures yours",
            group(max)
        ))
    }

    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("report serializes");
        s.push('\n');
        s
    }

    /// The series as CSV, one row per bin.
    pub fn to_csv(&self) -> String {
        let mut w = csv::Writer::from_writer(Vec::new());
        let mut header: Vec<String> = [
            "t_s",
            "attempts",
            "established",
            "established_per_s",
            "requests_completed",
        ]
        .map(String::from)
        .to_vec();
        header.extend(Errno::ALL.iter().map(|e| format!("failed_{}", e.kind())));
        header.extend(
            [
                "time_wait_client",
                "time_wait_server",
                "established_sockets_client",
                "established_sockets_server",
                "free_ports_min",
                "connect_latency_p50_ms",
                "connect_latency_p99_ms",
                "connect_latency_max_ms",
                "probes_mean",
                "probes_max",
            ]
            .map(String::from),
        );
        // Connect pools come first in `pools`; bind pools have no free-port series.
        let connect_pools = self
            .pools
            .iter()
            .take_while(|p| p.kind.starts_with("connect"))
            .count();
        header.extend((0..connect_pools).map(|i| format!("free_ports_pool{i}")));
        for n in &self.nat {
            header.push(format!("nat_ports_in_use_{}", n.name));
            header.push(format!("conntrack_entries_{}", n.name));
        }
        let bands: Vec<(&String, &crate::replicate::Band)> = self
            .replicates
            .iter()
            .flat_map(|r| r.series.iter())
            .collect();
        for (name, _) in &bands {
            header.extend(["p5", "p50", "p95"].map(|q| format!("{name}_{q}")));
        }
        w.write_record(&header).expect("csv to memory");
        for (i, b) in self.series.iter().enumerate() {
            let mut row = vec![
                b.t_s.to_string(),
                b.attempts.to_string(),
                b.established.to_string(),
                b.established_per_s.to_string(),
                b.requests_completed.to_string(),
            ];
            row.extend(
                Errno::ALL
                    .iter()
                    .map(|e| b.failed.get(e.kind()).copied().unwrap_or(0).to_string()),
            );
            let opt = |x: Option<f64>| x.map(|v| v.to_string()).unwrap_or_default();
            row.extend([
                b.time_wait_client.to_string(),
                b.time_wait_server.to_string(),
                b.established_sockets_client.to_string(),
                b.established_sockets_server.to_string(),
                b.free_ports_min.map(|v| v.to_string()).unwrap_or_default(),
                opt(b.connect_latency_ms.as_ref().map(|l| l.p50)),
                opt(b.connect_latency_ms.as_ref().map(|l| l.p99)),
                opt(b.connect_latency_ms.as_ref().map(|l| l.max)),
                opt(b.probes_per_connect.as_ref().map(|p| p.mean)),
                b.probes_per_connect
                    .as_ref()
                    .map(|p| p.max.to_string())
                    .unwrap_or_default(),
            ]);
            row.extend(b.free_ports.iter().map(u32::to_string));
            for (ports, entries) in b.nat_ports_in_use.iter().zip(&b.conntrack_entries) {
                row.extend([ports.to_string(), entries.to_string()]);
            }
            for (_, band) in &bands {
                for q in [&band.p5, &band.p50, &band.p95] {
                    row.push(opt(q.get(i).copied().flatten()));
                }
            }
            w.write_record(&row).expect("csv to memory");
        }
        String::from_utf8(w.into_inner().expect("flush")).expect("utf-8")
    }

    /// The terminal summary.
    pub fn to_text(&self) -> String {
        let mut o = String::new();
        self.write_heading(&mut o);
        self.write_connections(&mut o);
        self.write_latencies(&mut o);
        self.write_pools(&mut o);
        if let Some(r) = &self.replicates {
            o.push_str(&r.to_text());
        }
        o
    }

    /// Version, scenario, seeds and duration; the description; a blank line.
    fn write_heading(&self, o: &mut String) {
        let seeds = match &self.replicates {
            Some(r) => format!(
                "seeds {} · the report of seed {}, then each number over the {} seeds",
                r.seeds, self.seed, r.n
            ),
            None => format!("seed {}", self.seed),
        };
        let _ = writeln!(
            o,
            "portsim {} · {} · {seeds} · {} simulated",
            self.portsim_version,
            self.scenario.name,
            secs(self.duration_s)
        );
        if !self.scenario.description.is_empty() {
            let _ = writeln!(o, "{}", self.scenario.description);
        }
        let _ = writeln!(o);
    }

    /// Connections, errors, the first failure, requests and TIME-WAIT.
    fn write_connections(&self, o: &mut String) {
        let s = &self.summary;
        let c = &s.connections;
        let pct = |n: u64| {
            if c.attempted == 0 {
                0.0
            } else {
                100.0 * n as f64 / c.attempted as f64
            }
        };
        let _ = writeln!(
            o,
            "connections   {} attempted · {} established ({:.1}%) · {} failed ({:.1}%) · {} in flight",
            group(c.attempted),
            group(c.established),
            pct(c.established),
            group(c.failed),
            pct(c.failed),
            group(c.in_flight)
        );
        if c.stalled > 0 {
            let _ = writeln!(
                o,
                "              {} connects stalled past a SYN retransmission ({} waiting in all)",
                group(c.stalled),
                secs(c.stall_s)
            );
        }
        if c.retries > 0 {
            let _ = writeln!(
                o,
                "              {} of the attempts were retries",
                group(c.retries)
            );
        }
        if s.errors.is_empty() {
            let _ = writeln!(o, "errors        none");
        } else {
            let list: Vec<String> = s
                .errors
                .iter()
                .map(|(k, v)| {
                    let num = s.error_numbers.get(k).copied().unwrap_or(0);
                    format!("{k} ({num}) × {}", group(*v))
                })
                .collect();
            let _ = writeln!(o, "errors        {}", list.join(" · "));
        }
        match s.first_failure_s {
            Some(t) => {
                let _ = writeln!(o, "first failure at {}", secs(t));
            }
            None => {
                let _ = writeln!(o, "first failure never");
            }
        }
        let _ = writeln!(
            o,
            "requests      {} completed · {} failed",
            group(s.requests.completed),
            group(s.requests.failed)
        );
        let _ = writeln!(
            o,
            "TIME-WAIT     peak {} (client {}, server {}) · at end {}",
            group(u64::from(s.time_wait.peak)),
            group(u64::from(s.time_wait.peak_client)),
            group(u64::from(s.time_wait.peak_server)),
            group(u64::from(s.time_wait.at_end))
        );
        if let Some(d) = s.time_wait.duration_s {
            let _ = writeln!(
                o,
                "              lasted {:.3}–{:.3} s, p50 {:.3} s ({} expired)",
                d.min,
                d.max,
                d.p50,
                group(d.count)
            );
        }
    }

    /// Request and connect latency, the kernel's counters, unprotected four-tuple reuse.
    fn write_latencies(&self, o: &mut String) {
        let s = &self.summary;
        let l = &s.request_latency_ms;
        if s.requests.completed == 0 {
            let _ = writeln!(o, "request       none completed");
        } else {
            let _ = writeln!(
                o,
                "request       p50 {} · p99 {} · max {} · mean {}",
                ms(l.p50),
                ms(l.p99),
                ms(l.max),
                ms(l.mean)
            );
        }
        let l = &s.connect_latency_ms;
        let _ = writeln!(
            o,
            "connect       p50 {} · p99 {} · max {} · probes/connect mean {:.1}, max {}",
            ms(l.p50),
            ms(l.p99),
            ms(l.max),
            s.probes_per_connect.mean,
            group(s.probes_per_connect.max)
        );
        let searches: Vec<String> = self
            .workloads
            .iter()
            .filter_map(|w| w.port_search_cpu_s.map(|t| format!("{} {t:.3} s", w.name)))
            .collect();
        for w in &self.workloads {
            if let Some(p) = &w.pool {
                let _ = writeln!(o, "{}", p.line(&w.name));
            }
        }
        if !searches.is_empty() {
            let _ = writeln!(o, "port search   CPU {}", searches.join(" · "));
        } else if let Some(note) = self.uncharged_search_note() {
            let _ = writeln!(o, "{note}");
        }
        let counters: Vec<String> = s
            .kernel_counters
            .iter()
            .filter(|(_, v)| **v > 0)
            .map(|(k, v)| format!("{k} {}", group(*v)))
            .collect();
        if !counters.is_empty() {
            let _ = writeln!(o, "kernel        {}", counters.join(" · "));
        }
        if s.unprotected_reuse > 0 {
            let _ = writeln!(
                o,
                "UNPROTECTED   {} connections reused a four-tuple within TIME-WAIT of a close that left no TIME-WAIT",
                group(s.unprotected_reuse)
            );
        }
    }

    /// The first 12 port pools with their `ports / TIME-WAIT` limit and achieved rate.
    fn write_pools(&self, o: &mut String) {
        if self.pools.is_empty() {
            return;
        }
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "port pools (ports / TIME-WAIT = sustainable churn when the client closes):"
        );
        for p in self.pools.iter().take(12) {
            let dest = p.destination.as_deref().unwrap_or("any destination");
            if let (Some(n), Some(each)) = (p.instances, &p.per_instance) {
                let a = each.achieved_per_s;
                let _ = writeln!(
                    o,
                    "  {:<7} {} × {} {} → {}: {} ports / {} = {:.1}/s per instance · achieved {:.1}/s in all, per instance {:.1} / {:.1} / {:.1} (min / mean / max)",
                    p.kind,
                    p.host,
                    group(u64::from(n)),
                    p.source,
                    dest,
                    group(u64::from(p.ports)),
                    secs(p.time_wait_s),
                    p.formula_limit_per_s,
                    p.achieved_per_s,
                    a.min,
                    a.mean,
                    a.max
                );
                continue;
            }
            let _ = writeln!(
                o,
                "  {:<7} {} → {}: {} ports / {} = {:.1}/s · achieved {:.1}/s",
                p.kind,
                p.source,
                dest,
                group(u64::from(p.ports)),
                secs(p.time_wait_s),
                p.formula_limit_per_s,
                p.achieved_per_s
            );
        }
        if self.pools.len() > 12 {
            let _ = writeln!(
                o,
                "  … and {} more pools (see --format json)",
                self.pools.len() - 12
            );
        }
        self.write_nats(o);
    }

    /// Each NAT: its ports per destination, peaks, and the SYNs it dropped.
    fn write_nats(&self, o: &mut String) {
        if self.nat.is_empty() {
            return;
        }
        let _ = writeln!(o);
        let _ = writeln!(o, "NATs (ports per address per destination; SYNs dropped):");
        for n in &self.nat {
            let drops: Vec<String> = n
                .drops
                .iter()
                .map(|(k, v)| format!("{k} × {}", group(*v)))
                .collect();
            let dropped = if drops.is_empty() {
                "none".to_string()
            } else {
                drops.join(", ")
            };
            if let Some(per_vm) = n.ports_per_vm {
                let without = n.vms_without_ports.unwrap_or(0);
                let _ = writeln!(
                    o,
                    "  {} ({}) for {}: {} address(es) · {} ports per VM (peak {}{}) · peak {} in use, {} flows · dropped {}",
                    n.name,
                    n.profile,
                    n.behind.join(", "),
                    n.ips.len(),
                    group(u64::from(per_vm)),
                    group(u64::from(n.ports_per_vm_peak.unwrap_or(per_vm))),
                    if without > 0 {
                        format!(", {} VMs without ports", group(without))
                    } else {
                        String::new()
                    },
                    group(n.allocated_peak),
                    group(n.entries_peak),
                    dropped
                );
            } else {
                let kernel = n.knobs.get("kernel");
                let _ = writeln!(
                    o,
                    "  {} ({}{}) for {}: {} × {} ports · peak {} in use, {} {} · dropped {}",
                    n.name,
                    n.profile,
                    kernel.map_or(String::new(), |k| format!(", {k}")),
                    n.behind.join(", "),
                    n.ips.len(),
                    group(u64::from(n.ports)),
                    group(n.allocated_peak),
                    group(n.entries_peak),
                    // A cloud gateway (no kernel) keeps flows, not conntrack entries.
                    if kernel.is_some() {
                        "conntrack entries"
                    } else {
                        "flows"
                    },
                    dropped
                );
            }
            for a in &n.assumptions {
                let _ = writeln!(o, "    assumption: {a}");
            }
        }
    }
}

/// `1234567` → `1,234,567`.
pub fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// `x` with `digits` decimals and its whole part grouped by thousands.
pub fn decimal(x: f64, digits: usize) -> String {
    let text = format!("{:.digits$}", x.abs());
    let (whole, frac) = text.split_once('.').unwrap_or((&text, ""));
    let sign = if x < 0.0 && text.bytes().any(|b| b.is_ascii_digit() && b != b'0') {
        "-"
    } else {
        ""
    };
    let whole = group(whole.parse().unwrap_or(0));
    if frac.is_empty() {
        format!("{sign}{whole}")
    } else {
        format!("{sign}{whole}.{frac}")
    }
}

fn secs(s: f64) -> String {
    if s >= 1.0 || s == 0.0 {
        format!("{} s", trim(s, 3))
    } else {
        format!("{} ms", trim(s * 1e3, 3))
    }
}

fn ms(v: f64) -> String {
    if v >= 1000.0 {
        format!("{} s", trim(v / 1e3, 3))
    } else {
        format!("{} ms", trim(v, 3))
    }
}

fn trim(x: f64, digits: usize) -> String {
    let s = format!("{x:.digits$}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_exact_for_few_distinct_values() {
        let mut h = Hist::default();
        for _ in 0..98 {
            h.record(100_000);
        }
        h.record(1_100_000);
        h.record(1_100_000);
        assert_eq!(h.percentile(0.5), 100_000);
        assert_eq!(h.percentile(0.98), 100_000);
        assert_eq!(h.percentile(0.99), 1_100_000);
        assert_eq!(h.max(), 1_100_000);
    }

    #[test]
    fn percentiles_stay_within_a_bucket_for_many_values() {
        let mut h = Hist::default();
        for v in 1..=100_000u64 {
            h.record(v * 1000);
        }
        let p50 = h.percentile(0.5) as f64;
        assert!((p50 / 50_000_000.0 - 1.0).abs() < 0.008, "{p50}");
        assert_eq!(h.max(), 100_000_000);
    }

    #[test]
    fn numbers_are_grouped_for_people() {
        assert_eq!(group(81920), "81,920");
        assert_eq!(group(999), "999");
        assert_eq!(group(1_000_000), "1,000,000");
    }
}

#[cfg(test)]
mod hist_tests {
    use super::*;

    /// The same values recorded through the pending run and one by one into a map give the
    /// same percentiles, on both sides of the exact limit.
    #[test]
    fn runs_of_equal_values_change_nothing() {
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        for distinct in [3u64, 5000] {
            let mut h = Hist::default();
            let mut plain = BTreeMap::new();
            for i in 0..20_000u64 {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                // Runs of up to 8 equal values.
                let v = 1000 + (rng % distinct) * 37 + (i / 8 % 2);
                h.record(v);
                *plain.entry(v).or_insert(0u64) += 1;
            }
            let mut reference = Hist::default();
            for (&v, &n) in &plain {
                for _ in 0..n {
                    reference.record(v);
                    reference.settle();
                }
            }
            assert_eq!(h.bucketed, distinct > 2048);
            for q in [0.01, 0.25, 0.5, 0.9, 0.99, 1.0] {
                assert_eq!(h.percentile(q), reference.percentile(q), "q {q}");
            }
            let mut merged = Hist::default();
            merged.merge(&h);
            assert_eq!(merged.percentile(0.5), h.percentile(0.5));
        }
    }

    /// Counts by value read back as the histogram that recording the values in their own
    /// order gives, exact or bucketed, huge values included.
    #[test]
    fn counts_by_value_read_as_the_histogram_of_the_same_values() {
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        for distinct in [40u64, 30_000] {
            let (mut h, mut by) = (Hist::default(), ByValue::default());
            for _ in 0..50_000 {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let v = if rng.is_multiple_of(1000) {
                    u64::from(u32::MAX) + rng % 7
                } else {
                    rng % distinct
                };
                let n = 1 + rng % 3;
                h.record_n(v, n);
                by.record_n(v, n);
            }
            let read = by.hist();
            assert_eq!(read.bucketed, distinct > 2048);
            assert_eq!((read.count(), read.max()), (h.count(), h.max()));
            assert_eq!(read.mean(), h.mean());
            for q in [0.0, 0.01, 0.5, 0.9, 0.99, 0.999, 1.0] {
                assert_eq!(read.percentile(q), h.percentile(q), "q {q}");
            }
        }
    }
}
