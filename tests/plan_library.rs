//! `portsim plan` with a client library: the library's own settings as remedies, ranked with
//! the kernel's, and `plan --library NAME --concurrency N --rate R` without a file.
//!
//! The synthesized load is rounds of N requests at once every N / R seconds, on the Linux
//! default range (32768–60999: 28,232 ports, §1.1) with a 60 s TIME-WAIT (§2.1), for the
//! plan's horizon of four TIME-WAITs, 240 s. Library facts: notes/client-libraries.md §1 (Go
//! `MaxIdleConnsPerHost` 2 by default, `transport.go` `DefaultMaxIdleConnsPerHost`; a
//! returned connection beyond it is closed by the client, `tryPutIdleConn`), §2 (`requests`
//! without a Session: a connection per call, closed by the client, api.py).

use serde_json::Value;
use std::process::{Command, Output};

fn portsim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_portsim"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("portsim runs")
}

fn json(o: &Output) -> Value {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).expect("JSON")
}

fn plan(args: &[&str]) -> Value {
    let mut all = vec!["plan", "--profile", "linux", "--format", "json"];
    all.extend_from_slice(args);
    json(&portsim(&all))
}

fn titles(p: &Value) -> Vec<String> {
    p["remedies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["title"].as_str().unwrap().to_string())
        .collect()
}

const PORTS: u64 = 28_232;
const TIME_WAIT_S: u64 = 60;
const HORIZON_S: u64 = 4 * TIME_WAIT_S;

/// Go's default at 10 requests in flight and 500 /s: each round of 10 finds 2 idle
/// connections (the 2 the last round could return) and dials 8; the first dials 10. Rounds
/// every 20 ms over 240 s: 12,000, so 10 + 8 × 11,999 = 96,002 connects, 400 /s, each
/// closed by the client into a 60 s TIME-WAIT: 400 × 60 = 24,000 at once in the steady
/// state, under the 28,232 ports: no failure, but 15 % headroom (1 − 400 / 470.53), under the
/// 20 % the planner keeps, so remedies are offered and `MaxIdleConnsPerHost = 10` (the round)
/// leaves the 10 connections of the first round as the only ones: 100 % headroom.
#[test]
fn go_default_at_500_per_s_churns_400_connections_per_s_and_max_idle_10_keeps_ten() {
    let p = plan(&[
        "--library",
        "go-net-http",
        "--concurrency",
        "10",
        "--rate",
        "500/s",
    ]);
    let rounds = HORIZON_S * 500 / 10;
    let o = &p["outcome"];
    assert_eq!(o["attempted"], 10 + 8 * (rounds - 1));
    assert_eq!(o["failed"], 0);
    let pool = &p["pools"][0];
    let offered = pool["offered_per_s"].as_f64().unwrap();
    assert!((offered - 400.0).abs() < 0.1, "{offered}");
    let steady = pool["time_wait_steady"].as_f64().unwrap();
    assert!((steady - 24_000.0).abs() <= 1.0, "{steady}");
    let tw = o["time_wait_peak"].as_u64().unwrap();
    assert!((24_000..PORTS).contains(&tw), "{tw}");
    assert!(p["verdict"].as_str().unwrap().starts_with("fits, tightly"));
    let top = &p["remedies"][0];
    assert_eq!(top["title"], "Go net/http: MaxIdleConnsPerHost = 10");
    assert_eq!(top["fixes"], true);
    assert_eq!(top["outcome"]["attempted"], 10);
    assert_eq!(top["outcome"]["failed"], 0);
}

/// At 1000 /s the same churn is 800 connects/s, over the 470.53 /s the range sustains
/// (28,232 / 60 s), so it runs out: round k (every 10 ms) has opened 10 + 8k connections
/// in all, none back before its 60 s TIME-WAIT ends, and 10 + 8k > 28,232 first at
/// k = 3,528: the first EADDRNOTAVAIL at 35.28 s. Saturated, every port then carries one
/// connection per TIME-WAIT: about 28,232 × 240 / 60 = 112,928 established. The port count
/// does not depend on which ports the kernel draws: the same on every seed.
/// `MaxIdleConnsPerHost = 10` ranks first (a fix, of the least effort: the client's own
/// setting), in one list with the kernel's remedies.
#[test]
fn go_default_at_1000_per_s_runs_out_at_the_round_derived_and_the_library_fix_ranks_first() {
    let p = plan(&[
        "--library",
        "go-net-http",
        "--concurrency",
        "10",
        "--rate",
        "1000/s",
        "--seeds",
        "1..3",
    ]);
    let r = &p["outcome"]["replicates"];
    for (k, v) in [("first_failure_s", 35.28), ("attempted", 192_002.0)] {
        assert_eq!(r[k]["min"], v, "{k}");
        assert_eq!(r[k]["max"], v, "{k}");
    }
    let established = r["established"]["mean"].as_f64().unwrap();
    let saturated = (PORTS * HORIZON_S / TIME_WAIT_S) as f64;
    assert!(
        (established - saturated).abs() / saturated < 0.001,
        "{established} against {saturated}"
    );
    assert!(r["failed"]["min"].as_f64().unwrap() > 0.0);
    let t = titles(&p);
    assert_eq!(t[0], "Go net/http: MaxIdleConnsPerHost = 10", "{t:?}");
    let top = &p["remedies"][0];
    assert_eq!(top["fixes"], true);
    assert_eq!(top["outcome"]["failed"], 0);
    assert_eq!(top["outcome"]["replicates"]["attempted"]["max"], 10.0);
    // One ranked list: the kernel's remedies follow, each simulated.
    for kernel in [
        "Widen the ephemeral port range to 1024–65535",
        "Let connect() reuse TIME-WAIT four-tuples (Linux tcp_tw_reuse = 1)",
    ] {
        assert!(t.iter().any(|x| x == kernel), "{kernel} not in {t:?}");
    }
    assert!(
        p["remedies"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["outcome"].is_object())
    );
}

/// `requests.get` without a Session: a connection per request, 500 /s against the 470.53 /s
/// the range sustains. Rounds of 10 every 20 ms: after round r, 10 (r + 1) connections, over
/// 28,232 first at r = 2,823, 56.46 s. A Session keeps `pool_maxsize` 10 per host, the round:
/// 10 connections in all, and it ranks first. `pool_maxsize` is not proposed (10 already holds
/// the round), nor `pool_block` (the rounds bound what is in flight).
#[test]
fn requests_without_a_session_runs_out_and_use_a_session_ranks_first() {
    let p = plan(&[
        "--library",
        "python-requests",
        "--concurrency",
        "10",
        "--rate",
        "500/s",
    ]);
    assert_eq!(p["outcome"]["first_failure_s"], 56.46);
    let t = titles(&p);
    assert_eq!(t[0], "python-requests: use a Session", "{t:?}");
    assert!(!t.iter().any(|x| x.contains("pool_maxsize")), "{t:?}");
    let top = &p["remedies"][0];
    assert_eq!(top["fixes"], true);
    assert_eq!(top["outcome"]["failed"], 0);
    assert_eq!(top["outcome"]["attempted"], 10);
    assert_eq!(
        top["simulated_change"][0],
        "workload.requests.library.session = true"
    );
}

/// .NET with a new `HttpClient` per request (`shared = false`): a connection per request,
/// closed by the client (notes §3), so the same arithmetic as `requests` without a Session:
/// the first failure at round 2,823, 56.46 s. One shared client with
/// `PooledConnectionLifetime = 2 min` keeps the round's 10 connections and renews each once
/// every 2 minutes: within the 240 s horizon 10 + 10 connects, none failing; it ranks first.
#[test]
fn dotnet_client_per_request_runs_out_and_one_shared_client_ranks_first() {
    let p = plan(&[
        "--library",
        "dotnet-httpclient",
        "--option",
        "shared=false",
        "--concurrency",
        "10",
        "--rate",
        "500/s",
    ]);
    assert_eq!(p["outcome"]["first_failure_s"], 56.46);
    let t = titles(&p);
    assert_eq!(
        t[0], ".NET HttpClient: one shared client, PooledConnectionLifetime = 2 min",
        "{t:?}"
    );
    let top = &p["remedies"][0];
    assert_eq!(top["fixes"], true);
    assert_eq!(top["outcome"]["failed"], 0);
    assert_eq!(top["outcome"]["attempted"], 20);
}

/// HikariCP recycles its pool at `maxLifetime`: 100 connections with a 30 s lifetime (less
/// U[0, 7.5 s), the 25 % jitter) is 100 / 26.25 s ≈ 3.8 connects/s, each leaving a client
/// TIME-WAIT: 100 live + ~229 in TIME-WAIT over a 300-port range, so the range runs out.
/// `maxLifetime` back at its 30 min default opens the 100 once within the horizon, and it
/// ranks first, as the pool's own setting.
#[test]
fn hikaricp_with_a_short_lifetime_runs_out_and_the_default_lifetime_ranks_first() {
    let path = std::env::temp_dir().join(format!("portsim-hikari-{}.toml", std::process::id()));
    std::fs::write(
        &path,
        r#"[scenario]
name = "hikari-short-lifetime"
duration = "240s"

[[host]]
name = "app"
profile = "linux"
ips = ["10.0.0.1"]
knobs = { "net.ipv4.ip_local_port_range" = "60000 60299" }

[[host]]
name = "db"
profile = "linux"
ips = ["10.0.0.2"]
listen = ["10.0.0.2:3306"]

[[workload]]
name = "queries"
client = "app"
destinations = ["10.0.0.2:3306"]
arrival = { kind = "poisson", rate = 200 }
rtt = "500us"
service_time = "5ms"
on_error = { action = "count" }

[workload.library]
name = "hikaricp"
maximumPoolSize = 100
maxLifetime = "30s"
"#,
    )
    .unwrap();
    let o = portsim(&["plan", path.to_str().unwrap(), "--format", "json"]);
    std::fs::remove_file(&path).ok();
    let p = json(&o);
    assert!(p["outcome"]["failed"].as_u64().unwrap() > 0);
    let t = titles(&p);
    assert_eq!(
        t[0], "HikariCP: maxLifetime = 30 min (the default)",
        "{t:?}"
    );
    let top = &p["remedies"][0];
    assert_eq!(top["fixes"], true);
    assert_eq!(top["outcome"]["attempted"], 100);
}

/// A Session at 32 in flight with the default `pool_maxsize` 10: each round of 32 finds 10
/// idle and opens 22, so the Session alone is proposed no more (it has one), and
/// `pool_maxsize = 32` is: 32 connections in all.
#[test]
fn a_session_below_the_concurrency_gets_pool_maxsize_equal_to_it() {
    let p = plan(&[
        "--library",
        "python-requests",
        "--option",
        "session=True",
        "--concurrency",
        "32",
        "--rate",
        "1000/s",
        "--duration",
        "240s",
    ]);
    let rounds = HORIZON_S * 1000 / 32;
    assert_eq!(p["outcome"]["attempted"], 32 + 22 * (rounds - 1));
    let t = titles(&p);
    assert_eq!(t[0], "python-requests: a Session with pool_maxsize = 32");
    assert!(!t.iter().any(|x| x == "python-requests: use a Session"));
    assert_eq!(p["remedies"][0]["outcome"]["attempted"], 32);
}

/// A `[workload.pool]` without a library: the generic keys.
#[test]
fn a_generic_pool_gets_keep_alive_and_max_idle_per_host() {
    let scenario = r#"
[scenario]
name = "generic"
duration = "240s"
[[host]]
name = "server"
profile = "linux"
ips = ["192.0.2.1"]
listen = ["192.0.2.1:443"]
[[host]]
name = "client"
profile = "linux"
ips = ["198.51.100.10"]
[[workload]]
name = "api"
client = "client"
destinations = ["192.0.2.1:443"]
rtt = "200us"
service_time = "1ms"
arrival = { kind = "closed", concurrency = 8 }
[workload.pool]
keep_alive = false
"#;
    let dir = std::env::temp_dir().join(format!("portsim-planlib-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("generic.toml");
    std::fs::write(&file, scenario).unwrap();
    let p = json(&portsim(&[
        "plan",
        file.to_str().unwrap(),
        "--format",
        "json",
    ]));
    let t = titles(&p);
    assert_eq!(
        t[0], "Pool: keep-alive, 8 idle connections per host",
        "{t:?}"
    );
    assert_eq!(p["remedies"][0]["outcome"]["attempted"], 8);
    assert_eq!(p["remedies"][0]["outcome"]["failed"], 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

fn refused(args: &[&str]) -> String {
    let o = portsim(args);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(o.stdout.is_empty());
    err
}

#[test]
fn bad_library_flags_are_refused_with_the_flag_named() {
    let base = ["plan", "--concurrency", "10", "--rate", "500/s"];
    let with = |extra: &[&str]| {
        let mut a = base.to_vec();
        a.extend_from_slice(extra);
        refused(&a)
    };
    let e = with(&["--library", "go-net-htp"]);
    assert!(
        e.contains("--library: \"go-net-htp\": unknown; allowed: go-net-http, python-requests, dotnet-httpclient, hikaricp; did you mean \"go-net-http\"?"),
        "{e}"
    );
    let e = with(&[
        "--library",
        "go-net-http",
        "--option",
        "MaxIdleConnPerHost=10",
    ]);
    assert!(
        e.contains("--option MaxIdleConnPerHost=10: go-net-http option: unknown key; allowed:"),
        "{e}"
    );
    assert!(e.contains("did you mean \"MaxIdleConnsPerHost\""), "{e}");
    let e = with(&[
        "--library",
        "go-net-http",
        "--option",
        "MaxIdleConnsPerHost=many",
    ]);
    assert!(
        e.contains("--option MaxIdleConnsPerHost=many: go-net-http option:"),
        "{e}"
    );
    assert!(e.contains("expected an integer"), "{e}");
    let e = with(&[
        "--library",
        "python-requests",
        "--option",
        "name=go-net-http",
    ]);
    assert!(e.contains("the library is given by --library"), "{e}");
    // Rounds of 10 every 0.1 ms are shorter than one request (2 × 200 µs + 1 ms).
    let e = refused(&[
        "plan",
        "--library",
        "go-net-http",
        "--concurrency",
        "10",
        "--rate",
        "100000/s",
    ]);
    assert!(e.contains("--rate: rounds of 10 every 0.1 ms"), "{e}");
    let e = refused(&["plan", "--library", "go-net-http", "--rate", "500/s"]);
    assert!(e.contains("give --concurrency N and --rate R"), "{e}");
    let e = refused(&["plan", "--concurrency", "10", "--rate", "500/s"]);
    assert!(e.contains("give --library NAME too"), "{e}");
}

/// `--print-scenario` gives TOML `portsim run` loads, and the run shows what the plan
/// derived: the first failure at 35.28 s (seeds 4 and 5 here; the plan test took 1–3).
#[test]
fn the_printed_scenario_runs() {
    let o = portsim(&[
        "plan",
        "--library",
        "go-net-http",
        "--concurrency",
        "10",
        "--rate",
        "1000/s",
        "--profile",
        "linux",
        "--print-scenario",
    ]);
    assert!(o.status.success());
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(text.contains("[workload.library]\nname = \"go-net-http\""));
    assert!(text.starts_with("# portsim plan --library go-net-http"));
    let dir = std::env::temp_dir().join(format!("portsim-planlib-run-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("go.toml");
    std::fs::write(&file, &text).unwrap();
    for seed in ["4", "5"] {
        let r = json(&portsim(&[
            "run",
            file.to_str().unwrap(),
            "--format",
            "json",
            "--seed",
            seed,
        ]));
        let w = &r["workloads"][0];
        assert_eq!(w["first_failure_s"], 35.28, "seed {seed}");
        assert_eq!(w["attempted"], 192_002, "seed {seed}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// An open loop: Go's default under Poisson arrivals at 1,500 /s, each request holding a
/// connection 10 ms (2 × 1 ms RTT + 8 ms service). Little's law: L = 1,500 × 0.010 = 15 in
/// flight on average; the count in flight is Poisson (M/G/∞), so L + 3√L = 26.6 → 27 covers
/// 99.87 % of the time: `MaxIdleConnsPerHost = 27`, and with `MaxConnsPerHost = 27` too
/// (requests above wait instead of dialing). Both fix every seed (1–2) and rank above the
/// kernel's remedies.
#[test]
fn an_open_loop_gets_the_in_flight_count_littles_law_gives() {
    let scenario = r#"
[scenario]
name = "poisson"
duration = "240s"
[[host]]
name = "server"
profile = "linux"
ips = ["192.0.2.1"]
listen = ["192.0.2.1:443"]
[[host]]
name = "client"
profile = "linux"
ips = ["198.51.100.10"]
[[workload]]
name = "api"
client = "client"
destinations = ["192.0.2.1:443"]
rtt = "1ms"
service_time = "8ms"
arrival = { kind = "poisson", rate = 1500 }
[workload.library]
name = "go-net-http"
"#;
    let dir = std::env::temp_dir().join(format!("portsim-planlib-open-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("poisson.toml");
    std::fs::write(&file, scenario).unwrap();
    let p = json(&portsim(&[
        "plan",
        file.to_str().unwrap(),
        "--format",
        "json",
        "--seeds",
        "1..2",
    ]));
    std::fs::remove_dir_all(&dir).unwrap();
    let t = titles(&p);
    assert_eq!(
        t[..2],
        [
            "Go net/http: MaxIdleConnsPerHost = 27",
            "Go net/http: MaxIdleConnsPerHost = 27, MaxConnsPerHost = 27"
        ],
        "{t:?}"
    );
    for r in &p["remedies"].as_array().unwrap()[..2] {
        assert_eq!(r["fixes"], true);
        assert_eq!(r["outcome"]["replicates"]["failed"]["max"], 0.0);
    }
}
