//! Gauges and recording: what the report reads. Counters and latencies are recorded as
//! events run ([`Recorder`]); the gauges (TIME-WAIT and ESTABLISHED at both ends, each
//! pool's free ports) are read at each bin edge after whole exchanges catch up; the report
//! is assembled once at the end.

use super::{BindPool, Simulation};
use crate::host::{Host, NONE, State};
use crate::report::{
    Connections, Counter, Gauges, LatencySummary, MinMeanMax, PerInstancePool, PoolInfo, PortUse,
    ProbeSummary, Recorder, Report, Requests, Summary, TimeWaitSummary, WorkloadSummary,
    add_named_errors,
};
use crate::report::{Hist, NatInfo};
use crate::time::{Duration, Instant};
use crate::workload::Mode;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// Failures by error name, and each name's errno.
type ErrorCounts = BTreeMap<&'static str, u64>;
type ErrorNumbers = BTreeMap<&'static str, u16>;

/// A latency histogram (nanoseconds) as the report gives it, in milliseconds.
fn latency_ms(h: &Hist) -> LatencySummary {
    let q = |q| h.percentile(q) as f64 / 1e6;
    LatencySummary {
        p50: q(0.5),
        p90: q(0.9),
        p99: q(0.99),
        max: h.max() as f64 / 1e6,
        mean: (h.mean() / 1e3).round() / 1e3,
    }
}

/// A connection established on `host` from `ip`, counted for its connect pool, or else for
/// the bind() or explicit-port pool of its source address.
pub(super) fn count_in_pool(
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

/// Records the TIME-WAIT count of every host now, toward the run's peak: the total they
/// share ([`Host::share_time_wait_total`]), not a visit to each.
#[inline]
pub(super) fn note_time_wait_of(hosts: &[Host], rec: &mut Recorder) {
    let [client, server] = hosts.first().map_or([0, 0], Host::time_wait_total);
    rec.time_wait(client, server);
}

/// The ports handed out, per pool in the report's order: connect pools by (host, pool id),
/// then bind pools.
pub(super) struct PortLog {
    /// Per host, the report index of each of its connect pools.
    pub(super) connect: Vec<Vec<u32>>,
    pub(super) pools: Vec<PortUse>,
}

impl PortLog {
    /// A connection from `ip` on `host` took `port`, from connect pool `pool` or else the
    /// bind pool of its address.
    pub(super) fn record(
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

/// The report's pool entries: each pool its own, but a fleet's pools (one per instance) one
/// entry per (fleet, source address as the fleet's `ips` writes it, destination), in the
/// order of their first instance's pools; connect pools' entries first, as the pools are.
pub(super) struct PoolGroups {
    /// Per pool (connect pools, then bind pools): its entry.
    of: Vec<u32>,
    /// Entries of connect pools.
    connect: usize,
    /// Per entry: the fleet's name and count, for a fleet's.
    fleets: Vec<Option<(String, u32)>>,
}

/// A fleet pool's entry key: the fleet, the kind, the source's place in its `ips` (none for a
/// host-wide pool), the destination.
type FleetKey = (String, &'static str, Option<usize>, u32, u16);

impl PoolGroups {
    pub(super) fn new(
        sc: &crate::scenario::Scenario,
        hosts: &[Host],
        pools: &[(u16, u32)],
        binds: &[BindPool],
    ) -> PoolGroups {
        let mut g = PoolGroups {
            of: Vec::new(),
            connect: 0,
            fleets: Vec::new(),
        };
        let mut seen: BTreeMap<FleetKey, u32> = BTreeMap::new();
        let mut add = |g: &mut PoolGroups, h: u16, key: (&'static str, Option<u32>, u32, u16)| {
            let spec = &sc.hosts[h as usize];
            let Some(f) = &spec.fleet else {
                g.of.push(g.fleets.len() as u32);
                g.fleets.push(None);
                return;
            };
            let place = key.1.and_then(|ip| spec.ips.iter().position(|&a| a == ip));
            let k = (f.fleet.clone(), key.0, place, key.2, key.3);
            let next = g.fleets.len() as u32;
            let e = *seen.entry(k).or_insert(next);
            if e == next {
                g.fleets.push(Some((f.fleet.clone(), f.count)));
            }
            g.of.push(e);
        };
        for &(h, p) in pools {
            let pool = &hosts[h as usize].pools[p as usize];
            let key = if pool.host_wide {
                ("connect (host-wide)", None, 0, 0)
            } else {
                ("connect", Some(pool.saddr), pool.daddr, pool.dport)
            };
            add(&mut g, h, key);
        }
        g.connect = g.fleets.len();
        for b in binds {
            add(&mut g, b.host, (b.kind, Some(b.ip), 0, 0));
        }
        g
    }

    /// Per connect pool entry, the fewest free ports of its pools (`free`, in pool order).
    fn fewest(&self, free: impl Iterator<Item = u32>) -> Vec<u32> {
        let mut out = vec![u32::MAX; self.connect];
        for (&e, f) in self.of.iter().zip(free) {
            let e = &mut out[e as usize];
            *e = (*e).min(f);
        }
        out
    }

    /// The report's entries from each pool's own (`pools`, with its established counts, all
    /// and in the sustained window of `late_s` seconds): a fleet's summed, with its spread
    /// over the instances; the rest as they are.
    fn entries(
        &self,
        pools: Vec<PoolInfo>,
        counts: &[(u64, u64)],
        duration_s: f64,
        late_s: Option<f64>,
    ) -> Vec<PoolInfo> {
        let mut members: Vec<Vec<usize>> = vec![Vec::new(); self.fleets.len()];
        for (i, &e) in self.of.iter().enumerate() {
            members[e as usize].push(i);
        }
        let mut pools: Vec<Option<PoolInfo>> = pools.into_iter().map(Some).collect();
        let mut out = Vec::with_capacity(self.fleets.len());
        for (m, fleet) in members.iter().zip(&self.fleets) {
            let mut first = pools[m[0]].take().expect("each pool in one entry");
            let Some((name, count)) = fleet else {
                out.push(first);
                continue;
            };
            let last = &pools[m[m.len() - 1]];
            if let Some(last) = last.as_ref().filter(|l| l.source != first.source) {
                first.source = format!("{}-{}", first.source, last.source);
            }
            let est: Vec<u64> = m.iter().map(|&i| counts[i].0).collect();
            let late: Vec<u64> = m.iter().map(|&i| counts[i].1).collect();
            let (all, all_late) = (est.iter().sum::<u64>(), late.iter().sum::<u64>());
            first.host = name.clone();
            first.instances = Some(*count);
            first.established = all;
            first.achieved_per_s = all as f64 / duration_s;
            first.sustained_per_s = late_s.map(|s| all_late as f64 / s);
            let some = "a fleet has instances";
            first.per_instance = Some(PerInstancePool {
                established: MinMeanMax::of(&est, 1.0).expect(some),
                achieved_per_s: MinMeanMax::of(&est, duration_s).expect(some),
                sustained_per_s: late_s.and_then(|s| MinMeanMax::of(&late, s)),
            });
            out.push(first);
        }
        out
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

impl Simulation {
    /// Closes the bin ending at `end` with the gauges as they stand then.
    pub(super) fn close_bin(&mut self, end: Instant) {
        for wl in 0..self.exchanges.len() {
            self.catch_up(wl, end);
        }
        let mut g = self.gauges();
        // A SYN crossing a gateway before the edge is there, as stepping's events before it.
        self.take_gateway_syns(end);
        g.nat = self.nat_gauges(end);
        self.rec.close_bin(end, g);
    }

    /// Each NAT's gauges as they stand just before `end`, as the hosts' are: an entry
    /// expiring at `end` is still there.
    fn nat_gauges(&mut self, end: Instant) -> Vec<crate::nat::NatGauges> {
        let before = Instant(end.0.saturating_sub(1));
        let mut out = Vec::new();
        for &k in &self.nats {
            let nat = self.paths.middlebox(k).nat().expect("a NAT's index");
            out.push(nat.gauges(before));
        }
        out
    }

    /// The report's `nat` section.
    fn nat_infos(&mut self) -> Vec<NatInfo> {
        let mut out = Vec::new();
        for i in 0..self.nats.len() {
            let nat = self
                .paths
                .middlebox(self.nats[i])
                .nat()
                .expect("a NAT's index");
            out.push(nat.report());
        }
        out
    }

    pub(super) fn note_time_wait(&mut self) {
        note_time_wait_of(&self.hosts, &mut self.rec);
    }

    pub(super) fn gauges(&self) -> Gauges {
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
        g.free_ports = self.groups.fewest(
            self.pools
                .iter()
                .map(|&(h, p)| self.hosts[h as usize].pool_free(p)),
        );
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

    /// The report of the finished run.
    pub(super) fn report(mut self) -> Report {
        let g = self.gauges();
        let stalled = self.stalled_at_end();
        let duration_s = self.info.2.as_secs_f64();
        let pools = self.pool_infos(duration_s);
        let nat = self.nat_infos();
        let (workloads, errors, error_numbers) = self.workload_summaries();
        let (info, seed, _) = self.info;
        let summary = summary(&self.rec, &g, stalled, errors, error_numbers);
        let bin_s = self.rec.bin.as_secs_f64();
        let series = self.rec.into_bins();
        Report {
            schema: "portsim.report/1",
            portsim_version: env!("CARGO_PKG_VERSION"),
            scenario: info,
            seed,
            duration_s,
            bin_s,
            hosts: self.host_info,
            pools,
            nat,
            summary,
            workloads,
            series,
            replicates: None,
            stats: None,
        }
    }

    /// The pools in the report's order, connect() pools then bind pools, with their ports
    /// handed out when they were recorded.
    fn pool_infos(&mut self, duration_s: f64) -> Vec<PoolInfo> {
        let duration = self.info.2;
        let late_s =
            (self.late_from.0 < duration.0).then(|| (duration.0 - self.late_from.0) as f64 / 1e9);
        let late = |n: u64| late_s.map(|s| n as f64 / s);
        let pool_info = |kind, host: &Host, source, destination, ports: u32, est, est_late| {
            let tw = host.profile.time_wait.as_secs_f64();
            PoolInfo {
                kind,
                host: host.name.clone(),
                instances: None,
                source,
                destination,
                ports,
                time_wait_s: tw,
                formula_limit_per_s: f64::from(ports) / tw,
                established: est,
                achieved_per_s: est as f64 / duration_s,
                sustained_per_s: late(est_late),
                per_instance: None,
                port_use: None,
            }
        };
        let mut pools: Vec<PoolInfo> = self
            .pools
            .iter()
            .map(|&(h, p)| {
                let host = &self.hosts[h as usize];
                let pool = &host.pools[p as usize];
                let e = &host.established[p as usize];
                let (kind, source, destination) = if pool.host_wide {
                    ("connect (host-wide)", "any".into(), None)
                } else {
                    let to = format!("{}:{}", Ipv4Addr::from(pool.daddr), pool.dport);
                    ("connect", Ipv4Addr::from(pool.saddr).to_string(), Some(to))
                };
                let ports = host.profile.usable_ports();
                pool_info(kind, host, source, destination, ports, e.all, e.late)
            })
            .collect();
        pools.extend(self.bind_pools.iter().map(|b| {
            let host = &self.hosts[b.host as usize];
            let source = Ipv4Addr::from(b.ip).to_string();
            let (est, late) = (b.established, b.established_late);
            pool_info(b.kind, host, source, None, b.ports, est, late)
        }));
        if let Some(log) = self.port_use.take() {
            for (p, u) in pools.iter_mut().zip(log.pools) {
                p.port_use = Some(u);
            }
        }
        let counts: Vec<(u64, u64)> = self
            .pools
            .iter()
            .map(|&(h, p)| {
                let e = &self.hosts[h as usize].established[p as usize];
                (e.all, e.late)
            })
            .chain(
                self.bind_pools
                    .iter()
                    .map(|b| (b.established, b.established_late)),
            )
            .collect();
        self.groups.entries(pools, &counts, duration_s, late_s)
    }

    /// Each workload's summary, and the errors of all of them by name and by number.
    fn workload_summaries(&self) -> (Vec<WorkloadSummary>, ErrorCounts, ErrorNumbers) {
        let mut all_errors = ErrorCounts::new();
        let mut error_numbers = ErrorNumbers::new();
        let workloads = self
            .workloads
            .iter()
            .zip(self.rec.workloads.iter().zip(&self.runners))
            .map(|(w, (t, r))| WorkloadSummary {
                name: w.name.clone(),
                attempted: t.attempted,
                established: t.established,
                failed: t.failed.iter().sum(),
                errors: {
                    let names = &self.hosts[w.sources[0].host as usize].profile.errors;
                    let mut e = BTreeMap::new();
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
                port_search_cpu_s: (t.port_search_cpu.0 > 0)
                    .then(|| t.port_search_cpu.0 as f64 / 1e9),
                pool: None,
            })
            .collect::<Vec<_>>();
        let mut workloads = workloads;
        for (i, w) in workloads.iter_mut().enumerate() {
            w.pool = self
                .client_pools
                .counts(i)
                .map(crate::report::PoolSummary::of);
        }
        (workloads, all_errors, error_numbers)
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
}

/// The run's summary from its records, the gauges at the end and the connects still stalled
/// then (count, time waited).
fn summary(
    rec: &Recorder,
    g: &Gauges,
    (waiting, waited): (u64, Duration),
    errors: ErrorCounts,
    error_numbers: ErrorNumbers,
) -> Summary {
    let attempted: u64 = rec.workloads.iter().map(|w| w.attempted).sum();
    let established: u64 = rec.workloads.iter().map(|w| w.established).sum();
    let failed: u64 = rec
        .workloads
        .iter()
        .map(|w| w.failed.iter().sum::<u64>())
        .sum();
    let first_failure = rec.workloads.iter().filter_map(|w| w.first_failure).min();
    Summary {
        connections: Connections {
            attempted,
            established,
            failed,
            in_flight: attempted - established - failed,
            retries: rec.workloads.iter().map(|w| w.retries).sum(),
            stalled: rec.stalled + waiting,
            stall_s: (rec.stall + waited).as_secs_f64(),
        },
        errors,
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
            duration_s: rec.tw_lifetimes.summary(),
        },
        connect_latency_ms: latency_ms(&rec.latency),
        request_latency_ms: latency_ms(&rec.request_latency),
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
    }
}
