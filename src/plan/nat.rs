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

use super::{LimitSource, RATE_TOLERANCE, Scenario, open_time, round, steady, workload_rate};
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
    let ports = n.ips.len() as u32 * cfg.ports_per_address();
    let formula = f64::from(ports) / hold;
    let evicts = cfg.rule.kernel >= EVICTS_SINCE;
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
        ports_per_address: cfg.ports_per_address(),
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
        notes: notes(n, info, f, ports, evicts),
    }
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
