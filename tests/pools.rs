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
        "arrival = { kind = \"poisson\", rate = 500 }\n[workload.library]\nname = \"hikaricp\"\nminimumIdle = 2\nmaxLifetime = \"2s\"\nidleTimeout = \"100ms\"".to_string(),
        "arrival = { kind = \"poisson\", rate = 50 }\n[workload.library]\nname = \"dotnet-httpclient\"\nPooledConnectionIdleTimeout = \"40ms\"\nMaxConnectionsPerServer = 2".to_string(),
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

/// [`run`] with seed `seed`.
fn run_seeded(duration: &str, workload: &str, seed: u64) -> Report {
    let text = scenario(duration, workload).replace(
        "name = \"pools\"",
        &format!("name = \"pools\"\nseed = {seed}"),
    );
    let sc = scenario::parse("pools.toml", &text).unwrap_or_else(|e| panic!("{e}"));
    Simulation::new(&sc).checking(true).run()
}

/// HikariCP #2203's pool: maximumPoolSize = minimumIdle = 24, maxLifetime 600 s, the
/// lifetime variance factor `factor`, ten light requests a second (the pool mostly idle).
fn hikari_2203(factor: u32, duration: &str, seed: u64) -> Report {
    let w = format!(
        "service_time = \"5ms\"\narrival = {{ kind = \"constant\", rate = 10 }}\n\
         [workload.library]\nname = \"hikaricp\"\nmaximumPoolSize = 24\nmaxLifetime = 600000\n\
         lifeTimeVarianceFactor = {factor}"
    );
    run_seeded(duration, &w, seed)
}

/// The seconds (1 s bins) after the first in which connections were established, and how
/// many: a pool replaces a connection the instant it closes one, so these are its closes.
fn replacements(r: &Report) -> Vec<(u64, u64)> {
    r.series
        .iter()
        .filter(|b| b.t_s >= 1.0 && b.established > 0)
        .map(|b| (b.t_s as u64, b.established))
        .collect()
}

/// HikariCP #2203 ("Max-life-time expire cause application latency"): 24 connections, 10 min
/// maxLifetime, a HikariCP before 28f81da4 (2.5 % variance). The reporter's pool reached
/// MariaDB over a Unix socket to MaxScale; this replays the pool's behaviour over TCP.
///
/// HikariCP draws each connection's lifetime at creation, 600 s − U[0, 600 s / factor) in
/// whole ms, and replaces a closed connection at once (`closeConnection` → `fillPool`), one
/// at a time, each ready 1.5 RTT (1.5 ms) after its connect(). The 24 first connections are
/// opened within 36 ms of the start, so generation k closes within [600k − 15k, 600k + 0.1] s
/// with factor 40: three bunches of 24, each within 15 s, in 1900 s.
#[test]
fn hikaricp_2203_the_whole_pool_is_recycled_within_15_s_every_10_minutes() {
    for seed in 1..=4 {
        let r = hikari_2203(40, "1900s", seed);
        let p = pool(&r);
        assert_eq!(r.series[0].established, 24, "the pool fills at the start");
        assert_eq!((p.opened, p.closed_lifetime), (24 + 3 * 24, 3 * 24));
        assert_eq!(p.closed_idle_timeout + p.closed_idle_full, 0);
        let closes = replacements(&r);
        for k in 1..=3u64 {
            let g: Vec<_> = closes
                .iter()
                .filter(|&&(t, _)| t + 300 >= 600 * k && t < 600 * k + 300)
                .collect();
            assert_eq!(g.iter().map(|b| b.1).sum::<u64>(), 24, "window {k}: {g:?}");
            let (first, last) = (g[0].0, g[g.len() - 1].0);
            assert!(first >= 600 * k - 15 * k && last <= 600 * k, "{g:?}");
            // Generation 1 within one 15 s draw: at most 15 s from first to last.
            if k == 1 {
                assert!(last - first <= 15, "{g:?}");
            }
        }
        // All 24 closes of a generation fall within the 60 s TIME-WAIT: 24 client
        // TIME-WAITs at once, none on the server.
        assert_eq!(r.summary.time_wait.peak_client, 24);
        assert_eq!(r.summary.time_wait.peak_server, 0);
        // The pool never empties: each close is replaced at once, so at every bin edge at
        // least 24 − 2 connections are established (a dip of k needs k closes within
        // k × 1.5 ms).
        let low = r.series[1..]
            .iter()
            .map(|b| b.established_sockets_client)
            .min();
        assert!(low >= Some(22), "{low:?}");
    }
}

/// The same pool after 28f81da4 (factor 4, 25 %): the first generation closes over
/// [450, 600] s, spread over more than 15 s (24 draws within 15 s of 150 s: probability
/// below 10⁻²¹), and never all 24 in one TIME-WAIT period (all 24 within 60 s of 150 s:
/// below 10⁻⁷).
#[test]
fn hikaricp_2203_with_25_percent_jitter_the_closes_spread_over_150_s() {
    for seed in 1..=4 {
        let r = hikari_2203(4, "700s", seed);
        let p = pool(&r);
        assert_eq!((p.opened, p.closed_lifetime), (48, 24));
        let closes = replacements(&r);
        assert_eq!(closes.iter().map(|b| b.1).sum::<u64>(), 24);
        let (first, last) = (closes[0].0, closes[closes.len() - 1].0);
        assert!(first >= 450 && last <= 600, "{closes:?}");
        assert!(last - first > 15, "{closes:?}");
        assert!(r.summary.time_wait.peak_client < 24, "seed {seed}");
    }
}

#[test]
fn hikaricp_defaults_keep_a_fixed_pool_of_ten() {
    // maximumPoolSize 10, minimumIdle = maximumPoolSize: 10 opened at the start, never
    // more, idleTimeout inactive (minimumIdle = maximumPoolSize), the first lifetime
    // (30 min − U[0, 7.5 min)) not before 1350 s.
    let w = "service_time = \"5ms\"\narrival = { kind = \"closed\", concurrency = 4 }\n\
             [workload.library]\nname = \"hikaricp\"";
    let r = run("1300s", w);
    let p = pool(&r);
    assert_eq!(p.opened, 10);
    assert_eq!(
        p.closed_idle_timeout + p.closed_lifetime + p.closed_idle_full,
        0
    );
    assert_eq!(r.summary.time_wait.peak, 0);
}

#[test]
fn hikaricp_idle_timeout_closes_down_to_minimum_idle() {
    // minimumIdle 2 of 10: 2 opened at the start; a burst of 10 one-second requests at 1 s
    // takes the 2 and makes 8 wait, each waiter getting a new connection (addBagItem),
    // opened one at a time 1.5 ms apart, all before the first 2 come back. From about 2 s
    // all 10 are idle; idleTimeout 10 min closes 8 of them, down to minimumIdle, at the
    // housekeeper's first run after 602 s (runs at 0.1 s + 30 s × k): 630.1 s.
    let w = "service_time = \"1s\"\narrival = { kind = \"burst\", bursts = [{ at = \"1s\", count = 10 }] }\n\
             [workload.library]\nname = \"hikaricp\"\nminimumIdle = 2";
    let r = run("1000s", w);
    let p = pool(&r);
    assert_eq!(r.series[0].established, 2);
    assert_eq!((p.opened, p.waited, p.requests), (10, 8, 10));
    assert_eq!(p.closed_idle_timeout, 8);
    // The 8 closes at 630.1 s: 8 client TIME-WAITs from then (602 s with an exact timer).
    let tw: Vec<_> = r
        .series
        .iter()
        .filter(|b| b.time_wait_client > 0)
        .map(|b| b.t_s as u64)
        .collect();
    assert_eq!(tw.first(), Some(&630), "{tw:?}");
    assert_eq!(r.summary.time_wait.peak_client, 8);
}

#[test]
fn dotnet_httpclient_per_request_leaves_a_client_time_wait_per_request() {
    // `using var c = new HttpClient()` per request: a connection each, disposed (closed by
    // the client) after its response.
    let w = "arrival = { kind = \"closed\", concurrency = 1 }\nlimit = { requests = 100 }\n\
             [workload.library]\nname = \"dotnet-httpclient\"\nshared = false";
    let r = run("5s", w);
    let p = pool(&r);
    assert_eq!(
        (p.opened, p.requests, p.closed_no_keep_alive),
        (100, 100, 100)
    );
    assert_eq!(r.summary.time_wait.peak_client, 100);
    assert_eq!(r.summary.time_wait.peak_server, 0);
    // A shared client: one connection for all 100.
    let shared = w.replace("shared = false", "shared = true");
    let r = run("5s", &shared);
    assert_eq!((pool(&r).opened, pool(&r).requests), (1, 100));
    assert_eq!(r.summary.time_wait.peak, 0);
}

#[test]
fn dotnet_pooled_connection_lifetime_renews_the_connection_every_2_minutes() {
    // One requester, always busy, PooledConnectionLifetime 2 min, no jitter: the connection
    // is closed on the first return after 120 s (CheckExpirationOnReturn) and the next
    // request opens another: closes at 120, 240, 360, 480, 600 s.
    let w = "service_time = \"10ms\"\narrival = { kind = \"closed\", concurrency = 1 }\n\
             [workload.library]\nname = \"dotnet-httpclient\"\nPooledConnectionLifetime = \"2m\"";
    let r = run("610s", w);
    let p = pool(&r);
    assert_eq!((p.opened, p.closed_lifetime), (6, 5));
    assert_eq!(
        replacements(&r).iter().map(|b| b.0).collect::<Vec<_>>(),
        vec![120, 240, 360, 480, 600]
    );
}

#[test]
fn dotnet_idle_timeout_acts_at_the_scavengers_15_s_ticks() {
    // A request every 100 s; PooledConnectionIdleTimeout 1 min (.NET 6+), scavenged every
    // 60 / 4 = 15 s: the connection idle since ~0.002 s is past its timeout at 60.002 s and
    // closed by the client at the next tick, 75 s (Go's exact timer would close at 60 s).
    let w = "arrival = { kind = \"constant\", rate = 0.01 }\n\
             [workload.library]\nname = \"dotnet-httpclient\"";
    let r = run("1000s", w);
    let p = pool(&r);
    assert_eq!((p.requests, p.opened, p.closed_idle_timeout), (10, 10, 10));
    let first_tw = r
        .series
        .iter()
        .find(|b| b.time_wait_client > 0)
        .map(|b| b.t_s);
    assert_eq!(first_tw, Some(75.0));
    // An infinite idle timeout keeps the one connection.
    let r = run(
        "1000s",
        &format!("{w}\nPooledConnectionIdleTimeout = \"infinite\""),
    );
    assert_eq!((pool(&r).opened, pool(&r).requests), (1, 10));
}

#[test]
fn dotnet_and_hikaricp_options_are_checked() {
    let base = "arrival = { kind = \"closed\", concurrency = 1 }\n[workload.library]\n";
    let e = err(&format!(
        "{base}name = \"dotnet-httpclient\"\nPooledConnectionIdleTimeOut = \"1m\""
    ));
    assert!(
        e.contains("did you mean \"PooledConnectionIdleTimeout\""),
        "{e}"
    );
    let e = err(&format!(
        "{base}name = \"dotnet-httpclient\"\nPooledConnectionLifetime = 120"
    ));
    assert!(e.contains("expected \"infinite\" or a duration"), "{e}");
    let e = err(&format!(
        "{base}name = \"hikaricp\"\nlifeTimeVarianceFactor = 100"
    ));
    assert!(
        e.contains("lifeTimeVarianceFactor") && e.contains("2–40"),
        "{e}"
    );
    let e = err(&format!("{base}name = \"hikaricp\"\nmaxLifetime = -1"));
    assert!(e.contains("expected milliseconds"), "{e}");
    let e = err(&format!("{base}name = \"hikaricp\"\nmaxPoolSize = 4"));
    assert!(e.contains("did you mean \"maximumPoolSize\""), "{e}");
}

/// A shipped scenario (`scenarios/`), run as its comments
/// say.
fn shipped(name: &str) -> Report {
    let path = format!("{}/scenarios/{name}.toml", env!("CARGO_MANIFEST_DIR"));
    let sc = scenario::load(std::path::Path::new(&path)).unwrap_or_else(|e| panic!("{e}"));
    Simulation::new(&sc).run()
}

#[test]
fn the_shipped_pool_scenarios_give_what_their_comments_say() {
    let r = shipped("hikaricp-2203");
    let p = pool(&r);
    assert_eq!((p.opened, p.closed_lifetime), (96, 72));
    assert_eq!(r.summary.time_wait.peak_client, 24);
    let r = shipped("dotnet-httpclient-per-request");
    assert_eq!(r.summary.requests.completed, 2 * 28_232);
    assert_eq!(r.summary.time_wait.peak_client, 28_232);
    let first = r.summary.first_failure_s.expect("ports run out");
    assert!((first - 56.464).abs() < 1e-9, "{first}");
}

#[test]
fn hikaricp_housekeeper_refills_to_minimum_idle_every_30_s() {
    // minimumIdle 2 of 10: 2 opened at the start. At 5 s two long requests borrow both (no
    // request waits, so none is added then); idle falls to 0 < minimumIdle, and the
    // housekeeper's next `fillPool`, at 30.1 s, opens 2.
    let w = "service_time = \"100s\"\narrival = { kind = \"burst\", bursts = [{ at = \"5s\", count = 2 }] }\n\
             [workload.library]\nname = \"hikaricp\"\nminimumIdle = 2";
    let r = run("40s", w);
    let p = pool(&r);
    assert_eq!((p.opened, p.waited), (4, 0));
    let opened: Vec<_> = r
        .series
        .iter()
        .filter(|b| b.established > 0)
        .map(|b| (b.t_s as u64, b.established))
        .collect();
    assert_eq!(opened, vec![(0, 2), (30, 2)]);
}

/// The Go default at Poisson 1,500 requests/s (`scenarios/go-pool-default.toml`): the pool
/// opens about one connection per three requests, just over the 470.5 /s that 28,232 ports
/// over a 60 s TIME-WAIT sustain, so connect() fails before the first TIME-WAIT ends (60 s):
/// at ~28,232 / open rate. A request whose dial fails has no other connection: under
/// `on_error = "count"` it is a failed request, so completed + failed is every request that
/// arrived. With `MaxIdleConnsPerHost = 64` (`go-pool-tuned.toml`) the same arrivals
/// complete with a few dozen connections.
#[test]
fn the_go_pool_scenarios_run_out_before_the_first_time_wait_ends_and_the_tuned_pool_does_not() {
    let d = shipped("go-pool-default");
    let t = shipped("go-pool-tuned");
    let first = d.summary.first_failure_s.expect("the default runs out");
    let opened_before = d.series.iter().take(50).map(|b| b.established).sum::<u64>() as f64;
    let rate = opened_before / 50.0;
    assert!(rate > 28_232.0 / 60.0, "{rate}");
    let predicted = 28_232.0 / rate;
    assert!(
        first < 60.0 && (first - predicted).abs() < 2.0,
        "{first} vs {predicted}"
    );
    let failed = d.summary.connections.failed;
    assert_eq!(d.summary.requests.failed, failed);
    // The same arrivals (one stream); a few are in flight at the end of either run.
    let (done, arrived) = (
        d.summary.requests.completed + failed,
        t.summary.requests.completed,
    );
    assert!(done.abs_diff(arrived) <= 50, "{done} vs {arrived}");
    assert_eq!(t.summary.connections.failed, 0);
    assert!(t.summary.connections.attempted < 100);
}

/// A HikariCP pool that cannot connect (100 connections, 30 s lifetime, 300 ports: 100 live
/// plus ~3.8 /s × 60 s in TIME-WAIT) retries with one pending retry, every 250 ms, however
/// many closes and requests ask it to fill: its failed connects stay under one per 250 ms of
/// exhaustion plus one per trigger (a close), and none of them is a request: the requests
/// wait and complete.
#[test]
fn a_hikaricp_pool_that_cannot_connect_retries_once_per_250_ms_and_loses_no_request() {
    let text = scenario(
        "240s",
        "service_time = \"5ms\"\narrival = { kind = \"poisson\", rate = 200 }\n\
         on_error = { action = \"count\" }\n\
         [workload.library]\nname = \"hikaricp\"\nmaximumPoolSize = 100\nmaxLifetime = \"30s\"",
    )
    .replace(
        "knobs = { \"net.ipv4.tcp_tw_reuse\" = 0 }",
        "knobs = { \"net.ipv4.tcp_tw_reuse\" = 0, \"net.ipv4.ip_local_port_range\" = \"60000 60299\" }",
    );
    let sc = scenario::parse("pools.toml", &text).unwrap_or_else(|e| panic!("{e}"));
    let r = Simulation::new(&sc).run();
    let p = pool(&r);
    let first = r.summary.first_failure_s.expect("300 ports run out");
    let failed = r.summary.connections.failed as f64;
    let bound = (240.0 - first) / 0.25 + p.closed_lifetime as f64 + 1.0;
    assert!(failed > 0.0 && failed <= bound, "{failed} > {bound}");
    assert_eq!(r.summary.requests.failed, 0);
    let arrivals = p.requests;
    assert!(r.summary.requests.completed + 100 >= arrivals, "{arrivals}");
}

/// `closer = "server"` says who closes a connection that carries no more requests; a pool
/// that keeps its connections alive closes them itself, so one connection carries every
/// request of a loop of one (it was closed by the server after each response).
#[test]
fn a_kept_alive_pool_keeps_its_connection_whatever_the_workload_closer() {
    let w = "service_time = \"1ms\"\narrival = { kind = \"closed\", concurrency = 1 }\n\
             limit = { requests = 100 }\ncloser = \"server\"\n\
             [workload.library]\nname = \"go-net-http\"";
    let r = run("10s", w);
    let p = pool(&r);
    assert_eq!((p.opened, p.requests, p.closed_by_server), (1, 100, 0));
    assert_eq!(r.summary.time_wait.peak_server, 0);
}

/// Client ports for 2 connections, a cap of 2 per host, no keep-alive, 10 requests at once:
/// 2 dial, 8 wait. Each close leaves a client TIME-WAIT on its port, so the waiter that
/// dials in its place fails at once, and so does every one after it: all 10 requests end
/// (2 completed, 8 failed), none is left waiting for a connection that will never come.
#[test]
fn waiting_requests_all_end_when_the_ports_run_out() {
    let text = scenario(
        "30s",
        "service_time = \"1ms\"\narrival = { kind = \"burst\", bursts = [{ at = \"0s\", count = 10 }] }\n\
         on_error = { action = \"count\" }\n\
         [workload.pool]\nkeep_alive = false\nmax_conns_per_host = 2",
    )
    .replace(
        "knobs = { \"net.ipv4.tcp_tw_reuse\" = 0 }",
        "knobs = { \"net.ipv4.tcp_tw_reuse\" = 0, \"net.ipv4.ip_local_port_range\" = \"60000 60001\" }",
    );
    let sc = scenario::parse("pools.toml", &text).unwrap_or_else(|e| panic!("{e}"));
    let r = Simulation::new(&sc).checking(true).run();
    let q = r.summary.requests;
    assert_eq!((q.completed, q.failed), (2, 8));
}

/// The pool's own connects (HikariCP's adder) are not requests: when they fail, the
/// workload's `on_error` does not run. With `stop`, the workload goes on (the pool retries
/// every 250 ms and the requests wait); with `retry`, no request is made up to retry.
#[test]
fn the_pools_own_failed_connects_run_no_request_policy() {
    for policy in [
        "{ action = \"stop\" }",
        "{ action = \"retry\", delay = \"10ms\", max_retries = 3 }",
    ] {
        let text = scenario(
            "240s",
            &format!(
                "service_time = \"5ms\"\narrival = {{ kind = \"poisson\", rate = 200 }}\n\
                 on_error = {policy}\n\
                 [workload.library]\nname = \"hikaricp\"\nmaximumPoolSize = 100\nmaxLifetime = \"30s\""
            ),
        )
        .replace(
            "knobs = { \"net.ipv4.tcp_tw_reuse\" = 0 }",
            "knobs = { \"net.ipv4.tcp_tw_reuse\" = 0, \"net.ipv4.ip_local_port_range\" = \"60000 60299\" }",
        );
        let sc = scenario::parse("pools.toml", &text).unwrap_or_else(|e| panic!("{e}"));
        let r = Simulation::new(&sc).run();
        assert!(r.summary.connections.failed > 0, "{policy}");
        assert_eq!(r.workloads[0].stopped_s, None, "{policy}");
        assert_eq!(r.summary.requests.failed, 0, "{policy}");
        assert_eq!(r.summary.connections.retries, 0, "{policy}");
    }
}
