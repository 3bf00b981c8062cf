//! Client pools on the wire (`[workload.pool]`, `[workload.library]`): the replays of
//! golang/go #13801 and ApeWorX/web3.py #152, and the pool's timers. Expected numbers follow
//! from the library's rule (notes/client-libraries.md) and the workload's timing: a new
//! connection's request is answered 2 RTT + service after the request (handshake, then the
//! request), a reused one's 1 RTT + service.

use portsim::report::{PoolCounts, Report};
use portsim::scenario;
use portsim::sim::Simulation;

/// A Linux client (default range 32768–60999, 60 s TIME-WAIT, `tcp_tw_reuse = 0`) and a
/// server; the workload's lines appended to its `[[workload]]`.
fn scenario(duration: &str, workload: &str) -> String {
    format!(
        r#"
[scenario]
name = "pools"
duration = "{duration}"
bin = "1s"

[[host]]
name = "c"
ips = ["10.0.0.1"]
knobs = {{ "net.ipv4.tcp_tw_reuse" = 0 }}

[[host]]
name = "s"
ips = ["10.0.0.2"]
listen = ["10.0.0.2:80"]

[[workload]]
name = "w"
client = "c"
destinations = ["10.0.0.2:80"]
rtt = "1ms"
{workload}
"#
    )
}

fn run(duration: &str, workload: &str) -> Report {
    let text = scenario(duration, workload);
    let sc = scenario::parse("pools.toml", &text).unwrap_or_else(|e| panic!("{e}"));
    // Checking mode: the invariants hold after every event.
    Simulation::new(&sc).checking(true).run()
}

fn err(workload: &str) -> String {
    let text = scenario("1s", workload);
    match scenario::parse("pools.toml", &text) {
        Ok(_) => panic!("accepted: {workload}"),
        Err(e) => e.to_string(),
    }
}

fn pool(r: &Report) -> PoolCounts {
    r.workloads[0]
        .pool
        .expect("a pool workload reports its pool")
        .counts
}

/// `rounds` rounds of `n` requests at once, one a second: the synchronized rounds of
/// golang/go #13801 (each round starts after the previous one has finished).
fn rounds(n: u64, rounds: u64) -> String {
    let bursts: Vec<String> = (0..rounds)
        .map(|k| format!("{{ at = \"{k}s\", count = {n} }}"))
        .collect();
    format!(
        "service_time = \"10ms\"\narrival = {{ kind = \"burst\", bursts = [{}] }}",
        bursts.join(", ")
    )
}

#[test]
fn go_default_reuses_two_and_opens_eight_per_round_of_ten() {
    let w = format!(
        "{}\n[workload.library]\nname = \"go-net-http\"",
        rounds(10, 10)
    );
    let r = run("10s", &w);
    let p = pool(&r);
    // DefaultMaxIdleConnsPerHost = 2: after each round 2 go idle and the client closes 8
    // (errTooManyIdleHost); each later round reuses the 2 and dials 8.
    assert_eq!(p.requests, 100);
    assert_eq!(p.opened, 10 + 9 * 8);
    assert_eq!(p.closed_idle_full, 10 * 8);
    assert_eq!(p.closed_by_server, 0);
    for b in &r.series[1..] {
        assert_eq!(b.established, 8, "round at {} s", b.t_s);
    }
    assert_eq!(r.series[0].established, 10);
    // The client closed them: 80 TIME-WAITs on the client (60 s each, none ended in 10 s).
    assert_eq!(r.summary.time_wait.peak_client, 80);
    assert_eq!(r.summary.time_wait.peak_server, 0);
}

#[test]
fn go_with_ten_idle_per_host_opens_nothing_after_the_first_round() {
    let w = format!(
        "{}\n[workload.library]\nname = \"go-net-http\"\nMaxIdleConnsPerHost = 10",
        rounds(10, 10)
    );
    let r = run("10s", &w);
    let p = pool(&r);
    assert_eq!((p.opened, p.requests, p.closed_idle_full), (10, 100, 0));
    assert!(r.series[1..].iter().all(|b| b.established == 0));
    assert_eq!(r.summary.time_wait.peak, 0);
}

#[test]
fn go_max_conns_per_host_makes_requests_wait_instead_of_dialing() {
    // MaxConnsPerHost = 2: one round of 10 opens 2; the other 8 wait and are handed the
    // returning connections (late binding), 2 at a time.
    let w = format!(
        "{}\n[workload.library]\nname = \"go-net-http\"\nMaxConnsPerHost = 2",
        rounds(10, 1)
    );
    let r = run("2s", &w);
    let p = pool(&r);
    assert_eq!((p.opened, p.requests, p.waited), (2, 10, 8));
    // 5 requests in turn on each connection: the last answered at 2 ms + 4 × 11 ms.
    assert_eq!(r.summary.requests.completed, 10);
}

#[test]
fn requests_without_a_session_fail_at_request_28233() {
    // One request at a time, a connection each, closed by the client after the response
    // (api.py's `with sessions.Session()`): a TIME-WAIT per request. 28,232 ports
    // (61000 − 32768) are all in TIME-WAIT within 60 s (2 ms a request), so connect() of
    // request 28,233 fails with EADDRNOTAVAIL (web3.py #152).
    let w = "arrival = { kind = \"closed\", concurrency = 1 }\non_error = { action = \"stop\" }\n\
             [workload.library]\nname = \"python-requests\"";
    let r = run("60s", w);
    let wl = &r.workloads[0];
    assert_eq!(wl.attempted, 28_233);
    assert_eq!(wl.requests_completed, 28_232);
    assert_eq!(wl.errors.get("EADDRNOTAVAIL"), Some(&1));
    // Request k starts at 2k ms: the 28,233rd at 56.464 s.
    assert_eq!(wl.first_failure_s, Some(56.464));
    let p = pool(&r);
    assert_eq!(p.opened, 28_232);
    assert_eq!(p.closed_no_keep_alive, 28_232);
    assert_eq!(r.summary.time_wait.peak_client, 28_232);
}

#[test]
fn requests_with_a_session_keeps_one_connection() {
    let w = "arrival = { kind = \"closed\", concurrency = 1 }\n\
             [workload.library]\nname = \"python-requests\"\nsession = true";
    let r = run("10s", w);
    let p = pool(&r);
    assert_eq!(p.opened, 1);
    assert_eq!(r.workloads[0].attempted, 1);
    // 2 ms for the first request, 1 ms (one RTT) for each after it.
    assert!(p.requests >= 9_998, "{}", p.requests);
    assert_eq!(r.summary.time_wait.peak, 0);
}

#[test]
fn an_idle_timeout_shorter_than_the_gap_opens_a_connection_per_request() {
    // A request every 100 s; IdleConnTimeout 90 s closes each connection (the client)
    // 90 s after its response: 10 requests, 10 connections, 10 client TIME-WAITs, one at
    // a time (each lasts 60 s).
    let w = "arrival = { kind = \"constant\", rate = 0.01 }\n\
             [workload.library]\nname = \"go-net-http\"";
    let r = run("1000s", w);
    let p = pool(&r);
    assert_eq!((p.requests, p.opened, p.closed_idle_timeout), (10, 10, 10));
    assert_eq!(r.summary.time_wait.peak_client, 1);
    assert_eq!(r.summary.time_wait.peak_server, 0);
}

#[test]
fn nginx_keepalive_timeout_closes_first_from_the_server() {
    // nginx keepalive_timeout 75 s < Go's 90 s: the server closes each idle connection,
    // so the TIME-WAITs are the server's (notes §6).
    let w = "arrival = { kind = \"constant\", rate = 0.01 }\n\
             [workload.library]\nname = \"go-net-http\"\n\
             [workload.pool]\nserver_keepalive_timeout = \"75s\"";
    let r = run("1000s", w);
    let p = pool(&r);
    assert_eq!((p.requests, p.opened, p.closed_by_server), (10, 10, 10));
    assert_eq!(p.closed_idle_timeout, 0);
    assert_eq!(r.summary.time_wait.peak_server, 1);
    assert_eq!(r.summary.time_wait.peak_client, 0);
}

#[test]
fn nginx_keepalive_requests_closes_every_thousandth() {
    // One requester, 1 ms per request on a kept connection: keepalive_requests = 1000 makes
    // the server close after each 1000th response; each connection carries exactly 1000.
    let w = "arrival = { kind = \"closed\", concurrency = 1 }\nlimit = { requests = 5000 }\n\
             [workload.pool]\nserver_keepalive_requests = 1000";
    let r = run("60s", w);
    let p = pool(&r);
    assert_eq!((p.requests, p.opened, p.closed_by_server), (5000, 5, 5));
    assert_eq!(r.summary.time_wait.peak_server, 5);
}

#[test]
fn a_lifetime_closes_an_idle_connection_at_once() {
    // A request a second; max_lifetime 10.5 s: each connection is closed idle at 10.5 s of
    // age, the next request (on the next whole second) opens the next: at 0, 11, 22, 33.
    let w = "arrival = { kind = \"constant\", rate = 1 }\n\
             [workload.pool]\nmax_lifetime = \"10500ms\"";
    let r = run("35s", w);
    let p = pool(&r);
    assert_eq!((p.requests, p.opened, p.closed_lifetime), (35, 4, 3));
}

#[test]
fn the_report_gives_the_pool_in_json_and_text() {
    let w = format!(
        "{}\n[workload.library]\nname = \"go-net-http\"",
        rounds(10, 2)
    );
    let r = run("2s", &w);
    let json = serde_json::to_value(&r).unwrap();
    let p = &json["workloads"][0]["pool"];
    assert_eq!(p["opened"], 18);
    assert_eq!(p["closed_idle_full"], 16);
    assert_eq!(p["requests_per_connection"], 20.0 / 18.0);
    let text = r.to_text();
    assert!(
        text.contains("pool          w: 18 opened · 20 requests · 1.11 requests/connection"),
        "{text}"
    );
}

#[test]
fn bad_pool_keys_are_refused_with_what_is_allowed() {
    let e = err(
        "arrival = { kind = \"closed\", concurrency = 1 }\n[workload.pool]\nmax_idle_per_hots = 2",
    );
    assert!(e.contains("workload[0].pool.max_idle_per_hots"), "{e}");
    assert!(e.contains("\"max_idle_per_host\""), "{e}");
    let e = err(
        "arrival = { kind = \"closed\", concurrency = 1 }\n[workload.library]\nname = \"go-net-http\"\nMaxIdleConnPerHost = 2",
    );
    assert!(e.contains("workload[0].library.MaxIdleConnPerHost"), "{e}");
    assert!(e.contains("did you mean \"MaxIdleConnsPerHost\""), "{e}");
    let e =
        err("arrival = { kind = \"closed\", concurrency = 1 }\n[workload.library]\nname = \"go\"");
    assert!(e.contains("\"go-net-http\", \"python-requests\""), "{e}");
    let e = err(
        "arrival = { kind = \"closed\", concurrency = 1 }\nrequests_per_connection = 5\n[workload.pool]\nmax_idle = 3",
    );
    assert!(e.contains("workload[0].requests_per_connection"), "{e}");
    let e =
        err("arrival = { kind = \"closed\", concurrency = 1 }\n[workload.pool]\nidle_timeout = 90");
    assert!(e.contains("expected a duration"), "{e}");
    // On a fleet each instance would keep its own pool.
    let text = scenario(
        "1s",
        "arrival = { kind = \"poisson\", rate = 10 }\n[workload.pool]\nmax_idle = 3",
    )
    .replace("name = \"c\"\n", "name = \"c\"\ncount = 2\n")
    .replace("ips = [\"10.0.0.1\"]", "ips = [\"10.1.0.1\"]");
    let e = scenario::parse("pools.toml", &text)
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(e.contains("workload[0].pool") && e.contains("fleet"), "{e}");
}

#[test]
fn fast_paths_decline_pools_stepping_gives_the_same_report() {
    for w in [
        format!("{}\n[workload.library]\nname = \"go-net-http\"", rounds(10, 3)),
        "arrival = { kind = \"poisson\", rate = 50 }\n[workload.pool]\nmax_idle_per_host = 1\nidle_timeout = \"30ms\"".to_string(),
    ] {
        let text = scenario("3s", &w);
        let sc = scenario::parse("pools.toml", &text).unwrap();
        let json = |sim: Simulation| serde_json::to_string(&sim.run()).unwrap();
        let fast = json(Simulation::new(&sc));
        assert_eq!(fast, json(Simulation::new(&sc).stepping().stepping_segments()));
        assert!(fast.contains("\"pool\""));
    }
}

#[test]
fn go_max_idle_conns_closes_the_oldest_idle_connection_of_any_host() {
    // Rounds of 4 requests, alternating two destinations; MaxIdleConns = 3 over 2 per host:
    // after each round the oldest of the 4 idle connections is closed (idleLRU), so each
    // later round dials 1.
    let w = format!(
        "{}\n[workload.library]\nname = \"go-net-http\"\nMaxIdleConns = 3",
        rounds(4, 10)
    );
    let text = scenario("10s", &w)
        .replace(
            "destinations = [\"10.0.0.2:80\"]",
            "destinations = [\"10.0.0.2:80\", \"10.0.0.2:81\"]",
        )
        .replace(
            "listen = [\"10.0.0.2:80\"]",
            "listen = [\"10.0.0.2:80\", \"10.0.0.2:81\"]",
        );
    let sc = scenario::parse("pools.toml", &text).unwrap_or_else(|e| panic!("{e}"));
    let r = Simulation::new(&sc).checking(true).run();
    let p = pool(&r);
    assert_eq!((p.requests, p.opened, p.closed_idle_full), (40, 13, 10));
}

/// Seconds (1 s bins) in which the connections of 24 requesters, busy all the time, were
/// established after the first second, with `jitter` on a 600 s lifetime, seed `seed`.
fn reconnects(jitter: &str, seed: u64) -> Vec<(u64, u64)> {
    let w = format!(
        "service_time = \"100ms\"\narrival = {{ kind = \"closed\", concurrency = 24 }}\n\
         [workload.pool]\nmax_lifetime = \"600s\"\nlifetime_jitter = \"{jitter}\""
    );
    let text = scenario("700s", &w).replace(
        "name = \"pools\"",
        &format!("name = \"pools\"\nseed = {seed}"),
    );
    let sc = scenario::parse("pools.toml", &text).unwrap_or_else(|e| panic!("{e}"));
    let r = Simulation::new(&sc).run();
    assert_eq!(pool(&r).closed_lifetime, 24);
    r.series
        .iter()
        .filter(|b| b.t_s >= 1.0 && b.established > 0)
        .map(|b| (b.t_s as u64, b.established))
        .collect()
}

#[test]
fn a_lifetime_recycles_the_whole_pool_and_hikaricp_jitter_spreads_it() {
    // No jitter: 24 connections opened together all reach 600 s together (HikariCP #2203's
    // cliff): every one is replaced in one second.
    assert_eq!(reconnects("none", 1), vec![(600, 24)]);
    for seed in 1..=4 {
        // HikariCP 3.x–5.x: lifetime − U[0, 15 s): all 24 within [585, 601) s, spread over
        // several seconds (24 draws over 15 s leave fewer than 5 distinct seconds with
        // probability below 10⁻⁹).
        let r = reconnects("hikaricp", seed);
        assert!(r.iter().all(|&(t, _)| (585..=600).contains(&t)), "{r:?}");
        assert_eq!(r.iter().map(|b| b.1).sum::<u64>(), 24);
        assert!(r.len() >= 5, "{r:?}");
        // After 28f81da4: lifetime − U[0, 150 s).
        let r = reconnects("hikaricp-25%", seed);
        assert!(r.iter().all(|&(t, _)| (450..=600).contains(&t)), "{r:?}");
        assert_eq!(r.iter().map(|b| b.1).sum::<u64>(), 24);
    }
}
