use super::*;

/// A connection established on `host` from `ip`, counted for its connect pool, or else for
/// the bind() or explicit-port pool of its source address.
pub(in crate::sim) fn count_in_pool(
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

/// Records the TIME-WAIT count of every host now, toward the run's peak.
pub(in crate::sim) fn note_time_wait(hosts: &[Host], rec: &mut Recorder) {
    let (mut client, mut server) = (0, 0);
    for h in hosts {
        client += h.counts[0][State::TimeWait as usize];
        server += h.counts[1][State::TimeWait as usize];
    }
    rec.time_wait(client, server);
}

/// The ports handed out, per pool in the report's order: connect pools by (host, pool id),
/// then bind pools.
pub(in crate::sim) struct PortLog {
    /// Per host, the report index of each of its connect pools.
    pub(in crate::sim) connect: Vec<Vec<u32>>,
    pub(in crate::sim) pools: Vec<PortUse>,
}

impl PortLog {
    /// A connection from `ip` on `host` took `port`, from connect pool `pool` or else the
    /// bind pool of its address.
    pub(in crate::sim) fn record(
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
    pub(in crate::sim) fn close_bin(&mut self, end: Instant) {
        for wl in 0..self.exchanges.len() {
            self.catch_up(wl, end);
        }
        let g = self.gauges();
        self.rec.close_bin(end, g);
    }

    pub(in crate::sim) fn note_time_wait(&mut self) {
        note_time_wait(&self.hosts, &mut self.rec);
    }

    pub(in crate::sim) fn gauges(&self) -> Gauges {
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
    pub(in crate::sim) fn stalled_at_end(&self) -> (u64, Duration) {
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

    pub(in crate::sim) fn report(self) -> Report {
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
