//! Random scenarios (hosts, addresses, ranges, workloads, profiles) run in checking mode,
//! each twice: every invariant holds after every event, and the two reports are identical.
//! A third run queues every segment instead of scheduling exchanges whole, and a fourth turns
//! every shortcut off at once (retries and arrivals counted in bulk too); both must give the
//! same report.

use portsim::scenario;
use portsim::sim::Simulation;
use proptest::prelude::*;
use std::fmt::Write as _;

#[derive(Debug, Clone)]
struct Load {
    arrival: String,
    closer: &'static str,
    linger_zero: bool,
    connection: &'static str,
    on_error: &'static str,
    rtt: &'static str,
    requests: u32,
    sources: usize,
    destinations: usize,
    /// `limit = …` and `stop = …` lines, or nothing.
    ends: String,
}

#[derive(Debug, Clone)]
struct Case {
    seed: u64,
    profile: &'static str,
    server_profile: &'static str,
    range: (u16, u16),
    client_ips: usize,
    listens: usize,
    time_wait_ms: u32,
    tw_reuse: u8,
    max_tw: u32,
    loads: Vec<Load>,
}

fn load(linux: bool) -> impl Strategy<Value = Load> {
    let arrival = prop_oneof![
        (1u32..3000).prop_map(|r| format!("{{ kind = \"constant\", rate = {r} }}")),
        (1u32..3000).prop_map(|r| format!("{{ kind = \"poisson\", rate = {r} }}")),
        (1u32..40).prop_map(|c| format!("{{ kind = \"closed\", concurrency = {c} }}")),
        (1u32..2000, 1u32..2000).prop_map(|(a, b)| format!(
            "{{ kind = \"steps\", steps = [{{ at = \"0s\", rate = {a} }}, {{ at = \"2s\", rate = {b} }}] }}"
        )),
        (1u32..60, 1u32..60).prop_map(|(a, b)| format!(
            "{{ kind = \"burst\", bursts = [{{ at = \"0s\", count = {a} }}, {{ at = \"1500ms\", count = {b} }}] }}"
        )),
    ];
    let ends = prop_oneof![
        3 => Just(String::new()),
        1 => (1u32..400).prop_map(|n| format!("limit = {{ connections = {n} }}")),
        1 => (1u32..600).prop_map(|n| format!("limit = {{ requests = {n} }}")),
        1 => (1u32..2900).prop_map(|ms| format!("stop = \"{ms}ms\"")),
    ];
    let connection = if linux {
        prop_oneof![Just("connect"), Just("bind_no_port"), Just("bind")].boxed()
    } else {
        Just("connect").boxed()
    };
    (
        arrival,
        prop_oneof![Just("client"), Just("server")],
        prop::bool::weighted(0.15),
        connection,
        prop_oneof![
            Just("{ action = \"count\", delay = \"1ms\" }"),
            Just("{ action = \"retry\", delay = \"2ms\", backoff = 2.0, max_delay = \"50ms\", max_retries = 5 }"),
            Just("{ action = \"retry\", delay = \"1ms\" }"),
        ],
        prop_oneof![
            Just("\"200us\""),
            Just("{ dist = \"uniform\", min = \"100us\", max = \"3ms\" }"),
            Just("{ dist = \"exponential\", mean = \"1ms\" }"),
        ],
        0u32..4,
        1usize..4,
        1usize..4,
        ends,
    )
        .prop_map(
            |(arrival, closer, linger_zero, connection, on_error, rtt, requests, sources, destinations, ends)| {
                Load {
                    arrival,
                    closer,
                    linger_zero,
                    connection,
                    on_error,
                    rtt,
                    requests,
                    sources,
                    destinations,
                    ends,
                }
            },
        )
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop_oneof![
            Just("linux"),
            Just("freebsd"),
            Just("macos"),
            Just("windows")
        ],
        prop_oneof![Just("linux"), Just("freebsd"), Just("macos")],
    )
        .prop_flat_map(|(profile, server_profile)| {
            let linux = profile == "linux";
            (
                any::<u64>(),
                Just(profile),
                Just(server_profile),
                (1025u16..60000, 4u16..300),
                1usize..4,
                1usize..4,
                prop_oneof![Just(500u32), Just(2000), Just(5000)],
                0u8..3,
                prop_oneof![Just(u32::MAX), Just(50u32)],
                prop::collection::vec(load(linux), 1..3),
            )
        })
        .prop_map(
            |(
                seed,
                profile,
                server_profile,
                (lo, n),
                client_ips,
                listens,
                tw,
                tw_reuse,
                max_tw,
                loads,
            )| Case {
                seed,
                profile,
                server_profile,
                range: (lo, lo.saturating_add(n)),
                client_ips,
                listens,
                time_wait_ms: tw,
                tw_reuse,
                max_tw,
                loads,
            },
        )
}

fn text(c: &Case) -> String {
    let mut s = format!(
        "[scenario]\nname = \"random\"\nduration = \"3s\"\nseed = {}\nbin = \"250ms\"\n\n",
        c.seed
    );
    let ips: Vec<String> = (1..=c.client_ips)
        .map(|i| format!("\"10.0.0.{i}\""))
        .collect();
    let _ = writeln!(
        s,
        "[[host]]\nname = \"client\"\nprofile = \"{}\"\nips = [{}]\n",
        c.profile,
        ips.join(", ")
    );
    let (lo, hi) = c.range;
    let mut knobs = String::new();
    match c.profile {
        "linux" => {
            let _ = writeln!(knobs, "\"net.ipv4.ip_local_port_range\" = \"{lo} {hi}\"");
            let _ = writeln!(knobs, "\"net.ipv4.tcp_tw_reuse\" = {}", c.tw_reuse);
            let _ = writeln!(knobs, "\"net.ipv4.tcp_tw_reuse_delay\" = 100");
            if c.max_tw != u32::MAX {
                let _ = writeln!(knobs, "\"net.ipv4.tcp_max_tw_buckets\" = {}", c.max_tw);
            }
        }
        "freebsd" | "macos" => {
            let _ = writeln!(knobs, "\"net.inet.ip.portrange.first\" = {lo}");
            let _ = writeln!(knobs, "\"net.inet.ip.portrange.last\" = {hi}");
        }
        _ => {
            let _ = writeln!(knobs, "\"dynamicport.tcp.start\" = {}", lo.max(1025));
            let _ = writeln!(
                knobs,
                "\"dynamicport.tcp.num\" = {}",
                255 + u32::from(hi - lo)
            );
        }
    }
    let _ = writeln!(
        s,
        "[host.knobs]\n{knobs}\n[host.model]\ntime_wait = \"{}ms\"\n",
        c.time_wait_ms
    );
    let listen: Vec<String> = (1..=c.listens)
        .map(|i| format!("\"10.1.0.{i}:{}\"", 80 + i))
        .collect();
    let server_ips: Vec<String> = (1..=c.listens).map(|i| format!("\"10.1.0.{i}\"")).collect();
    let _ = writeln!(
        s,
        "[[host]]\nname = \"server\"\nprofile = \"{}\"\nips = [{}]\nlisten = [{}]\n\n[host.model]\ntime_wait = \"{}ms\"\n",
        c.server_profile,
        server_ips.join(", "),
        listen.join(", "),
        c.time_wait_ms
    );
    for (i, l) in c.loads.iter().enumerate() {
        let src: Vec<String> = ips.iter().take(l.sources).cloned().collect();
        let src = if l.connection == "connect" {
            vec![ips[0].clone()]
        } else {
            src
        };
        let dst: Vec<String> = listen.iter().take(l.destinations).cloned().collect();
        let _ = writeln!(
            s,
            "[[workload]]\nname = \"w{i}\"\nclient = \"client\"\nsource_ips = [{}]\nconnection = \"{}\"\ndestinations = [{}]\narrival = {}\nrequests_per_connection = {}\nrtt = {}\nservice_time = \"500us\"\ncloser = \"{}\"\nlinger_zero = {}\non_error = {}\n{}\n",
            src.join(", "),
            l.connection,
            dst.join(", "),
            l.arrival,
            l.requests,
            l.rtt,
            l.closer,
            l.linger_zero && l.closer == "client",
            l.on_error,
            l.ends
        );
    }
    s
}

proptest! {
    // PORTSIM_CASES=N runs N cases instead of 24.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PORTSIM_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(24),
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_scenarios_keep_every_invariant_and_repeat_exactly(c in case()) {
        let t = text(&c);
        // A generated combination the parser refuses (with its reason) is not a run.
        let sc = match scenario::parse("random.toml", &t) {
            Ok(sc) => sc,
            Err(e) => {
                prop_assert!(!e.message.is_empty());
                return Ok(());
            }
        };
        let run = || Simulation::new(&sc).checking(true).run_checked();
        let a = run().map_err(|v| TestCaseError::fail(format!("{v}\n{t}")))?;
        let b = run().map_err(|v| TestCaseError::fail(format!("{v}\n{t}")))?;
        prop_assert_eq!(a.0.to_json(), b.0.to_json());
        prop_assert_eq!(a.1, b.1);
        let c = Simulation::new(&sc)
            .stepping_segments()
            .checking(true)
            .run_checked()
            .map_err(|v| TestCaseError::fail(format!("{v}\n{t}")))?;
        prop_assert_eq!(a.0.to_json(), c.0.to_json(), "whole exchanges against every segment:\n{}", t);
        let d = Simulation::new(&sc)
            .stepping()
            .stepping_segments()
            .checking(true)
            .run_checked()
            .map_err(|v| TestCaseError::fail(format!("{v}\n{t}")))?;
        prop_assert_eq!(a.0.to_json(), d.0.to_json(), "every shortcut on against every shortcut off:\n{}", t);
    }
}

#[test]
fn most_generated_scenarios_are_valid() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let mut ok = 0;
    for _ in 0..200 {
        let c = case().new_tree(&mut runner).unwrap().current();
        ok += usize::from(scenario::parse("random.toml", &text(&c)).is_ok());
    }
    assert!(ok > 150, "only {ok} of 200 generated scenarios parse");
}

/// The generator's first 200 cases, fixed: every valid one gives the default run's report
/// with every shortcut off at once. Most of the time goes to a few open loops retrying every
/// millisecond into an exhausted pool, where no shortcut engages.
#[test]
fn two_hundred_random_scenarios_give_one_report_with_every_shortcut_off() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let mut valid = 0;
    for i in 0..200 {
        let c = case().new_tree(&mut runner).unwrap().current();
        let t = text(&c);
        let Ok(sc) = scenario::parse("random.toml", &t) else {
            continue;
        };
        let fast = Simulation::new(&sc).run().to_json();
        let slow = Simulation::new(&sc)
            .stepping()
            .stepping_segments()
            .run()
            .to_json();
        assert!(
            fast == slow,
            "case {i}: every shortcut off changes the report:\n{t}"
        );
        valid += 1;
    }
    assert!(valid > 150, "only {valid} of 200 generated scenarios parse");
}
