use super::*;

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
}
