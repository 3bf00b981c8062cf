//! The shipped scenarios and the kernel rules behind them. Every expected number is derived
//! from the seed's formula (ports / TIME_WAIT), the reference, or a measurement of the real
//! kernel (notes/linux-observations), never from a previous run.

use portsim::report::Report;
use portsim::scenario;
use portsim::sim::Simulation;
use std::path::Path;

fn run_file(name: &str) -> Report {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios")
        .join(name);
    let sc = scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let sim = Simulation::new(&sc);
    sim.run()
}

fn run_text(text: &str) -> Report {
    let sc = scenario::parse("inline.toml", text).unwrap_or_else(|e| panic!("{e}"));
    Simulation::new(&sc).run()
}

fn errors(r: &Report, name: &str) -> u64 {
    r.summary.errors.get(name).copied().unwrap_or(0)
}

/// Connections a port carries in `duration` when it is taken at `first` and again each
/// time its TIME_WAIT ends: the seed's formula made exact for a finite run.
fn uses_per_port(first_s: f64, cycle_s: f64, duration_s: f64) -> u64 {
    ((duration_s - first_s) / cycle_s).ceil() as u64
}

#[test]
fn httperf_error_99_fails_at_32_768_s_and_sustains_ports_over_time_wait() {
    let r = run_file("httperf-error-99.toml");
    let (ports, tw, rate, dur) = (16_384u64, 60.0, 500.0, 300.0);
    let s = &r.summary;
    assert_eq!(s.connections.attempted, 150_000);
    assert_eq!(s.first_failure_s, Some(ports as f64 / rate));
    // Every port is first taken before 32.768 s and comes back every 60 s (plus a lifetime of
    // about 1.4 ms and at most one 2 ms arrival gap).
    let per_port = uses_per_port(ports as f64 / rate, tw + 0.004, dur);
    assert_eq!(per_port, 5);
    assert_eq!(s.connections.established, ports * per_port);
    assert_eq!(errors(&r, "EADDRNOTAVAIL"), 150_000 - ports * per_port);
    assert_eq!(s.requests.completed, 81_920);
    assert_eq!(s.time_wait.peak, 16_384);
    // Long-run success rate 16,384 / 60 = 273.07/s over the last four minutes.
    let late: u64 = r
        .series
        .iter()
        .filter(|b| b.t_s >= 60.0)
        .map(|b| b.established)
        .sum();
    assert!(
        (late as f64 / 240.0 - 273.07).abs() < 0.5,
        "{}",
        late as f64 / 240.0
    );
    // Failures come in bursts: none in the first 32 s, none once ports come back. The first
    // ports return 60–62.048 s after their close, in batches at the timer wheel's 2.048 s
    // slots (HZ=250, src/tw_timer.rs), so the first burst lasts into the 63rd second.
    let failed_in = |a: f64, b: f64| -> u64 {
        r.series
            .iter()
            .filter(|x| x.t_s >= a && x.t_s < b)
            .map(|x| x.failed.values().sum::<u64>())
            .sum()
    };
    assert_eq!(failed_in(0.0, 32.0), 0);
    assert_eq!(failed_in(64.0, 92.0), 0);
    assert!(failed_in(33.0, 60.0) > 0);
}

#[test]
fn a_240_s_time_wait_cuts_the_rate_to_68_per_second() {
    let r = run_file("httperf-error-99-tw240.toml");
    let s = &r.summary;
    assert_eq!(s.first_failure_s, Some(32.768));
    assert_eq!(
        s.connections.established,
        16_384 * uses_per_port(32.768, 240.004, 300.0)
    );
    assert_eq!(s.connections.established, 32_768);
}

#[test]
fn default_linux_range_sustains_470_per_second_to_one_destination() {
    let r = run_file("linux-default-churn.toml");
    let s = &r.summary;
    let ports = 28_232u64;
    assert_eq!(s.first_failure_s, Some(ports as f64 / 1000.0));
    assert_eq!(
        s.connections.established,
        ports * uses_per_port(28.232, 60.004, 300.0)
    );
    assert_eq!(s.connections.established, 141_160);
    assert_eq!(errors(&r, "EADDRNOTAVAIL"), 300_000 - 141_160);
    assert_eq!(r.pools[0].ports, 28_232);
    assert!((r.pools[0].formula_limit_per_s - 470.53).abs() < 0.01);
}

#[test]
fn each_fix_from_the_seed_removes_every_failure_at_the_same_offered_load() {
    let baseline = run_file("httperf-error-99.toml");
    for (file, connections) in [
        ("fix-keepalive.toml", 15_000),
        ("fix-full-port-range.toml", 150_000),
        ("fix-more-clients.toml", 150_000),
        ("fix-more-client-ips.toml", 150_000),
        ("fix-more-server-ips.toml", 150_000),
    ] {
        let r = run_file(file);
        let s = &r.summary;
        assert_eq!(s.connections.failed, 0, "{file}");
        assert_eq!(s.connections.established, connections, "{file}");
        // The same 500 requests/s; every one completes, against 81,920 in the baseline.
        assert_eq!(s.requests.completed, 150_000, "{file}");
        assert!(s.requests.completed > baseline.summary.requests.completed);
    }
}

#[test]
fn fixes_hold_the_expected_time_wait_population() {
    // TIME_WAIT population = connection rate per pool × how long a TIME-WAIT lasts: 60 s,
    // plus up to one 2.048 s slot of the HZ=250 timer wheel (src/tw_timer.rs).
    for (file, rate) in [
        ("fix-keepalive.toml", 50),
        ("fix-full-port-range.toml", 500),
        ("fix-more-server-ips.toml", 500),
    ] {
        let peak = run_file(file).summary.time_wait.peak;
        let (lo, hi) = (rate * 60, (f64::from(rate) * 62.048).ceil() as u32);
        assert!(
            (lo..=hi).contains(&peak),
            "{file}: {peak} not in {lo}..={hi}"
        );
    }
}

#[test]
fn linger_zero_avoids_failures_by_reusing_four_tuples_without_time_wait() {
    let r = run_file("antifix-linger-zero.toml");
    let s = &r.summary;
    assert_eq!(s.connections.failed, 0);
    assert_eq!(s.time_wait.peak, 0);
    assert_eq!(s.kernel_counters["linger_resets"], 150_000);
    // Linux's connect() takes even ports while one is free (§1.2 step 6; measured in
    // notes/linux-observations A, D), and with RST closes one always is: 8,192 four-tuples
    // carry 30,000 connections per 60 s window, so at least 30,000 - 8,192 = 21,808 per
    // window reuse a four-tuple used less than 60 s before: 5 windows, 109,040. That exceeds
    // the pigeonhole bound over all 16,384 ports (5 × 13,616 = 68,080).
    assert!(s.unprotected_reuse >= 109_040, "{}", s.unprotected_reuse);
    assert!(s.unprotected_reuse <= 150_000 - 8_192);
}

#[test]
fn linux_loopback_server_close_is_limited_by_latency_not_ports() {
    let r = run_file("linux-loopback-server-close.toml");
    let s = &r.summary;
    assert_eq!(s.connections.failed, 0);
    assert_eq!(s.time_wait.peak_client, 0);
    // cycle = 2 × RTT + service = 1.068 ms; 50 slots × floor(10 s / 1.068 ms).
    let cycle_us = 2 * 40 + 988;
    assert_eq!(s.requests.completed, 50 * (10_000_000 / cycle_us));
    assert_eq!(s.requests.completed, 468_150);
    // The mechanism: SYNs reopen server-side TIME_WAIT four-tuples (§2.4).
    assert!(s.kernel_counters["tw_syn_accepted"] > 400_000);
    assert_eq!(s.kernel_counters["tw_syn_rejected"], 0);
    assert_eq!(s.connect_latency_ms.max, 0.04);
}

#[test]
fn same_scenario_and_seed_give_byte_identical_json() {
    let a = run_file("httperf-error-99.toml").to_json();
    let b = run_file("httperf-error-99.toml").to_json();
    assert_eq!(a, b);
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/httperf-error-99.toml");
    let mut sc = scenario::load(&path).unwrap();
    sc.seed = 2;
    let c = Simulation::new(&sc).run().to_json();
    assert_ne!(a, c, "the seed drives the port choices");
}

const SMALL_RANGE: &str = r#"
[scenario]
name = "small"
duration = "DURATION"
seed = 3

[[host]]
name = "box"
ips = ["127.0.0.1"]
listen = ["127.0.0.1:10000"]

[host.knobs]
"net.ipv4.ip_local_port_range" = "40000 40009"
KNOBS

[[workload]]
name = "w"
client = "box"
destinations = ["127.0.0.1:10000"]
rtt = "40us"
WORKLOAD
"#;

fn small(duration: &str, knobs: &str, workload: &str) -> Report {
    let knobs = if knobs.contains("tcp_tw_reuse") {
        knobs.to_string()
    } else {
        format!("\"net.ipv4.tcp_tw_reuse\" = 0\n{knobs}")
    };
    let knobs = knobs.as_str();
    run_text(
        &SMALL_RANGE
            .replace("DURATION", duration)
            .replace("KNOBS", knobs)
            .replace("WORKLOAD", workload),
    )
}

#[test]
fn ten_ports_give_ten_connections_then_eaddrnotavail_like_the_kernel() {
    // notes/linux-observations A: 10 succeed, the 11th and 12th get EADDRNOTAVAIL.
    let r = small("1s", "", "arrival = { kind = \"constant\", rate = 12 }");
    assert_eq!(r.summary.connections.established, 10);
    assert_eq!(errors(&r, "EADDRNOTAVAIL"), 2);
    assert_eq!(r.summary.time_wait.at_end, 10);
}

#[test]
fn two_destinations_share_each_port_like_the_kernel() {
    // notes/linux-observations B: 20 of 24 succeed with 10 ports and two destination ports.
    let text = SMALL_RANGE
        .replace("DURATION", "1s")
        .replace("KNOBS", "")
        .replace(
            "listen = [\"127.0.0.1:10000\"]",
            "listen = [\"127.0.0.1:10000\", \"127.0.0.1:10001\"]",
        )
        .replace(
            "destinations = [\"127.0.0.1:10000\"]",
            "destinations = [\"127.0.0.1:10000\", \"127.0.0.1:10001\"]",
        )
        .replace("WORKLOAD", "arrival = { kind = \"constant\", rate = 24 }");
    let r = run_text(&text);
    assert_eq!(r.summary.connections.established, 20);
    assert_eq!(errors(&r, "EADDRNOTAVAIL"), 4);
}

#[test]
fn bind_any_fails_at_bind_with_eaddrinuse_and_no_port_fails_at_connect() {
    // notes/linux-observations C.
    let r = small(
        "1s",
        "",
        "arrival = { kind = \"constant\", rate = 12 }\nconnection = \"bind\"",
    );
    assert_eq!(r.summary.connections.established, 10);
    assert_eq!(errors(&r, "EADDRINUSE"), 2);
    let r = small(
        "1s",
        "",
        "arrival = { kind = \"constant\", rate = 12 }\nconnection = \"bind_no_port\"",
    );
    assert_eq!(r.summary.connections.established, 10);
    assert_eq!(errors(&r, "EADDRNOTAVAIL"), 2);
}

#[test]
fn tcp_max_tw_buckets_overflow_closes_without_time_wait() {
    // notes/linux-observations G: cap 5, ten connects leave 5 TIME_WAIT; 5 more succeed.
    let r = small(
        "1s",
        "\"net.ipv4.tcp_max_tw_buckets\" = 5",
        "arrival = { kind = \"constant\", rate = 15 }",
    );
    assert_eq!(r.summary.connections.established, 15);
    assert_eq!(r.summary.time_wait.peak, 5);
    assert_eq!(r.summary.kernel_counters["tw_overflow"], 10);
}

#[test]
fn tw_reuse_sustains_ports_over_the_reuse_delay() {
    // notes/linux-observations F: tcp_tw_reuse=1, delay 100 ms, 10 ports: bursts of 10
    // about every 100 ms. Sustained rate = ports / delay = 100/s: in 10 s, 10 at once and
    // then 10 per cycle of 100 ms + up to 1 ms (ms clock) + lifetime + one 1 ms arrival gap.
    let r = small(
        "10s",
        "\"net.ipv4.tcp_tw_reuse\" = 1\n\"net.ipv4.tcp_tw_reuse_delay\" = 100",
        "arrival = { kind = \"constant\", rate = 1000 }",
    );
    let est = r.summary.connections.established;
    let (lo, hi) = (
        10 * (1 + (10.0f64 / 0.1025) as u64),
        10 * (1 + (10.0f64 / 0.1) as u64),
    );
    assert!((lo..=hi).contains(&est), "{est} not in {lo}..={hi}");
    assert_eq!(r.summary.kernel_counters["tw_recycled"], est - 10);
    // With the default delay of 1 s and reuse 2 on loopback: ten connections per second.
    let r = small(
        "10s",
        "\"net.ipv4.tcp_tw_reuse\" = 2",
        "arrival = { kind = \"constant\", rate = 1000 }",
    );
    let est = r.summary.connections.established;
    assert!((10 * 10..=10 * 11).contains(&est), "{est}");
}

#[test]
fn a_syn_that_is_not_newer_than_a_server_time_wait_waits_for_the_rearmed_retransmission() {
    // notes/linux-observations I: timestamps off, the client sent 4 MB, the server closed
    // first, the client reconnects from the same port: the TIME_WAIT ACKs, the client RSTs
    // and retransmits its SYN after TCP_TIMEOUT_MIN (8–12 ms measured), not after 1 s.
    let workload = "arrival = { kind = \"closed\", concurrency = 1 }\nconnection = \"explicit\"\n\
                    explicit_ports = \"40000 40000\"\nreuseaddr = true\ncloser = \"server\"\n\
                    request_bytes = 4000000\non_error = { action = \"count\", delay = \"3ms\" }";
    let r = small("2s", "\"net.ipv4.tcp_timestamps\" = 0", workload);
    let s = &r.summary;
    assert!(s.kernel_counters["tw_syn_rejected"] > 10);
    assert_eq!(
        s.kernel_counters["tw_syn_rejected"],
        s.kernel_counters["tw_killed_by_rst"]
    );
    // Every connect after the first: SYN and the TIME_WAIT's ACK (one RTT), 10 ms
    // (syn_rearm), then the retransmitted SYN and its SYN-ACK (one more RTT).
    assert!(
        (s.connect_latency_ms.p50 - (0.04 + 10.0 + 0.04)).abs() < 1e-9,
        "{}",
        s.connect_latency_ms.p50
    );
    // J: with timestamps on, a SYN 3 ms later carries a newer TSval and is accepted at once.
    let r = small("2s", "", workload);
    assert_eq!(r.summary.kernel_counters["tw_syn_rejected"], 0);
    assert_eq!(r.summary.connect_latency_ms.max, 0.04);
}

#[test]
fn adding_a_workload_does_not_change_another_workloads_randomness() {
    let one = r#"
[scenario]
name = "independence"
duration = "20s"
seed = 9

[[host]]
name = "a"
ips = ["10.0.0.1"]
[host.knobs]
"net.ipv4.ip_local_port_range" = "40000 40999"

[[host]]
name = "s"
ips = ["10.0.0.2"]
listen = ["10.0.0.2:80"]

[[workload]]
name = "poisson"
client = "a"
destinations = ["10.0.0.2:80"]
rtt = { dist = "exponential", mean = "300us" }
arrival = { kind = "poisson", rate = 80 }
"#;
    let two = format!(
        "{one}\n[[host]]\nname = \"b\"\nips = [\"10.0.0.3\"]\n\n[[workload]]\nname = \"other\"\nclient = \"b\"\n\
         destinations = [\"10.0.0.2:80\"]\nrtt = \"1ms\"\narrival = {{ kind = \"poisson\", rate = 300 }}\n"
    );
    let (a, b) = (run_text(one), run_text(&two));
    let pick = |r: &Report| {
        let w = &r.workloads[0];
        (w.attempted, w.established, w.failed, w.first_failure_s)
    };
    assert_eq!(pick(&a), pick(&b));
    assert!(
        a.workloads[0].failed > 0,
        "the pool of 1,000 ports runs out at 80/s"
    );
}

#[test]
fn the_accounting_adds_up() {
    for f in [
        "httperf-error-99.toml",
        "linux-loopback-server-close.toml",
        "antifix-linger-zero.toml",
    ] {
        let r = run_file(f);
        let c = &r.summary.connections;
        assert_eq!(c.attempted, c.established + c.failed + c.in_flight, "{f}");
        let series_attempts: u64 = r.series.iter().map(|b| b.attempts).sum();
        assert_eq!(series_attempts, c.attempted, "{f}");
        assert_eq!(
            r.series.len() as f64,
            (r.duration_s / r.bin_s).ceil(),
            "{f}"
        );
    }
}

#[test]
fn stats_are_in_the_report_only_when_asked_for() {
    // Wall time differs between runs: without --stats the JSON stays byte-identical.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/httperf-error-99-tw240.toml");
    let run = |stats: bool| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_portsim"));
        c.args(["run", "--format", "json"]).arg(&path);
        if stats {
            c.arg("--stats");
        }
        c.output().unwrap()
    };
    let (a, b) = (run(false), run(false));
    assert_eq!(a.stdout, b.stdout);
    assert!(!String::from_utf8_lossy(&a.stdout).contains("\"stats\""));
    let s = run(true);
    let v: serde_json::Value = serde_json::from_slice(&s.stdout).unwrap();
    let st = &v["stats"];
    // 500/s for 300 s: 150,000 attempts. Failures into an exhausted pool are counted in bulk;
    // each connection established is at least its connect(), and each TIME-WAIT that ran its
    // length its expiry.
    assert_eq!(st["attempts"], 150_000);
    let established = v["summary"]["connections"]["established"].as_u64().unwrap();
    let expired = v["summary"]["kernel_counters"]["tw_expired"]
        .as_u64()
        .unwrap();
    assert!(established > 0 && st["events"].as_u64().unwrap() >= established + expired);
    let (w, r) = (
        st["wall_s"].as_f64().unwrap(),
        st["attempts_per_s"].as_f64().unwrap(),
    );
    assert!(w > 0.0 && (r * w - 150_000.0).abs() < 1.0, "{st}");
    assert!(String::from_utf8_lossy(&s.stderr).contains("attempts/s"));
}

/// Runs `text` both ways: retries of workers facing an exhausted pool counted in bulk, and
/// stepped one event at a time. The reports must be identical; returns both event counts.
fn bulk_equals_stepping(text: &str) -> (Report, u64, u64) {
    let sc = scenario::parse("inline.toml", text).unwrap_or_else(|e| panic!("{e}"));
    let (bulk, bulk_events) = Simulation::new(&sc).run_counted();
    let (step, step_events) = Simulation::new(&sc).stepping().run_counted();
    assert_eq!(bulk.to_json(), step.to_json());
    (bulk, bulk_events, step_events)
}

#[test]
fn retries_counted_in_bulk_give_the_report_stepping_gives() {
    let storm = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/scenarios/retry-storm.toml"),
    )
    .unwrap()
    .replace(
        "duration = \"600s\"",
        "duration = \"150s\"\nbin = \"700ms\"",
    );
    // The bench as shipped: 50 workers retrying every 1 ms into 1,000 ports.
    let (r, bulk, step) = bulk_equals_stepping(&storm);
    // Ports come back 60 s after they were taken, so three rounds of 1,000 connections fit
    // in 150 s; the rest of the 50 retries a millisecond fail: about 7.5 M events stepped.
    assert_eq!(r.summary.connections.established, 3_000);
    assert!(step > 7_000_000 && bulk < 200_000, "{bulk} {step}");
    // The `count` policy, a 3 ms period, timestamps off: the same.
    bulk_equals_stepping(
        &storm
            .replace(
                "on_error = { action = \"retry\", delay = \"1ms\" }",
                "on_error = { action = \"count\", delay = \"3ms\" }",
            )
            .replace(
                "\"net.ipv4.ip_local_port_range\" = \"60000 60999\"",
                "\"net.ipv4.ip_local_port_range\" = \"60000 60999\"\n\"net.ipv4.tcp_timestamps\" = \"0\"",
            ),
    );
    // tcp_tw_reuse = 1 with a 7 ms delay: ports come back between retries at odd instants;
    // an open-loop workload on the same pool keeps real events among the parked retries,
    // and a second closed loop on the same 1 ms period parks beside the first.
    let mixed = storm
        .replace(
            "\"net.ipv4.ip_local_port_range\" = \"60000 60999\"",
            "\"net.ipv4.ip_local_port_range\" = \"60000 60099\"\n\"net.ipv4.tcp_tw_reuse\" = \"1\"\n\"net.ipv4.tcp_tw_reuse_delay\" = \"7\"",
        )
        .replace("duration = \"150s\"", "duration = \"20s\"")
        + r#"
[[workload]]
name = "open"
client = "client"
destinations = ["10.0.0.2:80"]
arrival = { kind = "poisson", rate = 300 }
rtt = "300us"
closer = "client"
on_error = { action = "count" }

[[workload]]
name = "more"
client = "client"
destinations = ["10.0.0.2:80"]
arrival = { kind = "closed", concurrency = 7 }
rtt = "200us"
closer = "client"
on_error = { action = "retry", delay = "1ms" }
"#;
    let (r, bulk, step) = bulk_equals_stepping(&mixed);
    assert!(r.summary.connections.failed > 0 && r.summary.connections.established > 1_000);
    assert!(bulk < step, "{bulk} {step}");
    // SO_LINGER 0 frees a port at the close itself, at instants (multiples of 100 µs) that
    // coincide with retries on the 1 ms grid: the order at one instant decides who gets it.
    let linger = mixed
        .replace(
            "closer = \"client\"\non_error = { action = \"retry\"",
            "closer = \"client\"\nlinger_zero = true\non_error = { action = \"retry\"",
        )
        .replace("rtt = \"300us\"", "rtt = \"400us\"\nservice_time = \"0s\"");
    assert!(
        linger.matches("linger_zero = true").count() >= 2,
        "{linger}"
    );
    bulk_equals_stepping(&linger);
}

/// The scenario files of the repository's `subs` folders, in name order.
fn shipped(subs: &[&str]) -> Vec<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for sub in subs {
        let mut in_sub: Vec<_> = std::fs::read_dir(dir.join(sub))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        in_sub.sort();
        files.extend(in_sub);
    }
    files
}

#[test]
fn every_shipped_scenarios_csv_has_a_column_per_header_field_and_a_row_per_bin() {
    for p in shipped(&["scenarios", "scenarios/live"]) {
        let r = Simulation::new(&portsim::scenario::load(&p).unwrap()).run();
        let csv = r.to_csv();
        let mut lines = csv.lines();
        let header: Vec<&str> = lines.next().unwrap().split(',').collect();
        let connect_pools = r
            .pools
            .iter()
            .filter(|p| !matches!(p.kind, "bind" | "explicit"))
            .count();
        let pool_columns = header
            .iter()
            .filter(|h| h.starts_with("free_ports_pool"))
            .count();
        assert_eq!(pool_columns, connect_pools, "{}", p.display());
        let mut rows = 0;
        for l in lines {
            assert_eq!(l.split(',').count(), header.len(), "{}", p.display());
            rows += 1;
        }
        assert_eq!(rows, r.series.len(), "{}", p.display());
    }
}

#[test]
fn every_shipped_scenario_keeps_the_invariants_after_every_event() {
    let mut n = 0;
    for p in shipped(&["scenarios", "scenarios/live"]) {
        let sc = portsim::scenario::load(&p).unwrap();
        if let Err(v) = Simulation::new(&sc).checking(true).run_checked() {
            panic!("{}: {v}", p.display());
        }
        n += 1;
    }
    assert!(n >= 20);
}

#[test]
fn open_loop_arrivals_counted_in_bulk_give_the_report_stepping_gives() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let files = shipped(&["scenarios"]);
    // The churn bench at 300 s: Poisson arrivals, so ties with other events are rare but
    // arrivals cross bin edges mid-burst.
    let churn = std::fs::read_to_string(dir.join("benches/scenarios/churn-open-loop.toml"))
        .unwrap()
        .replace(
            "duration = \"3600s\"",
            "duration = \"300s\"\nbin = \"700ms\"",
        );
    let mut texts: Vec<(String, String)> = files
        .iter()
        .map(|p| (p.display().to_string(), std::fs::read_to_string(p).unwrap()))
        .collect();
    texts.push(("churn-open-loop 300 s".into(), churn));
    for (name, text) in texts {
        let sc = scenario::parse(&name, &text).unwrap();
        let (a, ea) = Simulation::new(&sc).run_counted();
        let (b, eb) = Simulation::new(&sc).stepping().run_counted();
        assert_eq!(a.to_json(), b.to_json(), "{name}");
        eprintln!("{name}: {ea} events in bulk, {eb} stepping");
        // Bulk counting must have engaged where arrivals fail.
        if b.summary.connections.failed > 10_000 && name.contains("churn") {
            assert!(ea * 10 < eb * 9, "{name}: {ea} vs {eb}");
        }
    }
}

/// Two hosts with small ranges and short TIME-WAITs, and three workloads whose delays and
/// arrival times tie: `KNOBS`, `W1`, `W2` fill in the variant.
const TIES: &str = r#"
[scenario]
name = "ties"
duration = "6s"
bin = "300ms"
seed = 9

[[host]]
name = "client"
profile = "PROFILE"
ips = ["10.0.0.1", "10.0.0.2"]
[host.knobs]
KNOBS
[host.model]
time_wait = "700ms"

[[host]]
name = "server"
profile = "linux"
ips = ["10.1.0.1", "10.1.0.2"]
listen = ["10.1.0.1:80", "10.1.0.2:443"]

[[workload]]
name = "constant"
client = "client"
source_ips = ["10.0.0.1"]
destinations = ["10.1.0.1:80", "10.1.0.2:443"]
arrival = { kind = "constant", rate = 400 }
rtt = "2ms"
service_time = "1ms"
W1

[[workload]]
name = "poisson"
client = "client"
source_ips = ["10.0.0.1", "10.0.0.2"]
connection = "bind_no_port"
destinations = ["10.1.0.1:80"]
arrival = { kind = "poisson", rate = 300 }
rtt = "1ms"
W2

[[workload]]
name = "closed"
client = "client"
source_ips = ["10.0.0.2"]
destinations = ["10.1.0.2:443"]
arrival = { kind = "closed", concurrency = 7 }
rtt = "2ms"
service_time = "1ms"
on_error = { action = "retry", delay = "3ms" }
"#;

#[test]
fn exchanges_scheduled_whole_give_the_report_every_segment_gives() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let linux_small = "\"net.ipv4.ip_local_port_range\" = \"40000 40199\"";
    let mut texts: Vec<(String, String)> = Vec::new();
    for (name, profile, knobs, w1, w2) in [
        ("linux", "linux", linux_small, "", ""),
        (
            "linux, 0 and 3 requests",
            "linux",
            linux_small,
            "requests_per_connection = 0",
            "requests_per_connection = 3\nservice_time = \"2ms\"",
        ),
        (
            "linux, tw_reuse with timestamps",
            "linux",
            "\"net.ipv4.ip_local_port_range\" = \"40000 40099\"\n\"net.ipv4.tcp_tw_reuse\" = 1\n\"net.ipv4.tcp_tw_reuse_delay\" = 10",
            "",
            "",
        ),
        (
            "linux, TIME-WAIT overflow",
            "linux",
            "\"net.ipv4.ip_local_port_range\" = \"40000 40199\"\n\"net.ipv4.tcp_max_tw_buckets\" = 60",
            "",
            "",
        ),
        (
            "linux, one workload's server closes first",
            "linux",
            linux_small,
            "",
            "closer = \"server\"",
        ),
        (
            "linux, SO_LINGER 0 beside",
            "linux",
            linux_small,
            "linger_zero = true",
            "",
        ),
        (
            "freebsd",
            "freebsd",
            "\"net.inet.ip.portrange.first\" = 40000\n\"net.inet.ip.portrange.last\" = 40150",
            "",
            "",
        ),
        (
            "macos (host-wide ports)",
            "macos",
            "\"net.inet.ip.portrange.first\" = 40000\n\"net.inet.ip.portrange.last\" = 40150",
            "",
            "",
        ),
        (
            "windows",
            "windows",
            "\"dynamicport.tcp.start\" = 40000\n\"dynamicport.tcp.num\" = 255",
            "",
            "",
        ),
    ] {
        let text = TIES
            .replace("PROFILE", profile)
            .replace("KNOBS", knobs)
            .replace("W1", w1)
            .replace("W2", w2);
        let text = if profile != "linux" {
            text.replace("connection = \"bind_no_port\"\n", "").replace(
                "source_ips = [\"10.0.0.1\", \"10.0.0.2\"]",
                "source_ips = [\"10.0.0.2\"]",
            )
        } else {
            text
        };
        texts.push((name.into(), text.clone()));
        if !w1.is_empty() || !w2.is_empty() || knobs.contains("tw_") {
            continue;
        }
        // Open loops only: every TIME-WAIT is entered in bulk (no closed loop waits on a
        // response, nothing overflows or is reused), with constant-rate ties between two
        // workloads of one RTT.
        let open = text.replace(
            "arrival = { kind = \"closed\", concurrency = 7 }\nrtt = \"2ms\"",
            "arrival = { kind = \"constant\", rate = 200 }\nrtt = \"2ms\"",
        );
        assert_ne!(open, text);
        texts.push((
            format!("{name}, open loops: TIME-WAIT entered in bulk"),
            open,
        ));
    }
    // Loopback: client and server on one host, FreeBSD's nolocaltimewait both ways.
    for v in ["0", "1"] {
        texts.push((
            format!("freebsd loopback, nolocaltimewait {v}"),
            format!(
                "[scenario]\nname = \"lo\"\nduration = \"4s\"\nbin = \"250ms\"\n\n[[host]]\nname = \"box\"\nprofile = \"freebsd\"\nips = [\"127.0.0.1\"]\nlisten = [\"127.0.0.1:8080\"]\n[host.knobs]\n\"net.inet.ip.portrange.first\" = 50000\n\"net.inet.ip.portrange.last\" = 50300\n\"net.inet.tcp.nolocaltimewait\" = {v}\n[host.model]\ntime_wait = \"1s\"\n\n[[workload]]\nname = \"lo\"\nclient = \"box\"\ndestinations = [\"127.0.0.1:8080\"]\narrival = {{ kind = \"constant\", rate = 500 }}\nrtt = \"40us\"\n"
            ),
        ));
    }
    // A TIME-WAIT of 1 ms, shorter than a one-way delay of 30 ms: a neighbour with short
    // random RTTs takes the port back while the server is still in LAST-ACK, so the long
    // exchange must be stepped (found by a review's random hunt).
    texts.push((
        "short TIME-WAIT, long RTT beside short random RTTs".into(),
        r#"
[scenario]
name = "r"
duration = "1.37s"
bin = "100ms"
seed = 922

[[host]]
name = "h0"
profile = "windows"
ips = ["10.0.0.1"]
listen = ["10.0.0.1:80"]
[host.knobs]
"dynamicport.tcp.start" = 41200
"dynamicport.tcp.num" = 256
[host.model]
time_wait = "1ms"

[[workload]]
name = "short"
client = "h0"
destinations = ["10.0.0.1:80"]
arrival = { kind = "steps", steps = [{ at = "0s", rate = 100 }, { at = "300ms", rate = 2000 }] }
rtt = { dist = "uniform", min = "100us", max = "3ms" }
service_time = "3ms"

[[workload]]
name = "long"
client = "h0"
destinations = ["10.0.0.1:80"]
arrival = { kind = "steps", steps = [{ at = "0s", rate = 1000 }, { at = "300ms", rate = 30 }] }
rtt = "60ms"
requests_per_connection = 8
on_error = { action = "retry", delay = "1ms", backoff = 2.0, max_delay = "20ms", max_retries = 4 }
"#
        .into(),
    ));
    for f in [
        "scenarios/linux-default-churn.toml",
        "scenarios/httperf-error-99.toml",
    ] {
        texts.push((f.into(), std::fs::read_to_string(dir.join(f)).unwrap()));
    }
    let many = std::fs::read_to_string(dir.join("benches/scenarios/many-pools.toml"))
        .unwrap()
        .replace("duration = \"60s\"", "duration = \"3s\"\nbin = \"170ms\"");
    texts.push(("many-pools 3 s".into(), many));
    for (name, text) in texts {
        let sc = scenario::parse(&name, &text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let run = |sim: Simulation| {
            sim.checking(true)
                .run_checked()
                .unwrap_or_else(|v| panic!("{name}: {v}"))
        };
        if name.contains("in bulk") || name.starts_with("linux-default") {
            assert!(Simulation::new(&sc).enters_time_wait_in_bulk(), "{name}");
        }
        let (a, ea) = run(Simulation::new(&sc));
        let (b, eb) = run(Simulation::new(&sc).stepping_segments());
        assert_eq!(a.to_json(), b.to_json(), "{name}");
        // Checking mode applies the pending steps after every event; unchecked, at bin edges.
        let unchecked = Simulation::new(&sc).checking(false).run();
        assert_eq!(unchecked.to_json(), b.to_json(), "{name}, unchecked");
        assert!(a.summary.connections.established > 100, "{name}");
        eprintln!("{name}: {ea} events whole, {eb} segment by segment");
        if name.starts_with("many-pools") || name.starts_with("linux-default") {
            // Nine events per connection become three (two when TIME-WAIT is entered in
            // bulk).
            assert!(ea * 2 < eb, "{name}: {ea} vs {eb}");
        }
    }
}

/// The first line where two pretty-printed reports differ, with the line of each.
fn first_difference(a: &str, b: &str) -> String {
    let (mut la, mut lb) = (a.lines(), b.lines());
    for n in 1.. {
        match (la.next(), lb.next()) {
            (Some(x), Some(y)) if x == y => {}
            (None, None) => break,
            (x, y) => return format!("line {n}: {x:?} against {y:?}"),
        }
    }
    "none".into()
}

/// Every shortcut off at once: retries and arrivals stepped instead of counted in bulk,
/// every segment queued instead of exchanges scheduled whole, each TIME-WAIT entered on its
/// own, every socket made at its connect(). The report, ports handed out included, stays the
/// same.
#[test]
fn every_shipped_scenario_gives_one_report_with_every_shortcut_off() {
    let mut n = 0;
    for p in shipped(&["scenarios", "benches/scenarios"]) {
        // Simulated days at 1,000 connections a second, and an hour of every segment through
        // a NAT (the shipped NAT scenarios are here): too long for a test. The fleet behind a
        // cloud NAT runs cut in tests/nat_fast.rs.
        if p.ends_with("day-long.toml")
            || p.ends_with("nat-100-pods.toml")
            || p.ends_with("fleet-behind-nat.toml")
        {
            continue;
        }
        let sc = scenario::load(&p).unwrap_or_else(|e| panic!("{e}"));
        let started = std::time::Instant::now();
        let (fast, fast_events) = Simulation::new(&sc).ports(true).run_counted();
        let (slow, slow_events) = Simulation::new(&sc)
            .ports(true)
            .stepping()
            .stepping_segments()
            .run_counted();
        let (fast, slow) = (fast.to_json(), slow.to_json());
        assert!(
            fast == slow,
            "{}: every shortcut off changes the report at {}",
            p.display(),
            first_difference(&fast, &slow)
        );
        // The benches are where the shortcuts engage: without them, over twice the events.
        if p.parent().is_some_and(|d| d.ends_with("benches/scenarios")) {
            assert!(fast_events * 2 < slow_events, "{}", p.display());
        }
        eprintln!(
            "{}: {fast_events} events with every shortcut, {slow_events} with none, {:.1?}",
            p.display(),
            started.elapsed()
        );
        n += 1;
    }
    assert!(n >= 15, "{n} scenarios");
}
