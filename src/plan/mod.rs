//! Capacity planning (`portsim plan`): for each port pool, the sustainable new-connection
//! rate by the seed's formula `ports / TIME_WAIT` and by simulation, the offered rate, the
//! headroom, the steady TIME-WAIT population, when the pool runs out and how many connects
//! fail after; then remedies, each simulated, ranked by what users get ([`remedy::fixes`],
//! [`remedy::rank_key`]). Where the rule is not what limits a pool, its headroom is taken
//! against what the run carried ([`PoolPlan::headroom_limit`]).
//!
//! The formula holds for a pool whose client closes first (it holds the TIME-WAIT, §2.1,
//! §3.2, §3.4, §4) and that is saturated: every port then carries one connection per
//! TIME_WAIT. Where it does not hold, [`PoolPlan::formula_note`] says why.

pub mod import;
pub mod library_quick;
pub mod nat;
pub mod remedy;
pub mod sweep;
pub mod whatif;

use crate::profile::Profile;
use crate::replicate::{Seeds, Stat};
use crate::report::{Report, decimal, group};
use crate::scenario::{self, Scenario};
use crate::sim::Simulation;
use crate::workload::{Arrival, Closer, Mode};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::net::Ipv4Addr;
pub use whatif::{Change, WhatIfError};

pub const SCHEMA: &str = "portsim.plan/1";

/// Share of a pool's limit a remedy aims to leave in use: 20 % headroom.
pub const TARGET_USE: f64 = 0.8;

/// Two rates closer than this, relatively, count as the same: the tolerance within which
/// `tests/plan.rs` holds the simulated limit to `ports / TIME_WAIT` on every kernel. Below it
/// a difference is the horizon's edge (requests still in progress when the run ends, a
/// connection more or less in the sustained window), not something a user gets.
pub const RATE_TOLERANCE: f64 = 0.01;

/// Why a plan could not be made.
#[derive(Debug)]
pub enum PlanError {
    Scenario(scenario::ScenarioError),
    WhatIf(WhatIfError),
    /// A flag of the quick form (`--rate`, `--profile`, …).
    Flag {
        flag: String,
        message: String,
    },
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanError::Scenario(e) => write!(f, "{e}"),
            PlanError::WhatIf(e) => write!(f, "{e}"),
            PlanError::Flag { flag, message } => write!(f, "{flag}: {message}"),
        }
    }
}

impl std::error::Error for PlanError {}

/// The common case from flags, without a scenario file.
#[derive(Clone, Debug)]
pub struct Quick {
    pub profile: String,
    pub server_profile: String,
    /// New connections per second, e.g. `800` or `800/s`.
    pub rate: String,
    pub poisson: bool,
    pub client_ips: u32,
    pub destinations: u32,
    pub closer: Closer,
    pub requests_per_connection: u32,
    pub rtt: String,
    /// `connect`, `bind_no_port` or `bind`; default: connect with one client IP, else
    /// bind_no_port on Linux and bind elsewhere.
    pub connection: Option<String>,
}

/// The scenario text the quick flags stand for.
pub fn quick_scenario(q: &Quick) -> Result<String, PlanError> {
    let flag = |flag: &str, message: String| PlanError::Flag {
        flag: flag.into(),
        message,
    };
    let profile = Profile::named(&q.profile).ok_or_else(|| {
        flag(
            "--profile",
            format!("{:?}: unknown; see `portsim profiles`", q.profile),
        )
    })?;
    if Profile::named(&q.server_profile).is_none() {
        return Err(flag(
            "--server-profile",
            format!("{:?}: unknown; see `portsim profiles`", q.server_profile),
        ));
    }
    let rate = q.rate.trim().trim_end_matches("/s").trim();
    if crate::workload::Rate::parse_decimal(rate).is_none_or(|r| r.num == 0) {
        return Err(flag(
            "--rate",
            format!(
                "{:?}: new connections per second, a number > 0 (at most 9 decimals), e.g. 800/s",
                q.rate
            ),
        ));
    }
    if !(1..=250).contains(&q.client_ips) {
        return Err(flag("--client-ips", "1 to 250 addresses".into()));
    }
    if !(1..=250).contains(&q.destinations) {
        return Err(flag("--destinations", "1 to 250 destinations".into()));
    }
    if q.requests_per_connection == 0 {
        return Err(flag("--requests-per-connection", "at least 1".into()));
    }
    let linux = profile.kernel == crate::profile::Kernel::Linux;
    if !linux && q.client_ips > 1 {
        return Err(flag(
            "--client-ips",
            format!(
                "portsim models a choice of source address (bind before connect) with Linux's rules only; for {} use one address per client host (a scenario with several [[host]] and `clients = [...]`)",
                q.profile
            ),
        ));
    }
    let connection = match &q.connection {
        Some(c) => c.clone(),
        None if q.client_ips == 1 => "connect".into(),
        None if linux => "bind_no_port".into(),
        None => "bind".into(),
    };
    let list = |prefix: &str, n: u32, suffix: &str| {
        (1..=n)
            .map(|i| format!("\"{prefix}{i}{suffix}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let tw = profile.time_wait.as_secs_f64();
    let mut s = String::new();
    let _ = writeln!(
        s,
        "[scenario]\nname = \"plan\"\ndescription = \"{} client, {} new connections/s, {} client IP(s) → {} destination(s), {} closes, {} request(s) per connection\"\nduration = \"{}s\"\nseed = 1\n",
        q.profile,
        rate,
        q.client_ips,
        q.destinations,
        if q.closer == Closer::Client {
            "client"
        } else {
            "server"
        },
        q.requests_per_connection,
        (4.0 * tw).ceil().max(10.0)
    );
    let _ = writeln!(
        s,
        "[[host]]\nname = \"client\"\nprofile = \"{}\"\nips = [{}]\n",
        q.profile,
        list("10.0.0.", q.client_ips, "")
    );
    let _ = writeln!(
        s,
        "[[host]]\nname = \"server\"\nprofile = \"{}\"\nips = [{}]\nlisten = [{}]\n",
        q.server_profile,
        list("10.1.0.", q.destinations, ""),
        list("10.1.0.", q.destinations, ":80")
    );
    let _ = writeln!(
        s,
        "[[workload]]\nname = \"load\"\nclient = \"client\"\nsource_ips = [{}]\nconnection = \"{connection}\"\ndestinations = [{}]\narrival = {{ kind = \"{}\", rate = {rate} }}\nrequests_per_connection = {}\nrtt = \"{}\"\nservice_time = \"1ms\"\ncloser = \"{}\"\non_error = {{ action = \"count\" }}",
        list("10.0.0.", q.client_ips, ""),
        list("10.1.0.", q.destinations, ":80"),
        if q.poisson { "poisson" } else { "constant" },
        q.requests_per_connection,
        q.rtt,
        if q.closer == Closer::Client {
            "client"
        } else {
            "server"
        },
    );
    scenario::parse("(plan flags)", &s).map_err(|e| flag("flags", e.message))?;
    Ok(s)
}

/// The quick form behind a cloud NAT gateway (`--nat PROFILE --vms N`): N VMs behind the
/// gateway with its defaults, each opening `Quick::rate` new connections per second (Poisson)
/// to the destinations.
#[derive(Clone, Debug)]
pub struct CloudQuick {
    /// A cloud profile: `gcp-cloud-nat`, `aws-nat-gateway`, `azure-lb-outbound`,
    /// `azure-nat-gateway`, `azure-app-service`.
    pub nat: String,
    pub vms: u32,
    /// NAT addresses (default 1).
    pub addresses: u32,
    /// Ports per VM: GCP `min_ports_per_vm`, Azure LB `allocated_outbound_ports`.
    pub ports_per_vm: Option<u32>,
}

/// Most VMs the quick form builds.
pub const MAX_QUICK_VMS: u32 = 10_000;

/// `num / den` (`den` a power of ten) as a decimal with no trailing zeros.
fn decimal_text(num: u64, den: u64) -> String {
    let (i, r) = (num / den, num % den);
    if r == 0 {
        return i.to_string();
    }
    let digits = den.ilog10() as usize;
    let frac = format!("{r:0digits$}");
    format!("{i}.{}", frac.trim_end_matches('0'))
}

/// The scenario text of the quick flags behind cloud gateway `c.nat`: `c.vms` hosts (until
/// a fleet of hosts can be declared at once, one `[[host]]` each), one workload over all of
/// them (`spread = "random"`, Poisson at `vms × rate`: the sum of `vms` independent Poisson
/// streams of `rate` each, spread evenly, is that), the client closing, for at least four
/// of the gateway's holds and 240 s.
pub fn cloud_quick_scenario(q: &Quick, c: &CloudQuick) -> Result<String, PlanError> {
    use crate::nat::cloud::{Allocation, Cloud, Provider};
    let flag = |flag: &str, message: String| PlanError::Flag {
        flag: flag.into(),
        message,
    };
    let Some((cloud, timeouts)) = Cloud::named(&c.nat) else {
        let names: Vec<&str> = crate::nat::cloud::Provider::ALL
            .iter()
            .map(|p| p.profile())
            .collect();
        return Err(flag(
            "--nat",
            format!(
                "{:?}: not a cloud NAT gateway; one of {}",
                c.nat,
                scenario::list(&names)
            ),
        ));
    };
    if Profile::named(&q.profile).is_none() {
        return Err(flag(
            "--profile",
            format!("{:?}: unknown; see `portsim profiles`", q.profile),
        ));
    }
    if Profile::named(&q.server_profile).is_none() {
        return Err(flag(
            "--server-profile",
            format!("{:?}: unknown; see `portsim profiles`", q.server_profile),
        ));
    }
    if !(1..=MAX_QUICK_VMS).contains(&c.vms) {
        return Err(flag(
            "--vms",
            format!("{}: 1 to {MAX_QUICK_VMS} VMs", c.vms),
        ));
    }
    let most = cloud.max_addresses() as u32;
    if !(1..=most).contains(&c.addresses) {
        return Err(flag(
            "--addresses",
            format!("{}: {} takes 1 to {most} addresses", c.addresses, c.nat),
        ));
    }
    if q.client_ips != 1 {
        return Err(flag(
            "--client-ips",
            "behind a cloud NAT each VM has one address: give --vms instead".into(),
        ));
    }
    if !(1..=250).contains(&q.destinations) {
        return Err(flag("--destinations", "1 to 250 destinations".into()));
    }
    if q.requests_per_connection == 0 {
        return Err(flag("--requests-per-connection", "at least 1".into()));
    }
    let text = q.rate.trim().trim_end_matches("/s").trim();
    let total = crate::workload::Rate::parse_decimal(text)
        .filter(|r| r.num > 0)
        .and_then(|r| Some((r.num.checked_mul(u64::from(c.vms))?, r.den)))
        .filter(|(num, den)| num / den <= 10_000_000)
        .ok_or_else(|| {
            flag(
                "--rate",
                format!(
                    "{:?}: new connections per second per VM, a number > 0 (at most 9 decimals, at most 10,000,000/s over all VMs), e.g. 5/s",
                    q.rate
                ),
            )
        })?;
    let knob = match (c.ports_per_vm, cloud.provider) {
        (None, _) => String::new(),
        (Some(p), Provider::Gcp) => format!("\n[nat.knobs]\nmin_ports_per_vm = {p}\n"),
        (Some(p), Provider::AzureLb) => {
            format!("\n[nat.knobs]\nallocated_outbound_ports = {p}\n")
        }
        (Some(_), p) => {
            return Err(flag(
                "--ports-per-vm",
                format!(
                    "{} {}: only gcp-cloud-nat (min_ports_per_vm) and azure-lb-outbound (allocated_outbound_ports) take ports per VM",
                    c.nat,
                    match (p, cloud.allocation) {
                        (_, Allocation::Shared { .. }) => "shares its ports among all VMs",
                        _ => "gives each instance a fixed 128 ports",
                    }
                ),
            ));
        }
    };
    let hold = timeouts[crate::nat::conntrack::CtState::TimeWait as usize].0;
    let secs = (4 * hold).div_ceil(1_000_000_000).max(240);
    // Per VM: a fleet's Poisson rate is each instance's (the product was checked above).
    let rate = decimal_text(total.0 / u64::from(c.vms), total.1);
    let ip = |base: u32, k: u32| format!("\"{}\"", Ipv4Addr::from(base + k));
    let join = |v: Vec<String>| v.join(", ");
    let mut s = String::new();
    let _ = writeln!(
        s,
        "[scenario]\nname = \"plan\"\ndescription = \"{} VMs behind {} ({} address(es)), each {} new connections/s (Poisson) → {} destination(s), the client closes\"\nduration = \"{secs}s\"\nseed = 1\n",
        c.vms, c.nat, c.addresses, text, q.destinations
    );
    let _ = writeln!(
        s,
        "[[host]]\nname = \"vm\"\ncount = {}\nprofile = \"{}\"\nips = [{}]\n",
        c.vms,
        q.profile,
        ip(0x0A00_0001, 0)
    );
    let dests: Vec<String> = (0..q.destinations).map(|k| ip(0x0A64_0001, k)).collect();
    let listen: Vec<String> = (0..q.destinations)
        .map(|k| format!("\"{}:443\"", Ipv4Addr::from(0x0A64_0001 + k)))
        .collect();
    let _ = writeln!(
        s,
        "[[host]]\nname = \"server\"\nprofile = \"{}\"\nips = [{}]\nlisten = [{}]\n",
        q.server_profile,
        join(dests),
        join(listen.clone())
    );
    let _ = writeln!(
        s,
        "[[nat]]\nname = \"gateway\"\nprofile = \"{}\"\nips = [{}]\nbehind = [\"vm\"]\n{knob}",
        c.nat,
        join((0..c.addresses).map(|k| ip(0xCB00_7101, k)).collect()),
    );
    let _ = writeln!(
        s,
        "[[workload]]\nname = \"load\"\nclient = \"vm\"\nspread = \"random\"\ndestinations = [{}]\narrival = {{ kind = \"poisson\", rate = {rate} }}\nrequests_per_connection = {}\nrtt = \"{}\"\nservice_time = \"1ms\"\ncloser = \"client\"\non_error = {{ action = \"count\" }}",
        join(listen),
        q.requests_per_connection,
        q.rtt,
    );
    scenario::parse("(plan flags)", &s).map_err(|e| flag("flags", e.message))?;
    Ok(s)
}

/// One pool of ports, planned.
#[derive(Serialize, Debug, Clone)]
pub struct PoolPlan {
    pub kind: String,
    pub host: String,
    pub source: String,
    pub destination: Option<String>,
    pub ports: u32,
    pub time_wait_s: f64,
    /// `ports / TIME_WAIT`.
    pub formula_limit_per_s: f64,
    /// The limit that holds: the formula, `ports / tcp_tw_reuse_delay` under `tcp_tw_reuse`
    /// = 1, none where TIME-WAIT does not hold the client's ports (server closes, SO_LINGER 0).
    pub limit_per_s: Option<f64>,
    /// New connections per second offered to this pool.
    pub offered_per_s: f64,
    /// `arrival rate` (open loop) or `simulated` (closed loop: what the workers attempted).
    pub offered_from: &'static str,
    /// What the pool carried while saturated, simulated; see [`PoolPlan::headroom_limit`].
    pub saturated_per_s: Option<f64>,
    /// `(limit − offered) / limit`, in percent, negative when over the limit; the limit is
    /// `saturated_per_s` where set, else `limit_per_s`.
    pub headroom_percent: Option<f64>,
    /// TIME-WAIT sockets on this pool's ports once steady: `min(offered, limit) × TIME_WAIT`
    /// when the client closes first.
    pub time_wait_steady: f64,
    /// When the pool runs out, by formula: the connect after `ports` at the offered rate.
    pub exhausted_at_s: Option<f64>,
    /// Connects failing per second after that, by formula: `offered − limit`.
    pub failing_per_s: f64,
    /// Established per second over the last whole TIME_WAIT periods, simulated.
    pub simulated_per_s: Option<f64>,
    /// Simulated against formula, in percent, where the formula applies and the pool is
    /// saturated.
    pub formula_error_percent: Option<f64>,
    /// Why the formula does not give this pool's limit, when it does not.
    pub formula_note: Option<String>,
}

/// Where a headroom's limit comes from.
#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LimitSource {
    /// The kernel rule that holds: `ports / TIME_WAIT` (§6), `ports / tcp_tw_reuse_delay`
    /// (§2.3).
    Rule,
    /// What the pool carried while saturated ([`PoolPlan::headroom_limit`]).
    Simulated,
}

/// What one simulated run gave.
#[derive(Serialize, Debug, Clone)]
pub struct Outcome {
    pub attempted: u64,
    pub established: u64,
    pub failed: u64,
    /// Connects still waiting (SYN-SENT) when the run ended.
    pub in_flight: u64,
    /// Connects slower than the kernel's first SYN retransmission: established after one, or
    /// still waiting at the end having sent one (failed ones are in `failed`).
    pub stalled: u64,
    /// Seconds the stalled connects spent from connect() to established (or to the end).
    pub stall_s: f64,
    pub requests_completed: u64,
    /// Requests completed per second over the run's horizon: what the user gets.
    pub requests_per_s: f64,
    pub success_percent: f64,
    pub first_failure_s: Option<f64>,
    pub errors: BTreeMap<&'static str, u64>,
    pub time_wait_peak: u32,
    /// Four-tuples reused with no TIME-WAIT protecting them (SO_LINGER 0, bucket overflow).
    pub unprotected_reuse: u64,
    /// The tightest pool's headroom, percent.
    pub headroom_percent: Option<f64>,
    /// The limit the tightest pool's headroom is taken against, and where it comes from.
    pub headroom_limit_per_s: Option<f64>,
    pub headroom_limit_from: Option<LimitSource>,
    /// The tightest limit: a client's pool, or a NAT's pairs toward a destination.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tightest: Option<String>,
    /// With `--seeds`: each number above over the seeds (the numbers above are the first
    /// seed's run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicates: Option<BTreeMap<String, Stat>>,
}

impl Outcome {
    /// What a user gets, as the table and the findings show it: `first`, the one run, or the
    /// mean of `runs` when there is one per seed.
    pub fn shown(first: &Outcome, runs: &[Outcome]) -> Outcome {
        match runs {
            [] | [_] => first.clone(),
            runs => Outcome::mean(runs),
        }
    }

    /// The mean of `runs` (one per seed), counts rounded: what the table and the findings
    /// show of a replicated plan. Times and headrooms average the runs that have them.
    pub fn mean(runs: &[Outcome]) -> Outcome {
        let n = runs.len().max(1) as f64;
        let avg = |f: &dyn Fn(&Outcome) -> f64| runs.iter().map(f).sum::<f64>() / n;
        let count = |f: fn(&Outcome) -> u64| avg(&|o| f(o) as f64).round() as u64;
        let some = |f: fn(&Outcome) -> Option<f64>| {
            let v: Vec<f64> = runs.iter().filter_map(f).collect();
            (!v.is_empty()).then(|| round(v.iter().sum::<f64>() / v.len() as f64, 3))
        };
        let mut errors: BTreeMap<&'static str, u64> = BTreeMap::new();
        for o in runs {
            for (k, v) in &o.errors {
                *errors.entry(k).or_default() += v;
            }
        }
        errors
            .values_mut()
            .for_each(|v| *v = (*v as f64 / n).round() as u64);
        Outcome {
            attempted: count(|o| o.attempted),
            established: count(|o| o.established),
            failed: count(|o| o.failed),
            in_flight: count(|o| o.in_flight),
            stalled: count(|o| o.stalled),
            stall_s: round(avg(&|o| o.stall_s), 3),
            requests_completed: count(|o| o.requests_completed),
            requests_per_s: round(avg(&|o| o.requests_per_s), 3),
            success_percent: round(avg(&|o| o.success_percent), 3),
            first_failure_s: some(|o| o.first_failure_s),
            errors,
            time_wait_peak: count(|o| u64::from(o.time_wait_peak)) as u32,
            unprotected_reuse: count(|o| o.unprotected_reuse),
            headroom_percent: some(|o| o.headroom_percent).map(|h| round(h, 1)),
            headroom_limit_per_s: some(|o| o.headroom_limit_per_s),
            headroom_limit_from: runs.first().and_then(|o| o.headroom_limit_from),
            tightest: runs.first().and_then(|o| o.tightest.clone()),
            replicates: None,
        }
    }

    fn of(r: &Report, limits: &[Limit]) -> Outcome {
        let c = &r.summary.connections;
        let tight = tightest(limits);
        Outcome {
            attempted: c.attempted,
            established: c.established,
            failed: c.failed,
            in_flight: c.in_flight,
            stalled: c.stalled,
            stall_s: round(c.stall_s, 3),
            requests_completed: r.summary.requests.completed,
            requests_per_s: if r.duration_s > 0.0 {
                round(r.summary.requests.completed as f64 / r.duration_s, 3)
            } else {
                0.0
            },
            success_percent: if c.attempted > 0 {
                round(100.0 * c.established as f64 / c.attempted as f64, 3)
            } else {
                100.0
            },
            first_failure_s: r.summary.first_failure_s,
            errors: r.summary.errors.clone(),
            time_wait_peak: r.summary.time_wait.peak,
            unprotected_reuse: r.summary.unprotected_reuse,
            headroom_percent: tight.map(|t| t.1),
            headroom_limit_per_s: tight.and_then(|t| t.0.headroom_limit().map(|l| l.0)),
            headroom_limit_from: tight.and_then(|t| t.0.headroom_limit().map(|l| l.1)),
            tightest: tight.map(|t| t.0.label()),
            replicates: None,
        }
    }
}

impl PoolPlan {
    /// The limit this pool's headroom is taken against: what it carried while saturated
    /// (`saturated_per_s`), else the rule's (`limit_per_s`).
    ///
    /// The rule's limit (`ports / TIME_WAIT`, §6; `ports / tcp_tw_reuse_delay`, §2.3) assumes a
    /// port comes back exactly one TIME_WAIT after its connection closed and that a connect
    /// finding none fails at once. Where that is not what limits the pool — a host-wide pool whose
    /// ports come back when the server's TIME-WAIT accepts a new SYN on the same four-tuple
    /// (§3.3, §3.4), a server closing first whose TIME-WAIT answers a SYN with an ACK and leaves
    /// the client retransmitting (§2.4, §3.2, §3.4) — the run measures the limit: a pool that
    /// cannot carry what it is offered carries exactly what it can. So the pool's sustained rate
    /// (established per second over the last whole TIME_WAIT periods) is its limit when:
    /// - connects failed or stalled in the run (the pool ran short, by the kernel's own signs);
    /// - every workload on the pool offers its load from the start of the run to its end (a
    ///   constant, Poisson or closed loop with no `limit`), so the sustained window saw all of
    ///   it (a step or burst may be over before the window);
    /// - the pool sustained less than the offer by more than [`RATE_TOLERANCE`].
    ///
    /// Where the rule holds, a saturated pool sustains the rule's limit (within 1 %, as
    /// `tests/plan.rs` checks), so the two agree; where it does not, this one reflects what the
    /// run, or a remedy's run, actually gained. A closed loop whose workers stall on one pool
    /// offers the others less than they could carry: with pools of one workload that differ,
    /// their limit is then understated.
    pub fn headroom_limit(&self) -> Option<(f64, LimitSource)> {
        match (self.saturated_per_s, self.limit_per_s) {
            (Some(s), _) => Some((s, LimitSource::Simulated)),
            (None, Some(l)) => Some((l, LimitSource::Rule)),
            (None, None) => None,
        }
    }
}

/// A limit a run can hit: a client's pool of ports, or a NAT's pairs toward a destination.
#[derive(Clone, Copy, Debug)]
pub enum Limit<'a> {
    Pool(&'a PoolPlan),
    Nat(&'a nat::NatPlan),
}

impl Limit<'_> {
    pub fn headroom_percent(&self) -> Option<f64> {
        match self {
            Limit::Pool(p) => p.headroom_percent,
            Limit::Nat(n) => n.headroom_percent,
        }
    }

    pub fn headroom_limit(&self) -> Option<(f64, LimitSource)> {
        match self {
            Limit::Pool(p) => p.headroom_limit(),
            Limit::Nat(n) => n.headroom_limit(),
        }
    }

    pub fn offered_per_s(&self) -> f64 {
        match self {
            Limit::Pool(p) => p.offered_per_s,
            Limit::Nat(n) => n.offered_per_s,
        }
    }

    pub fn offered_from(&self) -> &'static str {
        match self {
            Limit::Pool(p) => p.offered_from,
            Limit::Nat(n) => n.offered_from,
        }
    }

    pub fn formula_limit_per_s(&self) -> f64 {
        match self {
            Limit::Pool(p) => p.formula_limit_per_s,
            Limit::Nat(n) => n.formula_limit_per_s,
        }
    }

    pub fn label(&self) -> String {
        match self {
            Limit::Pool(p) => format!("pool {}", label(p)),
            Limit::Nat(n) => n.label(),
        }
    }

    /// The hosts whose connections draw on it.
    pub fn hosts(&self) -> Vec<&str> {
        match self {
            Limit::Pool(p) => vec![p.host.as_str()],
            Limit::Nat(n) => n.behind.iter().map(String::as_str).collect(),
        }
    }
}

/// The client pools' limits, then the NATs'.
fn limits<'a>(pools: &'a [PoolPlan], nats: &'a [nat::NatPlan]) -> Vec<Limit<'a>> {
    let pools = pools.iter().map(Limit::Pool);
    pools.chain(nats.iter().map(Limit::Nat)).collect()
}

/// The limit with the least headroom, and its headroom; the first of equals.
fn tightest<'a>(limits: &[Limit<'a>]) -> Option<(Limit<'a>, f64)> {
    limits
        .iter()
        .filter_map(|l| Some((*l, l.headroom_percent()?)))
        .min_by(|a, b| a.1.total_cmp(&b.1))
}

/// The plan for one scenario (`--format json`: schema `portsim.plan/1`).
#[derive(Serialize, Debug)]
pub struct Plan {
    pub schema: &'static str,
    pub portsim_version: &'static str,
    pub scenario: String,
    pub file: String,
    pub seed: u64,
    /// `A..B` when every run was made once per seed A to B.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seeds: Option<String>,
    /// How long each run was simulated: the scenario's duration, at least four TIME_WAITs.
    pub horizon_s: f64,
    pub verdict: String,
    /// `--set` changes: the plan is for the changed scenario, `before` for the original.
    pub set: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<Assessment>,
    #[serde(flatten)]
    pub now: Assessment,
    /// Changes that fix or relieve the shortage, best first.
    pub remedies: Vec<remedy::Remedy>,
    /// Changes that make ports come back sooner by giving up TIME-WAIT's protection.
    pub not_recommended: Vec<remedy::Remedy>,
}

/// Pools and outcome of one version of the scenario.
#[derive(Serialize, Debug, Clone)]
pub struct Assessment {
    pub pools: Vec<PoolPlan>,
    /// Each NAT's pairs toward each destination.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nat_pools: Vec<nat::NatPlan>,
    pub outcome: Outcome,
    /// Each seed's outcome, in seed order (the one run's without `--seeds`).
    #[serde(skip)]
    pub runs: Vec<Outcome>,
}

impl Assessment {
    /// Every limit, client pools first.
    pub fn limits(&self) -> Vec<Limit<'_>> {
        limits(&self.pools, &self.nat_pools)
    }

    /// What a user gets, as the table and the findings show it: the one run, or the mean
    /// over the seeds.
    pub fn shown(&self) -> Outcome {
        Outcome::shown(&self.outcome, &self.runs)
    }
}

fn round(x: f64, digits: i32) -> f64 {
    let m = 10f64.powi(digits);
    (x * m).round() / m
}

/// The scenario with its duration at least four of its longest TIME_WAIT, a host's or a
/// NAT's conntrack timeout, so that the sustained window holds two whole periods.
pub fn with_horizon(file: &str, text: &str) -> Result<(String, Scenario), PlanError> {
    let sc = scenario::parse(file, text).map_err(PlanError::Scenario)?;
    let nat_tw = sc
        .nats
        .iter()
        .map(|n| n.config.timeouts[crate::nat::conntrack::CtState::TimeWait as usize].0);
    let tw = sc
        .hosts
        .iter()
        .map(|h| h.profile.time_wait.0)
        .chain(nat_tw)
        .max()
        .unwrap_or(0);
    if sc.duration.0 >= 4 * tw {
        return Ok((text.to_string(), sc));
    }
    let text = scenario::set(
        text,
        "scenario.duration",
        toml::Value::String(format!("{}ms", (4 * tw).div_ceil(1_000_000))),
    )
    .map_err(|e| {
        PlanError::WhatIf(WhatIfError {
            key: e.path,
            message: e.message,
        })
    })?;
    let sc = scenario::parse(file, &text).map_err(PlanError::Scenario)?;
    Ok((text, sc))
}

/// Runs a scenario and plans its pools.
pub fn assess(sc: &Scenario) -> (Report, Assessment) {
    let r = Simulation::new(sc).run();
    let pools = pools(sc, &r);
    let nat_pools = nat::nat_pools(sc, &r);
    let outcome = Outcome::of(&r, &limits(&pools, &nat_pools));
    let runs = vec![outcome.clone()];
    (
        r,
        Assessment {
            pools,
            nat_pools,
            outcome,
            runs,
        },
    )
}

/// [`assess`] once per seed of `seeds` (in parallel; the result does not depend on the thread
/// count): the first seed's report and assessment, with every seed's outcome in `runs` and
/// their distributions in `outcome.replicates`. Without seeds, [`assess`].
pub fn assess_seeds(sc: &Scenario, seeds: Option<Seeds>) -> (Report, Assessment) {
    let Some(seeds) = seeds else {
        return assess(sc);
    };
    let all: Vec<(Option<Report>, Assessment)> = crate::replicate::per_seed(sc, seeds, |one| {
        let (r, a) = assess(one);
        ((one.seed == seeds.first).then_some(r), a)
    });
    let runs: Vec<Outcome> = all.iter().map(|(_, a)| a.outcome.clone()).collect();
    let numbers: Vec<_> = runs.iter().map(crate::replicate::numbers).collect();
    let mut first = all.into_iter().next().expect("at least one seed");
    let report = first.0.take().expect("the first seed's report");
    let mut a = first.1;
    a.outcome.replicates = Some(crate::replicate::distributions(&numbers));
    a.runs = runs;
    (report, a)
}

/// The key a report's pool and a workload's (source, destination) share.
fn pool_key(kind: &str, host: &str, source: &str, dest: Option<&str>) -> String {
    match kind {
        "connect (host-wide)" => format!("{host}|any"),
        "connect" => format!("{host}|{source}|{}", dest.unwrap_or_default()),
        _ => format!("{host}|{source}|bind"),
    }
}

/// New connections per second offered to a pool.
#[derive(Clone, Copy)]
struct Offer {
    per_s: f64,
    /// Where the figure comes from.
    from: &'static str,
    /// Every workload on the pool offers its rate for the whole run: a constant, Poisson or
    /// closed loop from the start to the end, with no `limit`.
    steady: bool,
}

/// Whether `w` offers the same load from the start of a run of `total` to its end.
fn steady(w: &crate::workload::Workload, total: crate::time::Duration) -> bool {
    matches!(
        w.arrival,
        Arrival::Constant(_) | Arrival::Poisson(_) | Arrival::Closed { .. }
    ) && w.start.0 == 0
        && w.stop.0 >= total.0
        && !w.limit.is_set()
}

/// New connections per second `w` offers in all, and where the figure comes from.
fn workload_rate(sc: &Scenario, w: &crate::workload::Workload) -> (f64, &'static str) {
    match (&w.arrival, w.arrival.peak_rate()) {
        (Arrival::Steps { .. }, Some(r)) => (r, "arrival rate (highest step)"),
        (_, Some(r)) => (r, "arrival rate"),
        (Arrival::Closed { concurrency }, None) => (
            f64::from(*concurrency) / open_time(w).max(1e-6),
            "closed loop: concurrency / connection time",
        ),
        (a @ Arrival::Bursts(_), None) => (
            a.arrivals_in(0.0).unwrap_or(0.0) / w.active_secs(sc.duration).max(1e-9),
            "bursts: their connections over the workload's active time",
        ),
        (_, None) => unreachable!("every open loop has a rate or bursts"),
    }
}

/// Seconds one of `w`'s connections is open if its connect succeeds at once: a handshake
/// and its requests, one RTT and one service time each.
fn open_time(w: &crate::workload::Workload) -> f64 {
    let rtt = w.rtt.mean().as_secs_f64();
    let service = w.service_time.mean().as_secs_f64();
    rtt + f64::from(w.requests_per_connection) * (rtt + service)
}

/// New connections per second each pool is offered. A client pool's requests are not its
/// connections: the pool decides when to open one (`src/sim/pool.rs`), so its offer is the
/// connects the run made over the workload's active time.
fn offered(sc: &Scenario, r: &Report) -> BTreeMap<String, Offer> {
    let mut out: BTreeMap<String, Offer> = BTreeMap::new();
    for (w, ws) in sc.workloads.iter().zip(&r.workloads) {
        let (rate, from) = match &w.pool {
            Some(_) => (
                ws.attempted as f64 / w.active_secs(sc.duration).max(1e-9),
                "client pool: the connects it made over the workload's active time (simulated)",
            ),
            None => workload_rate(sc, w),
        };
        let share = rate / (w.sources.len() * w.destinations.len()) as f64;
        for s in &w.sources {
            let h = &sc.hosts[s.host as usize];
            let src = Ipv4Addr::from(s.ip).to_string();
            for d in &w.destinations {
                let key = match w.mode {
                    Mode::Connect | Mode::BindNoPort => {
                        if h.profile.scope == crate::profile::Scope::HostWide {
                            pool_key("connect (host-wide)", &h.name, "", None)
                        } else {
                            let dst = format!("{}:{}", Ipv4Addr::from(d.ip), d.port);
                            pool_key("connect", &h.name, &src, Some(&dst))
                        }
                    }
                    Mode::Bind | Mode::Explicit { .. } => pool_key("bind", &h.name, &src, None),
                };
                let e = out.entry(key).or_insert(Offer {
                    per_s: 0.0,
                    from,
                    steady: true,
                });
                e.per_s += share;
                e.steady &= steady(w, sc.duration);
                if from != "arrival rate" {
                    e.from = from;
                }
            }
        }
    }
    out
}

/// Why the formula is not this pool's limit, if it is not, and the limit that holds instead
/// (none when TIME-WAIT does not hold the client's ports at all).
fn formula_note(sc: &Scenario, pool: &crate::report::PoolInfo) -> Option<(String, Option<f64>)> {
    use crate::profile::{Kernel, Scope};
    let host_ix = sc.hosts.iter().position(|h| h.name == pool.host)?;
    let host = &sc.hosts[host_ix];
    let uses: Vec<&crate::workload::Workload> = sc
        .workloads
        .iter()
        .filter(|w| w.sources.iter().any(|s| s.host as usize == host_ix))
        .collect();
    let local = |w: &&crate::workload::Workload| {
        w.destinations
            .iter()
            .any(|d| d.host as usize == host_ix || crate::host::is_loopback(d.ip))
    };
    if uses.iter().all(|w| w.closer == Closer::Server) {
        // XNU, and Windows without SO_REUSE_UNICASTPORT: any socket on the port blocks it,
        // the server's TIME-WAIT on the same host included (§3.3, §4).
        if host.profile.scope == Scope::HostWide && uses.iter().all(local) {
            return None;
        }
        let rule = match sc.hosts[uses[0].destinations[0].host as usize]
            .profile
            .kernel
        {
            Kernel::Linux => {
                "a SYN to a server TIME-WAIT is accepted when its sequence number or timestamp is newer (§2.4)"
            }
            Kernel::FreeBsd => {
                "a FreeBSD server TIME-WAIT accepts a SYN whose sequence number is newer (§3.2)"
            }
            Kernel::MacOs => {
                "an XNU server TIME-WAIT accepts a SYN that passes PAWS and lies beyond its window (§3.4)"
            }
            Kernel::Windows => {
                "a Windows server TIME-WAIT is assumed to accept a newer sequence number (§4, UNVERIFIED)"
            }
        };
        return Some((
            format!(
                "the server closes first, so the TIME-WAIT is on the server (§2.1); the client's port comes back when the server's FIN is acknowledged, and {rule}, so ports / TIME_WAIT is not this pool's limit"
            ),
            None,
        ));
    }
    if uses.iter().all(|w| w.linger_zero) {
        return Some((
            "SO_LINGER 0 closes with RST and no TIME-WAIT: the port comes back at once (and the four-tuple is reused unprotected)".into(),
            None,
        ));
    }
    if !host.profile.local_time_wait && uses.iter().all(local) {
        return Some((
            "net.inet.tcp.nolocaltimewait = 1: an active close toward a local address skips TIME-WAIT (§3.2), so the port comes back at once".into(),
            None,
        ));
    }
    // `tcp_twsk_unique` (§2.3): 1, or 2 toward or from loopback, and timestamps on both ends.
    let p = &host.profile;
    let loopback = uses.iter().any(|w| {
        w.sources.iter().any(|s| crate::host::is_loopback(s.ip))
            || w.destinations
                .iter()
                .any(|d| crate::host::is_loopback(d.ip))
    });
    let peer_ts = uses.iter().all(|w| {
        w.destinations
            .iter()
            .all(|d| sc.hosts[d.host as usize].profile.timestamps != 0)
    });
    let reuse = p.kernel == Kernel::Linux
        && (p.tw_reuse == 1 || (p.tw_reuse == 2 && loopback))
        && p.timestamps != 0
        && peer_ts;
    if reuse {
        // Before 6.14 a port used during second k is reusable from second k + 1 + more_than:
        // at most once per (more_than + 1) whole seconds (notes/linux-versions.md).
        let (delay, why) = match p.tw_reuse_clock {
            crate::profile::ReuseClock::Millis => (
                f64::from(p.tw_reuse_delay_ms.max(1)) / 1e3,
                format!(
                    "{} ms after it began (§2.3), so the limit is ports / tcp_tw_reuse_delay",
                    p.tw_reuse_delay_ms
                ),
            ),
            crate::profile::ReuseClock::Seconds { more_than } => {
                let n = u32::from(more_than) + 1;
                (
                    f64::from(n),
                    format!(
                        "once the seconds clock passes its last timestamp's second by more than {more_than} (before 6.14, §2.3): a port carries at most one connection per {n} s, so the limit is ports / {n} s"
                    ),
                )
            }
        };
        return Some((
            format!(
                "tcp_tw_reuse = {}{}: connect() takes over a TIME-WAIT four-tuple {why}, not ports / TIME_WAIT",
                p.tw_reuse,
                if p.tw_reuse == 2 { " (loopback)" } else { "" },
            ),
            Some(f64::from(pool.ports) / delay),
        ));
    }
    None
}

/// Whether `host` is behind a NAT that dropped SYNs in the run.
fn behind_dropping_nat(sc: &Scenario, r: &Report, host: &str) -> bool {
    let Some(h) = sc.hosts.iter().position(|x| x.name == host) else {
        return false;
    };
    sc.nats
        .iter()
        .zip(&r.nat)
        .any(|(n, info)| n.behind.contains(&h) && info.drops.values().sum::<u64>() > 0)
}

/// What a pool carried while saturated, if it was: the rule of [`PoolPlan::headroom_limit`].
fn saturated_rate(r: &Report, p: &crate::report::PoolInfo, offer: Offer) -> Option<f64> {
    let c = &r.summary.connections;
    let short = c.failed + c.stalled > 0;
    let carried = p.sustained_per_s.filter(|c| *c > 0.0)?;
    (short && offer.steady && carried < offer.per_s * (1.0 - RATE_TOLERANCE)).then_some(carried)
}

/// The pools of a run, each with its formula figures and its simulated rate.
pub fn pools(sc: &Scenario, r: &Report) -> Vec<PoolPlan> {
    let offered = offered(sc, r);
    let mut plans: Vec<PoolPlan> = r
        .pools
        .iter()
        .map(|p| {
            // A fleet's entry is planned as one instance: the first's pool, the mean carried.
            let fleet;
            let p = match &p.per_instance {
                Some(each) => {
                    let mut one = p.clone();
                    one.host = format!("{}[1]", p.host);
                    one.source = p.source.split('-').next().unwrap_or("").to_string();
                    one.established = each.established.mean.round() as u64;
                    one.achieved_per_s = each.achieved_per_s.mean;
                    one.sustained_per_s = each.sustained_per_s.as_ref().map(|s| s.mean);
                    fleet = one;
                    &fleet
                }
                None => p,
            };
            let key = pool_key(p.kind, &p.host, &p.source, p.destination.as_deref());
            let o = offered.get(&key).copied().unwrap_or(Offer {
                per_s: 0.0,
                from: "arrival rate",
                steady: true,
            });
            let (offer, from) = (o.per_s, o.from);
            let limit = p.formula_limit_per_s;
            let note = formula_note(sc, p);
            let rule = note.as_ref().map_or(Some(limit), |n| n.1);
            let saturated = saturated_rate(r, p, o).filter(|_| {
                // Connects the NAT dropped time out whatever the pool holds: the pool is
                // short itself only when offered more than its own rule allows.
                !behind_dropping_nat(sc, r, &p.host) || rule.is_none_or(|l| offer > l)
            });
            let scope_note = match p.kind {
                "connect (host-wide)" => Some("ports are host-wide on this kernel (§3.3, §4): one pool serves every source IP and destination, so ports / TIME_WAIT is the whole host's limit"),
                "bind" => Some("bind(ip, 0) takes a port exclusively per source IP (§1.6): ports / TIME_WAIT is shared by every destination (IP_BIND_ADDRESS_NO_PORT shares ports by four-tuple instead)"),
                _ => None,
            };
            let client_tw = note.is_none();
            let effective = match &note {
                None => Some(limit),
                Some((_, l)) => *l,
            };
            let over = effective.is_some_and(|l| offer > l);
            let error = (client_tw && over)
                .then(|| p.sustained_per_s.map(|s| round(100.0 * (s - limit) / limit, 3)))
                .flatten();
            PoolPlan {
                kind: p.kind.to_string(),
                host: p.host.clone(),
                source: p.source.clone(),
                destination: p.destination.clone(),
                ports: p.ports,
                time_wait_s: p.time_wait_s,
                formula_limit_per_s: round(limit, 3),
                limit_per_s: effective.map(|l| round(l, 3)),
                offered_per_s: round(offer, 3),
                offered_from: from,
                saturated_per_s: saturated.map(|l| round(l, 3)),
                headroom_percent: saturated
                    .or(effective)
                    .map(|l| round(100.0 * (l - offer) / l, 1)),
                time_wait_steady: match (&note, effective) {
                    (None, _) => (offer.min(limit) * p.time_wait_s).round(),
                    (Some(_), Some(_)) => (offer * p.time_wait_s).min(f64::from(p.ports)).round(),
                    (Some(_), None) => 0.0,
                },
                exhausted_at_s: over.then(|| round(f64::from(p.ports) / offer, 3)),
                failing_per_s: match effective {
                    Some(l) if over => round(offer - l, 3),
                    _ => 0.0,
                },
                simulated_per_s: p.sustained_per_s.map(|s| round(s, 3)),
                formula_error_percent: error,
                formula_note: note.map(|n| n.0).or_else(|| scope_note.map(String::from)),
            }
        })
        .collect();
    // Beyond tcp_max_tw_buckets a closing socket gets no TIME-WAIT (§2.2): the host's ports
    // come back sooner than the formula says, unprotected.
    for h in &sc.hosts {
        let steady: f64 = plans
            .iter()
            .filter(|p| p.host == h.name)
            .map(|p| p.time_wait_steady)
            .sum();
        if steady > f64::from(h.profile.max_tw_buckets) {
            for p in plans.iter_mut().filter(|p| p.host == h.name) {
                p.formula_note = Some(format!(
                    "the host would hold {} TIME-WAIT sockets, over tcp_max_tw_buckets = {}: beyond it sockets close with no TIME-WAIT (§2.2), so ports come back sooner than the formula says, and unprotected",
                    group(steady as u64),
                    group(u64::from(h.profile.max_tw_buckets))
                ));
                p.formula_error_percent = None;
            }
        }
    }
    plans
}

/// Plans `text` (from `file`), with `set` applied on top.
pub fn plan(file: &str, text: &str, set: &[Change]) -> Result<Plan, PlanError> {
    plan_seeds(file, text, set, None)
}

/// [`plan`], each run once per seed of `seeds`: remedies ranked by their means over the
/// seeds, a fix only one that fixes every seed's run.
pub fn plan_seeds(
    file: &str,
    text: &str,
    set: &[Change],
    seeds: Option<Seeds>,
) -> Result<Plan, PlanError> {
    let changed = whatif::apply(file, text, set).map_err(PlanError::WhatIf)?;
    let before = if set.is_empty() {
        None
    } else {
        let (_, sc) = with_horizon(file, text)?;
        Some(assess_seeds(&sc, seeds).1)
    };
    let (text, sc) = with_horizon(file, &changed)?;
    let (report, now) = assess_seeds(&sc, seeds);
    let (remedies, not_recommended) = remedy::evaluate(file, &text, &sc, &report, &now, seeds);
    Ok(Plan {
        schema: SCHEMA,
        portsim_version: env!("CARGO_PKG_VERSION"),
        scenario: sc.name.clone(),
        file: file.to_string(),
        seed: sc.seed,
        seeds: seeds.map(|s| s.to_string()),
        horizon_s: sc.duration.as_secs_f64(),
        verdict: verdict(&now),
        set: set
            .iter()
            .map(|c| format!("{}={}", c.key, whatif::show(&c.value)))
            .collect(),
        before,
        now,
        remedies,
        not_recommended,
    })
}

fn verdict(a: &Assessment) -> String {
    let o = &a.outcome;
    let limits = a.limits();
    let tight = tightest(&limits);
    if o.failed > 0 {
        let errs: Vec<String> = o
            .errors
            .iter()
            .map(|(k, v)| format!("{} {k}", group(*v)))
            .collect();
        let mut v = format!(
            "runs out: {} of {} connects fail ({}), the first at {} s",
            group(o.failed),
            group(o.attempted),
            errs.join(", "),
            o.first_failure_s.map_or("?".into(), |t| format!("{t}"))
        );
        v.push_str(&stalls(o));
        if let Some((l @ Limit::Nat(n), _)) = tight {
            v.push_str(&format!(
                "; the tightest limit is {}: {} /s offered against {} /s",
                l.label(),
                n.offered_per_s,
                l.headroom_limit().map_or(n.formula_limit_per_s, |x| x.0)
            ));
        }
        if o.unprotected_reuse > 0 {
            v.push_str(&format!(
                "; {} four-tuples reused unprotected",
                group(o.unprotected_reuse)
            ));
        }
        return v;
    }
    let mut v = match tight {
        Some((p, h)) if h < 0.0 => format!(
            "no failure within the run, but {} is offered {} /s, over its limit of {} /s{}",
            p.label(),
            p.offered_per_s(),
            p.headroom_limit().map_or(p.formula_limit_per_s(), |l| l.0),
            if p.offered_from().starts_with("closed") {
                " (a closed loop: its workers wait for ports instead of failing)"
            } else {
                ""
            }
        ),
        Some((p, h)) if h < 100.0 * (1.0 - TARGET_USE) => {
            format!("fits, tightly: {} has {h} % headroom", p.label())
        }
        Some((Limit::Pool(p), h)) => {
            format!("fits: the tightest pool, {}, has {h} % headroom", label(p))
        }
        Some((n, h)) => format!(
            "fits: the tightest limit, {}, has {h} % headroom",
            n.label()
        ),
        None if a.pools.is_empty() => "fits: no connection draws on an ephemeral port pool".into(),
        None => "fits: no connect failed, and TIME-WAIT does not hold the client's ports".into(),
    };
    v.push_str(&stalls(o));
    if o.in_flight > 0 && o.in_flight * 1000 >= o.attempted {
        v.push_str(&format!(
            "; {} connects were still waiting (SYN retransmissions) at the end",
            group(o.in_flight)
        ));
    }
    if o.unprotected_reuse > 0 {
        v.push_str(&format!(
            "; {} four-tuples were reused with no TIME-WAIT protecting them (SO_LINGER 0 or tcp_max_tw_buckets overflow): the seed's silent data corruption exposure",
            group(o.unprotected_reuse)
        ));
    }
    v
}

/// The verdict's clause on connects slower than the first SYN retransmission, if any.
fn stalls(o: &Outcome) -> String {
    if o.stalled == 0 {
        return String::new();
    }
    format!(
        "; {} connects stalled past a SYN retransmission ({} s in SYN-SENT in all)",
        group(o.stalled),
        group(o.stall_s.round() as u64)
    )
}

fn label(p: &PoolPlan) -> String {
    match (&p.destination, p.kind.as_str()) {
        (Some(d), _) => format!("{} {} → {d}", p.host, p.source),
        (None, "connect (host-wide)") => format!("{} (every address and destination)", p.host),
        (None, _) => format!("{} {} (every destination)", p.host, p.source),
    }
}

fn opt_s(x: Option<f64>) -> String {
    x.map_or("–".into(), |v| format!("{v} s"))
}

impl Plan {
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("a plan serializes");
        s.push('\n');
        s
    }

    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "plan          {} {}, {}, each run simulated for {} s",
            self.scenario,
            if self.file.starts_with('(') {
                self.file.clone()
            } else {
                format!("({})", self.file)
            },
            match &self.seeds {
                Some(seeds) => format!(
                    "seeds {seeds} (pools and verdict: seed {}; the table: means over the seeds; a fix fixes every seed)",
                    self.seed
                ),
                None => format!("seed {}", self.seed),
            },
            self.horizon_s
        );
        if !self.set.is_empty() {
            let _ = writeln!(s, "what-if       {}", self.set.join(" "));
        }
        let _ = writeln!(s, "verdict       {}\n", self.verdict);
        if let Some(b) = &self.before {
            let _ = writeln!(s, "BEFORE the what-if");
            pools_text(&mut s, b);
            let _ = writeln!(s, "\nAFTER the what-if");
        }
        pools_text(&mut s, &self.now);
        if !self.remedies.is_empty() || !self.not_recommended.is_empty() {
            let _ = writeln!(s, "\n{}", remedy::ranking());
            table(&mut s, self);
        }
        for (i, r) in self.remedies.iter().enumerate() {
            remedy_text(&mut s, &format!("{:>2}.", i + 1), r);
        }
        if !self.not_recommended.is_empty() {
            let _ = writeln!(s, "\nnot recommended");
            for r in &self.not_recommended {
                remedy_text(&mut s, " –", r);
            }
        }
        s
    }
}

fn pools_text(s: &mut String, a: &Assessment) {
    for p in &a.pools {
        let _ = writeln!(s, "pool          {} [{}]", label(p), p.kind);
        let _ = writeln!(
            s,
            "  limit       {} /s = {} ports / {} s TIME_WAIT (formula); simulated {}",
            p.formula_limit_per_s,
            group(u64::from(p.ports)),
            p.time_wait_s,
            p.simulated_per_s
                .map_or("–".into(), |v| match p.formula_error_percent {
                    Some(e) => format!("{v} /s ({e:+} % from the formula)"),
                    None => format!("{v} /s"),
                })
        );
        let _ = writeln!(
            s,
            "  offered     {} /s ({}); headroom {}",
            p.offered_per_s,
            p.offered_from,
            match (p.headroom_percent, p.headroom_limit()) {
                (Some(h), Some((l, LimitSource::Simulated))) =>
                    format!("{h} % of the {l} /s the pool carried while saturated (simulated)"),
                (Some(h), Some((l, LimitSource::Rule))) if l != p.formula_limit_per_s =>
                    format!("{h} % of the {l} /s that holds here"),
                (Some(h), _) => format!("{h} %"),
                _ => "– (no TIME-WAIT limit on these ports)".into(),
            }
        );
        let _ = writeln!(
            s,
            "  steady      {} TIME-WAIT sockets; runs out at {}; then {} connects/s beyond the limit fail or wait",
            group(p.time_wait_steady as u64),
            opt_s(p.exhausted_at_s),
            p.failing_per_s
        );
        if let Some(n) = &p.formula_note {
            let _ = writeln!(s, "  note        {n}");
        }
    }
    for n in &a.nat_pools {
        nat_text(s, n);
    }
    let o = &a.outcome;
    let _ = writeln!(
        s,
        "simulated     {} attempted, {} established, {} failed, {} stalled, {} waiting at the end ({} % succeed); {} requests completed ({} /s); first failure {}; TIME-WAIT peak {}; {} four-tuples reused unprotected",
        group(o.attempted),
        group(o.established),
        group(o.failed),
        group(o.stalled),
        group(o.in_flight),
        o.success_percent,
        group(o.requests_completed),
        o.requests_per_s,
        opt_s(o.first_failure_s),
        group(u64::from(o.time_wait_peak)),
        group(o.unprotected_reuse)
    );
}

fn nat_text(s: &mut String, n: &nat::NatPlan) {
    let _ = writeln!(
        s,
        "nat           {} [{}; behind it: {}]",
        n.label(),
        n.addresses.join(", "),
        n.behind.join(", ")
    );
    let simulated = n
        .simulated_per_s
        .map_or("–".into(), |v| match n.formula_error_percent {
            Some(e) => format!("{v} /s ({e:+} % from the formula)"),
            None => format!("{v} /s"),
        });
    match &n.cloud {
        Some(c) => cloud_limit_text(s, n, c, &simulated),
        None => {
            let _ = writeln!(
                s,
                "  limit       {} /s = {} address(es) × {} ports / {} s {} (formula{}); simulated {simulated}",
                n.formula_limit_per_s,
                n.addresses.len(),
                group(u64::from(n.ports_per_address)),
                n.hold_s,
                n.hold_state,
                if n.limit_per_s.is_some() {
                    ""
                } else {
                    ", an upper bound on the hold"
                },
            );
        }
    }
    let _ = writeln!(
        s,
        "  offered     {} /s ({}); headroom {}",
        n.offered_per_s,
        n.offered_from,
        match (n.headroom_percent, n.headroom_limit()) {
            (Some(h), Some((l, LimitSource::Simulated))) =>
                format!("{h} % of the {l} /s the NAT carried while it dropped SYNs (simulated)"),
            (Some(h), _) => format!("{h} %"),
            _ => "– (no rule gives its limit on this kernel, and the run carried what it was offered)".into(),
        }
    );
    if !n.syns_dropped.is_empty() {
        let d: Vec<String> = n
            .syns_dropped
            .iter()
            .map(|(k, v)| format!("{} {k}", group(*v)))
            .collect();
        let _ = writeln!(
            s,
            "  dropped     {} SYNs in all ({})",
            group(n.syns_dropped.values().sum()),
            d.join(", ")
        );
    }
    let _ = writeln!(
        s,
        "  held        {} flows open at once, of {} pairs; runs out at {}; then {} SYNs/s beyond the limit are dropped (the client retransmits them, then fails with ETIMEDOUT)",
        n.open_steady,
        group(u64::from(n.ports)),
        opt_s(n.exhausted_at_s),
        n.failing_per_s
    );
    for note in &n.notes {
        let _ = writeln!(s, "  note        {note}");
    }
}

/// A cloud gateway's limit line: per VM, or the shared pool's.
fn cloud_limit_text(s: &mut String, n: &nat::NatPlan, c: &nat::CloudLimit, simulated: &str) {
    let life = format!(
        "({} s open + {} s {})",
        decimal(c.connection_s, 3),
        n.hold_s,
        n.hold_state
    );
    match (c.ports_per_vm, c.per_destination) {
        (Some(p), _) => {
            let _ = writeln!(
                s,
                "  limit       {} /s = {} VMs × {} ports per VM / {life} (formula, {}, {}); simulated {simulated}",
                n.formula_limit_per_s,
                group(u64::from(c.vms_with_ports)),
                group(u64::from(p)),
                c.provider,
                c.allocation
            );
            let _ = writeln!(
                s,
                "  per VM      {} /s = {} ports / {life}; offered {} /s per VM",
                c.per_vm_limit_per_s.unwrap_or(0.0),
                group(u64::from(p)),
                c.per_vm_offered_per_s
            );
        }
        (None, d) => {
            let _ = writeln!(
                s,
                "  limit       {} /s = {} address(es) × {} per destination / {life} (formula, {}, shared); simulated {simulated}",
                n.formula_limit_per_s,
                n.addresses.len(),
                group(u64::from(d.unwrap_or(n.ports_per_address))),
                c.provider
            );
        }
    }
}

/// Columns of the remedy table, each right-aligned: what a user gets from one run.
const COLUMNS: [&str; 6] = [
    "requests/s",
    "failed",
    "stalled",
    "stall time",
    "unprotected",
    "headroom",
];

fn cells(o: Option<&Outcome>) -> [String; 6] {
    let Some(o) = o else {
        return std::array::from_fn(|_| "–".to_string());
    };
    [
        decimal(o.requests_per_s, 1),
        group(o.failed),
        group(o.stalled),
        format!("{} s", decimal(o.stall_s, 1)),
        group(o.unprotected_reuse),
        o.headroom_percent
            .map_or("–".into(), |h| format!("{} %", decimal(h, 1))),
    ]
}

/// Today's run and every remedy's, one row each, in the order they are ranked.
fn table(s: &mut String, p: &Plan) {
    let mut rows: Vec<(String, [String; 6], String)> =
        vec![("today".into(), cells(Some(&p.now.shown())), String::new())];
    for (i, r) in p.remedies.iter().enumerate() {
        let title = format!("{}{}", r.title, if r.fixes { "  [fixes]" } else { "" });
        rows.push((format!("{:>2}.", i + 1), cells(r.shown().as_ref()), title));
    }
    for r in &p.not_recommended {
        let title = format!("{}  [not recommended]", r.title);
        rows.push((" –".into(), cells(r.shown().as_ref()), title));
    }
    let lead = rows.iter().map(|r| r.0.chars().count()).max().unwrap_or(0);
    let width: Vec<usize> = (0..COLUMNS.len())
        .map(|c| {
            rows.iter()
                .map(|r| r.1[c].chars().count())
                .chain([COLUMNS[c].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |s: &mut String, first: &str, cols: &[&str], title: &str| {
        let mut l = format!("{first:<lead$}");
        for (c, w) in cols.iter().zip(&width) {
            let pad = w - c.chars().count();
            l.push_str(&format!("  {}{c}", " ".repeat(pad)));
        }
        if !title.is_empty() {
            l.push_str(&format!("  {title}"));
        }
        let _ = writeln!(s, "{l}");
    };
    line(s, "", &COLUMNS, "");
    for (first, c, title) in &rows {
        let cols: Vec<&str> = c.iter().map(String::as_str).collect();
        line(s, first, &cols, title);
    }
}

fn remedy_text(s: &mut String, n: &str, r: &remedy::Remedy) {
    let _ = writeln!(
        s,
        "\n{n} {}{}",
        r.title,
        if r.fixes { "  [fixes]" } else { "" }
    );
    for line in &r.how {
        let _ = writeln!(s, "      how       {line}");
    }
    match (&r.outcome, &r.not_simulated) {
        (Some(_), _) => {
            let _ = writeln!(s, "      simulated {}", r.findings.join("; "));
        }
        (None, Some(why)) => {
            let _ = writeln!(s, "      not simulated: {why}");
        }
        (None, None) => {}
    }
    let _ = writeln!(s, "      cost      {}", r.side_effects);
}
