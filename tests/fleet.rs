//! Fleets: a `[[host]]` with `count = N` stands for N identical client VMs. Expansion (names,
//! addresses), refusals with their positions, the per-instance Poisson rate (one aggregate
//! stream of rate R × N, each connection to an instance drawn uniformly), and the report's
//! one entry per (fleet, destination). Every bound is derived from the Poisson or binomial
//! formula, never taken from a run.

use portsim::report::Report;
use portsim::scenario::{self, Scenario, ScenarioError};
use portsim::sim::Simulation;
use portsim::workload::Arrival;

/// A fleet `vm` of `count` VMs from 10.1.0.1, a server `srv`, and a Poisson workload of
/// `rate` per VM for 100 s.
fn fleet(count: u32, rate: &str) -> String {
    format!(
        r#"
[scenario]
name = "fleet"
duration = "100s"
seed = 3

[[host]]
name = "vm"
count = {count}
ips = ["10.1.0.1"]

[[host]]
name = "srv"
ips = ["10.0.0.2"]
listen = ["10.0.0.2:80", "10.0.0.2:81"]

[[workload]]
name = "w"
client = "vm"
destinations = ["10.0.0.2:80"]
rtt = "200us"
arrival = {{ kind = "poisson", rate = {rate} }}
"#
    )
}

fn parse(text: &str) -> Scenario {
    scenario::parse("fleet.toml", text).unwrap_or_else(|e| panic!("{e}"))
}

fn refused(text: &str) -> ScenarioError {
    scenario::parse("fleet.toml", text).expect_err("refused")
}

fn run(text: &str) -> Report {
    Simulation::new(&parse(text)).run()
}

/// The line (1-based) of the first line of `text` containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .expect("needle")
        + 1
}

/// `mean ± 5 sd`, as an inclusive range of counts.
fn within_5_sd(mean: f64, sd: f64) -> std::ops::RangeInclusive<f64> {
    (mean - 5.0 * sd)..=(mean + 5.0 * sd)
}

#[test]
fn a_fleet_expands_to_named_instances_each_address_plus_k_minus_one() {
    let text = fleet(3, "5").replace(
        "ips = [\"10.1.0.1\"]",
        "ips = [\"10.1.0.254\", \"10.2.0.1\"]\nknobs = { \"net.ipv4.tcp_tw_reuse\" = 0 }",
    );
    let sc = parse(&text);
    let names: Vec<&str> = sc.hosts.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, ["vm[1]", "vm[2]", "vm[3]", "srv"]);
    let ip = |s: &str| u32::from(s.parse::<std::net::Ipv4Addr>().unwrap());
    assert_eq!(sc.hosts[0].ips, [ip("10.1.0.254"), ip("10.2.0.1")]);
    assert_eq!(sc.hosts[1].ips, [ip("10.1.0.255"), ip("10.2.0.2")]);
    assert_eq!(sc.hosts[2].ips, [ip("10.1.1.0"), ip("10.2.0.3")]);
    for (k, h) in sc.hosts[..3].iter().enumerate() {
        let f = h.fleet.as_ref().expect("an instance");
        assert_eq!((f.fleet.as_str(), f.k, f.count), ("vm", k as u32 + 1, 3));
        assert_eq!(h.profile.tw_reuse, 0, "the knobs apply to every instance");
    }
    assert!(sc.hosts[3].fleet.is_none());
    // The workload runs on each instance, from its own first address.
    let w = &sc.workloads[0];
    let sources: Vec<(u16, u32)> = w.sources.iter().map(|s| (s.host, s.ip)).collect();
    assert_eq!(
        sources,
        [
            (0, ip("10.1.0.254")),
            (1, ip("10.1.0.255")),
            (2, ip("10.1.1.0"))
        ]
    );
}

#[test]
fn count_one_is_a_single_host_as_before() {
    let sc = parse(&fleet(1, "5"));
    assert_eq!(sc.hosts[0].name, "vm");
    assert!(sc.hosts[0].fleet.is_none());
    assert!(sc.workloads[0].per_instance.is_none());
    assert_eq!(
        sc.workloads[0].arrival,
        Arrival::Poisson(portsim::workload::Rate::parse_decimal("5").unwrap())
    );
}

#[test]
fn a_bad_count_is_refused_at_its_key_saying_what_is_allowed() {
    for bad in ["0", "-1", "10001"] {
        let text = fleet(3, "5").replace("count = 3", &format!("count = {bad}"));
        let e = refused(&text);
        assert_eq!(e.key, "host[0].count", "{e}");
        assert_eq!(e.line, line_of(&text, "count ="), "{e}");
        assert!(e.message.contains("1–10000"), "{e}");
    }
    let text = fleet(3, "5").replace("count = 3", "count = \"3\"");
    let e = refused(&text);
    assert_eq!(e.line, line_of(&text, "count ="), "{e}");
    assert!(e.message.contains("invalid type"), "{e}");
}

#[test]
fn a_fleet_overlapping_another_host_is_refused_naming_the_instance() {
    // The server's address is the fleet's fifth instance's.
    let text = fleet(10, "5").replace("10.0.0.2", "10.1.0.5");
    let e = refused(&text);
    assert_eq!(e.key, "host[1].ips", "{e}");
    assert!(
        e.message.contains("already belongs to host \"vm[5]\""),
        "{e}"
    );
    // The other way round: a fleet declared after the host it runs into.
    let text = fleet(10, "5")
        .replace(
            "[[host]]\nname = \"vm\"\ncount = 10\nips = [\"10.1.0.1\"]\n",
            "",
        )
        .replace(
            "[[workload]]",
            "[[host]]\nname = \"vm\"\ncount = 10\nips = [\"10.0.0.1\"]\n\n[[workload]]",
        );
    let e = refused(&text);
    assert_eq!(e.key, "host[1].ips", "{e}");
    assert_eq!(e.line, line_of(&text, "ips = [\"10.0.0.1\"]"), "{e}");
    assert!(e.message.contains("10.0.0.2 (instance 2's address)"), "{e}");
    assert!(e.message.contains("\"srv\""), "{e}");
}

#[test]
fn a_fleet_past_the_last_address_or_on_loopback_is_refused() {
    let text = fleet(10, "5").replace("10.1.0.1", "255.255.255.250");
    let e = refused(&text);
    assert_eq!(e.key, "host[0].ips", "{e}");
    assert!(e.message.contains("passes 255.255.255.255"), "{e}");
    assert!(e.message.contains("instance 7"), "{e}");
    let text = fleet(2, "5").replace("10.1.0.1", "127.0.0.1");
    assert!(refused(&text).message.contains("loopback"));
    // Walking into 127.0.0.0/8 is refused as well.
    let text = fleet(2, "5").replace("10.1.0.1", "126.255.255.255");
    let e = refused(&text);
    assert!(
        e.message.contains("127.0.0.0 (instance 2's address)"),
        "{e}"
    );
}

#[test]
fn a_fleet_may_not_listen() {
    let text = fleet(4, "5").replace(
        "ips = [\"10.1.0.1\"]",
        "ips = [\"10.1.0.1\"]\nlisten = [\"0.0.0.0:80\"]",
    );
    let e = refused(&text);
    assert_eq!(e.key, "host[0].listen", "{e}");
    assert_eq!(e.line, line_of(&text, "listen = [\"0.0.0.0:80\"]"), "{e}");
    assert!(e.message.contains("clients only"), "{e}");
}

#[test]
fn names_clash_with_instances_and_fleets() {
    let text = fleet(3, "5").replace("name = \"srv\"", "name = \"vm[2]\"");
    assert!(refused(&text).message.contains("unique"));
    let text = fleet(3, "5").replace("name = \"srv\"", "name = \"vm\"");
    assert!(refused(&text).message.contains("unique"));
}

#[test]
fn a_fleet_workload_refuses_what_is_not_modelled_per_instance() {
    let text = fleet(3, "5").replace("\"poisson\", rate = 5", "\"constant\", rate = 5");
    let e = refused(&text);
    assert_eq!(e.key, "workload[0].arrival.kind", "{e}");
    assert!(e.message.contains("kind = \"poisson\""), "{e}");
    let text = fleet(3, "5").replace(
        "arrival = { kind = \"poisson\", rate = 5 }",
        "arrival = { kind = \"closed\", concurrency = 2 }",
    );
    assert_eq!(refused(&text).key, "workload[0].arrival.kind");
    let text = fleet(3, "5").replace("rtt =", "limit = { connections = 10 }\nrtt =");
    assert_eq!(refused(&text).key, "workload[0].limit");
    let text = fleet(3, "5").replace(
        "rtt =",
        "on_error = { action = \"retry\", delay = \"1s\" }\nrtt =",
    );
    assert_eq!(refused(&text).key, "workload[0].on_error.action");
    // A single host beside a fleet.
    let text = fleet(3, "5")
        .replace("client = \"vm\"", "clients = [\"vm\", \"solo\"]")
        .replace(
            "[[workload]]",
            "[[host]]\nname = \"solo\"\nips = [\"10.9.0.1\"]\n\n[[workload]]",
        );
    let e = refused(&text);
    assert_eq!(e.key, "workload[0].clients", "{e}");
    assert!(e.message.contains("fleets only"), "{e}");
}

#[test]
fn the_rate_is_per_instance_as_one_aggregate_stream() {
    let sc = parse(&fleet(10, "5"));
    let w = &sc.workloads[0];
    assert_eq!(w.per_instance.as_ref().unwrap().instances(), 10);
    assert_eq!(w.arrival.peak_rate(), Some(50.0));
    // Poisson steps are per instance too.
    let text = fleet(10, "5").replace(
        "arrival = { kind = \"poisson\", rate = 5 }",
        "arrival = { kind = \"steps\", process = \"poisson\", steps = [{ at = \"0s\", rate = 1 }, { at = \"50s\", rate = 2.5 }] }",
    );
    assert_eq!(parse(&text).workloads[0].arrival.peak_rate(), Some(25.0));
}

#[test]
fn set_changes_a_fleet_workload_s_rate_per_instance() {
    let text = scenario::set(
        &fleet(10, "5"),
        "workload.w.arrival.rate",
        toml::Value::Integer(7),
    )
    .unwrap();
    assert_eq!(parse(&text).workloads[0].arrival.peak_rate(), Some(70.0));
}

#[test]
fn ten_vms_at_5_per_s_for_100_s_make_about_5000_attempts_a_tenth_each() {
    let (n, rate, secs) = (10.0, 5.0, 100.0);
    let r = run(&fleet(10, "5"));
    let c = &r.summary.connections;
    // Poisson: mean = sd² = n · rate · secs.
    let mean = n * rate * secs;
    assert!(
        within_5_sd(mean, mean.sqrt()).contains(&(c.attempted as f64)),
        "{} attempts against {mean}",
        c.attempted
    );
    assert_eq!(c.failed, 0);
    // Given the total, an instance's count is binomial(total, 1/n).
    let [p] = &r.pools[..] else {
        panic!("one entry for the fleet: {:?}", r.pools)
    };
    let total = p.established as f64;
    let (share, sd) = (total / n, (total * (1.0 / n) * (1.0 - 1.0 / n)).sqrt());
    let each = p.per_instance.as_ref().expect("per_instance").established;
    for v in [each.min, each.max] {
        assert!(
            within_5_sd(share, sd).contains(&v),
            "{v} against {share} ± 5 × {sd}"
        );
    }
    assert!((each.mean - share).abs() < 1e-9);
    // The entry names the fleet, its count and one instance's limit.
    assert_eq!((p.host.as_str(), p.instances), ("vm", Some(10)));
    assert_eq!(p.source, "10.1.0.1-10.1.0.10");
    assert_eq!(p.destination.as_deref(), Some("10.0.0.2:80"));
    assert_eq!(p.formula_limit_per_s, f64::from(p.ports) / p.time_wait_s);
    assert_eq!(p.established, c.established);
    assert!((p.achieved_per_s - total / secs).abs() < 1e-9);
    // One host entry for the fleet; one free-port series for its entry.
    let hosts: Vec<(&str, Option<u32>)> = r
        .hosts
        .iter()
        .map(|h| (h.name.as_str(), h.instances))
        .collect();
    assert_eq!(hosts, [("vm", Some(10)), ("srv", None)]);
    assert!(r.series.iter().all(|b| b.free_ports.len() == 1));
}

#[test]
fn a_fleet_of_three_behaves_as_three_listed_hosts_with_a_workload_each() {
    let (rate, secs) = (20.0, 100.0);
    let fleet_report = run(&fleet(3, "20"));
    let mut listed = fleet(3, "20").replace(
        "[[host]]\nname = \"vm\"\ncount = 3\nips = [\"10.1.0.1\"]\n",
        "",
    );
    let mut hosts = String::new();
    for k in 1..=3 {
        hosts.push_str(&format!(
            "[[host]]\nname = \"h{k}\"\nips = [\"10.1.0.{k}\"]\n\n"
        ));
        listed.push_str(&format!(
            "\n[[workload]]\nname = \"w{k}\"\nclient = \"h{k}\"\ndestinations = [\"10.0.0.2:80\"]\nrtt = \"200us\"\narrival = {{ kind = \"poisson\", rate = 20 }}\n"
        ));
    }
    let listed = listed
        .replace("[[host]]\nname = \"srv\"", &format!("{hosts}[[host]]\nname = \"srv\""))
        .replace(
            "[[workload]]\nname = \"w\"\nclient = \"vm\"\ndestinations = [\"10.0.0.2:80\"]\nrtt = \"200us\"\narrival = { kind = \"poisson\", rate = 20 }\n",
            "",
        );
    let listed_report = run(&listed);
    assert_eq!(listed_report.pools.len(), 3);
    // Both: attempts in all Poisson(3 · rate · secs); per host, Poisson(rate · secs).
    let all = 3.0 * rate * secs;
    let per = rate * secs;
    for r in [&fleet_report, &listed_report] {
        let a = r.summary.connections.attempted as f64;
        assert!(
            within_5_sd(all, all.sqrt()).contains(&a),
            "{a} against {all}"
        );
    }
    let each = fleet_report.pools[0]
        .per_instance
        .as_ref()
        .unwrap()
        .established;
    for v in [each.min, each.max] {
        assert!(
            within_5_sd(per, per.sqrt()).contains(&v),
            "{v} against {per}"
        );
    }
    for p in &listed_report.pools {
        let v = p.established as f64;
        assert!(
            within_5_sd(per, per.sqrt()).contains(&v),
            "{v} against {per}"
        );
    }
}

#[test]
fn round_robin_runs_on_each_instance_over_the_destinations() {
    // Each instance alternates between the two destinations, so per destination the totals
    // differ by at most one per instance (and the connections still open at the end).
    let n = 7u64;
    let text = fleet(7, "10").replace(
        "destinations = [\"10.0.0.2:80\"]",
        "destinations = [\"10.0.0.2:80\", \"10.0.0.2:81\"]",
    );
    let r = run(&text);
    let [a, b] = &r.pools[..] else {
        panic!("one entry per destination: {:?}", r.pools)
    };
    assert_eq!((a.instances, b.instances), (Some(7), Some(7)));
    let in_flight = r.summary.connections.in_flight;
    assert!(a.established.abs_diff(b.established) <= n + in_flight);
    assert!(r.series.iter().all(|bin| bin.free_ports.len() == 2));
}

#[test]
fn a_fleet_behind_a_nat_puts_every_instance_behind_it() {
    let text = format!(
        "{}\n[[nat]]\nname = \"gw\"\nips = [\"192.0.2.1\"]\nbehind = [\"vm\"]\n",
        fleet(5, "2")
    );
    let sc = parse(&text);
    assert_eq!(sc.nats[0].behind, [0, 1, 2, 3, 4]);
    let r = Simulation::new(&sc).run();
    assert_eq!(r.nat[0].behind, ["vm"]);
    assert!(r.summary.connections.established > 0);
}

#[test]
fn source_ips_on_a_fleet_name_its_ips_and_each_instance_uses_its_own() {
    let text = fleet(4, "5")
        .replace("ips = [\"10.1.0.1\"]", "ips = [\"10.1.0.1\", \"10.2.0.1\"]")
        .replace(
            "client = \"vm\"",
            "client = \"vm\"\nconnection = \"bind_no_port\"\nsource_ips = [\"10.2.0.1\"]",
        );
    let sc = parse(&text);
    let ips: Vec<String> = sc.workloads[0]
        .sources
        .iter()
        .map(|s| std::net::Ipv4Addr::from(s.ip).to_string())
        .collect();
    assert_eq!(ips, ["10.2.0.1", "10.2.0.2", "10.2.0.3", "10.2.0.4"]);
    let e = refused(&text.replace("source_ips = [\"10.2.0.1\"]", "source_ips = [\"10.2.0.2\"]"));
    assert_eq!(e.key, "workload[0].source_ips", "{e}");
}
