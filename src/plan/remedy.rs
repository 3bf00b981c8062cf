//! Remedies from the httperf seed and the reference, each made as a change to the scenario
//! and simulated. Those that keep TIME-WAIT's protection are ranked: fixes ([`fixes`]) by
//! effort, the rest by what users get ([`rank_key`], [`by_what_users_get`]); each carries its
//! operational cost (fixed text about the change) apart from what its run showed against
//! today's ([`findings`], derived). SO_LINGER 0 and a shorter TIME-WAIT are simulated too but
//! listed apart, never as fixes: they bring ports back by reusing four-tuples an old segment
//! may still arrive for (the seed's silent data corruption).

use super::{Assessment, LimitSource, Outcome, RATE_TOLERANCE, TARGET_USE, assess_seeds, round};
use crate::profile::Kernel;
use crate::replicate::Seeds;
use crate::report::{Report, decimal, group};
use crate::scenario::{self, Scenario};
use crate::workload::{Arrival, Closer, Mode};
use rayon::prelude::*;
use serde::Serialize;
use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use toml::{Table, Value};

pub mod cloud;
pub mod library;
pub mod nat;

/// One change, simulated.
#[derive(Serialize, Debug, Clone)]
pub struct Remedy {
    pub title: String,
    /// The exact knob or code change, per kernel.
    pub how: Vec<String>,
    /// The scenario changes that were simulated.
    pub simulated_change: Vec<String>,
    /// See [`fixes`].
    pub fixes: bool,
    /// The simulated run; none when the change could not be simulated.
    pub outcome: Option<Outcome>,
    /// Why the change was not simulated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_simulated: Option<String>,
    /// What the simulation showed against today's run ([`findings`]).
    pub findings: Vec<String>,
    /// What the change costs operationally: facts about the change, never about its result.
    pub side_effects: String,
    /// How much the change asks of people (lower first among fixes).
    #[serde(skip)]
    effort: u8,
    /// Each seed's outcome, in seed order (the one run's without `--seeds`).
    #[serde(skip)]
    runs: Vec<Outcome>,
}

impl Remedy {
    /// The distribution of requests per second over the seeds of a replicated plan.
    fn spread(&self) -> Option<&crate::replicate::Stat> {
        self.outcome
            .as_ref()?
            .replicates
            .as_ref()?
            .get("requests_per_s")
    }

    /// What a user gets, as the table shows it: the one run, or the mean over the seeds.
    pub fn shown(&self) -> Option<Outcome> {
        Some(Outcome::shown(self.outcome.as_ref()?, &self.runs))
    }
}

/// A remedy before it is simulated.
struct Variant {
    title: String,
    how: Vec<String>,
    simulated_change: Vec<String>,
    side_effects: String,
    effort: u8,
    doc: Table,
}

impl Variant {
    /// An empty change to `doc`, filled in by one remedy.
    fn draft(doc: &Table) -> Variant {
        Variant {
            title: String::new(),
            how: vec![],
            simulated_change: vec![],
            side_effects: String::new(),
            effort: 0,
            doc: doc.clone(),
        }
    }

    /// The remedy, if it changed anything.
    fn done(self, title: impl Into<String>, side_effects: &str, effort: u8) -> Option<Variant> {
        (!self.simulated_change.is_empty()).then(|| Variant {
            title: title.into(),
            side_effects: side_effects.into(),
            effort,
            ..self
        })
    }
}

fn hosts(doc: &mut Table) -> &mut Vec<Value> {
    doc.get_mut("host")
        .and_then(Value::as_array_mut)
        .expect("a parsed scenario has hosts")
}

/// The `[[host]]` table named `name` (a fleet's, by the fleet's name), if the file has one.
fn host_mut<'a>(doc: &'a mut Table, name: &str) -> Option<&'a mut Table> {
    hosts(doc)
        .iter_mut()
        .filter_map(Value::as_table_mut)
        .find(|h| h.get("name").and_then(Value::as_str) == Some(name))
}

fn workload_mut<'a>(doc: &'a mut Table, name: &str) -> &'a mut Table {
    doc.get_mut("workload")
        .and_then(Value::as_array_mut)
        .expect("a parsed scenario has workloads")
        .iter_mut()
        .filter_map(Value::as_table_mut)
        .find(|w| w.get("name").and_then(Value::as_str) == Some(name))
        .expect("the workload exists")
}

/// The `[[nat]]` host `name` is behind, if any.
fn nat_behind<'a>(doc: &'a mut Table, name: &str) -> Option<&'a mut Table> {
    doc.get_mut("nat")?
        .as_array_mut()?
        .iter_mut()
        .filter_map(Value::as_table_mut)
        .find(|n| {
            n.get("behind")
                .and_then(Value::as_array)
                .is_some_and(|b| b.iter().any(|h| h.as_str() == Some(name)))
        })
}

fn sub<'a>(t: &'a mut Table, key: &str) -> &'a mut Table {
    t.entry(key)
        .or_insert_with(|| Value::Table(Table::new()))
        .as_table_mut()
        .expect("a table")
}

fn strings(v: Vec<String>) -> Value {
    Value::Array(v.into_iter().map(Value::String).collect())
}

/// Addresses not used by any host or NAT, after `from`.
struct FreshIps {
    used: BTreeSet<u32>,
    next: u32,
}

impl FreshIps {
    fn new(sc: &Scenario, from: u32) -> FreshIps {
        let nats = sc.nats.iter().flat_map(|n| n.ips.iter().copied());
        FreshIps {
            used: sc
                .hosts
                .iter()
                .flat_map(|h| h.ips.iter().copied())
                .chain(nats)
                .collect(),
            next: from,
        }
    }
    fn take(&mut self) -> String {
        loop {
            self.next = self.next.wrapping_add(1);
            if self.used.insert(self.next) {
                return Ipv4Addr::from(self.next).to_string();
            }
        }
    }
}

/// The workloads a remedy changes: those that fail, or whose limits (client pools, NATs
/// they cross) have less than 20 % headroom; and the factor of capacity they need for 20 %
/// headroom.
fn targets(sc: &Scenario, r: &Report, now: &Assessment) -> (Vec<usize>, u32) {
    let limits = now.limits();
    let tight: Vec<&super::Limit> = limits
        .iter()
        .filter(|l| {
            l.headroom_percent()
                .is_some_and(|h| h < 100.0 * (1.0 - TARGET_USE))
        })
        .collect();
    let tight_hosts: BTreeSet<&str> = tight.iter().flat_map(|l| l.hosts()).collect();
    let mut out = vec![];
    for (i, (w, ws)) in sc.workloads.iter().zip(&r.workloads).enumerate() {
        let mut hosts = w
            .sources
            .iter()
            .map(|s| sc.hosts[s.host as usize].name.as_str());
        if ws.failed > 0 || hosts.any(|h| tight_hosts.contains(h)) {
            out.push(i);
        }
    }
    let by_limit = tight
        .iter()
        .filter_map(|l| Some(l.offered_per_s() / l.headroom_limit()?.0))
        .fold(0.0, f64::max);
    let o = &now.outcome;
    let by_sim = if o.established > 0 {
        o.attempted as f64 / o.established as f64
    } else {
        64.0
    };
    let need = by_limit.max(by_sim) / TARGET_USE;
    (out, (need.ceil() as u32).clamp(2, 64))
}

/// Builds every remedy that applies, simulates each (in parallel) and ranks them.
pub fn evaluate(
    file: &str,
    text: &str,
    sc: &Scenario,
    r: &Report,
    now: &Assessment,
    seeds: Option<Seeds>,
) -> (Vec<Remedy>, Vec<Remedy>) {
    let (targets, m) = targets(sc, r, now);
    if targets.is_empty() {
        return (vec![], vec![]);
    }
    let doc: Table = toml::from_str(text).expect("a parsed scenario is TOML");
    let variants: Vec<Variant> = [
        port_range(sc, &targets, &doc),
        nat::port_range(sc, &targets, &doc),
        tw_reuse(sc, &targets, &doc),
        nat::fully_random(sc, &targets, &doc),
        nat::time_wait_as_tcp(sc, &targets, &doc),
        cloud::gcp_min_ports(sc, &targets, &doc),
        cloud::gcp_dynamic(sc, &targets, &doc),
        cloud::gcp_time_wait(sc, &targets, &doc),
        cloud::gcp_addresses(sc, &targets, &doc),
        cloud::aws_addresses(sc, &targets, &doc),
        cloud::azure_lb_ports(sc, &targets, &doc),
        cloud::azure_nat_ips(sc, &targets, &doc),
        cloud::app_service_nat_gateway(sc, &targets, &doc),
        keep_alive(sc, &targets, &doc, m),
        bind_no_port(sc, &targets, &doc),
        client_ips(sc, &targets, &doc, m),
        destinations(sc, &targets, &doc, m),
        nat::addresses(sc, &targets, &doc, m),
        clients(sc, &targets, &doc, m),
        linger_zero(sc, &targets, &doc),
        short_time_wait(sc, &targets, &doc),
        nat::time_wait_quarter(sc, &targets, &doc),
    ]
    .into_iter()
    .flatten()
    .chain(library::remedies(sc, &targets, &doc))
    .collect();
    let today = now.shown();
    let done: Vec<Remedy> = variants
        .into_par_iter()
        .map(|v| {
            let run = toml::to_string(&v.doc)
                .map_err(|e| e.to_string())
                .and_then(|text| scenario::parse(file, &text).map_err(|e| e.message))
                .map(|sc| assess_seeds(&sc, seeds).1);
            let (outcome, runs, not_simulated) = match run {
                Ok(a) => (Some(a.outcome), a.runs, None),
                Err(why) => (None, vec![], Some(why)),
            };
            // A fix fixes every seed's run, each against today's with the same seed.
            let fixes_all =
                !runs.is_empty() && runs.iter().zip(&now.runs).all(|(o, t)| fixes(o, t));
            let mut r = Remedy {
                title: v.title,
                how: v.how,
                simulated_change: v.simulated_change,
                fixes: v.effort < NOT_RECOMMENDED && fixes_all,
                findings: vec![],
                outcome,
                not_simulated,
                side_effects: v.side_effects,
                effort: v.effort,
                runs,
            };
            if let Some(o) = r.shown() {
                r.findings = findings(&o, &today);
            }
            if let (Some(seeds), Some(s)) = (seeds, r.spread()) {
                r.findings.push(format!(
                    "over seeds {seeds}: requests/s p5 {} to p95 {}, min {}, max {}",
                    decimal(s.p5, 1),
                    decimal(s.p95, 1),
                    decimal(s.min, 1),
                    decimal(s.max, 1)
                ));
            }
            r
        })
        .collect();
    let (bad, good): (Vec<Remedy>, Vec<Remedy>) =
        done.into_iter().partition(|r| r.effort >= NOT_RECOMMENDED);
    (rank(good), rank(bad))
}

/// Effort from which a change gives up TIME-WAIT's protection: listed apart, never a fix.
const NOT_RECOMMENDED: u8 = 100;

/// How remedies are ranked, as the plan prints it above the table.
pub fn ranking() -> String {
    format!(
        "remedies, best first: fixes (no failed or stalled connect, no more four-tuples reused unprotected than today,\n{:.0} % headroom) by effort; then by requests completed per second (equal within {:.0} %), fewer failed + stalled\nconnects, less stall time, less unprotected reuse",
        100.0 * (1.0 - TARGET_USE),
        100.0 * RATE_TOLERANCE
    )
}

/// Whether a remedy's run fixes today's: no connect failed; none stalled past a SYN
/// retransmission; no more four-tuples reused unprotected than today; and the tightest pool
/// kept 20 % headroom.
///
/// A stalled connect counts against a fix as a failed one does: it waited in SYN-SENT at least
/// the kernel's first SYN retransmission timeout (Linux `TCP_TIMEOUT_INIT` 1 s, §2.4; XNU
/// from 100 ms toward loopback, notes/xnu-research.md §5), and on a SYN the peer's TIME-WAIT
/// will not accept, seconds more (§2.4, §3.2, §3.4): a user sees a hung request or a timeout
/// of their own, not a fixed service.
pub fn fixes(o: &Outcome, today: &Outcome) -> bool {
    o.failed == 0
        && o.stalled == 0
        && o.unprotected_reuse <= today.unprotected_reuse
        && o.headroom_percent
            .is_none_or(|h| h >= 100.0 * (1.0 - TARGET_USE) - 1e-9)
}

/// What a remedy that does not fix is ranked by: what its user gets. The fields are `f64` so
/// that means over seeds rank the same way.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RankKey {
    /// Higher first; equal within [`RATE_TOLERANCE`].
    pub requests_per_s: f64,
    /// Fewer first.
    pub failed_or_stalled: f64,
    /// Seconds stalled connects spent in SYN-SENT; less first.
    pub stall_s: f64,
    /// Less first.
    pub unprotected_reuse: f64,
}

/// The key one run is ranked by; a replicated remedy is ranked by its mean over the seeds
/// ([`Outcome::mean`]), which for one run is that run.
pub fn rank_key(o: &Outcome) -> RankKey {
    RankKey {
        requests_per_s: o.requests_per_s,
        failed_or_stalled: (o.failed + o.stalled) as f64,
        stall_s: o.stall_s,
        unprotected_reuse: o.unprotected_reuse as f64,
    }
}

/// Orders `items` by what users get, best first, each with its [`RankKey`] and effort.
///
/// Requests per second come first, but two that differ by less than [`RATE_TOLERANCE`] are
/// the same to a user, who should then get fewer failed and stalled connects: so the items
/// within the tolerance of the best one left form a tier, ordered by failed + stalled, stall
/// time, unprotected reuse, then effort; then the next tier. Tiers, rather than a comparator
/// with a tolerance, keep the order total (a tolerance is not transitive).
pub fn by_what_users_get<T>(items: Vec<(RankKey, u8, T)>) -> Vec<T> {
    let mut left = items;
    left.sort_by(|a, b| {
        b.0.requests_per_s
            .total_cmp(&a.0.requests_per_s)
            .then(a.1.cmp(&b.1))
    });
    let mut out = Vec::with_capacity(left.len());
    while let Some(best) = left.first().map(|x| x.0.requests_per_s) {
        let n = left
            .iter()
            .take_while(|x| x.0.requests_per_s >= best * (1.0 - RATE_TOLERANCE))
            .count();
        let mut tier: Vec<(RankKey, u8, T)> = left.drain(..n).collect();
        tier.sort_by(|a, b| {
            let (x, y) = (&a.0, &b.0);
            x.failed_or_stalled
                .total_cmp(&y.failed_or_stalled)
                .then(x.stall_s.total_cmp(&y.stall_s))
                .then(x.unprotected_reuse.total_cmp(&y.unprotected_reuse))
                .then(a.1.cmp(&b.1))
        });
        out.extend(tier.into_iter().map(|x| x.2));
    }
    out
}

/// Remedies, best first: fixes by effort, then the simulated rest by what users get
/// ([`by_what_users_get`]), then those that could not be simulated, by effort.
fn rank(remedies: Vec<Remedy>) -> Vec<Remedy> {
    let (mut fixed, rest): (Vec<Remedy>, Vec<Remedy>) = remedies.into_iter().partition(|r| r.fixes);
    fixed.sort_by_key(|r| r.effort);
    let (simulated, mut not_simulated): (Vec<Remedy>, Vec<Remedy>) =
        rest.into_iter().partition(|r| r.outcome.is_some());
    not_simulated.sort_by_key(|r| r.effort);
    let keyed = simulated
        .into_iter()
        .filter_map(|r| Some((rank_key(&r.shown()?), r.effort, r)))
        .collect();
    fixed
        .into_iter()
        .chain(by_what_users_get(keyed))
        .chain(not_simulated)
        .collect()
}

/// What a remedy's run showed against today's, each statement derived from the two outcomes:
/// the gain in requests per second, the connects still failing or stalling, unprotected
/// reuse, and the headroom left.
pub fn findings(o: &Outcome, today: &Outcome) -> Vec<String> {
    let mut out = vec![gain(o, today), shortfall(o, today)];
    out.extend(unprotected(o, today));
    out.push(headroom(o));
    out
}

/// `x` as a factor: a whole number from 10 up, one decimal from 1 up, two below.
fn factor(x: f64) -> String {
    match x {
        x if x >= 10.0 => format!("{x:.0}"),
        x if x >= 1.0 => format!("{x:.1}"),
        x => format!("{x:.2}"),
    }
}

fn gain(o: &Outcome, today: &Outcome) -> String {
    let (now, was) = (o.requests_per_s, today.requests_per_s);
    let rate = |x: f64| format!("{} /s", decimal(x, 1));
    if was <= 0.0 {
        return if now > 0.0 {
            format!(
                "{} requests completed, where none complete today",
                rate(now)
            )
        } else {
            "no request completes, as today".into()
        };
    }
    let r = now / was;
    if (r - 1.0).abs() < RATE_TOLERANCE {
        format!(
            "the same requests/s as today, within {:.0} % ({} against {})",
            100.0 * RATE_TOLERANCE,
            rate(now),
            rate(was)
        )
    } else {
        format!(
            "{}× today's requests/s ({} against {})",
            factor(r),
            rate(now),
            rate(was)
        )
    }
}

fn shortfall(o: &Outcome, today: &Outcome) -> String {
    let still = |before: u64| if before > 0 { "still " } else { "" };
    let failed = || {
        let errs: Vec<String> = o
            .errors
            .iter()
            .map(|(k, v)| format!("{} {k}", group(*v)))
            .collect();
        format!(
            "{} connects {}fail ({})",
            group(o.failed),
            still(today.failed),
            errs.join(", ")
        )
    };
    let stalled = || {
        format!(
            "{} {}stall past a SYN retransmission ({} s in SYN-SENT in all)",
            group(o.stalled),
            still(today.stalled),
            decimal(o.stall_s, 1)
        )
    };
    match (o.failed, o.stalled) {
        (0, 0) => "no connect fails or stalls".into(),
        (0, _) => format!("no connect fails, but {}", stalled()),
        (_, 0) => format!("{}; none stalls", failed()),
        _ => format!("{} and {}", failed(), stalled()),
    }
}

fn unprotected(o: &Outcome, today: &Outcome) -> Option<String> {
    let (n, t) = (o.unprotected_reuse, today.unprotected_reuse);
    (n > 0 || t > 0).then(|| {
        format!(
            "{} four-tuples reused with no TIME-WAIT protecting them ({} today)",
            group(n),
            group(t)
        )
    })
}

fn headroom(o: &Outcome) -> String {
    let at = match &o.tightest {
        Some(t) if !t.starts_with("pool ") => format!("at the tightest limit, {t},"),
        _ => "in the tightest pool,".into(),
    };
    match (
        o.headroom_percent,
        o.headroom_limit_per_s,
        o.headroom_limit_from,
    ) {
        (Some(h), Some(l), Some(LimitSource::Simulated)) => format!(
            "headroom {} % {at} against the {} /s it carried while saturated",
            decimal(h, 1),
            decimal(l, 1)
        ),
        (Some(h), Some(l), _) => format!(
            "headroom {} % {at} against its {} /s by the kernel's rule",
            decimal(h, 1),
            decimal(l, 1)
        ),
        _ => "no pool whose ports TIME-WAIT holds, so no headroom to take".into(),
    }
}

/// Client hosts of the target workloads, once each, in scenario order: a fleet once, by its
/// first instance (a knob set on the fleet's table reaches every instance).
fn client_hosts(sc: &Scenario, targets: &[usize]) -> Vec<usize> {
    let set: BTreeSet<usize> = targets
        .iter()
        .flat_map(|&i| sc.workloads[i].sources.iter().map(|s| s.host as usize))
        .collect();
    let mut seen = BTreeSet::new();
    set.into_iter()
        .filter(|&h| seen.insert(sc.hosts[h].file_name()))
        .collect()
}

fn port_range(sc: &Scenario, targets: &[usize], doc: &Table) -> Option<Variant> {
    let mut var = Variant::draft(doc);
    for h in client_hosts(sc, targets) {
        let host = &sc.hosts[h];
        let p = &host.profile;
        if p.range_len() >= 60_000 {
            continue;
        }
        let knobs = sub(host_mut(&mut var.doc, host.file_name())?, "knobs");
        match p.kernel {
            Kernel::Linux => {
                let lo = p.unprivileged_port_start.max(1024);
                knobs.insert(
                    "net.ipv4.ip_local_port_range".into(),
                    Value::String(format!("{lo} 65535")),
                );
                var.how.push(format!(
                    "{} (Linux): sysctl -w net.ipv4.ip_local_port_range=\"{lo} 65535\", and in /etc/sysctl.d/ to keep it",
                    host.file_name()
                ));
                var.simulated_change.push(format!(
                    "host.{}.knobs.\"net.ipv4.ip_local_port_range\" = \"{lo} 65535\"",
                    host.file_name()
                ));
            }
            Kernel::FreeBsd | Kernel::MacOs => {
                knobs.insert("net.inet.ip.portrange.first".into(), Value::Integer(1024));
                knobs.insert("net.inet.ip.portrange.last".into(), Value::Integer(65535));
                var.how.push(format!(
                    "{} ({}): sysctl net.inet.ip.portrange.first=1024 net.inet.ip.portrange.last=65535",
                    host.file_name(),
                    if p.kernel == Kernel::MacOs {
                        "macOS, with sudo; not kept across reboots"
                    } else {
                        "FreeBSD, and in /etc/sysctl.conf"
                    }
                ));
                var.simulated_change.push(format!(
                    "host.{}.knobs net.inet.ip.portrange.first = 1024, last = 65535",
                    host.file_name()
                ));
            }
            Kernel::Windows => {
                knobs.insert("dynamicport.tcp.start".into(), Value::Integer(1025));
                knobs.insert("dynamicport.tcp.num".into(), Value::Integer(64511));
                var.how.push(format!(
                    "{} (Windows): netsh int ipv4 set dynamicport tcp start=1025 num=64511",
                    host.file_name()
                ));
                var.simulated_change.push(format!(
                    "host.{}.knobs dynamicport.tcp.start = 1025, num = 64511",
                    host.file_name()
                ));
            }
        }
    }
    var.done("Widen the ephemeral port range to 1024–65535", "ports from 1024 up become ephemeral: a service that binds one of them after a client took it gets EADDRINUSE, so reserve those ports (Linux net.ipv4.ip_local_reserved_ports; elsewhere keep services above the range or move them); the range is then at its widest, 64,512 ports", 1)
}

fn tw_reuse(sc: &Scenario, targets: &[usize], doc: &Table) -> Option<Variant> {
    if targets
        .iter()
        .all(|&i| sc.workloads[i].closer != Closer::Client || sc.workloads[i].linger_zero)
    {
        return None;
    }
    let mut var = Variant::draft(doc);
    for h in client_hosts(sc, targets) {
        let host = &sc.hosts[h];
        let p = &host.profile;
        let loopback = targets.iter().any(|&i| {
            let w = &sc.workloads[i];
            w.sources.iter().any(|s| crate::host::is_loopback(s.ip))
                || w.destinations
                    .iter()
                    .any(|d| crate::host::is_loopback(d.ip))
        });
        if p.kernel != Kernel::Linux || p.tw_reuse == 1 || (p.tw_reuse == 2 && loopback) {
            continue;
        }
        let knobs = sub(host_mut(&mut var.doc, host.file_name())?, "knobs");
        knobs.insert("net.ipv4.tcp_tw_reuse".into(), Value::Integer(1));
        let mut line = format!("{}: sysctl -w net.ipv4.tcp_tw_reuse=1", host.file_name());
        var.simulated_change.push(format!(
            "host.{}.knobs.\"net.ipv4.tcp_tw_reuse\" = 1",
            host.file_name()
        ));
        if p.timestamps == 0 {
            knobs.insert("net.ipv4.tcp_timestamps".into(), Value::Integer(1));
            line.push_str(" and net.ipv4.tcp_timestamps=1 (reuse needs timestamps)");
            var.simulated_change.push(format!(
                "host.{}.knobs.\"net.ipv4.tcp_timestamps\" = 1",
                host.file_name()
            ));
        }
        var.how.push(line);
    }
    var.done("Let connect() reuse TIME-WAIT four-tuples (Linux tcp_tw_reuse = 1)", "outgoing connections only; reuse needs TCP timestamps on both ends (the server's too): PAWS then tells the new connection's segments from the old one's (§2.3); a peer or middlebox that strips timestamps gets no reuse, one that rewrites them inconsistently can drop the new SYN; a TIME-WAIT younger than tcp_tw_reuse_delay (1 s) is not reused", 2)
}

fn keep_alive(sc: &Scenario, targets: &[usize], doc: &Table, m: u32) -> Option<Variant> {
    let mut var = Variant::draft(doc);
    for &i in targets {
        let w = &sc.workloads[i];
        if w.pool.is_some() {
            // A client pool decides the requests per connection: its own settings are its
            // remedies ([`library`]).
            continue;
        }
        let k = w.requests_per_connection.saturating_mul(m);
        let t = workload_mut(&mut var.doc, &w.name);
        t.insert(
            "requests_per_connection".into(),
            Value::Integer(i64::from(k)),
        );
        // A fleet's file rate is each instance's; the workload holds their sum.
        let each = w.per_instance.as_ref().map_or(1, |p| p.instances()) as f64;
        let scale =
            |r: crate::workload::Rate| Value::Float(round(r.per_sec() / each / f64::from(m), 3));
        let arrival = sub(t, "arrival");
        match &w.arrival {
            Arrival::Constant(r) | Arrival::Poisson(r) => {
                arrival.insert("rate".into(), scale(*r));
            }
            Arrival::Steps { steps, .. } => {
                if let Some(list) = arrival.get_mut("steps").and_then(Value::as_array_mut) {
                    for (s, (_, r)) in list.iter_mut().zip(steps) {
                        if let Some(s) = s.as_table_mut() {
                            s.insert("rate".into(), scale(*r));
                        }
                    }
                }
            }
            Arrival::Bursts(bursts) => {
                let list = bursts
                    .iter()
                    .map(|(at, count)| {
                        let mut b = Table::new();
                        b.insert("at".into(), Value::String(format!("{}ns", at.0)));
                        let n = count.div_ceil(u64::from(m)).max(1);
                        b.insert("count".into(), Value::Integer(n as i64));
                        Value::Table(b)
                    })
                    .collect();
                for k in ["at", "count"] {
                    arrival.remove(k);
                }
                arrival.insert("bursts".into(), Value::Array(list));
            }
            Arrival::Closed { .. } => {}
        }
        var.how.push(format!(
            "{}: {k} requests per connection instead of {}: HTTP keep-alive or a connection pool in the client (httperf --num-calls={k}; wrk and oha keep connections alive unless told not to)",
            w.name, w.requests_per_connection
        ));
        var.simulated_change.push(format!(
            "workload.{}.requests_per_connection = {k}{}",
            w.name,
            if matches!(w.arrival, Arrival::Closed { .. }) {
                String::new()
            } else {
                format!(", new connections per second ÷ {m} (the same requests per second)")
            }
        ));
    }
    var.done(format!("Reuse connections: {m}× the requests per connection (keep-alive)"), "the client must reuse connections (HTTP keep-alive or a pool); the server must keep idle connections open at least as long as the client does (its keep-alive timeout); load balancers spread long connections less evenly", 3)
}

fn bind_no_port(sc: &Scenario, targets: &[usize], doc: &Table) -> Option<Variant> {
    let mut var = Variant::draft(doc);
    for &i in targets {
        let w = &sc.workloads[i];
        let linux = w
            .sources
            .iter()
            .all(|s| sc.hosts[s.host as usize].profile.kernel == Kernel::Linux);
        if w.mode != Mode::Bind || !linux {
            continue;
        }
        workload_mut(&mut var.doc, &w.name)
            .insert("connection".into(), Value::String("bind_no_port".into()));
        var.simulated_change
            .push(format!("workload.{}.connection = \"bind_no_port\"", w.name));
    }
    var.how = vec![
            "setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &1, sizeof(int)) before bind(): the port is chosen at connect() and shared by four-tuple, so each destination gets the whole range (Linux ≥ 4.2, §1.6)".into(),
        ];
    var.done(
        "Set IP_BIND_ADDRESS_NO_PORT before bind(ip, 0)",
        "a code change in the client (one setsockopt before bind)",
        4,
    )
}

fn client_ips(sc: &Scenario, targets: &[usize], doc: &Table, m: u32) -> Option<Variant> {
    let mut var = Variant::draft(doc);
    let first = sc.hosts.iter().flat_map(|h| h.ips.first()).copied().max()?;
    let mut fresh = FreshIps::new(sc, first);
    for &i in targets {
        let w = &sc.workloads[i];
        let hosts: BTreeSet<u16> = w.sources.iter().map(|s| s.host).collect();
        if hosts.len() != 1 {
            continue;
        }
        let host = &sc.hosts[w.sources[0].host as usize];
        let linux = host.profile.kernel == Kernel::Linux;
        let have = w.sources.len() as u32;
        let add = have * (m - 1);
        let new: Vec<String> = (0..add).map(|_| fresh.take()).collect();
        let h = host_mut(&mut var.doc, &host.name)?;
        let mut ips: Vec<String> = host
            .ips
            .iter()
            .map(|a| Ipv4Addr::from(*a).to_string())
            .collect();
        ips.extend(new.iter().cloned());
        h.insert("ips".into(), strings(ips));
        let t = workload_mut(&mut var.doc, &w.name);
        let mut src: Vec<String> = w
            .sources
            .iter()
            .map(|s| Ipv4Addr::from(s.ip).to_string())
            .collect();
        src.extend(new.iter().cloned());
        t.insert("source_ips".into(), strings(src));
        let mode = match w.mode {
            Mode::Connect if linux => "bind_no_port",
            Mode::Connect => "bind",
            other => other.name(),
        };
        if !matches!(w.mode, Mode::Explicit { .. }) {
            t.insert("connection".into(), Value::String(mode.into()));
        }
        var.how.push(format!(
            "{}: {} more address(es) on {} ({} in all), and the client spreads connections over them with {}",
            w.name,
            add,
            host.name,
            have + add,
            if mode == "bind_no_port" {
                "IP_BIND_ADDRESS_NO_PORT then bind(ip, 0) (Linux, §1.6)".to_string()
            } else {
                format!("bind(ip, 0) before connect() ({mode})")
            }
        ));
        var.simulated_change.push(format!(
            "host.{}.ips += {}; workload.{}.source_ips = all; connection = \"{mode}\"",
            host.name,
            new.join(", "),
            w.name
        ));
    }
    var.done(
        format!("More client IP addresses ({m}× the sources)"),
        "needs addresses routed back to the client and a client that binds its source address",
        5,
    )
}

fn destinations(sc: &Scenario, targets: &[usize], doc: &Table, m: u32) -> Option<Variant> {
    let mut var = Variant::draft(doc);
    let mut listening: BTreeSet<(u32, u16)> = sc
        .hosts
        .iter()
        .flat_map(|h| h.listen.iter().copied())
        .collect();
    for &i in targets {
        let w = &sc.workloads[i];
        let mut dests: Vec<String> = vec![];
        let mut added = vec![];
        for d in &w.destinations {
            dests.push(format!("{}:{}", Ipv4Addr::from(d.ip), d.port));
            let server = &sc.hosts[d.host as usize].name;
            let mut port = d.port;
            for _ in 1..m {
                loop {
                    port = port.checked_add(1)?;
                    if listening.insert((d.ip, port)) {
                        break;
                    }
                }
                let ep = format!("{}:{port}", Ipv4Addr::from(d.ip));
                let h = host_mut(&mut var.doc, server)?;
                let list = h
                    .entry("listen")
                    .or_insert_with(|| Value::Array(vec![]))
                    .as_array_mut()?;
                // A wildcard listener on the port already serves the address.
                let wildcard = format!("0.0.0.0:{port}");
                if !list.iter().any(|v| v.as_str() == Some(&wildcard)) {
                    list.push(Value::String(ep.clone()));
                }
                dests.push(ep.clone());
                added.push(ep);
            }
        }
        workload_mut(&mut var.doc, &w.name).insert("destinations".into(), strings(dests));
        var.how.push(format!(
            "{}: {m}× the destinations: the server listens on {} more port(s) or addresses (or a load balancer exposes more VIPs), and the client spreads connections over them",
            w.name,
            added.len()
        ));
        var.simulated_change.push(format!(
            "workload.{}.destinations += {}",
            w.name,
            added.join(", ")
        ));
    }
    var.done(format!("More server ports or addresses ({m}× the destinations)"), "the server must listen on more ports or addresses (or a load balancer expose more VIPs), and the client must spread its connections over them", 6)
}

fn clients(sc: &Scenario, targets: &[usize], doc: &Table, m: u32) -> Option<Variant> {
    let mut var = Variant::draft(doc);
    let first = sc.hosts.iter().flat_map(|h| h.ips.first()).copied().max()?;
    let mut fresh = FreshIps::new(sc, first.wrapping_add(1 << 16));
    let names: BTreeSet<String> = sc.hosts.iter().map(|h| h.name.clone()).collect();
    let mut made: BTreeSet<String> = BTreeSet::new();
    for &i in targets {
        let w = &sc.workloads[i];
        let own: Vec<&str> = w
            .sources
            .iter()
            .map(|s| sc.hosts[s.host as usize].name.as_str())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let per = w.sources.len() / own.len().max(1);
        let mut all: Vec<String> = own.iter().map(|s| s.to_string()).collect();
        let mut src: Vec<String> = w
            .sources
            .iter()
            .map(|s| Ipv4Addr::from(s.ip).to_string())
            .collect();
        let template = host_mut(&mut var.doc, own[0])?.clone();
        for k in own.len() + 1..=m as usize * own.len() {
            let name = (k..)
                .map(|n| format!("{}-{n}", own[0]))
                .find(|n| !names.contains(n) && !made.contains(n))?;
            made.insert(name.clone());
            let ips: Vec<String> = (0..per.max(1)).map(|_| fresh.take()).collect();
            let mut h = template.clone();
            h.insert("name".into(), Value::String(name.clone()));
            h.insert("ips".into(), strings(ips.clone()));
            h.remove("listen");
            hosts(&mut var.doc).push(Value::Table(h));
            // A machine added behind a NAT is behind it too: it shares the NAT's ports.
            if let Some(b) = nat_behind(&mut var.doc, own[0]).and_then(|n| n.get_mut("behind"))
                && let Some(list) = b.as_array_mut()
            {
                list.push(Value::String(name.clone()));
            }
            all.push(name);
            src.extend(ips);
        }
        let t = workload_mut(&mut var.doc, &w.name);
        t.remove("client");
        t.insert("clients".into(), strings(all.clone()));
        if t.contains_key("source_ips") {
            t.insert("source_ips".into(), strings(src));
        }
        var.how.push(format!(
            "{}: run the load from {} machines instead of {} (each with its own address and port range), the same total rate",
            w.name,
            all.len(),
            own.len()
        ));
        var.simulated_change
            .push(format!("workload.{}.clients = {}", w.name, all.join(", ")));
    }
    var.done(format!("More client machines ({m}×)"), "more machines to run and coordinate; the results of a benchmark must then be added up across them", 7)
}

fn linger_zero(sc: &Scenario, targets: &[usize], doc: &Table) -> Option<Variant> {
    let mut var = Variant::draft(doc);
    for &i in targets {
        let w = &sc.workloads[i];
        if w.closer != Closer::Client || w.linger_zero {
            continue;
        }
        workload_mut(&mut var.doc, &w.name).insert("linger_zero".into(), Value::Boolean(true));
        var.simulated_change
            .push(format!("workload.{}.linger_zero = true", w.name));
    }
    var.how = vec!["setsockopt(SO_LINGER, {l_onoff = 1, l_linger = 0}) before close()".into()];
    var.done("SO_LINGER {on, 0}: close with RST, no TIME-WAIT", "NOT A FIX: the port comes back at once because TIME-WAIT is skipped, so a delayed segment of the old connection can be taken as data of the next one on the same four-tuple (the seed's silent data corruption); the peer also sees every close as a reset", 100)
}

fn short_time_wait(sc: &Scenario, targets: &[usize], doc: &Table) -> Option<Variant> {
    let mut var = Variant::draft(doc);
    for h in client_hosts(sc, targets) {
        let host = &sc.hosts[h];
        let tw = host.profile.time_wait;
        let short = crate::time::Duration(tw.0 / 4);
        let ms = short.0 / 1_000_000;
        sub(host_mut(&mut var.doc, host.file_name())?, "model")
            .insert("time_wait".into(), Value::String(format!("{ms}ms")));
        var.simulated_change.push(format!(
            "host.{}.model.time_wait = \"{ms}ms\"",
            host.file_name()
        ));
        var.how.push(match host.profile.kernel {
            Kernel::Linux => format!(
                "{}: Linux has no knob for it (TCP_TIMEWAIT_LEN is fixed at build time, §2.1); net.ipv4.tcp_fin_timeout is a different timer",
                host.file_name()
            ),
            Kernel::FreeBsd | Kernel::MacOs => format!(
                "{}: sysctl net.inet.tcp.msl={} (TIME-WAIT is 2 × MSL)",
                host.file_name(),
                ms / 2
            ),
            Kernel::Windows => format!(
                "{}: TcpTimedWaitDelay = {} (registry, seconds, 30 at least)",
                host.file_name(),
                (ms / 1000).max(30)
            ),
        });
    }
    var.done("Shorten TIME-WAIT to a quarter", "NOT A FIX: TIME-WAIT lasts 2 × MSL so that no segment of the old connection is still in the network when the four-tuple is used again; shortening it trades port exhaustion for the seed's silent data corruption on a network that delays segments", 101)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(requests_per_s: f64, failed_or_stalled: f64, stall_s: f64) -> RankKey {
        RankKey {
            requests_per_s,
            failed_or_stalled,
            stall_s,
            unprotected_reuse: 0.0,
        }
    }

    #[test]
    fn a_noise_level_gain_in_requests_does_not_outrank_fewer_failures() {
        let order = by_what_users_get(vec![
            (
                key(1000.0, 500.0, 0.0),
                1,
                "more requests by 0.5 %, 500 failed",
            ),
            (key(995.0, 0.0, 0.0), 2, "none failed"),
        ]);
        assert_eq!(order, ["none failed", "more requests by 0.5 %, 500 failed"]);
    }

    #[test]
    fn requests_beyond_the_tolerance_come_before_failures_then_stall_time_then_effort() {
        let order = by_what_users_get(vec![
            (key(900.0, 0.0, 0.0), 1, "fewer requests"),
            (key(1000.0, 9.0, 5.0), 3, "longer stalls"),
            (key(1000.0, 9.0, 1.0), 4, "shorter stalls, more effort"),
            (key(1000.0, 9.0, 1.0), 2, "shorter stalls, less effort"),
        ]);
        assert_eq!(
            order,
            [
                "shorter stalls, less effort",
                "shorter stalls, more effort",
                "longer stalls",
                "fewer requests"
            ]
        );
    }

    #[test]
    fn tiers_are_taken_from_the_best_left_so_a_chain_of_near_rates_stays_ordered() {
        // Each within 1 % of the next, but the last 2.9 % below the first: not one tier.
        let order = by_what_users_get(vec![
            (key(971.0, 0.0, 0.0), 1, "d"),
            (key(980.5, 1.0, 0.0), 1, "c"),
            (key(990.0, 2.0, 0.0), 1, "b"),
            (key(1000.0, 3.0, 0.0), 1, "a"),
        ]);
        // a and b are within 1 % of 1000: b (fewer failures) first; then c, d from 980.5.
        assert_eq!(order, ["b", "a", "d", "c"]);
    }

    fn outcome() -> Outcome {
        Outcome {
            attempted: 1000,
            established: 1000,
            failed: 0,
            in_flight: 0,
            stalled: 0,
            stall_s: 0.0,
            requests_completed: 1000,
            requests_per_s: 10.0,
            success_percent: 100.0,
            first_failure_s: None,
            errors: Default::default(),
            time_wait_peak: 0,
            unprotected_reuse: 0,
            headroom_percent: Some(50.0),
            headroom_limit_per_s: Some(20.0),
            headroom_limit_from: Some(LimitSource::Rule),
            tightest: None,
            replicates: None,
        }
    }

    #[test]
    fn a_connect_stalled_in_syn_sent_is_not_fixed() {
        let today = outcome();
        let mut o = outcome();
        assert!(fixes(&o, &today));
        o.stalled = 1;
        o.stall_s = 3.0;
        assert!(!fixes(&o, &today));
    }

    #[test]
    fn findings_state_the_simulated_gain_and_what_is_left() {
        let mut today = outcome();
        today.failed = 40;
        today.errors.insert("ETIMEDOUT", 40);
        let mut o = outcome();
        o.requests_per_s = 66.0;
        o.failed = 3;
        o.errors.insert("ETIMEDOUT", 3);
        o.stalled = 7;
        o.stall_s = 21.0;
        o.headroom_percent = Some(-25.0);
        o.headroom_limit_per_s = Some(80.0);
        o.headroom_limit_from = Some(LimitSource::Simulated);
        let f = findings(&o, &today);
        assert_eq!(f[0], "6.6× today's requests/s (66.0 /s against 10.0 /s)");
        assert_eq!(
            f[1],
            "3 connects still fail (3 ETIMEDOUT) and 7 stall past a SYN retransmission (21.0 s in SYN-SENT in all)"
        );
        assert_eq!(
            f[2],
            "headroom -25.0 % in the tightest pool, against the 80.0 /s it carried while saturated"
        );
        assert_eq!(f.len(), 3, "no unprotected reuse, today or now: {f:?}");
    }
}
