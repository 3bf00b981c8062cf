//! macOS and FreeBSD by release (src/profile/bsd_releases.rs): the 16k-cap seed on each macOS
//! release, and FreeBSD 13's capped compressed TIME-WAIT against 14's. Expected numbers come
//! from the seed, counting arguments stated next to each assertion, or the kernel source
//! (notes/bsd-releases.md); none is copied from a previous run.

use portsim::profile::{Profile, bsd_releases};
use portsim::replicate::{self, Seeds};
use portsim::report::Report;
use portsim::scenario;
use portsim::sim::Simulation;
use std::path::Path;
use std::process::Command;

/// The seed's workload (`oha -z 10s -c 50` against a loopback server that closes first) on
/// the profile `profile`.
fn seed_on(profile: &str) -> scenario::Scenario {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/macos-16k-cap.toml");
    let text = std::fs::read_to_string(path).unwrap();
    let text = text.replace("profile = \"macos\"", &format!("profile = \"{profile}\""));
    scenario::parse("macos-16k-cap.toml", &text).unwrap_or_else(|e| panic!("{e}"))
}

/// `sc` once per seed in `seeds`: the first seed's report with the distributions.
fn replicated(sc: &scenario::Scenario, seeds: &str) -> Report {
    let seeds = Seeds::parse(seeds).unwrap();
    replicate::run(sc, seeds, &|sc| Simulation::new(sc), &|| {}).expect("no invariant broken")
}

fn stat<'a>(r: &'a Report, path: &str) -> &'a replicate::Stat {
    &r.replicates.as_ref().expect("replicated").metrics[path]
}

fn counter(r: &Report, name: &str) -> u64 {
    r.summary.kernel_counters[name]
}

#[test]
fn macos_12_to_14_cap_the_seed_near_16384_with_the_same_coin_flips() {
    // XNU 12, 13 and 14 draw a random ISN and a random timestamp offset per connection, so
    // after the cursor wraps each SYN meeting a server TIME-WAIT passes both tests with
    // p = 1/4 and every worker stalls within a few connections. Extra responses per worker:
    // 1/3 + 1/3 × 4/3 = 7/9 (tests/profiles.rs derives it), so 50 × 7/9 = 38.9 over the
    // 16,384 ports, standard deviation about 7. Over 100 seeds the mean lies within 4
    // standard errors (4 × 0.7) of it.
    for release in ["macos@12", "macos@13", "macos@14"] {
        let r = replicated(&seed_on(release), "1..100");
        assert_eq!(
            r.summary.requests.completed,
            16_384 + counter(&r, "tw_syn_accepted"),
            "{release}: each port carries one connection plus the SYNs a TIME-WAIT accepted"
        );
        let done = stat(&r, "requests.completed");
        let extra = done.mean - 16_384.0;
        assert!(
            (extra - 50.0 * 7.0 / 9.0).abs() < 4.0 * 0.7,
            "{release}: mean extra {extra:.1}"
        );
        assert!(
            done.min >= 16_384.0 && done.max < 16_384.0 + 100.0,
            "{release}: {done:?}"
        );
        // The seed's own 16,408 is a plausible draw: within 4 standard deviations.
        assert!(
            (16_408.0 - done.mean).abs() < 4.0 * done.sd,
            "{release}: {done:?}"
        );
        // Every worker ends stalled in SYN-SENT in every run.
        assert_eq!(stat(&r, "connections.in_flight").min, 50.0, "{release}");
        // The PAWS-only refusals recover at the 10th retransmission, 67 × 100 ms.
        let slowest = stat(&r, "request_latency_ms.max");
        assert!(
            (6_700.0..6_702.0).contains(&slowest.min),
            "{release}: {slowest:?}"
        );
    }
}

#[test]
fn macos_15_has_no_cap_every_reused_tuple_is_accepted() {
    // XNU 15: ISN = hash(tuple) + uptime_ns >> 7 and a per-tuple timestamp offset. A port comes
    // back after one cursor cycle (16,384 connections, about 0.35 s), when its ISN has moved
    // 2.7 M past the old one: beyond the TIME-WAIT's window, and its TSval is newer. Nothing
    // stalls, so each of the 50 workers runs back to back: connect (one RTT, 40 µs) plus
    // request (RTT + 988 µs service) = 1.068 ms, floor(10 s / 1.068 ms) = 9,363 responses
    // each. Independent of the seed.
    let per_worker = 10_000_000 / 1_068;
    let r = replicated(&seed_on("macos@15"), "1..5");
    let done = stat(&r, "requests.completed");
    assert_eq!(done.min, (50 * per_worker) as f64, "{done:?}");
    assert_eq!(done.max, done.min);
    assert_eq!(counter(&r, "tw_syn_rejected"), 0);
    // Every connect after the first 16,384 reopened a TIME-WAIT tuple, the 50 still in
    // flight included.
    let attempted = r.summary.connections.attempted;
    assert_eq!(counter(&r, "tw_syn_accepted"), attempted - 16_384);
    assert!(r.summary.request_latency_ms.max < 2.0);
}

#[test]
fn freebsd_13_keeps_time_wait_on_loopback_capped_at_half_the_range_14_keeps_none() {
    // FreeBSD 14: nolocaltimewait = true, so the seed's loopback server keeps no TIME-WAIT.
    let f14 = Simulation::new(&seed_on("freebsd@14")).run();
    assert_eq!(f14.summary.time_wait.peak, 0);
    assert_eq!(
        counter(&f14, "tw_skipped_local"),
        f14.summary.requests.completed
    );
    // FreeBSD 13: nolocaltimewait = 0, so every server-side close enters TIME-WAIT, and the
    // tcptw zone holds at most (65535 − 10000) / 2 = 27,767 of them.
    let f13 = Simulation::new(&seed_on("freebsd@13")).run();
    assert_eq!(f13.summary.time_wait.peak_server, 27_767);
    assert!(counter(&f13, "tw_overflow") > 0);
    assert_eq!(counter(&f13, "tw_skipped_local"), 0);
}

/// Client-closes churn at `rate` per second from a host running `profile` to one remote
/// server, for 150 s.
fn churn(profile: &str, rate: u32) -> Report {
    let text = format!(
        r#"
[scenario]
name = "churn-{profile}"
duration = "150s"
bin = "1s"

[[host]]
name = "client"
profile = "{profile}"
ips = ["10.0.0.1"]

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
"#
    );
    let sc = scenario::parse("churn.toml", &text).unwrap_or_else(|e| panic!("{e}"));
    Simulation::new(&sc).run()
}

#[test]
fn freebsd_13_never_runs_out_of_ports_to_one_destination_14_does() {
    // 1,200 connections/s, each leaving a 60 s TIME-WAIT on the client: 72,000 would be
    // needed, over the 55,536 ports of 10000–65535.
    // FreeBSD 14 keeps them all: the ports run out after 55,536 / 1,200 = 46.3 s.
    let f14 = churn("freebsd@14", 1_200);
    let first = f14.summary.first_failure_s.expect("FreeBSD 14 runs out");
    assert!((46.0..47.5).contains(&first), "{first}");
    assert!(f14.summary.errors.contains_key("EADDRNOTAVAIL"));
    // FreeBSD 13 holds at most 27,767 (half the range): the other half stays free, so no
    // connect fails.
    let f13 = churn("freebsd@13", 1_200);
    assert_eq!(f13.summary.connections.failed, 0);
    assert_eq!(f13.summary.time_wait.peak, 27_767);
    assert_eq!(
        f13.summary.connections.established,
        f13.summary.connections.attempted - f13.summary.connections.in_flight
    );
}

#[test]
fn portsim_profile_show_prints_every_release_as_a_block_that_sets_it_back() {
    for (name, _) in bsd_releases::RELEASES {
        let out = Command::new(env!("CARGO_BIN_EXE_portsim"))
            .args(["profile", "show", name])
            .output()
            .expect("portsim runs");
        assert!(out.status.success(), "{name}");
        let block = String::from_utf8(out.stdout).unwrap();
        assert!(block.contains(&format!("profile = \"{name}\"")), "{block}");
        let doc: toml::Table = block.parse().expect("valid TOML");
        let host = &doc["host"].as_array().unwrap()[0];
        let want = Profile::named(name).unwrap();
        // Starting from the kernel's unversioned profile where the block's knobs and model
        // parameters carry every difference, otherwise from the release itself.
        let mut got = match *name {
            "macos@15" => Profile::macos(),
            _ => want.clone(),
        };
        for (k, v) in host["knobs"].as_table().unwrap() {
            got.set_knob(k, v)
                .unwrap_or_else(|e| panic!("{name} {k}: {e}"));
        }
        for (k, v) in host["model"].as_table().unwrap() {
            got.set_model(k, v)
                .unwrap_or_else(|e| panic!("{name} {k}: {e}"));
        }
        assert_eq!(got, want, "{name}");
    }
}
