//! Remedies for a NAT that runs short of ports, each with the rule or sysctl that makes it
//! on the NAT (the Docker host or Kubernetes node): a wider port range, `fully-random`,
//! more addresses, a shorter conntrack TIME_WAIT. Reusing connections is the workloads'
//! remedy ([`super::keep_alive`]). `eth0` in a rule stands for the outgoing interface.

use super::{NOT_RECOMMENDED, Variant, strings, sub};
use crate::nat::conntrack::CtState;
use crate::nat::select::Rule;
use crate::scenario::{NatSpec, Scenario};
use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use toml::{Table, Value};

/// The NATs the target workloads' connections cross, in scenario order.
pub(super) fn crossed(sc: &Scenario, targets: &[usize]) -> Vec<usize> {
    let hosts: BTreeSet<usize> = targets
        .iter()
        .flat_map(|&i| sc.workloads[i].sources.iter().map(|s| s.host as usize))
        .collect();
    (0..sc.nats.len())
        .filter(|&n| sc.nats[n].behind.iter().any(|h| hosts.contains(h)))
        .collect()
}

/// The Linux NATs (masquerade or SNAT, not a cloud gateway) the target workloads'
/// connections cross: the ones an nftables rule or a conntrack sysctl changes.
fn linux_crossed(sc: &Scenario, targets: &[usize]) -> Vec<usize> {
    crossed(sc, targets)
        .into_iter()
        .filter(|&n| sc.nats[n].config.cloud.is_none())
        .collect()
}

/// `rule` as an nftables command ([`Rule::nft_statement`]).
pub fn nft(rule: &Rule) -> String {
    format!(
        "nft add rule ip nat POSTROUTING oifname \"eth0\" meta l4proto tcp {}",
        rule.nft_statement()
    )
}

/// `rule` as iptables writes it: `MASQUERADE` for one address (it has no `--persistent`),
/// `SNAT --to-source` a range for more.
pub fn iptables(rule: &Rule) -> String {
    let mut target = match rule.ips.as_slice() {
        [_] => format!(
            "MASQUERADE{}",
            rule.ports
                .map(|(lo, hi)| format!(" --to-ports {lo}-{hi}"))
                .unwrap_or_default()
        ),
        ips => format!(
            "SNAT --to-source {}{}",
            span(ips),
            rule.ports
                .map(|(lo, hi)| format!(":{lo}-{hi}"))
                .unwrap_or_default()
        ),
    };
    for (on, flag) in [
        (rule.random, " --random"),
        (rule.fully_random, " --random-fully"),
        (rule.persistent && rule.ips.len() > 1, " --persistent"),
    ] {
        if on {
            target.push_str(flag);
        }
    }
    format!("iptables -t nat -A POSTROUTING -o eth0 -p tcp -j {target}")
}

fn span(ips: &[u32]) -> String {
    let first = Ipv4Addr::from(ips[0]);
    let last = Ipv4Addr::from(ips[ips.len() - 1]);
    format!("{first}-{last}")
}

/// The two lines that set `rule` on NAT `n`, in place of its current rule.
fn rule_lines(n: &NatSpec, rule: &Rule) -> Vec<String> {
    vec![
        format!(
            "{}: {}   (in place of the current rule; eth0 stands for the outgoing interface)",
            n.name,
            nft(rule)
        ),
        format!("{}: or, with iptables: {}", n.name, iptables(rule)),
    ]
}

/// The `[[nat]]` named `name` in `doc`.
pub(super) fn nat_mut<'a>(doc: &'a mut Table, name: &str) -> &'a mut Table {
    doc.get_mut("nat")
        .and_then(Value::as_array_mut)
        .expect("a scenario with NATs has [[nat]]")
        .iter_mut()
        .filter_map(Value::as_table_mut)
        .find(|n| n.get("name").and_then(Value::as_str) == Some(name))
        .expect("the NAT exists")
}

/// Sets `[nat.knobs] key = value` on NAT `n`, and says so.
pub(super) fn knob(var: &mut Variant, n: &NatSpec, key: &str, value: Value) {
    let shown = value.to_string();
    sub(nat_mut(&mut var.doc, &n.name), "knobs").insert(key.into(), value);
    var.simulated_change
        .push(format!("nat.{}.knobs.\"{key}\" = {shown}", n.name));
}

/// The masquerade range at its widest: 1024–65535 per address and destination.
pub(super) fn port_range(sc: &Scenario, targets: &[usize], doc: &Table) -> Option<Variant> {
    let mut var = Variant::draft(doc);
    for i in linux_crossed(sc, targets) {
        let n = &sc.nats[i];
        if n.config.ports_per_address() >= 60_000 {
            continue;
        }
        let mut rule = n.config.rule.clone();
        rule.ports = Some((1024, 65535));
        knob(
            &mut var,
            n,
            "port_range",
            Value::String("1024 65535".into()),
        );
        var.how.extend(rule_lines(n, &rule));
    }
    var.done(
        "Widen the NAT's port range to 1024–65535",
        "the NAT's ports from 1024 up carry translated flows: a service on the NAT host itself that listens on one of them still works (conntrack keeps the two apart), but a port forward (DNAT) to one of them may clash with a translated flow's reply; the range is then at its widest, 64,512 ports per address and destination",
        1,
    )
}

/// `fully-random`: every flow's port drawn at random from the range.
pub(super) fn fully_random(sc: &Scenario, targets: &[usize], doc: &Table) -> Option<Variant> {
    let mut var = Variant::draft(doc);
    for i in linux_crossed(sc, targets) {
        let n = &sc.nats[i];
        if n.config.rule.fully_random {
            continue;
        }
        let mut rule = n.config.rule.clone();
        rule.fully_random = true;
        let flags: Vec<Value> = [
            (rule.random, "random"),
            (true, "fully-random"),
            (rule.persistent, "persistent"),
        ]
        .into_iter()
        .filter(|(on, _)| *on)
        .map(|(_, f)| Value::String(f.into()))
        .collect();
        knob(&mut var, n, "flags", Value::Array(flags));
        var.how.extend(rule_lines(n, &rule));
    }
    var.done(
        "NAT port chosen fully at random (fully-random)",
        "the NAT no longer keeps a client's own port when it is free: servers see random source ports; the port search starts at a random point for every flow (NF_NAT_RANGE_PROTO_RANDOM_FULLY), which keeps two SYNs handled at once on two CPUs from choosing the same port on kernels before 5.0",
        2,
    )
}

/// More NAT addresses: `snat to` a range of `m` times as many, up to one per client
/// address behind the NAT (each client address takes one NAT address per destination).
pub(super) fn addresses(sc: &Scenario, targets: &[usize], doc: &Table, m: u32) -> Option<Variant> {
    let mut var = Variant::draft(doc);
    let mut used: BTreeSet<u32> = sc.hosts.iter().flat_map(|h| h.ips.clone()).collect();
    used.extend(sc.nats.iter().flat_map(|n| n.ips.clone()));
    for i in linux_crossed(sc, targets) {
        let n = &sc.nats[i];
        let clients = client_addresses(sc, n);
        let want = (n.ips.len() as u32 * m).min(clients) as usize;
        if want <= n.ips.len() {
            continue;
        }
        let ips = block(&used, n, want)?;
        used.extend(ips.iter().copied());
        let shown: Vec<String> = ips.iter().map(|a| Ipv4Addr::from(*a).to_string()).collect();
        nat_mut(&mut var.doc, &n.name).insert("ips".into(), strings(shown.clone()));
        var.simulated_change
            .push(format!("nat.{}.ips = {}", n.name, shown.join(", ")));
        let mut rule = n.config.rule.clone();
        rule.ips = ips;
        var.how.extend(rule_lines(n, &rule));
        var.how.push(format!(
            "{}: each new address on the outgoing interface (ip addr add ADDRESS/32 dev eth0) and routed back to the NAT",
            n.name
        ));
    }
    var.done(
        format!("More NAT addresses (snat to a range, up to {m}×)"),
        "the addresses must be the NAT's own and routed back to it; servers that allow or limit clients by address see several; each client address keeps one NAT address per destination address (find_best_ips_proto hashes the two; with persistent, one for every destination), so a client with one address gains nothing",
        5,
    )
}

/// Distinct client addresses behind `n` that workloads connect from.
fn client_addresses(sc: &Scenario, n: &NatSpec) -> u32 {
    let ips: BTreeSet<u32> = sc
        .workloads
        .iter()
        .flat_map(|w| &w.sources)
        .filter(|s| n.behind.contains(&(s.host as usize)))
        .map(|s| s.ip)
        .collect();
    ips.len() as u32
}

/// `want` consecutive addresses for `n`: its own and those after them if free, else a
/// block after every address in use.
fn block(used: &BTreeSet<u32>, n: &NatSpec, want: usize) -> Option<Vec<u32>> {
    let from_own = n.ips[0];
    let free = |start: u32| {
        (0..want as u32).all(|k| {
            start
                .checked_add(k)
                .is_some_and(|a| n.ips.contains(&a) || !used.contains(&a))
        })
    };
    let start = if free(from_own) {
        from_own
    } else {
        used.last()?.checked_add(1)?
    };
    start.checked_add(want as u32 - 1)?;
    Some((0..want as u32).map(|k| start + k).collect())
}

/// Conntrack's TIME_WAIT down to `secs` on every NAT crossed whose timeout is longer.
fn time_wait_to(sc: &Scenario, targets: &[usize], doc: &Table, secs: u64) -> Variant {
    let mut var = Variant::draft(doc);
    let key = "net.netfilter.nf_conntrack_tcp_timeout_time_wait";
    for i in linux_crossed(sc, targets) {
        let n = &sc.nats[i];
        if n.config.timeouts[CtState::TimeWait as usize].0 <= secs * 1_000_000_000 {
            continue;
        }
        knob(&mut var, n, key, Value::Integer(secs as i64));
        var.how.push(format!(
            "{}: sysctl -w {key}={secs}, and in /etc/sysctl.d/ to keep it",
            n.name
        ));
    }
    var
}

/// The longest TCP TIME-WAIT of the hosts, in seconds: how long an endpoint protects a
/// four-tuple from an old connection's segments.
fn tcp_time_wait_s(sc: &Scenario) -> u64 {
    let ns = sc.hosts.iter().map(|h| h.profile.time_wait.0).max();
    ns.unwrap_or(0).div_ceil(1_000_000_000).max(1)
}

/// Conntrack's TIME_WAIT as long as the endpoints' TCP TIME-WAIT (Linux: 60 s), no shorter.
pub(super) fn time_wait_as_tcp(sc: &Scenario, targets: &[usize], doc: &Table) -> Option<Variant> {
    let secs = tcp_time_wait_s(sc);
    time_wait_to(sc, targets, doc, secs).done(
        format!("Conntrack TIME_WAIT down to the hosts' TCP TIME-WAIT ({secs} s)"),
        "the NAT then reuses a (NAT address, port, destination) as soon as an endpoint could reuse its own four-tuple: the protection from an old connection's late segments is the endpoints' own TIME-WAIT, no less; every NAT flow's entry is shorter-lived, not only those that ran short",
        2,
    )
}

/// Conntrack's TIME_WAIT at a quarter, when that is shorter than the endpoints' TIME-WAIT.
pub(super) fn time_wait_quarter(sc: &Scenario, targets: &[usize], doc: &Table) -> Option<Variant> {
    let tcp = tcp_time_wait_s(sc);
    let longest = linux_crossed(sc, targets)
        .into_iter()
        .map(|i| sc.nats[i].config.timeouts[CtState::TimeWait as usize].0)
        .max()?;
    let secs = (longest / 4).div_ceil(1_000_000_000).max(1);
    if secs >= tcp {
        return None;
    }
    time_wait_to(sc, targets, doc, secs).done(
        format!("Conntrack TIME_WAIT down to a quarter ({secs} s)"),
        "NOT A FIX: shorter than the endpoints' TCP TIME-WAIT, so the NAT reuses a (NAT address, port, destination) the server may still get an old connection's segments for: it forwards them into the new flow (the seed's silent data corruption, made by the NAT)",
        NOT_RECOMMENDED + 2,
    )
}
