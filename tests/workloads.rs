//! Workloads as load tools run them: a deadline (`stop`, `oha -z`, `wrk -d`) for every
//! arrival kind, "exactly N" (`limit`: `ab -n`, `hey -n`), bursts of sockets opened at once,
//! and the ports each pool hands out (`run --ports`). Expected numbers follow from the
//! workload's own timing (a closed-loop cycle is one RTT to connect plus, per request, one
//! RTT and the service time) and the kernel's rules, not from a previous run.

use portsim::report::Report;
use portsim::scenario;
use portsim::sim::Simulation;
use std::process::Command;

/// One client and one server; 10 ports (40000–40009); the workload's lines appended.
const BASE: &str = r#"
[scenario]
name = "w"
duration = "3s"
bin = "500ms"

[[host]]
name = "c"
ips = ["10.0.0.1"]
knobs = { "net.ipv4.ip_local_port_range" = "40000 40009", "net.ipv4.tcp_tw_reuse" = 0 }

[[host]]
name = "s"
ips = ["10.0.0.2"]
listen = ["10.0.0.2:80"]

[[workload]]
name = "w"
client = "c"
destinations = ["10.0.0.2:80"]
rtt = "1ms"
service_time = "9ms"
"#;

fn run(workload: &str) -> Report {
    run_with(workload, false)
}

fn run_with(workload: &str, ports: bool) -> Report {
    let text = format!("{BASE}{workload}\n");
    let sc = scenario::parse("w.toml", &text).unwrap_or_else(|e| panic!("{e}"));
    Simulation::new(&sc).ports(ports).run()
}

/// 51,000 ports instead of 10, for workloads that must not run out.
fn run_wide(workload: &str) -> Report {
    let text = format!("{BASE}{workload}\n").replace("\"40000 40009\"", "\"10000 60999\"");
    let sc = scenario::parse("w.toml", &text).unwrap_or_else(|e| panic!("{e}"));
    Simulation::new(&sc).run()
}

/// One worker's connection: 1 ms to connect, then per request 1 ms RTT + 9 ms service.
fn cycle_ms(requests: u64) -> u64 {
    1 + requests * 10
}

#[test]
fn a_closed_loop_opens_nothing_from_its_stop_on() {
    let r = run_wide("arrival = { kind = \"closed\", concurrency = 10 }\nstop = \"1s\"");
    // Each worker starts a connection every 11 ms while t < 1 s: ⌈1000 / 11⌉ = 91.
    let per_worker = 1000u64.div_ceil(cycle_ms(1));
    assert_eq!(r.summary.connections.attempted, 10 * per_worker);
    assert!(
        r.series
            .iter()
            .filter(|b| b.t_s >= 1.0)
            .all(|b| b.attempts == 0)
    );
    // Connections open at the stop run to their end.
    assert_eq!(r.summary.connections.in_flight, 0);
    assert_eq!(r.summary.requests.completed, 10 * per_worker);
    // Without the stop the loop runs the whole 3 s.
    let all = run_wide("arrival = { kind = \"closed\", concurrency = 10 }");
    assert_eq!(
        all.summary.connections.attempted,
        10 * 3000u64.div_ceil(cycle_ms(1))
    );
}

#[test]
fn a_workload_starting_late_opens_nothing_before_its_start() {
    let r = run_wide("arrival = { kind = \"closed\", concurrency = 4 }\nstart = \"2s\"");
    assert!(
        r.series
            .iter()
            .filter(|b| b.t_s < 2.0)
            .all(|b| b.attempts == 0)
    );
    assert_eq!(
        r.summary.connections.attempted,
        4 * 1000u64.div_ceil(cycle_ms(1))
    );
}

#[test]
fn retries_stop_at_the_stop_too() {
    // 10 ports held 60 s in TIME-WAIT: from the 11th connect every attempt fails and is
    // retried each millisecond, until the stop at 1 s.
    let r = run(
        "arrival = { kind = \"closed\", concurrency = 2 }\nstop = \"1s\"\non_error = { action = \"retry\", delay = \"1ms\" }",
    );
    assert!(
        r.series
            .iter()
            .filter(|b| b.t_s >= 1.0)
            .all(|b| b.attempts == 0)
    );
    assert_eq!(r.summary.connections.established, 10);
}

#[test]
fn a_request_limit_ends_the_workload_after_exactly_n_requests() {
    // ab -n 25 -c 10 with two requests per connection: 12 connections of two, and a 13th
    // carrying the last one. The first 10 start at 0; three more when the first end, one
    // cycle of two requests later, and the 13th spends the limit there.
    let r = run_wide(
        "arrival = { kind = \"closed\", concurrency = 10 }\nrequests_per_connection = 2\nlimit = { requests = 25 }",
    );
    assert_eq!(r.summary.requests.completed, 25);
    assert_eq!(r.summary.connections.attempted, 13);
    let stopped = r.workloads[0].stopped_s.expect("the limit was reached");
    assert!(
        (stopped - cycle_ms(2) as f64 / 1e3).abs() < 1e-9,
        "{stopped}"
    );
}

#[test]
fn a_connection_limit_counts_every_connect_failed_or_not() {
    // 25 connects at 100/s into 10 ports: 10 succeed, 15 fail, then nothing.
    let r = run(
        "arrival = { kind = \"constant\", rate = 100 }\nlimit = { connections = 25 }\non_error = { action = \"count\" }",
    );
    let c = &r.summary.connections;
    assert_eq!((c.attempted, c.established, c.failed), (25, 10, 15));
    assert_eq!(r.workloads[0].stopped_s, Some(0.24));
}

#[test]
fn a_retry_carries_the_request_it_retries() {
    // 5 requests into 10 ports… of which 2: connects 3, 4 and 5 fail and each is retried
    // three times before it is given up: 2 + 3 × 4 attempts, 2 completed, 3 failed.
    let text = format!(
        "{BASE}arrival = {{ kind = \"constant\", rate = 100 }}\nlimit = {{ requests = 5 }}\non_error = {{ action = \"retry\", delay = \"1ms\", max_retries = 3 }}\n"
    )
    .replace("\"40000 40009\"", "\"40000 40001\"");
    let sc = scenario::parse("w.toml", &text).unwrap_or_else(|e| panic!("{e}"));
    let r = Simulation::new(&sc).run();
    assert_eq!(r.summary.connections.attempted, 2 + 3 * 4);
    assert_eq!(r.summary.requests.completed, 2);
    assert_eq!(r.summary.requests.failed, 3);
}

#[test]
fn a_burst_opens_its_sockets_at_one_instant() {
    // 12 sockets at once into 10 ports: the 11th and 12th fail at t = 0.
    let r = run("arrival = { kind = \"burst\", at = \"0s\", count = 12 }");
    assert_eq!(r.summary.connections.established, 10);
    assert_eq!(r.summary.errors["EADDRNOTAVAIL"], 2);
    assert_eq!(r.summary.first_failure_s, Some(0.0));
    // A list of bursts opens each at its offset from the workload's start.
    let r = run_wide(
        "arrival = { kind = \"burst\", bursts = [{ at = \"0s\", count = 12 }, { at = \"2s\", count = 5 }] }\nstart = \"500ms\"",
    );
    let attempts: Vec<u64> = r.series.iter().map(|b| b.attempts).collect();
    assert_eq!(attempts, [0, 12, 0, 0, 0, 5]);
}

#[test]
fn bad_limits_and_bursts_are_refused_with_the_key_and_what_is_allowed() {
    for (workload, key, says) in [
        (
            "arrival = { kind = \"closed\", concurrency = 1 }\nlimit = {}",
            "limit",
            "connections = N",
        ),
        (
            "arrival = { kind = \"closed\", concurrency = 1 }\nlimit = { requests = 0 }",
            "limit.requests",
            "≥ 1",
        ),
        (
            "arrival = { kind = \"closed\", concurrency = 1 }\nrequests_per_connection = 0\nlimit = { requests = 5 }",
            "limit.requests",
            "requests_per_connection = 0",
        ),
        (
            "arrival = { kind = \"burst\", at = \"0s\" }",
            "arrival.count",
            "both `at` and `count`",
        ),
        (
            "arrival = { kind = \"burst\", bursts = [{ at = \"1s\", count = 1 }, { at = \"1s\", count = 2 }] }",
            "arrival.at",
            "increasing",
        ),
        (
            "arrival = { kind = \"burst\", at = \"5s\", count = 3 }",
            "arrival.at",
            "never open",
        ),
        (
            "arrival = { kind = \"constant\", rate = 5, count = 3 }",
            "arrival",
            "kind = \"burst\"",
        ),
    ] {
        let text = format!("{BASE}{workload}\n");
        let e = scenario::parse("w.toml", &text).expect_err(workload);
        assert!(e.key.ends_with(key), "{workload}: key {:?}", e.key);
        assert!(e.message.contains(says), "{workload}: {}", e.message);
        assert!(e.line > 0, "{workload}: no line");
    }
}

#[test]
fn connect_hands_out_even_ports_first_and_bind_odd_ports_first() {
    // §1.2 step 6: connect() scans the ports of the range start's parity first while one is
    // free; bind(0) takes the other half first (§1.6).
    let burst = "arrival = { kind = \"burst\", at = \"0s\", count = 10 }";
    let r = run_with(burst, true);
    let u = r.pools[0].port_use.as_ref().expect("--ports");
    assert!(u.first[..5].iter().all(|p| p % 2 == 0), "{:?}", u.first);
    assert!(u.first[5..].iter().all(|p| p % 2 == 1), "{:?}", u.first);
    assert_eq!((u.even, u.odd), (5, 5));
    assert_eq!(u.histogram.counts.iter().sum::<u64>(), 10);
    let r = run_with(&format!("{burst}\nconnection = \"bind\""), true);
    let u = r.pools[0].port_use.as_ref().expect("--ports");
    assert_eq!(r.pools[0].kind, "bind");
    assert!(u.first[..5].iter().all(|p| p % 2 == 1), "{:?}", u.first);
    // Without the flag the report has no port lists.
    assert!(run(burst).pools[0].port_use.is_none());
}

#[test]
fn the_text_report_says_when_no_request_completed_and_spaces_a_host_wide_pool() {
    let r = run("arrival = { kind = \"closed\", concurrency = 1 }\nrequests_per_connection = 0");
    let t = r.to_text();
    assert!(t.contains("request       none completed"), "{t}");
    let out = Command::new(env!("CARGO_BIN_EXE_portsim"))
        .args(["run", "scenarios/macos-16k-cap.toml"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let t = String::from_utf8_lossy(&out.stdout);
    assert!(
        t.contains("connect (host-wide) any → any destination"),
        "{t}"
    );
}
