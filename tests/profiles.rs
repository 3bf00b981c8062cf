//! Every profile against the reference, and the 16k-cap seed replayed on macOS. Expected
//! numbers come from the seed, the reference's §6 table (ports / TIME_WAIT), or counting
//! arguments stated next to each assertion; none is copied from a previous run.

use portsim::replicate::{self, Seeds};
use portsim::report::Report;
use portsim::scenario;
use portsim::sim::Simulation;
use std::fmt::Write as _;
use std::path::Path;

fn run_file(name: &str) -> Report {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios")
        .join(name);
    let sc = scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
    Simulation::new(&sc).run()
}

fn run_text(text: &str) -> Report {
    let sc = scenario::parse("inline.toml", text).unwrap_or_else(|e| panic!("{e}"));
    Simulation::new(&sc).run()
}

fn counter(r: &Report, name: &str) -> u64 {
    r.summary.kernel_counters[name]
}

/// `name` run once per seed 1 to 200: the first seed's report with the distributions.
fn replicated(name: &str) -> Report {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios")
        .join(name);
    let sc = scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let seeds = Seeds::parse("1..200").unwrap();
    replicate::run(&sc, seeds, &|sc| Simulation::new(sc), &|| {}).expect("no invariant broken")
}

fn stat<'a>(r: &'a Report, path: &str) -> &'a replicate::Stat {
    &r.replicates.as_ref().expect("replicated").metrics[path]
}

#[test]
fn macos_16k_cap_replays_the_seed_by_cursor_wrap_time_wait_and_syn_acceptance() {
    let r = replicated("macos-16k-cap.toml");
    let s = &r.summary;
    let done = s.requests.completed;
    // Each of the 16,384 ports carries one connection; after the wrap a port is used again
    // only when the server's TIME-WAIT (30 s, longer than the run) accepts the SYN.
    let accepted = counter(&r, "tw_syn_accepted");
    assert_eq!(done, 16_384 + accepted);
    // The seed saw 16,408 responses: one draw, which must lie among the model's 200.
    let completed = stat(&r, "requests.completed");
    assert!(
        (completed.min..=completed.max).contains(&16_408.0),
        "{completed:?}"
    );
    // Every one of the 50 workers ends stalled in SYN-SENT in every run, and nothing fails:
    // oha saw a success rate of 1.0.
    assert_eq!(stat(&r, "connections.in_flight").min, 50.0);
    assert_eq!(stat(&r, "connections.in_flight").max, 50.0);
    assert_eq!(stat(&r, "connections.failed").max, 0.0);
    // The slowest request: the 10th retransmission of a PAWS-dropped SYN, 67 × syn_rto_local
    // after connect(), plus one request cycle (RTT + service = 1.028 ms). syn_rto_local =
    // 100 ms is UNVERIFIED (notes/xnu-research.md §5): this holds the model to its own
    // assumption, which the seed's 6.7146 s supports but does not prove.
    let slowest = stat(&r, "request_latency_ms.max");
    assert!(
        (6_700.0..6_702.0).contains(&slowest.min) && slowest.max == slowest.min,
        "{slowest:?}"
    );
    // The stall: after the first second nothing completes except those 6.7 s recoveries.
    let late: u64 = r
        .series
        .iter()
        .filter(|b| b.t_s >= 1.0)
        .map(|b| b.requests_completed)
        .sum();
    assert!(late < 50, "{late} requests completed after 1 s");
    assert_eq!(s.errors.len(), 0);
}

#[test]
fn the_responses_after_the_wrap_follow_xnus_two_coin_flips() {
    // After the wrap each SYN meets a live TIME-WAIT. Random ISN and random timestamp offset:
    // accepted at once with p = 1/4; PAWS-only failure (1/4) recovers at 6.7 s, inside the run;
    // a sequence failure (1/2) waits past it. A worker's extra responses: a run of immediate
    // accepts (mean (1/4)/(3/4) = 1/3), then with probability 1/3 the first refusal was
    // PAWS-only and recovers, followed by another run (1 + 1/3). Mean per worker
    // 1/3 + 1/3 × 4/3 = 7/9; for 50 workers 38.9, standard deviation about 7 (Monte Carlo in
    // notes/xnu-research.md §8). Over 200 seeds the mean must lie within 4 standard errors.
    let r = replicated("macos-16k-cap.toml");
    let extra = stat(&r, "requests.completed").mean - 16_384.0;
    let expected = 50.0 * 7.0 / 9.0;
    let se = 7.0 / 200f64.sqrt();
    assert!(
        (extra - expected).abs() < 4.0 * se,
        "mean extra {extra:.1} against {expected:.1} ± {se:.1}"
    );
    // The spread is the coins', not a constant: about 7 over 50 workers.
    let sd = stat(&r, "requests.completed").sd;
    assert!((4.0..10.0).contains(&sd), "sd {sd}");
}

#[test]
fn macos_wide_range_doubles_the_cap_plus_the_same_coin_flips() {
    // 32,768 ports wrap at 32,768 connections; after the wrap the same two coins give each of
    // the 50 workers 7/9 of a response more on average (see the test above).
    let r = replicated("macos-16k-cap-wide-range.toml");
    assert_eq!(
        r.summary.requests.completed,
        32_768 + counter(&r, "tw_syn_accepted")
    );
    let extra = stat(&r, "requests.completed").mean - 32_768.0;
    let se = 7.0 / 200f64.sqrt();
    assert!((extra - 50.0 * 7.0 / 9.0).abs() < 4.0 * se, "{extra}");
    // The author's "up to 34k" lies above every one of the 200 runs: 3.5 % more than the
    // model gives. The claim is stated as such in the scenario and README.
    assert!(stat(&r, "requests.completed").max < 34_000.0);
}

#[test]
fn macos_msl_1000_reuses_each_port_every_two_seconds() {
    let r = run_file("macos-16k-cap-msl-1000.toml");
    let s = &r.summary;
    // TIME-WAIT = 2 × 1000 ms. The cursor outruns it, so each port is reused as soon as its
    // TIME-WAIT ends: 10 s / 2 s = 5 uses per port, plus the SYNs a TIME-WAIT accepted.
    assert_eq!(
        s.requests.completed,
        16_384 * 5 + counter(&r, "tw_syn_accepted")
    );
    // The first four rounds' TIME-WAITs expire inside the run; the fifth round's do not.
    assert_eq!(counter(&r, "tw_expired"), 16_384 * 4);
    // A refused SYN waits at most for its TIME-WAIT (< 2 s) plus one retransmission gap.
    assert!(s.request_latency_ms.max < 2_000.0);
}

/// Client-closes churn from a host running `profile` (with `knobs`) to one remote
/// destination, 25 % above the reference's limit, for three TIME-WAITs.
fn churn(profile: &str, knobs: &str, limit: f64, tw_s: u64) -> (f64, Report) {
    let rate = (limit * 1.25).round();
    let text = format!(
        r#"
[scenario]
name = "churn-{profile}"
duration = "{dur}s"
bin = "1s"

[[host]]
name = "client"
profile = "{profile}"
ips = ["10.0.0.1"]
knobs = {{ {knobs} }}

[[host]]
name = "server"
profile = "linux"
ips = ["10.0.0.2"]
listen = ["10.0.0.2:80"]

[[workload]]
name = "churn"
client = "client"
destinations = ["10.0.0.2:80"]
arrival = {{ kind = "constant", rate = {rate} }}
rtt = "200us"
service_time = "1ms"
closer = "client"
on_error = {{ action = "count" }}
"#,
        dur = 3 * tw_s
    );
    let r = run_text(&text);
    // Whole TIME-WAIT periods after the first: every port is taken once per period.
    let window: u64 = r
        .series
        .iter()
        .filter(|b| b.t_s >= tw_s as f64)
        .map(|b| b.established)
        .sum();
    (window as f64 / (2 * tw_s) as f64, r)
}

#[test]
fn sustained_client_close_churn_matches_the_reference_table_within_1_percent() {
    // §6: max churn to one destination = usable ports / TIME_WAIT.
    let table = [
        ("linux", "", 470.5, 60),
        ("freebsd", "", 925.6, 60),
        (
            "freebsd",
            r#""net.inet.ip.portrange.first" = 49152"#,
            273.1,
            60,
        ),
        ("macos", "", 546.1, 30),
        ("windows", "", 136.5, 120),
        ("windows", r#""TcpTimedWaitDelay" = 240"#, 68.3, 240),
    ];
    for (profile, knobs, limit, tw) in table {
        let (rate, r) = churn(profile, knobs, limit, tw);
        let err = (rate - limit).abs() / limit;
        assert!(
            err < 0.01,
            "{profile} {knobs}: {rate:.1}/s against the reference's {limit}/s"
        );
        assert!(
            r.summary.connections.failed > 0,
            "{profile}: the load exceeds the limit"
        );
    }
}

#[test]
fn exhaustion_uses_each_kernels_error_name_and_number() {
    for (profile, name, number) in [
        ("linux", "EADDRNOTAVAIL", 99),
        ("freebsd", "EADDRNOTAVAIL", 49),
        ("macos", "EADDRNOTAVAIL", 49),
        ("windows", "WSAENOBUFS", 10055),
    ] {
        let limit = portsim::profile::Profile::named(profile).unwrap();
        let l = f64::from(limit.usable_ports()) / limit.time_wait.as_secs_f64();
        let (_, r) = churn(profile, "", l, limit.time_wait.0 / 1_000_000_000 / 3);
        assert!(
            r.summary.errors[name] > 0,
            "{profile}: {:?}",
            r.summary.errors
        );
        assert_eq!(r.summary.error_numbers[name], number);
    }
}

#[test]
fn macos_ports_carry_one_connection_host_wide_linux_shares_them_across_destinations() {
    // §3.3: XNU's implicit bind looks up the local port alone; Linux checks the four-tuple
    // (§1.3). Two destinations: macOS still has 16,384 connections, Linux twice its range.
    let text = |profile: &str| {
        format!(
            r#"
[scenario]
name = "two-destinations"
duration = "20s"

[[host]]
name = "client"
profile = "{profile}"
ips = ["10.0.0.1"]
knobs = {{ {knobs} }}

[[host]]
name = "server"
profile = "linux"
ips = ["10.0.0.2"]
listen = ["10.0.0.2:80", "10.0.0.2:81"]

[[workload]]
name = "hold"
client = "client"
destinations = ["10.0.0.2:80", "10.0.0.2:81"]
arrival = {{ kind = "constant", rate = 5000 }}
requests_per_connection = 1
rtt = "200us"
service_time = "100s"
on_error = {{ action = "count" }}
"#,
            knobs = if profile == "linux" {
                r#""net.ipv4.ip_local_port_range" = "49152 65535""#
            } else {
                ""
            }
        )
    };
    let mac = run_text(&text("macos"));
    assert_eq!(mac.summary.connections.established, 16_384);
    let linux = run_text(&text("linux"));
    assert_eq!(linux.summary.connections.established, 2 * 16_384);
}

#[test]
fn freebsd_skips_time_wait_toward_local_addresses() {
    // §3.2 nolocaltimewait = 1: the seed's loopback benchmark leaves no TIME-WAIT on
    // FreeBSD and nothing caps it; with the knob off the server keeps its TIME-WAITs.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/macos-16k-cap.toml");
    let text = std::fs::read_to_string(path).unwrap();
    let on = run_text(&text.replace("profile = \"macos\"", "profile = \"freebsd\""));
    assert_eq!(on.summary.time_wait.peak, 0);
    assert!(counter(&on, "tw_skipped_local") > 400_000);
    let off = run_text(&text.replace(
        "profile = \"macos\"",
        "profile = \"freebsd\"\nknobs = { \"net.inet.tcp.nolocaltimewait\" = 0 }",
    ));
    // Nearly every one of the 55,536 client ports gets a server-side TIME-WAIT, never more
    // than one each: FreeBSD's ISN clock makes each later SYN on the tuple acceptable.
    let peak = off.summary.time_wait.peak;
    assert!((55_000..=55_536).contains(&peak), "{peak}");
}

/// The seed's loopback benchmark and a client-closes churn on every profile, side by side.
#[test]
fn the_same_workloads_on_every_kernel() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/macos-16k-cap.toml");
    let seed = std::fs::read_to_string(path).unwrap();
    let mut t = String::new();
    let _ = writeln!(
        t,
        "oha -z 10s -c 50, loopback, server closes (the 16k-cap seed):\n\
         profile  requests  slowest_ms  tw_peak  tw_syn_accepted  tw_syn_rejected  stalled"
    );
    for p in ["linux", "freebsd", "macos", "windows"] {
        let r = run_text(&seed.replace("profile = \"macos\"", &format!("profile = \"{p}\"")));
        let s = &r.summary;
        let _ = writeln!(
            t,
            "{p:<8} {:>8}  {:>10.3}  {:>7}  {:>15}  {:>15}  {:>7}",
            s.requests.completed,
            s.request_latency_ms.max,
            s.time_wait.peak,
            counter(&r, "tw_syn_accepted"),
            counter(&r, "tw_syn_rejected"),
            s.connections.in_flight
        );
    }
    let _ = writeln!(
        t,
        "\n1,000 connections/s to one remote server for 300 s, client closes:\n\
         profile  ports  time_wait  established  failed  error            first_failure_s"
    );
    for p in ["linux", "freebsd", "macos", "windows"] {
        let prof = portsim::profile::Profile::named(p).unwrap();
        let (_, r) = churn(p, "", 800.0, 100);
        let s = &r.summary;
        let err = s
            .errors
            .keys()
            .map(|k| format!("{k} {}", s.error_numbers[k]))
            .next()
            .unwrap_or_else(|| "-".into());
        let _ = writeln!(
            t,
            "{p:<8} {:>5}  {:>9}  {:>11}  {:>6}  {err:<15}  {:>15}",
            prof.usable_ports(),
            prof.time_wait.to_string(),
            s.connections.established,
            s.connections.failed,
            s.first_failure_s.map_or("-".into(), |v| format!("{v:.3}"))
        );
    }
    insta::assert_snapshot!(t);
}
