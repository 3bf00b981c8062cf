//! A live run through a NAT: what the real kernel can do of a `[[nat]]` ([`check`]), the
//! namespaces and rule ([`set_up`], [`super::topology`]), the conntrack table watched at
//! every bin's end ([`Watch`]), and the rows the verdict judges ([`rows`]).
//!
//! What is compared, predicted against measured, at the scenario's end (the last bin's
//! sample, taken before the clients reset what they still hold):
//! `nat_ports_in_use` (distinct NAT address and port pairs the entries hold),
//! `conntrack_entries`, `conntrack_<state>` per TCP state (`conntrack -L`'s names, lower
//! case), and over the whole run `conntrack -S`'s `insert_failed`, `drop`
//! (`conntrack_drop`) and `early_drop`.

use super::conntrack::{Conntrack, Snapshot};
use super::topology::{self, NatNet};
use super::{LiveError, netns};
use crate::nat::NatConfig;
use crate::report::Report;
use crate::scenario::Scenario;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// The documentation ranges (RFC 5737) a run through a NAT may use: its addresses cross
/// veth links, where loopback ones cannot, and these are nobody's.
const TEST_NETS: [(u32, &str); 3] = [
    (0xC000_0200, "192.0.2.0/24"),
    (0xC633_6400, "198.51.100.0/24"),
    (0xCB00_7100, "203.0.113.0/24"),
];

fn in_test_nets(a: u32) -> bool {
    TEST_NETS.iter().any(|&(net, _)| a & 0xFFFF_FF00 == net)
}

/// Refuses a NAT scenario the live topology cannot run: more than one NAT, a workload whose
/// client is not behind it or whose destination is, a listener behind it, an address
/// outside the documentation ranges, a `kernel` other than this machine's.
pub fn check(sc: &Scenario) -> Result<(), LiveError> {
    let Some(spec) = sc.nats.first() else {
        return Ok(());
    };
    let refuse = |m: String| Err(LiveError::Refused(m));
    if sc.nats.len() > 1 {
        return refuse(format!(
            "live mode runs one NAT, with every client behind it; this scenario has {}",
            sc.nats.len()
        ));
    }
    let behind = |h: u16| spec.behind.contains(&usize::from(h));
    for w in &sc.workloads {
        if w.sources.iter().any(|s| !behind(s.host)) {
            return refuse(format!(
                "workload {:?}: its client is not behind NAT {:?}; live mode runs every client \
                 in the namespace behind the NAT",
                w.name, spec.name
            ));
        }
        if w.destinations.iter().any(|d| behind(d.host)) {
            return refuse(format!(
                "workload {:?} connects to a host behind NAT {:?}; live mode runs the servers \
                 outside it",
                w.name, spec.name
            ));
        }
    }
    if let Some(c) = &spec.config.cloud {
        return refuse(format!(
            "NAT {:?} is a cloud gateway ({}): live mode runs the Linux NAT of this machine's \
             kernel only; a provider's gateway runs in its cloud",
            spec.name,
            c.provider.profile()
        ));
    }
    for &h in &spec.behind {
        if !sc.hosts[h].listen.is_empty() {
            return refuse(format!(
                "host {:?} is behind NAT {:?} and listens; live mode runs the servers outside it",
                sc.hosts[h].name, spec.name
            ));
        }
    }
    let ips = sc.hosts.iter().flat_map(|h| h.ips.iter()).chain(&spec.ips);
    if let Some(a) = ips.into_iter().find(|&&a| !in_test_nets(a)) {
        return refuse(format!(
            "{}: a live run through a NAT uses only the documentation ranges {} (its addresses \
             cross veth links between namespaces, where loopback cannot)",
            Ipv4Addr::from(*a),
            TEST_NETS.map(|t| t.1).join(", ")
        ));
    }
    let default = default_config(spec.ips.clone()).rule.kernel;
    let here = running_kernel();
    if spec.config.rule.kernel != default && Some(spec.config.rule.kernel) != here {
        let (a, b) = spec.config.rule.kernel;
        return refuse(format!(
            "NAT {:?} sets kernel = \"{a}.{b}\"; live mode runs this machine's kernel only",
            spec.name
        ));
    }
    Ok(())
}

fn default_config(ips: Vec<u32>) -> NatConfig {
    NatConfig::named("linux-masquerade", ips).expect("the default NAT profile exists")
}

/// This machine's kernel, (major, minor).
pub fn running_kernel() -> Option<(u32, u32)> {
    let u = nix::sys::utsname::uname().ok()?;
    let release = u.release().to_string_lossy().into_owned();
    let mut it = release.split(['.', '-']);
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// A NAT made real and watched.
pub struct NatRun {
    pub net: NatNet,
    pub watch: Watch,
}

/// Builds the scenario's NAT around the calling thread's namespace and opens its conntrack
/// table; notes the rule. `None` for a scenario without one.
pub fn set_up(sc: &Scenario, notes: &mut Vec<String>) -> Result<Option<NatRun>, LiveError> {
    let Some(spec) = sc.nats.first() else {
        return Ok(None);
    };
    let mut net = topology::build(sc, spec)?;
    if let Some(k) = running_kernel() {
        net.effective.rule.kernel = k;
    }
    let ct = topology::within(&net.router, Conntrack::open)?
        .map_err(|e| LiveError::Namespace(e.to_string()))?;
    let rule = net
        .ruleset
        .lines()
        .find(|l| l.contains("l4proto tcp"))
        .unwrap_or("")
        .trim()
        .to_string();
    notes.push(format!(
        "NAT {:?}: clients in their own namespace, a router namespace with ip_forward = 1 and \
         the nftables rule `{rule}`, the servers outside",
        spec.name
    ));
    let watch = Watch {
        ct,
        ips: net.ips.clone(),
        samples: Vec::new(),
        counters: BTreeMap::new(),
    };
    Ok(Some(NatRun { net, watch }))
}

/// The conntrack timeouts a fault may change in the router's namespace.
const FAULT_PREFIX: &str = "net.netfilter.nf_conntrack_tcp_timeout_";

/// Fault injection through a NAT: a conntrack timeout is written into the router's namespace
/// (`Some(value read back)`), any other knob into the clients' namespace as well as the
/// servers' (`None`: the caller writes the servers').
pub fn inject(run: Option<&NatRun>, name: &str, value: &str) -> Result<Option<String>, LiveError> {
    let Some(r) = run else {
        return Ok(None);
    };
    if let Some(state) = name.strip_prefix(FAULT_PREFIX) {
        if !crate::nat::conntrack::CtState::ALL
            .iter()
            .any(|s| s.sysctl_suffix() == state)
        {
            return Err(LiveError::Refused(format!(
                "--fault-sysctl {name}: no such conntrack TCP timeout"
            )));
        }
        return topology::within(&r.net.router, || netns::write(name, value))?.map(Some);
    }
    topology::within(&r.net.inside, || netns::inject(name, value))??;
    Ok(None)
}

/// The router's conntrack table, sampled at every bin's end.
pub struct Watch {
    ct: Conntrack,
    ips: Vec<u32>,
    pub samples: Vec<Snapshot>,
    /// `conntrack -S` at the last sample.
    pub counters: BTreeMap<&'static str, u64>,
}

impl Watch {
    /// Samples the table now.
    pub fn sample(&mut self) -> Result<(), LiveError> {
        let entries = self
            .ct
            .entries()
            .map_err(|e| LiveError::Io(e.to_string()))?;
        self.samples.push(Snapshot::of(&entries, &self.ips));
        Ok(())
    }

    /// Reads the counters (after the last sample).
    pub fn finish(&mut self) -> Result<(), LiveError> {
        self.counters = self
            .ct
            .counters()
            .map_err(|e| LiveError::Io(e.to_string()))?;
        Ok(())
    }
}

/// What the NAT did, measured.
#[derive(Serialize, Debug)]
pub struct MeasuredNat {
    pub name: String,
    /// The table at the last sample.
    pub at_end: NatBin,
    pub ports_in_use_peak_sampled: u64,
    pub entries_peak_sampled: u64,
    /// `conntrack -S`, summed over CPUs, at the end.
    pub counters: BTreeMap<&'static str, u64>,
}

/// The NAT's gauges at a bin's end, as measured.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
pub struct NatBin {
    pub nat_ports_in_use: u64,
    pub conntrack_entries: u64,
    pub conntrack_states: BTreeMap<String, u64>,
}

impl NatBin {
    pub fn of(s: &Snapshot) -> NatBin {
        NatBin {
            nat_ports_in_use: s.ports_in_use,
            conntrack_entries: s.entries,
            conntrack_states: s.states.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        }
    }
}

impl MeasuredNat {
    /// From the watch, its first `bins` samples (all when the run was whole).
    pub fn of(name: &str, w: &Watch, bins: usize) -> MeasuredNat {
        let kept = &w.samples[..bins.min(w.samples.len())];
        MeasuredNat {
            name: name.to_string(),
            at_end: kept.last().map(NatBin::of).unwrap_or_default(),
            ports_in_use_peak_sampled: kept.iter().map(|s| s.ports_in_use).max().unwrap_or(0),
            entries_peak_sampled: kept.iter().map(|s| s.entries).max().unwrap_or(0),
            counters: w.counters.clone(),
        }
    }
}

/// The prediction's NAT settings: those the router's kernel read back.
pub fn predict_with(sc: &mut Scenario, run: &NatRun) {
    if let Some(spec) = sc.nats.first_mut() {
        spec.config = run.net.effective.clone();
    }
}

/// The NAT rows of the verdict: (metric, predicted, measured).
pub fn rows(p: &Report, m: &[MeasuredNat]) -> Vec<(String, f64, f64)> {
    let Some(measured) = m.first() else {
        return Vec::new();
    };
    let last = p.series.last();
    let at = |v: Option<&Vec<u64>>| v.and_then(|v| v.first()).copied().unwrap_or(0) as f64;
    let mut rows = vec![
        (
            "nat_ports_in_use".to_string(),
            at(last.map(|b| &b.nat_ports_in_use)),
            measured.at_end.nat_ports_in_use as f64,
        ),
        (
            "conntrack_entries".to_string(),
            at(last.map(|b| &b.conntrack_entries)),
            measured.at_end.conntrack_entries as f64,
        ),
    ];
    let predicted_states: BTreeMap<String, u64> = last
        .and_then(|b| b.conntrack_states.first())
        .map(|s| s.iter().map(|(k, v)| (k.to_string(), *v)).collect())
        .unwrap_or_default();
    let mut names: Vec<&String> = predicted_states
        .keys()
        .chain(measured.at_end.conntrack_states.keys())
        .collect();
    names.sort();
    names.dedup();
    for s in names {
        rows.push((
            format!("conntrack_{}", s.to_lowercase()),
            predicted_states.get(s).copied().unwrap_or(0) as f64,
            measured
                .at_end
                .conntrack_states
                .get(s)
                .copied()
                .unwrap_or(0) as f64,
        ));
    }
    let counter = |name: &str| {
        p.nat
            .first()
            .and_then(|n| n.counters.get(name))
            .copied()
            .unwrap_or(0) as f64
    };
    for (metric, name) in [
        ("insert_failed", "insert_failed"),
        ("conntrack_drop", "drop"),
        ("early_drop", "early_drop"),
    ] {
        let got = measured.counters.get(name).copied().unwrap_or(0) as f64;
        rows.push((metric.to_string(), counter(name), got));
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_documentation_ranges_cross_the_nat() {
        assert!(in_test_nets(u32::from(Ipv4Addr::new(192, 0, 2, 7))));
        assert!(in_test_nets(u32::from(Ipv4Addr::new(198, 51, 100, 1))));
        assert!(in_test_nets(u32::from(Ipv4Addr::new(203, 0, 113, 10))));
        assert!(!in_test_nets(u32::from(Ipv4Addr::new(127, 0, 0, 1))));
        assert!(!in_test_nets(u32::from(Ipv4Addr::new(10, 0, 0, 1))));
        assert!(!in_test_nets(u32::from(Ipv4Addr::new(192, 0, 3, 1))));
    }

    #[test]
    fn the_rule_masquerades_one_address_and_snats_a_range() {
        let mut cfg = default_config(vec![0xCB00_710A]);
        cfg.rule.ports = Some((40000, 40009));
        cfg.rule.fully_random = true;
        assert!(
            topology::nft_script(&cfg)
                .contains("meta l4proto tcp masquerade to :40000-40009 fully-random")
        );
        cfg.rule.ips = vec![0xCB00_710A, 0xCB00_710B];
        cfg.rule.fully_random = false;
        cfg.rule.random = true;
        cfg.rule.persistent = true;
        assert!(
            topology::nft_script(&cfg)
                .contains("snat ip to 203.0.113.10-203.0.113.11:40000-40009 random,persistent")
        );
        cfg.rule.ips.truncate(1);
        cfg.rule.ports = None;
        cfg.rule.random = false;
        cfg.rule.persistent = false;
        assert!(topology::nft_script(&cfg).contains("meta l4proto tcp masquerade\n"));
    }
}
