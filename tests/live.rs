//! Live mode against the real Linux kernel, in a private network namespace: each scenario of
//! `scenarios/live/` runs live and predicted; both must agree with each other (the verdict)
//! and with the number the reference gives. CI runs as root; without the privilege to make a
//! namespace the tests print why and skip.

mod common;

use common::{agree as live, portsim, run_live, serial, shipped};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

/// Runs a shipped scenario live with a fault on the kernel's side: the run must refute the
/// prediction (`disagree`, or `inconclusive` when the machine could not keep up; exit status
/// 1) and say what was injected.
fn broken(name: &str, fault: &[&str]) -> Option<Value> {
    let (r, code) = run_live(&shipped(name), fault)?;
    let verdict = r["verdict"].as_str().unwrap();
    assert!(
        ["disagree", "inconclusive"].contains(&verdict),
        "{name} {fault:?}: {verdict}: {}",
        r["checks"]
    );
    assert_eq!(code, Some(1), "{name} {fault:?}");
    assert!(
        r["notes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n.as_str().unwrap().starts_with("fault injected")),
        "{}",
        r["notes"]
    );
    eprintln!("{name} {fault:?}: {verdict}");
    Some(r)
}

fn n(v: &Value) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| v.as_f64().expect("a number") as u64)
}

/// The row of `metric` in a live report's checks.
fn row<'a>(r: &'a Value, metric: &str) -> &'a Value {
    r["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["metric"] == metric)
        .unwrap_or_else(|| panic!("no {metric} row: {}", r["checks"]))
}

/// The row of `metric` in a live report's checks: (predicted, measured).
fn check(r: &Value, metric: &str) -> (u64, u64) {
    let c = row(r, metric);
    (n(&c["predicted"]), n(&c["measured"]))
}

/// The same value predicted and measured.
fn both(r: &Value, metric: &str) -> u64 {
    let (p, m) = check(r, metric);
    assert_eq!(p, m, "{metric}");
    m
}

const RANGE_KNOB: &str = "net.ipv4.ip_local_port_range";

#[test]
fn ten_ports_client_closes_ten_succeed_even_ports_first_then_eaddrnotavail() {
    let _serial = serial();
    let Some(r) = live("ten-ports-client-closes.toml") else {
        return;
    };
    let m = &r["measured"];
    assert_eq!(n(&m["established"]), 10);
    assert_eq!(n(&m["failed"]["EADDRNOTAVAIL"]), 15);
    assert_eq!(n(&m["requests_completed"]), 10);
    let ports: Vec<u64> = m["first_ports"].as_array().unwrap().iter().map(n).collect();
    // §1.2 step 6: the first pass scans ports of low's parity (even), the second the rest.
    assert!(ports[..5].iter().all(|p| p % 2 == 0), "{ports:?}");
    assert!(ports[5..].iter().all(|p| p % 2 == 1), "{ports:?}");
    let mut sorted = ports.clone();
    sorted.sort();
    assert_eq!(sorted, (40000..=40009).collect::<Vec<_>>());
    // One client TIME-WAIT per port, none expired (60 s); the 5 even ports first.
    assert_eq!(both(&r, "time_wait_at_end"), 10);
    assert_eq!(both(&r, "leading_even_ports"), 5);
    let p = &r["predicted"]["summary"];
    assert_eq!(n(&p["connections"]["established"]), 10);
}

#[test]
fn ten_ports_client_closes_refutes_a_range_narrowed_behind_the_prediction() {
    let _serial = serial();
    let fault = format!("{RANGE_KNOB}=40000 40005");
    let Some(r) = broken("ten-ports-client-closes.toml", &["--fault-sysctl", &fault]) else {
        return;
    };
    // The prediction kept 10 ports; the kernel had 6: 6 connects, 6 TIME-WAITs, 3 even first.
    assert_eq!(check(&r, "established"), (10, 6));
    assert_eq!(check(&r, "time_wait_at_end"), (10, 6));
    assert_eq!(check(&r, "leading_even_ports"), (5, 3));
}

#[test]
fn ten_ports_server_closes_every_connect_succeeds_on_the_even_ports() {
    let _serial = serial();
    let Some(r) = live("ten-ports-server-closes.toml") else {
        return;
    };
    // 100/s until 1 s; the client's port is free after its LAST-ACK, so all succeed.
    assert_eq!(both(&r, "established"), 100);
    assert_eq!(both(&r, "requests_completed"), 100);
    assert!(r["measured"]["failed"].as_object().unwrap().is_empty());
    // An even port is always free: connect() never leaves the even half (§1.2 step 6), and
    // the server keeps one TIME-WAIT per even port of 40000-40009 (§2.4 recycles each).
    assert_eq!(both(&r, "leading_even_ports"), 100);
    assert_eq!(both(&r, "time_wait_at_end"), 5);
}

#[test]
fn ten_ports_server_closes_refutes_a_range_narrowed_behind_the_prediction() {
    let _serial = serial();
    let fault = format!("{RANGE_KNOB}=40000 40003");
    let Some(r) = broken("ten-ports-server-closes.toml", &["--fault-sysctl", &fault]) else {
        return;
    };
    // Every connect still succeeds, but on 2 even ports: 2 server TIME-WAITs, not 5.
    assert_eq!(check(&r, "established"), (100, 100));
    assert_eq!(check(&r, "time_wait_at_end"), (5, 2));
}

#[test]
fn two_destination_ports_share_the_range_and_bind_does_not() {
    let _serial = serial();
    if let Some(r) = live("two-destination-ports.toml") {
        // Ports are shared per four-tuple: 10 per destination port, each pool even first.
        assert_eq!(n(&r["measured"]["established"]), 20);
        assert_eq!(n(&r["measured"]["failed"]["EADDRNOTAVAIL"]), 5);
        assert_eq!(both(&r, "time_wait_at_end"), 20);
        assert_eq!(both(&r, "leading_even_ports"), 2 * 5);
        assert_eq!(
            r["measured"]["first_ports_by_pool"]
                .as_object()
                .unwrap()
                .len(),
            2
        );
    }
    if let Some(r) = live("bind-before-connect.toml") {
        // bind(ip, 0) wants a port nobody holds: 10 in all, then EADDRINUSE at bind().
        assert_eq!(n(&r["measured"]["established"]), 10);
        assert_eq!(n(&r["measured"]["failed"]["EADDRINUSE"]), 15);
        assert_eq!(both(&r, "time_wait_at_end"), 10);
        // bind(0) scans the odd ports first (§1.2 step 6).
        assert_eq!(both(&r, "leading_even_ports"), 0);
        assert_eq!(n(&r["measured"]["first_ports"][0]) % 2, 1);
    }
}

#[test]
fn two_destination_ports_refute_a_server_that_never_accepts() {
    let _serial = serial();
    let Some(r) = broken("two-destination-ports.toml", &["--never-accept"]) else {
        return;
    };
    // The kernel completes the handshakes into the backlog: the connects are as predicted,
    // but no request is answered, so no connection closes and none leaves a TIME-WAIT.
    assert_eq!(check(&r, "established"), (20, 20));
    assert_eq!(check(&r, "requests_completed"), (20, 0));
    assert_eq!(check(&r, "time_wait_at_end"), (20, 0));
}

#[test]
fn bind_before_connect_refutes_a_range_narrowed_behind_the_prediction() {
    let _serial = serial();
    let fault = format!("{RANGE_KNOB}=40000 40005");
    let Some(r) = broken("bind-before-connect.toml", &["--fault-sysctl", &fault]) else {
        return;
    };
    // 6 ports for bind(0): 6 connects, the other 19 EADDRINUSE.
    assert_eq!(check(&r, "established"), (10, 6));
    assert_eq!(check(&r, "failed EADDRINUSE"), (15, 19));
}

#[test]
fn two_client_ips_each_get_the_whole_range() {
    let _serial = serial();
    let Some(r) = live("two-client-ips.toml") else {
        return;
    };
    // The four-tuple includes the source address: 2 × 10 ports, two requests each.
    assert_eq!(n(&r["measured"]["established"]), 20);
    assert_eq!(n(&r["measured"]["failed"]["EADDRNOTAVAIL"]), 5);
    assert_eq!(n(&r["measured"]["requests_completed"]), 40);
    assert_eq!(both(&r, "time_wait_at_end"), 20);
    assert_eq!(both(&r, "leading_even_ports"), 2 * 5);
}

#[test]
fn two_client_ips_refute_a_listener_slow_to_accept() {
    let _serial = serial();
    let Some(r) = broken("two-client-ips.toml", &["--accept-delay", "100ms"]) else {
        return;
    };
    // One accept per 100 ms in a 1 s run: at most 11 connections served, 2 requests each.
    let (p, m) = check(&r, "requests_completed");
    assert_eq!(p, 40);
    assert!(m <= 2 * (1000 / 100 + 1), "{m}");
}

#[test]
fn linger_zero_leaves_no_time_wait_so_explicit_ports_never_run_out() {
    let _serial = serial();
    let Some(r) = live("linger-zero-explicit.toml") else {
        return;
    };
    assert_eq!(n(&r["measured"]["established"]), 25);
    assert_eq!(both(&r, "requests_completed"), 25);
    assert_eq!(n(&r["measured"]["time_wait_peak_sampled"]), 0);
    assert_eq!(both(&r, "time_wait_at_end"), 0);
}

#[test]
fn linger_zero_explicit_refutes_a_server_that_never_accepts() {
    let _serial = serial();
    let Some(r) = broken("linger-zero-explicit.toml", &["--never-accept"]) else {
        return;
    };
    // Unanswered, the first 10 connections hold the 10 explicit ports to the end: the other
    // 15 find every port bound (EADDRINUSE at bind()).
    assert_eq!(check(&r, "established"), (25, 10));
    assert_eq!(check(&r, "failed EADDRINUSE"), (0, 15));
}

#[test]
fn tw_reuse_with_a_short_delay_sustains_ports_over_delay() {
    let _serial = serial();
    let Some(r) = live("tw-reuse-delay.toml") else {
        return;
    };
    // 10 ports / 100 ms = 100 connections/s over the 2.5 s of arrivals, within 5 %.
    for side in ["measured", "predicted"] {
        let (p, m) = check(&r, "established");
        let est = if side == "measured" { m } else { p } as f64 / 2.5;
        assert!((est - 100.0).abs() <= 5.0, "{side} {est}/s");
    }
    assert_eq!(both(&r, "attempted"), 2500);
    assert_eq!(both(&r, "time_wait_at_end"), 10);
    assert_eq!(both(&r, "leading_even_ports"), 5);
}

#[test]
fn tw_reuse_refutes_a_delay_lengthened_behind_the_prediction() {
    let _serial = serial();
    let Some(r) = broken(
        "tw-reuse-delay.toml",
        &["--fault-sysctl", "net.ipv4.tcp_tw_reuse_delay=1000"],
    ) else {
        return;
    };
    // A port is reusable once a second now: at most 3 uses each in 2.5 s of arrivals.
    let (p, m) = check(&r, "established");
    assert!(p >= 240, "{p}");
    assert!(m <= 10 * 3, "{m}");
}

/// Server TIME-WAITs left by `connects` connects that each move the kernel's perturbation
/// cursor on by 1-8 even ports (§1.2 step 8) over the 14,116 even ports of the default
/// range: a sweep takes 14,116 / 4.5 connects and passes a port by with probability 7/9.
fn even_ports_used(connects: f64) -> f64 {
    let even = 14_116.0;
    even * (1.0 - (7.0f64 / 9.0).powf(connects / (even / 4.5)))
}

#[test]
fn the_generator_ceiling_run_agrees_on_what_ports_decide() {
    let _serial = serial();
    let Some(r) = live("ceiling.toml") else {
        return;
    };
    // The limit, 20,000 connections, all established and answered, on even ports only.
    assert_eq!(both(&r, "established"), 20_000);
    assert_eq!(both(&r, "requests_completed"), 20_000);
    assert_eq!(both(&r, "leading_even_ports"), 1000);
    // Server closes: one server TIME-WAIT per even client port used.
    let (p, m) = check(&r, "time_wait_at_end");
    let expect = even_ports_used(20_000.0);
    for tw in [p, m] {
        assert!(
            (tw as f64 - expect).abs() < 0.03 * expect,
            "{tw} vs {expect}"
        );
    }
    let w = &r["measured"]["workloads"][0];
    assert_eq!(n(&w["limited_connections"]), 20_000);
    let stopped = w["stopped_s"].as_f64().expect("the limit was reached");
    assert!(stopped < 5.0);
    assert!(
        r["predicted"]["workloads"][0]["stopped_s"]
            .as_f64()
            .is_some()
    );
    eprintln!(
        "ceiling: 20,000 connections in {stopped:.3} s = {:.0}/s",
        w["connections_per_s"].as_f64().unwrap()
    );
}

#[test]
fn the_linger_zero_ceiling_run_leaves_no_time_wait_and_no_failure() {
    let _serial = serial();
    let Some(r) = live("ceiling-linger-zero.toml") else {
        return;
    };
    assert_eq!(both(&r, "established"), 20_000);
    assert_eq!(both(&r, "requests_completed"), 20_000);
    assert_eq!(n(&r["measured"]["time_wait_peak_sampled"]), 0);
    assert_eq!(both(&r, "time_wait_at_end"), 0);
    assert_eq!(both(&r, "leading_even_ports"), 1000);
    assert!(r["measured"]["failed"].as_object().unwrap().is_empty());
    let w = &r["measured"]["workloads"][0];
    eprintln!(
        "ceiling-linger-zero: 20,000 connections in {:.3} s = {:.0}/s",
        w["stopped_s"].as_f64().unwrap(),
        w["connections_per_s"].as_f64().unwrap()
    );
}

#[test]
fn the_linger_zero_ceiling_refutes_a_server_that_answers_nothing() {
    let _serial = serial();
    // The issue's case: the run cut to 2 s, the server accepting nothing for 10 s. Judging
    // only zeros, it once said `agree`.
    let dir = std::env::temp_dir().join(format!("portsim-live-lz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ceiling-linger-zero-2s.toml");
    let text = std::fs::read_to_string(shipped("ceiling-linger-zero.toml")).unwrap();
    std::fs::write(
        &path,
        text.replace("duration = \"5s\"", "duration = \"2s\""),
    )
    .unwrap();
    let out = run_live(&path, &["--accept-delay", "10s"]);
    std::fs::remove_dir_all(&dir).ok();
    let Some((r, code)) = out else {
        return;
    };
    assert_eq!(code, Some(1));
    assert!(["disagree", "inconclusive"].contains(&r["verdict"].as_str().unwrap()));
    // The kernel completes 128 handshakes into the backlog (one per slot); none is answered.
    // The prediction takes its round trip from this run's median connect latency, which a
    // busy machine lengthens (16.7 ms once under CI: 7,680 predicted in 2 s), so its counts
    // are bounded, not fixed: more than the kernel established, and requests where it had none.
    let (p, m) = check(&r, "established");
    assert_eq!(m, 128);
    assert!(p > m, "{p} {m}");
    let (p, m) = check(&r, "requests_completed");
    assert_eq!(m, 0);
    assert!(p > 0, "{p}");
    assert!(r["measured"]["wall_s"].as_f64().unwrap() < 3.0);
}

#[test]
fn the_open_loop_ceiling_run_agrees_on_what_ports_decide() {
    let _serial = serial();
    let Some(r) = live("ceiling-open-loop.toml") else {
        return;
    };
    // Every seeded arrival started: Poisson at 10,000/s for 4 s, 40,000 ± 5σ (σ = 200).
    let arrivals = both(&r, "attempted");
    assert!((39_000..=41_000).contains(&arrivals), "{arrivals}");
    assert_eq!(both(&r, "established"), arrivals);
    assert_eq!(both(&r, "requests_completed"), arrivals);
    assert!(r["measured"]["failed"].as_object().unwrap().is_empty());
    assert_eq!(both(&r, "leading_even_ports"), 1000);
    let (p, m) = check(&r, "time_wait_at_end");
    let expect = even_ports_used(arrivals as f64);
    for tw in [p, m] {
        assert!(
            (tw as f64 - expect).abs() < 0.03 * expect,
            "{tw} vs {expect}"
        );
    }
}

#[test]
fn the_open_loop_ceiling_refutes_a_range_narrowed_behind_the_prediction() {
    let _serial = serial();
    let fault = format!("{RANGE_KNOB}=40000 40001");
    let Some(r) = broken("ceiling-open-loop.toml", &["--fault-sysctl", &fault]) else {
        return;
    };
    // Two ports for 10,000 arrivals a second: connects fail, and at most 2 TIME-WAITs.
    let (p, m) = check(&r, "failed EADDRNOTAVAIL");
    assert_eq!(p, 0);
    assert!(m > 0);
    let (p, m) = check(&r, "time_wait_at_end");
    assert!(p > 10_000 && m <= 2, "{p} {m}");
}

#[test]
fn a_run_whose_judged_metrics_are_all_zero_is_inconclusive() {
    let _serial = serial();
    // linger-zero-explicit judged only on what is zero by construction (no failure, no
    // TIME-WAIT), the rest ignored: it could not have failed, so it may not agree.
    let dir = std::env::temp_dir().join(format!("portsim-live-zero-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("zeros.toml");
    let text = std::fs::read_to_string(shipped("linger-zero-explicit.toml"))
        .unwrap()
        .replace(
            "exact = [\"attempted\", \"established\", \"failed\", \"requests_completed\", \"time_wait_at_end\"]\nignore = [\"leading_even_ports\"]",
            "exact = [\"failed\", \"time_wait_at_end\"]\nignore = [\"attempted\", \"established\", \"requests_completed\", \"time_wait_peak\", \"leading_even_ports\"]",
        );
    assert!(text.contains("ignore = [\"attempted\""));
    std::fs::write(&path, text).unwrap();
    let out = run_live(&path, &[]);
    std::fs::remove_dir_all(&dir).ok();
    let Some((r, code)) = out else {
        return;
    };
    assert_eq!(r["verdict"], "inconclusive", "{}", r["checks"]);
    assert_eq!(code, Some(1));
    assert!(
        r["notes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n.as_str().unwrap().contains("every judged metric is zero"))
    );
    // The run itself did connect: what was ignored is not zero.
    assert_eq!(n(&r["measured"]["established"]), 25);
}

/// Writes `text` as a scenario in a fresh directory and runs it live (which must agree).
fn live_text(tag: &str, text: &str) -> Option<Value> {
    let dir = std::env::temp_dir().join(format!("portsim-live-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{tag}.toml"));
    std::fs::write(&path, text).unwrap();
    let out = run_live(&path, &[]);
    std::fs::remove_dir_all(&dir).ok();
    let (r, code) = out?;
    assert_eq!(
        r["verdict"], "agree",
        "{tag}: {}\n{}",
        r["checks"], r["notes"]
    );
    assert_eq!(code, Some(0));
    Some(r)
}

const TEN_PORTS_HOST: &str = r#"
[[host]]
name = "local"
profile = "linux"
ips = ["127.0.0.1"]
listen = ["127.0.0.1:8080"]
knobs = { "net.ipv4.ip_local_port_range" = "40000 40009" }
"#;

#[test]
fn the_live_generator_ends_a_workload_where_the_simulator_does() {
    let _serial = serial();
    let judged = "[live]\nexact = [\"attempted\", \"established\", \"failed\", \"requests_completed\", \"time_wait_at_end\"]\n";
    // A burst of 12 at 100 ms into 10 ports (client closes): 10 connect, 2 fail and retry
    // every 50 ms into ports held by TIME-WAIT; the limit, 15 connect() calls, counts the
    // retries, so 3 of them run and the workload ends.
    let retries = format!(
        "[scenario]\nname = \"live-limit-retries\"\nduration = \"1s\"\nbin = \"100ms\"\n{judged}{TEN_PORTS_HOST}
[[workload]]
name = \"burst\"
client = \"local\"
destinations = [\"127.0.0.1:8080\"]
arrival = {{ kind = \"burst\", at = \"100ms\", count = 12 }}
limit = {{ connections = 15 }}
rtt = \"50us\"
service_time = \"0s\"
closer = \"client\"
on_error = {{ action = \"retry\", delay = \"50ms\", max_retries = 3 }}
"
    );
    if let Some(r) = live_text("limit-retries", &retries) {
        assert_eq!(both(&r, "attempted"), 15);
        assert_eq!(both(&r, "established"), 10);
        assert_eq!(both(&r, "failed"), 5);
        let stopped = r["measured"]["workloads"][0]["stopped_s"].as_f64().unwrap();
        // The third retry is the second round's, 100 ms + 2 × 50 ms.
        assert!((0.2..0.5).contains(&stopped), "{stopped}");
    }
    // 7 requests, 2 per connection: 4 connections, the last carrying 1.
    let requests = format!(
        "[scenario]\nname = \"live-limit-requests\"\nduration = \"1s\"\nbin = \"100ms\"\n{judged}{TEN_PORTS_HOST}
[[workload]]
name = \"burst\"
client = \"local\"
destinations = [\"127.0.0.1:8080\"]
arrival = {{ kind = \"burst\", at = \"100ms\", count = 12 }}
limit = {{ requests = 7 }}
requests_per_connection = 2
rtt = \"50us\"
service_time = \"0s\"
closer = \"client\"
on_error = {{ action = \"count\" }}
"
    );
    if let Some(r) = live_text("limit-requests", &requests) {
        assert_eq!(both(&r, "established"), 4);
        assert_eq!(both(&r, "requests_completed"), 7);
    }
    // Three closed-loop slots from 100 ms to 400 ms, each connection held 100 ms by the
    // server: 3 connections per slot start before the stop, the 4th would start at it.
    let closed = format!(
        "[scenario]\nname = \"live-closed-window\"\nduration = \"1s\"\nbin = \"100ms\"\n{judged}{TEN_PORTS_HOST}
[[workload]]
name = \"slots\"
client = \"local\"
destinations = [\"127.0.0.1:8080\"]
arrival = {{ kind = \"closed\", concurrency = 3 }}
start = \"100ms\"
stop = \"400ms\"
rtt = \"50us\"
service_time = \"100ms\"
closer = \"client\"
on_error = {{ action = \"count\", delay = \"10ms\" }}
"
    );
    if let Some(r) = live_text("closed-window", &closed) {
        assert_eq!(both(&r, "established"), 9);
        assert_eq!(both(&r, "time_wait_at_end"), 9);
        // Nothing before the start.
        assert_eq!(n(&r["measured"]["series"][0]["attempts"]), 0);
    }
}

#[test]
fn an_unprivileged_user_runs_live_in_a_user_namespace() {
    let _serial = serial();
    // As root, drop to uid/gid 65534 with util-linux setpriv and run a copy of the binary
    // that user can read; the run must make a user + network namespace and still agree.
    let root = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
    if !root || Command::new("setpriv").arg("--version").output().is_err() {
        eprintln!("SKIPPED: needs root and setpriv to become an unprivileged user");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("portsim-userns-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = dir.join("portsim");
    std::fs::copy(env!("CARGO_BIN_EXE_portsim"), &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let sc = dir.join("s.toml");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/live/ten-ports-client-closes.toml"),
        &sc,
    )
    .unwrap();
    std::fs::set_permissions(&sc, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&bin)
        .args(["live", "--format", "json"])
        .arg(&sc)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).ok();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("namespace:") {
        eprintln!("SKIPPED: this kernel refuses unprivileged user namespaces: {stderr}");
        return;
    }
    let r: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    assert_eq!(r["namespace"], "user + network namespace (unprivileged)");
    assert_eq!(r["verdict"], "agree");
    assert_eq!(n(&r["measured"]["established"]), 10);
}

#[test]
fn the_hosts_own_sysctls_are_never_written() {
    let _serial = serial();
    let names = [
        "ip_local_port_range",
        "tcp_tw_reuse",
        "tcp_tw_reuse_delay",
        "tcp_timestamps",
        "tcp_max_tw_buckets",
    ];
    let read = || {
        names
            .iter()
            .map(|k| std::fs::read_to_string(format!("/proc/sys/net/ipv4/{k}")).unwrap_or_default())
            .collect::<Vec<_>>()
    };
    let before = read();
    // This scenario sets the range, tcp_tw_reuse and its delay inside its namespace, and a
    // fault writes the range again after the prediction read it back.
    let ran = live("tw-reuse-delay.toml").is_some();
    assert_eq!(read(), before);
    let fault = format!("{RANGE_KNOB}=40000 40005");
    broken("ten-ports-client-closes.toml", &["--fault-sysctl", &fault]);
    assert_eq!(read(), before);
    if ran {
        assert_ne!(
            before[0].split_whitespace().collect::<Vec<_>>(),
            ["40000", "40009"]
        );
    }
}

#[test]
fn what_the_kernel_cannot_do_is_refused_before_anything_runs() {
    let _serial = serial();
    let dir = std::env::temp_dir().join(format!("portsim-live-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let base = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/live/ten-ports-client-closes.toml"),
    )
    .unwrap();
    for (name, text, says) in [
        (
            "macos.toml",
            base.replace("profile = \"linux\"", "profile = \"macos\"")
                .replace(
                    "knobs = { \"net.ipv4.ip_local_port_range\" = \"40000 40009\" }",
                    "",
                ),
            "Linux kernel only",
        ),
        (
            "tw.toml",
            base.replace(
                "knobs = { \"net.ipv4.ip_local_port_range\" = \"40000 40009\" }",
                "model = { time_wait = \"30s\" }",
            ),
            "time_wait",
        ),
        (
            "wildcard.toml",
            base.replace(
                "listen = [\"127.0.0.1:8080\"]",
                "listen = [\"0.0.0.0:8080\"]",
            ) + "\n[[workload]]\nname = \"other\"\nclient = \"local\"\ndestinations = [\"127.0.0.2:8080\"]\narrival = { kind = \"constant\", rate = 10 }\nrtt = \"50us\"\ncloser = \"server\"\n",
            "one behaviour per listener",
        ),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        let out = portsim().arg("live").arg(&path).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {err}");
        assert!(err.contains(says), "{name}: {err}");
    }
    // A fault knob live mode does not set, or no `=`: refused with what is allowed.
    let base_path = dir.join("base.toml");
    std::fs::write(&base_path, &base).unwrap();
    for (fault, says) in [
        ("net.ipv4.tcp_fin_timeout=1", "not a knob live mode sets"),
        ("net.ipv4.ip_local_port_range", "expected NAME=VALUE"),
        (
            "net.ipv4.ip_local_port_range=40009 40000",
            "the kernel refuses",
        ),
    ] {
        let out = portsim()
            .args(["live", "--fault-sysctl", fault])
            .arg(&base_path)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("namespace:") {
            continue;
        }
        assert_eq!(out.status.code(), Some(2), "{fault}: {err}");
        assert!(err.contains(says), "{fault}: {err}");
    }
    // A request limit the live server cannot follow (it closes first after a fixed count).
    let path = dir.join("partial.toml");
    std::fs::write(
        &path,
        base.replace("closer = \"client\"", "closer = \"server\"")
            .replace(
                "requests_per_connection = 1",
                "requests_per_connection = 2\nlimit = { requests = 5 }",
            ),
    )
    .unwrap();
    let out = portsim().arg("live").arg(&path).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("make the limit a multiple"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_live_run_draws_predicted_over_measured() {
    let _serial = serial();
    let dir = std::env::temp_dir().join(format!("portsim-liveplot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (json, svg) = (dir.join("l.json"), dir.join("l.svg"));
    let out = portsim()
        .args(["live", "--format", "json", "-o"])
        .arg(&json)
        .arg("--plot")
        .arg(&svg)
        .arg(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("scenarios/live/ten-ports-server-closes.toml"),
        )
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("namespace:") {
        eprintln!("SKIPPED: {}", stderr.trim());
        return;
    }
    assert!(out.status.success(), "{stderr}");
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.starts_with("<svg"));
    assert!(text.contains("predicted vs measured (agree)"));
    assert!(text.contains("TIME-WAIT, measured") && text.contains("TIME-WAIT, predicted"));
    // The saved JSON draws the same chart; a live report is not compared with others.
    let again = dir.join("again.svg");
    let out = portsim()
        .arg("plot")
        .arg(&json)
        .arg("-o")
        .arg(&again)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(std::fs::read_to_string(&again).unwrap(), text);
    let out = portsim()
        .arg("plot")
        .arg(&json)
        .arg(&json)
        .arg("-o")
        .arg(dir.join("cmp.svg"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Sockets on `port` in the host's own namespace (IPv4 and IPv6 tables).
fn host_sockets_on(port: u16) -> usize {
    let hex = format!(":{port:04X} ");
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .flat_map(|t| t.lines().skip(1).map(String::from).collect::<Vec<_>>())
        .filter(|l| {
            l.split_whitespace()
                .nth(1)
                .is_some_and(|a| format!("{a} ").contains(&hex))
        })
        .count()
}

#[test]
fn a_run_stopped_by_ctrl_c_or_the_cap_ends_cleanly_marked_partial() {
    let _serial = serial();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/live/ceiling.toml");
    let range = || std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap();
    let before = range();
    // Ctrl-C after 1.5 s of a 5 s run.
    let child = portsim()
        .args(["live", "--format", "json"])
        .arg(&path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("namespace:") {
        eprintln!("SKIPPED: {}", stderr.trim());
        return;
    }
    let r: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    assert_eq!(r["verdict"], "interrupted", "{stderr}");
    assert_eq!(r["partial"], true);
    assert_eq!(out.status.code(), Some(1));
    let bins = r["measured"]["series"].as_array().unwrap().len();
    assert!(
        (1..5).contains(&bins),
        "{bins} whole bins before the interrupt"
    );
    // The cap: 300 connections of a closed loop of 128.
    let out = portsim()
        .args(["live", "--format", "json", "--max-connections", "300"])
        .arg(&path)
        .output()
        .unwrap();
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["verdict"], "capped");
    assert_eq!(r["partial"], true);
    assert!(n(&r["measured"]["attempted"]) <= 300);
    // Nothing is left on the host: its range as it was, no socket on the scenario's port.
    assert_eq!(range(), before);
    assert_eq!(host_sockets_on(8080), 0);
}

#[test]
fn a_listener_slow_to_accept_ends_the_run_cleanly_on_time() {
    let _serial = serial();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/live/ceiling.toml");
    let out = portsim()
        .args(["live", "--format", "json", "--accept-delay", "20ms"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("namespace:") {
        eprintln!("SKIPPED: {}", stderr.trim());
        return;
    }
    let r: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    // The prediction does not model accept(): the run refutes it, and still completes.
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(r["partial"], false);
    let verdict = r["verdict"].as_str().unwrap();
    assert!(["disagree", "inconclusive"].contains(&verdict), "{verdict}");
    eprintln!("ceiling.toml --accept-delay 20ms: {verdict}");
    // One accept per 20 ms for 5 s: at most 251 connections served, far from the limit.
    let served = n(&r["measured"]["requests_completed"]);
    assert!(served > 0 && served <= 5000 / 20 + 1, "{served}");
    // The prediction's round trip is this run's median connect latency (see the linger-zero
    // case): its count is bounded by the limit, not fixed at it.
    let (p, m) = check(&r, "requests_completed");
    assert!(p > m && p <= 20_000, "{p} {m}");
    assert!(r["measured"]["workloads"][0]["stopped_s"].is_null());
    assert_eq!(host_sockets_on(8080), 0);
}

/// The float of the row of `metric`: (predicted, measured).
fn check_f(r: &Value, metric: &str) -> (f64, f64) {
    let c = row(r, metric);
    (
        c["predicted"].as_f64().unwrap(),
        c["measured"].as_f64().unwrap(),
    )
}

#[test]
fn first_reuse_comes_on_the_timer_wheel_60_to_62_seconds_after_the_close() {
    let _serial = serial();
    let Some(r) = live("first-reuse.toml") else {
        return;
    };
    // kernel/time/timer.c: a 60 s timer at HZ=250 fires at the first 2.048 s slot boundary
    // after it; the burst closes within 0.2 s of the start and retries come every 20 ms.
    let (p, m) = check_f(&r, "first_refill_s");
    eprintln!("first_refill_s predicted {p:.3} s, measured {m:.3} s");
    for t in [p, m] {
        assert!((60.0..=62.35).contains(&t), "predicted {p}, measured {m}");
    }
    assert!((p - m).abs() <= 2.048 + 0.2, "predicted {p}, measured {m}");
    let d = &r["predicted"]["summary"]["time_wait"]["duration_s"];
    assert!(d["min"].as_f64().unwrap() > 60.0 && d["max"].as_f64().unwrap() <= 62.048);
}
