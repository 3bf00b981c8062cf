//! A NAT's ports toward each destination, planned (`nat_pools` in a plan). Masquerade and
//! SNAT give each flow a reply tuple (NAT address, NAT port, destination) unique in the
//! conntrack table, so toward one destination (address and port) the NAT has
//! `addresses × ports per address` pairs, shared by every host behind it. An entry holds
//! its pair while the flow is open and, after it closes, for its state's timeout
//! (`nf_conntrack_tcp_timeout_time_wait`, 120 s, after FINs from either side;
//! `nf_conntrack_tcp_timeout_close`, 10 s, after a reset). So, as `ports / TIME_WAIT` for a
//! client's pool, the NAT sustains at most `pairs / hold` new flows per second toward the
//! destination, and holds at most `pairs` open at once.
//!
//! From Linux 6.5 a SYN whose port search runs short evicts a TIME_WAIT or CLOSE entry its
//! sequence has passed (`nf_nat_used_tuple_harder`): the hold is then at most the timeout,
//! and the run, not the formula, gives the limit.
//!
//! A cloud gateway (`NatConfig::cloud`) allocates as `src/nat/blocks.rs` says, and a flow
//! holds its pair for its whole life, the connection time, and then for the hold
//! ([`capacity`], [`CloudLimit`]):
//!
//! - ports per VM (GCP static, Azure LB, App Service): toward one destination each VM
//!   sustains `ports_per_vm / (connection time + hold)`; GCP rounds `min_ports_per_vm` up
//!   to a power of two, Azure LB's default follows the backend pool's size, and the VMs
//!   beyond the addresses' capacity (`addresses × ports per address / ports_per_vm`) get
//!   none;
//! - dynamic (GCP): as ports per VM, at most `max_ports_per_vm` each (and no more than the
//!   addresses hold for every VM);
//! - shared (AWS, Azure NAT Gateway): `addresses × min(per-destination limit, 64,512) /
//!   (connection time + hold)` toward one destination. AWS documents no hold (0 s,
//!   UNVERIFIED): the limit is then flows open at once, and the note says so.

use super::{LimitSource, RATE_TOLERANCE, Scenario, open_time, round, steady, workload_rate};
use crate::nat::cloud::{Allocation, Cloud, Provider, azure_ports_for_pool};
use crate::nat::conntrack::CtState;
use crate::nat::select::EVICTS_SINCE;
use crate::report::{NatInfo, Report, group};
use crate::scenario::NatSpec;
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// One NAT's pairs toward one destination, planned.
#[derive(Serialize, Debug, Clone)]
pub struct NatPlan {
    pub nat: String,
    pub addresses: Vec<String>,
    /// The hosts behind it.
    pub behind: Vec<String>,
    /// Address and port.
    pub destination: String,
    pub ports_per_address: u32,
    /// `addresses × ports per address`: (address, port) pairs toward the destination, and
    /// so the flows the NAT holds toward it at once.
    pub ports: u32,
    /// The conntrack state a closed flow's entry waits out: `TIME_WAIT`, or `CLOSE` when
    /// every flow ends with a reset (SO_LINGER 0).
    pub hold_state: &'static str,
    pub hold_s: f64,
    /// `ports / hold`.
    pub formula_limit_per_s: f64,
    /// The formula where it is the limit: kernels before 6.5, which never evict a closing
    /// entry for a new flow.
    pub limit_per_s: Option<f64>,
    pub offered_per_s: f64,
    pub offered_from: &'static str,
    /// Flows open at once, by Little's law: offered × a connection's open time.
    pub open_steady: f64,
    /// SYNs the NAT dropped in the run, toward every destination, by reason.
    pub syns_dropped: BTreeMap<&'static str, u64>,
    /// What the NAT carried toward the destination while it dropped SYNs, simulated.
    pub saturated_per_s: Option<f64>,
    /// `(limit − offered) / limit`, in percent; the limit is `saturated_per_s` where set,
    /// else `limit_per_s`.
    pub headroom_percent: Option<f64>,
    /// When its pairs run out, by formula: the flow after `ports` at the offered rate.
    pub exhausted_at_s: Option<f64>,
    /// SYNs dropped per second after that, by formula: `offered − limit`.
    pub failing_per_s: f64,
    /// Established per second through it over the sustained window, simulated (from the
    /// client pools behind it; none where a pool serves several destinations).
    pub simulated_per_s: Option<f64>,
    /// Simulated against formula, in percent, where the formula is the limit and the NAT
    /// is saturated.
    pub formula_error_percent: Option<f64>,
    /// What else decides this NAT's limit.
    pub notes: Vec<String>,
    /// A cloud gateway's limit, by the provider's allocation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cloud: Option<CloudLimit>,
}

/// A cloud gateway's limit toward one destination, by its allocation.
#[derive(Serialize, Debug, Clone)]
pub struct CloudLimit {
    /// The profile: `gcp-cloud-nat`, `aws-nat-gateway`, ….
    pub provider: &'static str,
    /// `ports per VM`, `dynamic` or `shared`.
    pub allocation: &'static str,
    /// VM addresses behind the gateway, and those the addresses give ports to.
    pub vms: u32,
    pub vms_with_ports: u32,
    /// Ports per VM: as allocated (GCP's rounded up to a power of two, Azure's by pool
    /// size), or dynamic allocation's bound.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ports_per_vm: Option<u32>,
    /// Shared: flows per address toward one destination.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_destination: Option<u32>,
    /// A flow's mean time open (offered × open time / offered).
    pub connection_s: f64,
    /// Per VM toward the destination: `ports_per_vm / (connection + hold)`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_vm_limit_per_s: Option<f64>,
    /// Offered per VM toward the destination, the load spread evenly.
    pub per_vm_offered_per_s: f64,
}

/// A cloud gateway's pairs toward one destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capacity {
    /// Ports per VM (none for a shared pool).
    pub per_vm: Option<u32>,
    pub vms_with_ports: u32,
    /// (address, port) pairs toward one destination: `vms_with_ports × per_vm`, or the
    /// shared pool's `addresses × min(per_destination, ports per address)`.
    pub pairs: u64,
}

/// The largest power of two at most `x` (0 for 0).
pub fn floor_pow2(x: u64) -> u64 {
    if x == 0 {
        0
    } else {
        1 << (63 - x.leading_zeros())
    }
}

/// What gateway `c` with `addresses` gives `vms` VMs toward one destination
/// (`src/nat/blocks.rs`'s allocation).
pub fn capacity(c: &Cloud, addresses: u32, vms: u32) -> Capacity {
    let ppa = u64::from(c.ports_per_address);
    let total = u64::from(addresses) * ppa;
    let per_vm_of = |per_vm: u32| {
        let fit = u64::from(addresses) * ppa.checked_div(u64::from(per_vm)).unwrap_or(0);
        let with = u64::from(vms).min(fit) as u32;
        Capacity {
            per_vm: Some(per_vm),
            vms_with_ports: with,
            pairs: u64::from(with) * u64::from(per_vm),
        }
    };
    match c.allocation {
        Allocation::Shared { per_destination } => Capacity {
            per_vm: None,
            vms_with_ports: vms,
            pairs: u64::from(addresses) * u64::from(per_destination.min(c.ports_per_address)),
        },
        Allocation::PerVm { ports: 0 } => {
            per_vm_of(azure_ports_for_pool(vms as usize).unwrap_or(0))
        }
        Allocation::PerVm { ports } if c.provider == Provider::Gcp => {
            per_vm_of(ports.next_power_of_two())
        }
        Allocation::PerVm { ports } => per_vm_of(ports),
        Allocation::Dynamic { min, max } => {
            let start = per_vm_of(min);
            let share = floor_pow2(total.checked_div(u64::from(vms)).unwrap_or(0));
            let bound = u64::from(max).min(share).max(u64::from(min)) as u32;
            Capacity {
                per_vm: Some(bound),
                pairs: u64::from(start.vms_with_ports) * u64::from(bound),
                ..start
            }
        }
    }
}

/// VM addresses behind `n`: each a VM to the gateway.
pub fn vms(sc: &Scenario, n: &NatSpec) -> u32 {
    n.behind.iter().map(|&h| sc.hosts[h].ips.len() as u32).sum()
}

/// What a cloud gateway must hold per VM toward its busiest destination: the offered rate
/// per VM there and a flow's hold (connection time + the hold after its close), in
/// seconds; none when nothing behind it connects out.
pub fn per_vm_need(sc: &Scenario, n: &NatSpec) -> Option<(f64, f64)> {
    let vms = f64::from(vms(sc, n).max(1));
    flows(sc, n)
        .values()
        .filter(|f| f.per_s > 0.0)
        .map(|f| {
            let state = if f.resets {
                CtState::Close
            } else {
                CtState::TimeWait
            };
            let hold = n.config.timeouts[state as usize].as_secs_f64();
            (f.per_s / vms, f.open / f.per_s + hold)
        })
        .max_by(|a, b| (a.0 * a.1).total_cmp(&(b.0 * b.1)))
}

impl NatPlan {
    /// The limit its headroom is taken against, as [`super::PoolPlan::headroom_limit`].
    pub fn headroom_limit(&self) -> Option<(f64, LimitSource)> {
        match (self.saturated_per_s, self.limit_per_s) {
            (Some(s), _) => Some((s, LimitSource::Simulated)),
            (None, Some(l)) => Some((l, LimitSource::Rule)),
            (None, None) => None,
        }
    }

    pub fn label(&self) -> String {
        format!("NAT {} → {}", self.nat, self.destination)
    }
}

/// What flows from behind a NAT offer one destination.
#[derive(Default)]
struct Flows {
    per_s: f64,
    from: &'static str,
    steady: bool,
    /// Whether every flow ends with a reset.
    resets: bool,
    /// Connections open at once, by Little's law.
    open: f64,
}

/// Every NAT's pairs toward every destination its hosts connect to, in NAT then
/// destination order.
pub fn nat_pools(sc: &Scenario, r: &Report) -> Vec<NatPlan> {
    sc.nats
        .iter()
        .zip(&r.nat)
        .flat_map(|(n, info)| {
            let flows = flows(sc, n);
            let single = flows.len() == 1;
            flows
                .into_iter()
                .map(move |(d, f)| plan_one(sc, r, n, info, &d, &f, single))
        })
        .collect()
}

/// Flows from the hosts behind `n` to hosts outside it, by destination.
fn flows(sc: &Scenario, n: &NatSpec) -> BTreeMap<(u32, u16), Flows> {
    let mut out: BTreeMap<(u32, u16), Flows> = BTreeMap::new();
    for w in &sc.workloads {
        let (rate, from) = workload_rate(sc, w);
        let sources = w.sources.iter().filter(|s| behind(n, s.host)).count();
        let share = rate * sources as f64 / (w.sources.len() * w.destinations.len()) as f64;
        if sources > 0 {
            for d in w.destinations.iter().filter(|d| !behind(n, d.host)) {
                let f = out.entry((d.ip, d.port)).or_insert(Flows {
                    from,
                    steady: true,
                    resets: true,
                    ..Flows::default()
                });
                f.per_s += share;
                f.open += share * open_time(w);
                f.steady &= steady(w, sc.duration);
                f.resets &= w.linger_zero;
                if from != "arrival rate" {
                    f.from = from;
                }
            }
        }
    }
    out
}

fn behind(n: &NatSpec, host: u16) -> bool {
    n.behind.contains(&(host as usize))
}

/// The plan of `n`'s pairs toward `dest`; `single` when it is the NAT's only destination.
fn plan_one(
    sc: &Scenario,
    r: &Report,
    n: &NatSpec,
    info: &NatInfo,
    dest: &(u32, u16),
    f: &Flows,
    single: bool,
) -> NatPlan {
    let cfg = &n.config;
    let destination = format!("{}:{}", Ipv4Addr::from(dest.0), dest.1);
    let state = if f.resets {
        CtState::Close
    } else {
        CtState::TimeWait
    };
    let hold = cfg.timeouts[state as usize].as_secs_f64();
    let connection_s = if f.per_s > 0.0 { f.open / f.per_s } else { 0.0 };
    let (ports, formula, cloud) = match &cfg.cloud {
        None => {
            let ports = n.ips.len() as u32 * cfg.ports_per_address();
            (ports, f64::from(ports) / hold, None)
        }
        Some(c) => {
            let vms = vms(sc, n);
            let cap = capacity(c, n.ips.len() as u32, vms);
            // A flow holds its pair while open and for the hold after: at least a
            // nanosecond, so that an empty workload divides by something.
            let life = (connection_s + hold).max(1e-9);
            let per_vm_offered = f.per_s / f64::from(vms.max(1));
            let limit = CloudLimit {
                provider: c.provider.profile(),
                allocation: match c.allocation {
                    Allocation::Shared { .. } => "shared",
                    Allocation::PerVm { .. } => "ports per VM",
                    Allocation::Dynamic { .. } => "dynamic",
                },
                vms,
                vms_with_ports: cap.vms_with_ports,
                ports_per_vm: cap.per_vm,
                per_destination: match c.allocation {
                    Allocation::Shared { per_destination } => {
                        Some(per_destination.min(c.ports_per_address))
                    }
                    _ => None,
                },
                connection_s: round(connection_s, 6),
                per_vm_limit_per_s: cap.per_vm.map(|p| round(f64::from(p) / life, 3)),
                per_vm_offered_per_s: round(per_vm_offered, 3),
            };
            let pairs = cap.pairs.min(u64::from(u32::MAX)) as u32;
            (pairs, f64::from(pairs) / life, Some(limit))
        }
    };
    let evicts = cfg.cloud.is_none() && cfg.rule.kernel >= EVICTS_SINCE;
    let limit = (!evicts).then_some(formula);
    let simulated = carried(sc, r, n, &destination, single);
    let short = info.drops.values().sum::<u64>() > 0;
    let saturated = simulated
        .filter(|c| short && f.steady && *c > 0.0 && *c < f.per_s * (1.0 - RATE_TOLERANCE));
    let over = limit.is_some_and(|l| f.per_s > l);
    NatPlan {
        nat: n.name.clone(),
        addresses: n
            .ips
            .iter()
            .map(|a| Ipv4Addr::from(*a).to_string())
            .collect(),
        behind: n.behind.iter().map(|&h| sc.hosts[h].name.clone()).collect(),
        destination,
        ports_per_address: cloud
            .as_ref()
            .and_then(|c| c.per_destination)
            .unwrap_or(cfg.ports_per_address()),
        ports,
        hold_state: state.name(),
        hold_s: hold,
        formula_limit_per_s: round(formula, 3),
        limit_per_s: limit.map(|l| round(l, 3)),
        offered_per_s: round(f.per_s, 3),
        offered_from: f.from,
        open_steady: round(f.open, 1),
        syns_dropped: info.drops.clone(),
        saturated_per_s: saturated.map(|s| round(s, 3)),
        headroom_percent: saturated
            .or(limit)
            .map(|l| round(100.0 * (l - f.per_s) / l, 1)),
        exhausted_at_s: over.then(|| round(f64::from(ports) / f.per_s, 3)),
        failing_per_s: limit
            .filter(|_| over)
            .map_or(0.0, |l| round(f.per_s - l, 3)),
        simulated_per_s: simulated.map(|s| round(s, 3)),
        formula_error_percent: (over && !evicts)
            .then(|| simulated.map(|s| round(100.0 * (s - formula) / formula, 3)))
            .flatten(),
        notes: match &cloud {
            Some(c) => cloud_notes(n, info, f, c, ports, hold, state),
            None => notes(n, info, f, ports, evicts),
        },
        cloud,
    }
}

/// What else decides a cloud gateway's limit, and the UNVERIFIED parameters its numbers
/// follow from.
fn cloud_notes(
    n: &NatSpec,
    info: &NatInfo,
    f: &Flows,
    c: &CloudLimit,
    pairs: u32,
    hold: f64,
    state: CtState,
) -> Vec<String> {
    let Some(cloud) = &n.config.cloud else {
        return vec![];
    };
    let mut out = vec![];
    let p = cloud.provider;
    match (p, state) {
        (Provider::Aws, _) if hold == 0.0 => out.push(format!(
            "assumes AWS holds no port after a close (hold_after_close_sec = 0, UNVERIFIED: AWS documents none): the limit is then flows open at once, {} toward the destination; a hold would lower it to addresses × 55,000 / (connection time + hold)",
            group(u64::from(pairs))
        )),
        (Provider::Aws, _) => out.push(format!(
            "assumes AWS holds a port {hold} s after a close (hold_after_close_sec, UNVERIFIED: AWS documents none)"
        )),
        (Provider::AzureLb, CtState::TimeWait) => out.push(format!(
            "assumes the load balancer holds a port {hold} s after FINs (hold_after_fin_sec, UNVERIFIED: App Service's figure for the same SNAT)"
        )),
        (Provider::AzureLb, _) => out.push(format!(
            "assumes the load balancer holds a port {hold} s after an RST (hold_after_rst_sec, UNVERIFIED: App Service's figure for the same SNAT)"
        )),
        (Provider::Gcp, CtState::Close) => out.push(format!(
            "assumes Cloud NAT holds a port closed by an RST for tcp_transitory_idle_timeout_sec ({hold} s, UNVERIFIED)"
        )),
        _ => {}
    }
    if c.allocation == "dynamic" {
        out.push(
            "dynamic allocation: the limit takes every VM at its max_ports_per_vm (or its share of the addresses); it assumes the allocation doubles at once when a flow finds no port (UNVERIFIED), where Cloud NAT drops packets while it grows".into(),
        );
    }
    if c.vms_with_ports < c.vms {
        out.push(format!(
            "{} of {} VMs get no ports: the addresses hold {} blocks of {} (their traffic is all dropped)",
            group(u64::from(c.vms - c.vms_with_ports)),
            group(u64::from(c.vms)),
            group(u64::from(c.vms_with_ports)),
            c.ports_per_vm.unwrap_or(0)
        ));
    }
    if f.open > f64::from(pairs) {
        out.push(format!(
            "{} flows are open at once (offered × connection time), more than its {} pairs: open connections alone exhaust it",
            group(f.open.round() as u64),
            group(u64::from(pairs))
        ));
    }
    let idle = info
        .drops
        .get(p.idle_timeouts())
        .or_else(|| info.counters.get(p.idle_timeouts()))
        .copied()
        .unwrap_or(0);
    if idle > 0 {
        out.push(format!(
            "{} flows ended by the idle timeout ({})",
            group(idle),
            p.idle_timeouts()
        ));
    }
    out
}

/// Established per second toward `dest` over the sustained window, summed over the client
/// pools behind `n`; none where a pool serves several destinations and `dest` is not the
/// NAT's only one.
fn carried(sc: &Scenario, r: &Report, n: &NatSpec, dest: &str, single: bool) -> Option<f64> {
    let mine = r.pools.iter().filter(|p| {
        sc.hosts
            .iter()
            .position(|h| h.name == p.host)
            .is_some_and(|h| n.behind.contains(&h))
    });
    let mut sum = 0.0;
    for p in mine {
        match p.destination.as_deref() {
            Some(d) if d != dest => {}
            Some(_) => sum += p.sustained_per_s?,
            None if single => sum += p.sustained_per_s?,
            None => return None,
        }
    }
    Some(sum)
}

/// What else decides the NAT's limit: eviction (6.5+), the address each client address
/// takes, flows held open.
fn notes(n: &NatSpec, info: &NatInfo, f: &Flows, ports: u32, evicts: bool) -> Vec<String> {
    let mut out = vec![];
    let (major, minor) = n.config.rule.kernel;
    if evicts {
        out.push(format!(
            "kernel {major}.{minor} (6.5 or later): a SYN whose port search runs short evicts a TIME_WAIT or CLOSE entry whose sequence it has passed (nf_nat_used_tuple_harder), so the formula bounds the hold from above and the run decides the limit; {} entries evicted",
            group(info.counters.get("evicted").copied().unwrap_or(0))
        ));
    }
    if n.ips.len() > 1 {
        out.push(
            "each client address takes one NAT address per destination address (find_best_ips_proto hashes the two), so every address is used only when the client addresses spread over them".into(),
        );
    }
    if f.open > f64::from(ports) {
        out.push(format!(
            "{} flows are open at once (offered × connection time), more than its {} pairs: open connections alone exhaust it",
            group(f.open.round() as u64),
            group(u64::from(ports))
        ));
    }
    out
}
