//! Paths between hosts: a middlebox on the path sees every segment, and a router (one that
//! forwards everything) changes no report. The segment counts follow from the lifecycle in
//! `src/sim/lifecycle.rs` (seven segments per connection with one request, the FIN riding on
//! the last response when the server closes), not from a previous run.

use portsim::report::Report;
use portsim::scenario::{self, Scenario};
use portsim::sim::Simulation;
use portsim::sim::path::{Hop, Middlebox, PathError, Paths, Router};
use std::path::Path;

/// Every pair of distinct hosts joined through a router, the links before and after it
/// carrying one and three parts of the one-way delay.
fn routed(sc: &Scenario) -> Paths {
    let n = sc.hosts.len() as u16;
    let mut paths = Paths::direct(sc.hosts.len());
    for a in 0..n {
        for b in 0..n {
            let hops = vec![
                Hop::Link { weight: 1 },
                Hop::Middlebox(Box::new(Router::new(&format!("r{a}-{b}")))),
                Hop::Link { weight: 3 },
            ];
            paths.set(a, b, hops).unwrap();
        }
    }
    paths
}

fn scenario_files() -> Vec<std::path::PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in ["scenarios", "benches/scenarios"] {
        for e in std::fs::read_dir(root.join(dir)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "toml") && !p.ends_with("day-long.toml") {
                files.push(p);
            }
        }
    }
    files.sort();
    files
}

#[test]
fn a_router_on_every_path_changes_no_report() {
    // (files whose direct run enters TIME-WAIT in bulk, makes sockets at TIME-WAIT)
    let (mut bulk, mut unseen) = (0, 0);
    for f in scenario_files() {
        let mut sc = scenario::load(&f).unwrap();
        if !sc.nats.is_empty() {
            // Its [[nat]] sets its paths; tests/nat.rs covers it.
            continue;
        }
        // Every segment stepped through a router: cut the long bench runs.
        let cut = match f.file_stem().unwrap().to_str().unwrap() {
            "churn-open-loop" => Some(300),
            "many-pools" => Some(3),
            "retry-storm" => Some(60),
            _ => None,
        };
        if let Some(s) = cut {
            sc.duration = portsim::time::Duration(s * 1_000_000_000);
        }
        let direct = Simulation::new(&sc);
        bulk += usize::from(direct.enters_time_wait_in_bulk());
        unseen += usize::from(direct.makes_sockets_at_time_wait());
        let direct = direct.ports(true).run().to_json();
        let through = Simulation::with_paths(&sc, routed(&sc)).unwrap();
        assert!(!through.enters_time_wait_in_bulk() && !through.makes_sockets_at_time_wait());
        let (r, boxes) = through.ports(true).run_with_middleboxes();
        assert_eq!(direct, r.to_json(), "{}", f.display());
        let seen: u64 = boxes
            .iter()
            .flat_map(|b| b.counters())
            .map(|(_, n)| n)
            .sum();
        assert!(
            seen >= 3 * r.summary.connections.established,
            "{}",
            f.display()
        );
        let stepped = Simulation::with_paths(&sc, routed(&sc))
            .unwrap()
            .stepping()
            .ports(true)
            .run();
        assert_eq!(direct, stepped.to_json(), "{}", f.display());
    }
    // The fast paths a router turns off were on for some of these without it.
    assert!(bulk > 0 && unseen > 0, "{bulk} {unseen}");
}

const ONE_HOST_PAIR: &str = r#"
[scenario]
name = "pair"
duration = "2s"
bin = "500ms"

[[host]]
name = "c"
ips = ["10.0.0.1"]

[[host]]
name = "s"
ips = ["10.0.0.2"]
listen = ["10.0.0.2:80"]

[[workload]]
name = "w"
client = "c"
destinations = ["10.0.0.2:80"]
arrival = { kind = "burst", at = "0s", count = 50 }
rtt = "1ms"
service_time = "2ms"
"#;

/// The counts of the one router between c and s, by name.
fn counts(extra: &str) -> (Report, std::collections::BTreeMap<String, u64>) {
    let sc = scenario::parse("pair.toml", &format!("{ONE_HOST_PAIR}{extra}\n")).unwrap();
    let mut paths = Paths::direct(2);
    let hops = vec![
        Hop::Link { weight: 2 },
        Hop::Middlebox(Box::new(Router::new("r"))),
        Hop::Link { weight: 5 },
    ];
    paths.set(0, 1, hops).unwrap();
    let (r, boxes) = Simulation::with_paths(&sc, paths)
        .unwrap()
        .run_with_middleboxes();
    assert_eq!(boxes.len(), 1);
    assert_eq!(boxes[0].name(), "r");
    (r, boxes[0].counters().into_iter().collect())
}

#[test]
fn a_middlebox_sees_each_segment_of_a_client_close_once() {
    let (r, seen) = counts("closer = \"client\"");
    assert_eq!(r.summary.connections.established, 50);
    let n = |k: &str| seen[k];
    // SYN, SYN-ACK, ACK + request, response, FIN, FIN-ACK, last ACK.
    for (k, v) in [
        ("→ SYN", 50),
        ("← SYN-ACK", 50),
        ("→ ACK", 50),
        ("← response", 50),
        ("→ FIN", 50),
        ("← FIN-ACK", 50),
        ("→ last ACK", 50),
    ] {
        assert_eq!(n(k), v, "{k}");
    }
    assert_eq!(seen.values().sum::<u64>(), 7 * 50);
}

#[test]
fn a_middlebox_sees_the_server_close_the_other_way() {
    let (r, seen) = counts("closer = \"server\"");
    assert_eq!(r.summary.connections.established, 50);
    // The server's FIN rides on the response; the client's ACK and FIN go up; the server's
    // last ACK comes down.
    for (k, v) in [
        ("→ SYN", 50),
        ("← SYN-ACK", 50),
        ("→ ACK", 50),
        ("← response", 50),
        ("→ FIN-ACK", 50),
        ("← last ACK", 50),
    ] {
        assert_eq!(seen[k], v, "{k}");
    }
    assert_eq!(seen.values().sum::<u64>(), 6 * 50);
    // SO_LINGER {on, 0} on the client: one RST up instead of the FIN exchange (§2.5).
    let (_, seen) = counts("closer = \"client\"\nlinger_zero = true");
    assert_eq!(seen["→ RST"], 50);
    assert_eq!(seen["→ FIN"] + seen["← FIN-ACK"] + seen["→ last ACK"], 0);
}

#[test]
fn a_path_that_is_not_links_and_middleboxes_in_turn_is_refused() {
    let mut paths = Paths::direct(2);
    let router = || Hop::Middlebox(Box::new(Router::new("r")) as Box<dyn Middlebox>);
    let link = |weight| Hop::Link { weight };
    assert_eq!(
        paths.set(0, 2, vec![link(1)]),
        Err(PathError::NoSuchHost(2))
    );
    assert_eq!(
        paths.set(0, 1, vec![router(), link(1)]),
        Err(PathError::NotAlternating)
    );
    assert_eq!(
        paths.set(0, 1, vec![link(1), router()]),
        Err(PathError::NotAlternating)
    );
    assert_eq!(
        paths.set(0, 1, vec![link(1), link(1)]),
        Err(PathError::NotAlternating)
    );
    assert_eq!(
        paths.set(0, 1, vec![link(0), router(), link(1)]),
        Err(PathError::ZeroWeight)
    );
    // A refused path leaves nothing behind: no middlebox, every pair direct.
    assert!(paths.all_direct());
    assert_eq!(paths.set(0, 1, vec![link(1)]), Ok(()));
    assert!(paths.all_direct());
    assert_eq!(paths.set(1, 0, vec![link(1), router(), link(1)]), Ok(()));
    assert_eq!(
        paths.set(1, 0, vec![link(1), router(), link(1)]),
        Err(PathError::AlreadySet {
            client: 1,
            server: 0
        })
    );
    let sc = scenario::parse("pair.toml", ONE_HOST_PAIR).unwrap();
    let (_, boxes) = Simulation::with_paths(&sc, paths)
        .unwrap()
        .run_with_middleboxes();
    assert_eq!(boxes.len(), 1, "only the path that was set");
    assert_eq!(
        Simulation::with_paths(&sc, Paths::direct(3)).err(),
        Some(PathError::WrongHosts {
            paths: 3,
            scenario: 2
        })
    );
}

#[test]
fn two_middleboxes_on_one_path_see_the_same_segments_and_change_nothing() {
    // Up and down differ (a uniform RTT, odd nanoseconds); the server closes, so segments
    // go both ways; five requests per connection.
    let text = format!(
        "{}closer = \"server\"\nrequests_per_connection = 5\n",
        ONE_HOST_PAIR.replace(
            "rtt = \"1ms\"",
            "rtt = { dist = \"uniform\", min = \"999us\", max = \"3001us\" }"
        )
    );
    let sc = scenario::parse("pair.toml", &text).unwrap();
    let mut paths = Paths::direct(2);
    let hops = vec![
        Hop::Link { weight: 1 },
        Hop::Middlebox(Box::new(Router::new("a"))),
        Hop::Link { weight: 2 },
        Hop::Middlebox(Box::new(Router::new("b"))),
        Hop::Link { weight: 3 },
    ];
    paths.set(0, 1, hops).unwrap();
    let direct = Simulation::new(&sc).run();
    assert_eq!(direct.summary.requests.completed, 5 * 50);
    let (r, boxes) = Simulation::with_paths(&sc, paths)
        .unwrap()
        .run_with_middleboxes();
    assert_eq!(direct.to_json(), r.to_json());
    let (a, b) = (boxes[0].counters(), boxes[1].counters());
    assert_eq!(a, b);
    let seen: std::collections::BTreeMap<_, _> = a.into_iter().collect();
    // Requests after the first are not segments of the model (src/sim/path.rs): one ACK up,
    // five responses down.
    assert_eq!(seen["→ ACK"], 50);
    assert_eq!(seen["← response"], 5 * 50);
}
