//! Assembly: from a validated scenario to the hosts, pools, workloads and first events of a
//! run, and which fast paths apply ([`super::fast`]). The order of the steps is part of the
//! result: queue lanes, sources and sequence numbers are handed out in it.

use super::fast::stream::{NO_EVENT, Stream};
use super::path::Paths;
use super::record::{PoolGroups, sustained_from};
use super::reuse_watch::ReuseWatch;
use super::run::Event;
use super::{BindPool, Lanes, Simulation, fast, path};
use crate::engine::{Class, Queue, packed};
use crate::host::Host;
use crate::report::{HostInfo, Recorder, ScenarioInfo};
use crate::rng::stream;
use crate::scenario::Scenario;
use crate::time::Instant;
use crate::workload::{Arrival, Mode, Runner, Workload};
use std::net::Ipv4Addr;

impl Simulation {
    /// Builds the hosts, listeners, pools and initial events of a validated scenario, every
    /// pair of hosts joined directly.
    pub fn new(sc: &Scenario) -> Simulation {
        let direct = Paths::direct(sc.hosts.len());
        Simulation::with_paths(sc, direct).expect("direct paths for the scenario's hosts")
    }

    /// [`Simulation::new`] with the given paths between hosts ([`path`]), made for the
    /// scenario's hosts.
    pub fn with_paths(sc: &Scenario, paths: Paths) -> Result<Simulation, path::PathError> {
        let gateways_allowed = paths.all_direct();
        Simulation::build(sc, paths, gateways_allowed)
    }

    /// [`Simulation::with_paths`]; whole exchanges may cross the scenario's cloud gateways
    /// only if `gateways_allowed` (`fast/gateway.rs`).
    pub(super) fn build(
        sc: &Scenario,
        mut paths: Paths,
        gateways_allowed: bool,
    ) -> Result<Simulation, path::PathError> {
        if paths.hosts() != sc.hosts.len() {
            let (paths, scenario) = (paths.hosts(), sc.hosts.len());
            return Err(path::PathError::WrongHosts { paths, scenario });
        }
        let nats = nat_paths(sc, &mut paths)?;
        let mut queue = Queue::default();
        let (mut hosts, lanes) = hosts(sc, &mut queue);
        let pools = connect_pools(sc, &mut hosts);
        index_tuples(sc, &mut hosts);
        let bind_pools = bind_pools(sc, &hosts);
        let (runners, streams) = workloads(sc, &mut queue);
        let open_loop_pools = sc
            .workloads
            .iter()
            .map(|w| fast::bulk_arrivals::pool(w, &hosts))
            .collect();
        let conn_pools: Vec<_> = sc.workloads.iter().map(|w| conn_pools(w, &hosts)).collect();
        let (exchanges, bulk_time_wait, gateways) =
            fast::exchange::plan(sc, &hosts, &conn_pools, &mut paths, gateways_allowed);
        let late_from = late_from(sc, &hosts, &pools, &bind_pools);
        let groups = PoolGroups::new(sc, &hosts, &pools, &bind_pools);
        let mut sim = Simulation {
            now: Instant::ZERO,
            end: Instant::ZERO + sc.duration,
            late_from,
            open_loop_pools,
            conn_pools,
            bulk_time_wait,
            picks: vec![std::collections::VecDeque::new(); sc.workloads.len()],
            time_wait_due: Default::default(),
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
            watch: ReuseWatch::new(Instant::ZERO + sc.duration),
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
            host_info: host_info(sc),
            pools,
            groups,
            parked: Vec::new(),
            sub_for: (u64::MAX, 0),
            bulk: true,
            chain: true,
            bind_pools,
            port_use: None,
            paths,
            nats,
            gateways,
            client_pools: super::pool::ClientPools::new(sc),
        };
        for wl in 0..sim.workloads.len() {
            sim.stream_changed(wl as u32);
        }
        Ok(sim)
    }
}

/// The scenario's NATs on the paths from the hosts behind each to every other host: a link
/// of weight 1, the NAT, a link of weight 99 (the NAT is the client's own node, a Docker
/// host or a Kubernetes node: 1 % of the one-way delay before it). Their middlebox
/// indices, in the scenario's order.
fn nat_paths(sc: &Scenario, paths: &mut Paths) -> Result<Vec<usize>, path::PathError> {
    let mut out = Vec::new();
    for n in &sc.nats {
        // A fleet is named once, as the file names it.
        let mut behind: Vec<String> = Vec::new();
        for &h in &n.behind {
            let name = match &sc.hosts[h].fleet {
                Some(f) => &f.fleet,
                None => &sc.hosts[h].name,
            };
            if behind.last() != Some(name) {
                behind.push(name.clone());
            }
        }
        let vm_ips: Vec<Vec<u32>> = n.behind.iter().map(|&h| sc.hosts[h].ips.clone()).collect();
        let nat = crate::nat::Nat::new(n, behind, &vm_ips, sc.seed);
        let k = paths.add(Box::new(nat));
        let mut is_behind = vec![false; sc.hosts.len()];
        for &h in &n.behind {
            is_behind[h] = true;
        }
        for &client in &n.behind {
            for server in (0..sc.hosts.len()).filter(|&s| !is_behind[s]) {
                let hops = vec![
                    path::Hop::Link { weight: 1 },
                    path::Hop::Shared(k),
                    path::Hop::Link { weight: 99 },
                ];
                paths.set(client as u16, server as u16, hops)?;
            }
        }
        out.push(k);
    }
    Ok(out)
}

/// Most hosts of a scenario whose port selectors draw their tables whole at the start
/// ([`Host::draw_port_table`], 256 KiB each); a fleet's draw each entry when read.
const WHOLE_TABLE_HOSTS: usize = 16;

/// The hosts with their listeners, and each host's two TIME-WAIT timer lanes: expiries in
/// one lane per TIME-WAIT length, which every host of that length shares (an expiry is its
/// entry plus that length, so the lane stays in order, and a fleet of hosts keeps one lane,
/// not a lane per host for the queue to keep sorted); reusability per host (its deadline is
/// rounded on the host's own clock).
fn hosts(sc: &Scenario, queue: &mut Queue<Event>) -> (Vec<Host>, Vec<Lanes>) {
    let mut hosts = Vec::new();
    let mut lanes = Vec::new();
    let mut expire_lanes: Vec<(crate::time::Duration, usize)> = Vec::new();
    let time_wait_total = std::rc::Rc::default();
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
        host.share_time_wait_total(std::rc::Rc::clone(&time_wait_total));
        if sc.hosts.len() <= WHOLE_TABLE_HOSTS {
            host.draw_port_table();
        }
        for &(ip, port) in &h.listen {
            host.listen(ip, port);
        }
        // Exact timers of one length expire in entry order whatever the host; a clock's
        // slots are the host's own, so its expiries get a lane of their own.
        let time_wait = host.profile.time_wait;
        let tw_expire = if host.tw_exact() {
            match expire_lanes.iter().find(|&&(len, _)| len == time_wait) {
                Some(&(_, lane)) => lane,
                None => {
                    let lane = queue.add_lane();
                    expire_lanes.push((time_wait, lane));
                    lane
                }
            }
        } else {
            queue.add_lane()
        };
        hosts.push(host);
        lanes.push(Lanes {
            tw_expire,
            tw_reusable: queue.add_lane(),
        });
    }
    (hosts, lanes)
}

/// The connect() pools of every (source, destination) of connect() and
/// IP_BIND_ADDRESS_NO_PORT workloads, in workload order: (host, pool id) of each new one.
fn connect_pools(sc: &Scenario, hosts: &mut [Host]) -> Vec<(u16, u32)> {
    let connects = |w: &&Workload| matches!(w.mode, Mode::Connect | Mode::BindNoPort);
    let mut per_host = vec![0; hosts.len()];
    for w in sc.workloads.iter().filter(connects) {
        for s in &w.sources {
            per_host[s.host as usize] += w.destinations.len();
        }
    }
    for (h, n) in hosts.iter_mut().zip(&per_host) {
        h.reserve_pools(*n);
    }
    let mut pools = Vec::new();
    for w in sc.workloads.iter().filter(connects) {
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
    pools
}

/// Keeps a four-tuple index on the hosts whose tuples are looked up: reached by SYNs,
/// binding, or reusing TIME-WAITs.
fn index_tuples(sc: &Scenario, hosts: &mut [Host]) {
    for (i, h) in hosts.iter_mut().enumerate() {
        let i = i as u16;
        let looked_up = h.reuses_time_wait()
            || sc.workloads.iter().any(|w| {
                w.destinations.iter().any(|d| d.host == i)
                    || (w.mode.binds() && w.sources.iter().any(|s| s.host == i))
            });
        h.index_tuples(looked_up);
    }
}

/// The exclusive-port pools of bind() and explicit-port workloads, one per source address.
fn bind_pools(sc: &Scenario, hosts: &[Host]) -> Vec<BindPool> {
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
                    ports: ports.unwrap_or_else(|| hosts[src.host as usize].profile.usable_ports()),
                    kind,
                    established: 0,
                    established_late: 0,
                });
            }
        }
    }
    bind_pools
}

/// Each workload's runner and stream, in order: a closed loop's slots queued at its start, an
/// open loop's first arrival drawn and its queue source added.
fn workloads(sc: &Scenario, queue: &mut Queue<Event>) -> (Vec<Runner>, Vec<Stream>) {
    let mut runners = Vec::new();
    let mut streams = Vec::new();
    for (i, w) in sc.workloads.iter().enumerate() {
        let name = &w.name;
        let mut runner = Runner::new(
            w,
            stream(sc.seed, &format!("workload:{name}:arrivals")),
            stream(sc.seed, &format!("workload:{name}:latency")),
            stream(sc.seed, &format!("workload:{name}:spread")),
        );
        let wl = i as u32;
        if let Some(p) = w.pool.filter(|p| p.min_idle.is_some()) {
            queue.push(w.start, Class::App, Event::PoolFill { wl });
            if let Some(s) = p.sweep {
                let at = Instant(s.next(w.start.0));
                queue.push(at, Class::App, Event::PoolHousekeeper { wl });
            }
        }
        let s = match w.arrival {
            Arrival::Closed { concurrency } => {
                for slot in 0..concurrency {
                    let ev = Event::Start { wl, slot, retry: 0 };
                    queue.push(w.start, Class::App, ev);
                }
                Stream::none()
            }
            _ => {
                let arrival = runner
                    .next_arrival(w)
                    .map_or(NO_EVENT, |t| packed(t.0, queue.next_key(Class::App)));
                Stream::new(queue.add_source(Event::Stream { wl }), arrival)
            }
        };
        runners.push(runner);
        streams.push(s);
    }
    (runners, streams)
}

/// For a connect() or IP_BIND_ADDRESS_NO_PORT workload, its (client host, pool) of each
/// (source, destination): `[destination * sources + source]`, the order round robin takes.
fn conn_pools(w: &Workload, hosts: &[Host]) -> Vec<(u16, u32)> {
    match w.mode {
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
    }
}

/// Where the sustained window starts ([`sustained_from`]), for the longest TIME_WAIT of the
/// hosts that hold pools; never when there are none.
fn late_from(sc: &Scenario, hosts: &[Host], pools: &[(u16, u32)], binds: &[BindPool]) -> Instant {
    let tw = pools
        .iter()
        .map(|&(h, _)| h)
        .chain(binds.iter().map(|b| b.host))
        .map(|h| hosts[h as usize].profile.time_wait)
        .max();
    tw.and_then(|tw| sustained_from(sc.duration, tw, sc.bin))
        .unwrap_or(Instant(u64::MAX))
}

/// The hosts as the report lists them: a fleet once, as its first instance under the
/// fleet's name, with its count.
fn host_info(sc: &Scenario) -> Vec<HostInfo> {
    let ip = |ip: &u32| Ipv4Addr::from(*ip).to_string();
    sc.hosts
        .iter()
        .filter(|h| h.fleet.as_ref().is_none_or(|f| f.k == 1))
        .map(|h| HostInfo {
            name: h.fleet.as_ref().map_or(&h.name, |f| &f.fleet).clone(),
            profile: h.profile_name.clone(),
            kernel: h.profile.kernel,
            ips: h.ips.iter().map(ip).collect(),
            instances: h.fleet.as_ref().map(|f| f.count),
            listen: h
                .listen
                .iter()
                .map(|&(a, port)| format!("{}:{port}", Ipv4Addr::from(a)))
                .collect(),
            knobs: h
                .profile
                .knob_values()
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        })
        .collect()
}
