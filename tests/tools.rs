//! Load generators' command lines (`src/client/tools.rs`): each tool's defaults and flags read
//! to the values notes/client-libraries.md §5 gives (with the tool's source), refusals that
//! name the flag, the value and what is allowed, no panic on any argument vector, and the
//! rendered scenario loading and running with the numbers its timing implies.

use portsim::client::tools::{
    self, Destination, OnConnectError, RenderError, RenderOptions, Tool, ToolError, ToolLimit,
    ToolRate, ToolRun,
};
use portsim::scenario;
use portsim::sim::Simulation;
use portsim::time::Duration;
use portsim::workload::{Arrival, Closer, OnError, Rate};
use proptest::prelude::*;
use std::net::{Ipv4Addr, SocketAddrV4};

fn parse(cmd: &str) -> ToolRun {
    tools::parse(cmd).unwrap_or_else(|e| panic!("{cmd}: {e}"))
}

fn error(cmd: &str) -> String {
    match tools::parse(cmd) {
        Ok(run) => panic!("{cmd}: accepted as {run:?}"),
        Err(e) => e.to_string(),
    }
}

fn addr(a: [u8; 4], port: u16) -> Destination {
    Destination::Addr(SocketAddrV4::new(Ipv4Addr::from(a), port))
}

fn requests(n: u64) -> ToolLimit {
    ToolLimit {
        requests: Some(n),
        ..ToolLimit::default()
    }
}

fn secs(s: u64) -> ToolLimit {
    ToolLimit {
        duration: Some(Duration::from_secs(s)),
        ..ToolLimit::default()
    }
}

fn rate(num: u64, den: u64) -> Rate {
    Rate { num, den }
}

// ---- each tool's defaults and flags ---------------------------------------------------

#[test]
fn oha_defaults_are_50_workers_200_requests_kept_alive() {
    let r = parse("oha http://localhost:8080/");
    assert_eq!(r.tool, Tool::Oha);
    assert_eq!(r.destination, addr([127, 0, 0, 1], 8080));
    assert_eq!(r.concurrency, Some(50));
    assert_eq!(r.limit, requests(200));
    assert!(r.keep_alive);
    assert_eq!((r.requests_per_connection, r.closer), (None, None));
    assert_eq!(r.rate, None);
}

#[test]
fn oha_duration_overrides_n_and_disable_keepalive_dials_per_request_server_closing() {
    let r = parse("oha -c 50 -n 1000 -z 10s --disable-keepalive http://127.0.0.1:8080/");
    assert_eq!(r.concurrency, Some(50));
    assert_eq!(r.limit, secs(10));
    assert!(!r.keep_alive);
    assert_eq!(r.requests_per_connection, Some(1));
    assert_eq!(r.closer, Some(Closer::Server));
    assert!(r.closer_source.contains("UNVERIFIED"));
    let q = parse("oha -c8 -q 272.5 -z 3m http://10.0.0.2/");
    assert_eq!(q.concurrency, Some(8));
    assert_eq!(q.rate, Some(ToolRate::Requests(rate(2725, 10))));
    assert_eq!(q.limit, secs(180));
    assert_eq!(q.destination, addr([10, 0, 0, 2], 80));
}

#[test]
fn wrk_defaults_are_2_threads_10_connections_10_seconds() {
    let r = parse("wrk http://192.0.2.2:8080/index.html");
    assert_eq!((r.threads, r.concurrency), (Some(2), Some(10)));
    assert_eq!(r.limit, secs(10));
    assert!(r.keep_alive);
    assert_eq!(r.requests_per_connection, None);
    let r = parse("wrk -t4 -c 400 --duration=1m30s --latency -H 'Host: x' https://192.0.2.2/");
    assert_eq!((r.threads, r.concurrency), (Some(4), Some(400)));
    assert_eq!(r.limit, secs(90));
    assert_eq!(r.destination, addr([192, 0, 2, 2], 443));
    assert_eq!(parse("wrk -d 30 http://192.0.2.2/").limit, secs(30));
    let e = error("wrk -t 8 -c 4 http://192.0.2.2/");
    assert!(
        e.contains("-c") && e.contains("\"4\"") && e.contains("-t 8"),
        "{e}"
    );
}

#[test]
fn ab_defaults_are_one_request_http10_the_server_closing() {
    let r = parse("ab http://127.0.0.1/");
    assert_eq!((r.concurrency, r.limit), (Some(1), requests(1)));
    assert!(!r.keep_alive);
    assert_eq!(
        (r.requests_per_connection, r.closer),
        (Some(1), Some(Closer::Server))
    );
    assert!(r.closer_source.contains("HTTP/1.0"));
    assert_eq!(r.on_connect_error, OnConnectError::Stop);
    let k = parse("ab -k -c 10 -n 1000 127.0.0.1:8000/");
    assert!(k.keep_alive);
    assert_eq!((k.concurrency, k.limit), (Some(10), requests(1000)));
    assert_eq!(k.destination, addr([127, 0, 0, 1], 8000));
    // "-t timelimit ... This implies -n 50000"; a later -n overrides it.
    let t = parse("ab -c 5 -t 20 http://127.0.0.1/");
    assert_eq!(t.limit.requests, Some(50_000));
    assert_eq!(t.limit.duration, Some(Duration::from_secs(20)));
    assert_eq!(
        parse("ab -t 20 -n 70 http://127.0.0.1/").limit.requests,
        Some(70)
    );
    let e = error("ab -c 10 -n 5 http://127.0.0.1/");
    assert!(e.contains("-c \"10\"") && e.contains("-n 5"), "{e}");
}

#[test]
fn hey_defaults_and_the_go_idle_cap_of_min_c_500() {
    let r = parse("hey http://127.0.0.1:8080/");
    assert_eq!((r.concurrency, r.limit), (Some(50), requests(200)));
    assert_eq!(r.max_idle_per_host, Some(50));
    assert!(r.keep_alive);
    let big = parse("hey -c 800 -n 8000 http://127.0.0.1:8080/");
    assert_eq!(big.max_idle_per_host, Some(500));
    // Go's flag syntax: -c=5, --n 10; -q is per worker: 2 × 5 = 10 requests/s in all.
    let g = parse("hey -c=5 --n 10 -q 2 -disable-keepalive -m POST http://127.0.0.1/");
    assert_eq!((g.concurrency, g.limit), (Some(5), requests(10)));
    assert_eq!(g.rate, Some(ToolRate::Requests(rate(10, 1))));
    assert_eq!(
        (g.requests_per_connection, g.closer),
        (Some(1), Some(Closer::Client))
    );
    assert!(g.closer_source.contains("UNVERIFIED") && g.closer_source.contains("826"));
    assert!(parse("hey -disable-keepalive=false http://127.0.0.1/").keep_alive);
    assert_eq!(parse("hey -n 10 -z 10s http://127.0.0.1/").limit, secs(10));
    let e = error("hey -n 10 -c 50 http://127.0.0.1/");
    assert!(e.contains("-n \"10\"") && e.contains("-c 50"), "{e}");
}

#[test]
fn k6_run_reads_vus_duration_and_connection_reuse_not_the_script() {
    let r = parse("k6 run --vus 300 --duration 30s --no-connection-reuse script.js");
    assert_eq!(
        r.destination,
        Destination::Script {
            path: "script.js".into()
        }
    );
    assert_eq!((r.concurrency, r.limit), (Some(300), secs(30)));
    assert_eq!(
        (r.requests_per_connection, r.closer),
        (Some(1), Some(Closer::Client))
    );
    let d = parse("k6 run s.js");
    assert_eq!((d.concurrency, d.limit), (Some(1), requests(1)));
    assert!(d.keep_alive);
    let vu = parse("k6 run -u 10 -i 1000 --no-vu-connection-reuse s.js");
    assert_eq!((vu.concurrency, vu.limit), (Some(10), requests(1000)));
    assert_eq!(vu.closer, Some(Closer::Client));
    assert!(vu.closer_source.contains("CloseIdleConnections"));
    assert!(error("k6 cloud s.js").contains("subcommand"));
    assert!(error("k6 run --vus 3").contains("nothing to connect to"));
}

#[test]
fn memtier_defaults_are_4_threads_of_50_clients_10000_requests_each() {
    let r = parse("memtier_benchmark");
    assert_eq!(r.destination, addr([127, 0, 0, 1], 6379));
    assert_eq!((r.threads, r.concurrency), (Some(4), Some(200)));
    assert_eq!(r.limit, requests(200 * 10_000));
    assert!(r.keep_alive);
    assert_eq!(r.reconnect_interval, None);
    assert_eq!(r.on_connect_error, OnConnectError::Stop);
    assert_eq!(parse("memtier_benchmark --test-time=30").limit, secs(30));
}

#[test]
fn memtier_issue_232_reconnects_after_every_request_the_client_closing() {
    let r =
        parse("memtier_benchmark -s 192.0.2.2 -t 1 -p 7777 -c 128 -n 10000 --reconnect-interval 1");
    assert_eq!(r.destination, addr([192, 0, 2, 2], 7777));
    assert_eq!((r.threads, r.concurrency), (Some(1), Some(128)));
    assert_eq!(r.limit, requests(128 * 10_000));
    assert_eq!(r.reconnect_interval, Some(1));
    assert!(!r.keep_alive);
    assert_eq!(
        (r.requests_per_connection, r.closer),
        (Some(1), Some(Closer::Client))
    );
    let ten = parse("memtier_benchmark --server=10.0.0.2 --reconnect-interval=10");
    assert!(ten.keep_alive);
    assert_eq!(ten.requests_per_connection, Some(10));
}

#[test]
fn redis_benchmark_defaults_and_k0_reconnecting_per_request() {
    let r = parse("redis-benchmark -q -t set,get");
    assert_eq!(r.destination, addr([127, 0, 0, 1], 6379));
    assert_eq!((r.concurrency, r.limit), (Some(50), requests(100_000)));
    assert!(r.keep_alive);
    let k0 = parse("redis-benchmark -h 10.0.0.2 -p 7000 -c 20 -n 5000 -k 0");
    assert_eq!(k0.destination, addr([10, 0, 0, 2], 7000));
    assert_eq!((k0.concurrency, k0.limit), (Some(20), requests(5000)));
    assert_eq!(
        (k0.requests_per_connection, k0.closer),
        (Some(1), Some(Closer::Client))
    );
    let e = error("redis-benchmark -k 2");
    assert!(e.contains("-k \"2\"") && e.contains("0–1"), "{e}");
}

#[test]
fn httperf_opens_connections_at_a_rate_and_resets_without_time_wait() {
    let r = parse(
        "httperf --server 10.0.0.2 --port 80 --uri=/ --rate 500 --num-conns 150000 \
         --num-calls 1 --close-with-reset",
    );
    assert_eq!(r.destination, addr([10, 0, 0, 2], 80));
    assert_eq!(r.concurrency, None);
    assert_eq!(r.rate, Some(ToolRate::Connections(rate(500, 1))));
    assert_eq!(r.limit.connections, Some(150_000));
    assert_eq!(
        (r.requests_per_connection, r.closer),
        (Some(1), Some(Closer::Client))
    );
    assert!(r.close_with_reset);
    let d = parse("httperf --num-calls=10");
    assert_eq!(d.destination, addr([127, 0, 0, 1], 80));
    assert_eq!((d.concurrency, d.rate), (Some(1), None));
    assert!(d.keep_alive && !d.close_with_reset);
}

// ---- refusals ---------------------------------------------------------------------------

#[test]
fn refusals_name_the_flag_the_value_and_what_is_allowed() {
    let e = error("curl http://x/");
    assert!(
        e.contains("\"curl\"") && e.contains("memtier_benchmark"),
        "{e}"
    );
    let e = error("oha --http2 http://127.0.0.1/");
    assert!(e.contains("--http2") && e.contains("-c") && e.contains("--disable-keepalive"));
    let e = error("oha -c fifty http://127.0.0.1/");
    assert!(e.contains("-c \"fifty\"") && e.contains("1–1000000"), "{e}");
    let e = error("oha -z 10 http://127.0.0.1/");
    assert!(e.contains("-z \"10\"") && e.contains("units"), "{e}");
    let e = error("oha -c");
    assert!(e.contains("-c") && e.contains("missing value"), "{e}");
    let e = error("wrk -c 10");
    assert!(
        e.contains("nothing to connect to") && e.contains("URL"),
        "{e}"
    );
    let e = error("oha ftp://127.0.0.1/");
    assert!(
        e.contains("\"ftp://127.0.0.1/\"") && e.contains("http://"),
        "{e}"
    );
    assert!(error("oha http://127.0.0.1:0/").contains("URL"));
    assert!(error("oha 'http://127.0.0.1/").contains("single quote"));
    assert!(error("").contains("no command"));
    let unknown = tools::parse("oha -x 1 http://127.0.0.1/").unwrap_err();
    assert!(matches!(unknown, ToolError::UnknownFlag { ref flag, .. } if flag == "-x"));
}

#[test]
fn shell_splitting_keeps_quotes_and_expands_nothing() {
    let words = tools::split(r#"oha -H "Host: a b" -H 'X: $HOME' a\ b "q\"x" """#).unwrap();
    assert_eq!(
        words,
        [
            "oha",
            "-H",
            "Host: a b",
            "-H",
            "X: $HOME",
            "a b",
            "q\"x",
            ""
        ]
    );
    let r = parse("/usr/local/bin/oha -c 3 'http://127.0.0.1:9/a b'");
    assert_eq!((r.tool, r.concurrency), (Tool::Oha, Some(3)));
}

#[test]
fn a_host_name_needs_an_address_to_render() {
    let r = parse("wrk https://example.com/");
    assert_eq!(
        r.destination,
        Destination::Name {
            host: "example.com".into(),
            port: 443
        }
    );
    let e = tools::render(&r, &RenderOptions::default()).unwrap_err();
    assert!(matches!(e, RenderError::NeedsAddress { .. }));
    assert!(e.to_string().contains("example.com:443"), "{e}");
    let opts = RenderOptions {
        address: Some("192.0.2.9:443".parse().unwrap()),
        ..RenderOptions::default()
    };
    let sc = scenario::parse("wrk.toml", &tools::render(&r, &opts).unwrap()).unwrap();
    assert_eq!(sc.workloads[0].destinations.len(), 1);
}

// ---- rendered scenarios -------------------------------------------------------------------

/// `oha -c 50 -z 10s --disable-keepalive` on loopback, timed as
/// scenarios/linux-loopback-server-close.toml is (RTT 40 µs, service 988 µs): a slot's cycle
/// is RTT (connect) + RTT + service = 1.068 ms, so each of the 50 slots starts
/// ⌊10 s / 1.068 ms⌋ + 1 = 9,364 connections before `stop` (the last at 9,999.684 ms), each
/// finishing in the tail: 468,200 requests. The server closes first, so its TIME-WAITs do
/// not hold the client's ports: nothing fails.
#[test]
fn oha_rendered_loads_and_runs_with_the_cycle_it_implies() {
    let run = parse("oha -c 50 -z 10s --disable-keepalive http://127.0.0.1:8080/");
    let opts = RenderOptions {
        rtt: Duration::from_micros(40),
        service_time: Duration::from_micros(988),
        tail: Duration::from_secs(1),
        ..RenderOptions::default()
    };
    let text = tools::render(&run, &opts).unwrap();
    let sc = scenario::parse("oha.toml", &text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let w = &sc.workloads[0];
    assert_eq!(w.arrival, Arrival::Closed { concurrency: 50 });
    assert_eq!((w.requests_per_connection, w.closer), (1, Closer::Server));
    assert_eq!(w.stop.0, Duration::from_secs(10).0);
    assert_eq!(sc.duration, Duration::from_secs(11));
    assert!(!text.contains("[workload.pool]"), "{text}");
    let report = Simulation::new(&sc).run();
    assert_eq!(report.summary.connections.failed, 0);
    assert_eq!(report.summary.requests.completed, 50 * 9_364);
}

/// memtier issue 232 rendered: the workload of scenarios/memtier-232.toml (one thread, 128
/// connections, one request each, the client closing, a failed connect ending the run), and
/// on the Linux default range (32768–60999, 28,232 ports; tcp_tw_reuse applies to loopback
/// only) with a 60 s TIME-WAIT, every one of the 28,232 ports is used once and the next
/// connect() fails with EADDRNOTAVAIL, all within the first seconds.
#[test]
fn memtier_232_rendered_is_the_shipped_scenarios_workload_and_fails_at_28233() {
    let cmd = "memtier_benchmark -s 192.0.2.2 -p 7777 -t 1 -c 128 --reconnect-interval 1";
    let text = tools::render(&parse(cmd), &RenderOptions::default()).unwrap();
    let sc = scenario::parse("memtier.toml", &text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let shipped = scenario::load(std::path::Path::new("scenarios/memtier-232.toml")).unwrap();
    let (w, s) = (&sc.workloads[0], &shipped.workloads[0]);
    assert_eq!(w.arrival, s.arrival);
    assert_eq!(w.threads, s.threads);
    assert_eq!(w.threads, Some(1));
    assert_eq!(w.requests_per_connection, s.requests_per_connection);
    assert_eq!(w.closer, s.closer);
    assert_eq!(w.linger_zero, s.linger_zero);
    assert_eq!(w.on_error, OnError::Stop);
    assert_eq!(w.on_error, s.on_error);
    let report = Simulation::new(&sc).run();
    let c = &report.summary.connections;
    assert_eq!(c.established, 28_232);
    assert_eq!(report.summary.errors.get("EADDRNOTAVAIL"), Some(&1));
    assert!(report.summary.first_failure_s.unwrap() < 60.0);
}

/// hey above 500 workers is a pool with hey's idle cap, `MaxIdleConnsPerHost = min(c, 500)`.
/// With the default timing (RTT 200 µs, service 1 ms) and 600 workers:
/// - round 1: 600 dial at 0 and all come back at 1.4 ms at once: 500 go idle, the client closes
///   100 (idle list full);
/// - round 2: 500 requests reuse (back at 2.6 ms), 100 dial (back at 2.8 ms); from then on the
///   two groups come back at different instants, each at most 500, while the other is busy:
///   nothing is closed;
/// - the end: after 6,000 requests all 600 go idle: 100 more closed.
///
/// So 700 opened, 200 closed idle-full (200 client TIME-WAITs), 6,000 requests.
#[test]
fn hey_above_500_workers_is_a_pool_that_closes_what_its_idle_cap_refuses() {
    let run = parse("hey -c 600 -n 6000 http://192.0.2.2:80/");
    let text = tools::render(&run, &RenderOptions::default()).unwrap();
    assert!(
        text.contains("\n[workload.pool]\nmax_idle_per_host = 500\n"),
        "{text}"
    );
    assert!(!text.contains("requests_per_connection"), "{text}");
    let sc = scenario::parse("hey.toml", &text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let pool = sc.workloads[0].pool.as_ref().expect("a pool");
    assert_eq!(pool.max_idle_per_host, 500);
    assert_eq!((pool.max_idle, pool.idle_timeout), (None, None));
    let report = Simulation::new(&sc).run();
    assert_eq!(report.summary.connections.established, 700);
    assert_eq!(report.summary.requests.completed, 6000);
    let p = report.workloads[0].pool.as_ref().expect("pool counts");
    assert_eq!((p.counts.opened, p.counts.closed_idle_full), (700, 200));
    assert_eq!(report.summary.time_wait.peak_client, 200);
    // At 500 workers or fewer the cap never closes one: a closed loop of kept connections.
    let text = tools::render(
        &parse("hey -c 500 -n 5000 http://192.0.2.2/"),
        &RenderOptions::default(),
    )
    .unwrap();
    assert!(!text.contains("\n[workload.pool]"), "{text}");
    let sc = scenario::parse("hey.toml", &text).unwrap();
    assert!(sc.workloads[0].pool.is_none());
    assert_eq!(sc.workloads[0].requests_per_connection, 10);
    let report = Simulation::new(&sc).run();
    assert_eq!(report.summary.connections.established, 500);
}

/// wrk keeps its 10 connections for the whole run: 10 connects, no TIME-WAIT, and each
/// connection, established after one RTT (200 µs), completes a request every RTT + service
/// (1.2 ms) until the 5 s end: ⌊(5 s − 200 µs) / 1.2 ms⌋ = 4,166 each, 41,660 in all.
#[test]
fn wrk_rendered_holds_its_connections_for_the_run() {
    let run = parse("wrk -t 2 -c 10 -d 5s http://192.0.2.2/");
    let text = tools::render(&run, &RenderOptions::default()).unwrap();
    assert!(text.contains("one connection per worker, kept"), "{text}");
    let sc = scenario::parse("wrk.toml", &text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(sc.workloads[0].threads, Some(2));
    assert_eq!(sc.duration, Duration::from_secs(5));
    let report = Simulation::new(&sc).run();
    assert_eq!(report.summary.connections.established, 10);
    assert_eq!(report.summary.time_wait.peak, 0);
    assert_eq!(report.summary.requests.completed, 41_660);
}

#[test]
fn httperf_rendered_is_a_constant_rate_with_linger_zero() {
    let cmd = "httperf --server 10.0.0.2 --rate 272.5 --num-conns 100 --close-with-reset";
    let text = tools::render(&parse(cmd), &RenderOptions::default()).unwrap();
    let sc = scenario::parse("h.toml", &text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let w = &sc.workloads[0];
    assert_eq!(w.arrival, Arrival::Constant(rate(2725, 10)));
    assert!(w.linger_zero);
    assert_eq!(w.limit.connections, Some(100));
    let report = Simulation::new(&sc).run();
    assert_eq!(report.summary.connections.established, 100);
    assert_eq!(report.summary.time_wait.peak, 0);
}

#[test]
fn every_tools_defaults_render_to_a_scenario_that_loads() {
    let opts = RenderOptions {
        address: Some("192.0.2.2:80".parse().unwrap()),
        ..RenderOptions::default()
    };
    for cmd in [
        "oha http://127.0.0.1/",
        "wrk http://127.0.0.1/",
        "ab http://127.0.0.1/",
        "ab -k -t 5 -c 4 http://127.0.0.1/",
        "hey -q 3 http://127.0.0.1/",
        "hey -q 3 -disable-keepalive http://127.0.0.1/",
        "k6 run s.js",
        "k6 run --vus 20 -d 1m --no-vu-connection-reuse s.js",
        "memtier_benchmark",
        "redis-benchmark -k 0",
        "httperf",
    ] {
        let text = tools::render(&parse(cmd), &opts).unwrap();
        if let Err(e) = scenario::parse("t.toml", &text) {
            panic!("{cmd}: {e}\n{text}");
        }
    }
}

// ---- no panic -------------------------------------------------------------------------------

fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("-c".to_string()),
        Just("-n".to_string()),
        Just("-z".to_string()),
        Just("-t".to_string()),
        Just("-k".to_string()),
        Just("-q".to_string()),
        Just("--rate".to_string()),
        Just("--reconnect-interval".to_string()),
        Just("--disable-keepalive".to_string()),
        Just("-disable-keepalive=false".to_string()),
        Just("run".to_string()),
        Just("http://127.0.0.1:8080/".to_string()),
        Just("0".to_string()),
        Just("18446744073709551615".to_string()),
        "[0-9]{1,25}",
        "[0-9]{1,6}(\\.[0-9]{0,12})?(ns|us|ms|s|m|h|x)?",
        "-{0,2}[a-z-]{0,12}(=[a-z0-9.:/]{0,8})?",
        "(https?|ftp)://[a-z0-9.:@\\[\\]]{0,20}(/.*)?",
        ".{0,12}",
    ]
}

fn argv() -> impl Strategy<Value = Vec<String>> {
    let program = prop_oneof![
        Just("oha".to_string()),
        Just("wrk".to_string()),
        Just("ab".to_string()),
        Just("hey".to_string()),
        Just("k6".to_string()),
        Just("memtier_benchmark".to_string()),
        Just("redis-benchmark".to_string()),
        Just("httperf".to_string()),
        ".{0,8}",
    ];
    (program, proptest::collection::vec(word(), 0..8)).prop_map(|(p, mut rest)| {
        rest.insert(0, p);
        rest
    })
}

/// A program, its value flags, its switches and its target.
type ToolFlags = (&'static str, Words, Words, Words);
type Words = &'static [&'static str];

/// Each tool's value flags, switches and target, for [`plausible_argv`].
const FLAGS: [ToolFlags; 8] = [
    (
        "oha",
        &["-c", "-n", "-z", "-q"],
        &["--disable-keepalive"],
        &["http://127.0.0.1:8080/"],
    ),
    (
        "wrk",
        &["-t", "-c", "-d", "--threads"],
        &["--latency"],
        &["https://192.0.2.2/"],
    ),
    ("ab", &["-c", "-n", "-t"], &["-k"], &["127.0.0.1:8000/"]),
    (
        "hey",
        &["-c", "-n", "-z", "-q"],
        &["-disable-keepalive"],
        &["http://localhost/"],
    ),
    (
        "k6",
        &["--vus", "-u", "--duration", "-d", "-i", "--rps"],
        &["--no-connection-reuse", "--no-vu-connection-reuse"],
        &["run", "s.js"],
    ),
    (
        "memtier_benchmark",
        &[
            "-s",
            "-p",
            "-t",
            "-c",
            "-n",
            "--test-time",
            "--reconnect-interval",
        ],
        &["--hide-histogram"],
        &[],
    ),
    (
        "redis-benchmark",
        &["-h", "-p", "-c", "-n", "-k"],
        &["-q"],
        &[],
    ),
    (
        "httperf",
        &["--server", "--port", "--num-conns", "--num-calls", "--rate"],
        &["--close-with-reset"],
        &[],
    ),
];

/// An argument vector of one tool's own flags with plausible values, then its target: many
/// are accepted, so the rendering is exercised too.
fn plausible_argv() -> impl Strategy<Value = Vec<String>> {
    let values = vec![
        "1",
        "2",
        "3",
        "10",
        "50",
        "128",
        "1000",
        "0",
        "10s",
        "1m30s",
        "2.5",
        "127.0.0.1",
        "192.0.2.2",
        "localhost",
        "example.com",
        "-1",
        "x",
    ];
    (0..FLAGS.len()).prop_flat_map(move |i| {
        let (program, flags, switches, target) = FLAGS[i];
        let pair = (
            prop::sample::select(flags),
            prop::sample::select(values.clone()),
            prop::option::weighted(0.3, prop::sample::select(switches)),
        );
        prop::collection::vec(pair, 0..4).prop_map(move |pairs| {
            let mut argv = vec![program.to_string()];
            for (flag, value, switch) in pairs {
                argv.extend([flag.to_string(), value.to_string()]);
                argv.extend(switch.map(str::to_string));
            }
            argv.extend(target.iter().map(|t| t.to_string()));
            argv
        })
    })
}

/// Any argument vector is read or refused with a message, and what is read renders to a
/// scenario that loads.
fn read_and_render(argv: &[String]) -> Result<(), TestCaseError> {
    match tools::parse_args(argv) {
        Err(e) => prop_assert!(!e.to_string().is_empty()),
        Ok(run) => {
            let opts = RenderOptions {
                address: Some(SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 2), 80)),
                ..RenderOptions::default()
            };
            let text = tools::render(&run, &opts).unwrap();
            let parsed = scenario::parse("t.toml", &text);
            prop_assert!(parsed.is_ok(), "{:?}\n{}", parsed.err(), text);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Nothing panics, whatever the words.
    #[test]
    fn random_argument_vectors_never_panic(argv in argv()) {
        read_and_render(&argv)?;
    }

    /// Nothing panics on the tools' own flags either, where most runs are read and rendered.
    #[test]
    fn plausible_argument_vectors_never_panic(argv in plausible_argv()) {
        read_and_render(&argv)?;
    }

    #[test]
    fn random_command_lines_never_panic(line in ".{0,60}") {
        let _ = tools::parse(&line).map_err(|e| e.to_string());
    }
}
