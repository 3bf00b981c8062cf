//! The planner, sweeps, what-ifs, host import and the scenario schema.

use portsim::plan::sweep::{self, Sweep, SweepReport};
use portsim::plan::{self, LimitSource, Quick, RATE_TOLERANCE, import, whatif};
use portsim::report::group;
use portsim::workload::Closer;
use std::process::Command;

fn portsim(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_portsim"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("portsim runs")
}

fn quick(profile: &str, rate: f64) -> Quick {
    Quick {
        profile: profile.into(),
        server_profile: "linux".into(),
        rate: format!("{rate}/s"),
        poisson: false,
        client_ips: 1,
        destinations: 1,
        closer: Closer::Client,
        requests_per_connection: 1,
        rtt: "200us".into(),
        connection: None,
    }
}

fn httperf() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scenarios/httperf-error-99.toml"
    ))
    .unwrap()
}

/// Ports and TIME_WAIT of each kernel's defaults, from the reference (§1.1, §2.1, §3.1,
/// §3.2, §3.3, §3.4, §4), not from the profiles.
const KERNELS: [(&str, f64, f64); 4] = [
    ("linux", 60999.0 - 32768.0 + 1.0, 60.0),
    ("freebsd", 65535.0 - 10000.0 + 1.0, 60.0),
    ("macos", 65535.0 - 49152.0 + 1.0, 30.0),
    ("windows", 16384.0, 120.0),
];

#[test]
fn the_simulated_limit_agrees_with_ports_over_time_wait_on_every_kernel() {
    for (name, ports, tw) in KERNELS {
        let limit = ports / tw;
        let rate = (2.0 * limit).round();
        let text = plan::quick_scenario(&quick(name, rate)).unwrap();
        let p = plan::plan("(flags)", &text, &[]).unwrap();
        assert_eq!(p.now.pools.len(), 1, "{name}");
        let pool = &p.now.pools[0];
        assert!(
            (pool.formula_limit_per_s - limit).abs() < 1e-3,
            "{name}: {pool:?}"
        );
        let sim = pool.simulated_per_s.unwrap();
        assert!(
            (sim - limit).abs() / limit < 0.01,
            "{name}: simulated {sim} against {limit}"
        );
        assert!(pool.formula_error_percent.unwrap().abs() < 1.0, "{name}");
        assert_eq!(pool.offered_per_s, rate, "{name}");
        let exhausted = ports / rate;
        assert!(
            (pool.exhausted_at_s.unwrap() - exhausted).abs() < 1e-3,
            "{name}"
        );
        // The (ports + 1)-th connect of a constant stream starts at ports / rate.
        let first = p.now.outcome.first_failure_s.unwrap();
        assert!(
            (first - exhausted).abs() < 0.01,
            "{name}: {first} vs {exhausted}"
        );
        assert!((pool.failing_per_s - (rate - limit)).abs() < 1e-2, "{name}");
        assert_eq!(pool.time_wait_steady, ports.round(), "{name}");
        assert!(pool.headroom_percent.unwrap() < 0.0, "{name}");
        assert!(p.verdict.starts_with("runs out"), "{name}: {}", p.verdict);
    }
}

#[test]
fn below_the_limit_the_plan_gives_headroom_and_no_exhaustion() {
    let (ports, tw) = (28232.0, 60.0);
    let rate = 300.0;
    let text = plan::quick_scenario(&quick("linux", rate)).unwrap();
    let p = plan::plan("(flags)", &text, &[]).unwrap();
    let pool = &p.now.pools[0];
    let headroom = 100.0 * (ports / tw - rate) / (ports / tw);
    assert!((pool.headroom_percent.unwrap() - headroom).abs() < 0.05);
    assert_eq!(pool.exhausted_at_s, None);
    assert_eq!(pool.time_wait_steady, rate * tw);
    assert!((pool.simulated_per_s.unwrap() - rate).abs() / rate < 0.01);
    assert_eq!(p.now.outcome.failed, 0);
    assert!(p.remedies.is_empty() && p.not_recommended.is_empty());
    assert!(p.verdict.starts_with("fits"), "{}", p.verdict);
}

#[test]
fn where_the_formula_does_not_hold_the_plan_says_why() {
    // The server closes: its TIME-WAIT does not hold the client's ports.
    let mut q = quick("linux", 800.0);
    q.closer = Closer::Server;
    let p = plan::plan("(flags)", &plan::quick_scenario(&q).unwrap(), &[]).unwrap();
    let pool = &p.now.pools[0];
    assert_eq!(pool.limit_per_s, None);
    assert!(
        pool.formula_note
            .as_ref()
            .unwrap()
            .contains("server closes")
    );
    assert_eq!(p.now.outcome.failed, 0);
    assert!((pool.simulated_per_s.unwrap() - 800.0).abs() < 8.0);

    // tcp_tw_reuse = 1: ports / tcp_tw_reuse_delay.
    let text = plan::quick_scenario(&quick("linux", 800.0)).unwrap();
    let p = plan::plan(
        "(flags)",
        &text,
        &[whatif::parse_set("net.ipv4.tcp_tw_reuse=1").unwrap()],
    )
    .unwrap();
    let pool = &p.now.pools[0];
    assert_eq!(pool.limit_per_s, Some(28232.0));
    assert!(pool.formula_note.as_ref().unwrap().contains("tcp_tw_reuse"));
    assert_eq!(p.now.outcome.failed, 0);
    // And the plan shows the run before the change: it ran out.
    assert!(p.before.as_ref().unwrap().outcome.failed > 0);

    // macOS: one host-wide pool.
    let p = plan::plan(
        "(flags)",
        &plan::quick_scenario(&quick("macos", 100.0)).unwrap(),
        &[],
    )
    .unwrap();
    assert_eq!(p.now.pools[0].kind, "connect (host-wide)");
    assert!(
        p.now.pools[0]
            .formula_note
            .as_ref()
            .unwrap()
            .contains("host-wide")
    );

    // bind(ip, 0): one exclusive pool per source IP, shared by the two destinations.
    let mut q = quick("linux", 100.0);
    q.destinations = 2;
    q.connection = Some("bind".into());
    let p = plan::plan("(flags)", &plan::quick_scenario(&q).unwrap(), &[]).unwrap();
    let bind: Vec<_> = p.now.pools.iter().filter(|p| p.kind == "bind").collect();
    assert_eq!(bind.len(), 1);
    assert_eq!(bind[0].offered_per_s, 100.0);
    assert!(
        bind[0]
            .formula_note
            .as_ref()
            .unwrap()
            .contains("exclusively")
    );
}

#[test]
fn each_remedy_gains_what_it_promises() {
    // httperf: 500/s against 16,384 / 60 = 273.07/s. A remedy aims at 20 % headroom, so it
    // multiplies capacity by ceil(500 / 273.07 / 0.8) = 3.
    let p = plan::plan("scenarios/httperf-error-99.toml", &httperf(), &[]).unwrap();
    let limit = 16384.0 / 60.0;
    let m = (500.0 / limit / plan::TARGET_USE).ceil();
    assert_eq!(m, 3.0);
    let find = |t: &str| {
        p.remedies
            .iter()
            .find(|r| r.title.contains(t))
            .unwrap_or_else(|| panic!("no remedy {t:?} in {:#?}", p.remedies))
    };
    let headroom = |new_limit: f64, offered: f64| 100.0 * (new_limit - offered) / new_limit;
    let close = |a: Option<f64>, b: f64| (a.unwrap() - b).abs() < 0.1;
    // 1024–65535 on Linux: 64,512 ports for the one pool.
    let r = find("port range");
    assert!(r.fixes);
    assert!(close(
        r.outcome.as_ref().unwrap().headroom_percent,
        headroom(64512.0 / 60.0, 500.0)
    ));
    assert!(r.how[0].contains("net.ipv4.ip_local_port_range=\"1024 65535\""));
    // Keep-alive: a third of the connections, each pool's limit unchanged.
    let r = find("keep-alive");
    assert!(r.fixes);
    assert!(close(
        r.outcome.as_ref().unwrap().headroom_percent,
        headroom(limit, 500.0 / m)
    ));
    assert!(r.how[0].contains("--num-calls=3"));
    // Three source IPs, three destinations, three clients: a third of the rate per pool.
    for t in ["client IP", "server ports", "client machines"] {
        let r = find(t);
        assert!(r.fixes, "{t}");
        assert!(
            close(
                r.outcome.as_ref().unwrap().headroom_percent,
                headroom(limit, 500.0 / m)
            ),
            "{t}"
        );
    }
    assert!(find("client IP").how[0].contains("IP_BIND_ADDRESS_NO_PORT"));
    let r = find("tcp_tw_reuse");
    assert!(r.fixes);
    assert!(r.side_effects.contains("timestamps"));
    // Fixes come first, in order of effort: sysctls before code, code before machines.
    assert!(p.remedies[0].title.contains("port range"));
    let fixes: Vec<bool> = p.remedies.iter().map(|r| r.fixes).collect();
    assert!(fixes.windows(2).all(|w| w[0] >= w[1]));
    // SO_LINGER 0 and a shorter TIME-WAIT are never remedies; the first shows its cost.
    for r in &p.remedies {
        assert!(!r.title.contains("LINGER") && !r.title.contains("Shorten"));
    }
    let linger = p
        .not_recommended
        .iter()
        .find(|r| r.title.contains("SO_LINGER"))
        .unwrap();
    assert!(!linger.fixes && linger.outcome.as_ref().unwrap().unprotected_reuse > 0);
    assert!(linger.side_effects.starts_with("NOT A FIX"));
    assert!(
        p.not_recommended
            .iter()
            .any(|r| r.title.contains("Shorten"))
    );
}

#[test]
fn remedies_that_cannot_help_a_host_wide_kernel_do_not_fix_it() {
    // macOS: ports are host-wide, so more destinations add nothing (§3.3).
    let text = plan::quick_scenario(&quick("macos", 800.0)).unwrap();
    let p = plan::plan("(flags)", &text, &[]).unwrap();
    let dest = p
        .remedies
        .iter()
        .find(|r| r.title.contains("server ports"))
        .unwrap();
    assert!(!dest.fixes);
    assert_eq!(dest.outcome.as_ref().unwrap().failed, p.now.outcome.failed);
    let range = p
        .remedies
        .iter()
        .find(|r| r.title.contains("port range"))
        .unwrap();
    assert!(range.fixes && range.how[0].contains("net.inet.ip.portrange.first=1024"));
}

fn rate_sweep(shard: Option<(usize, usize)>) -> Sweep {
    let vary = [
        sweep::parse_vary("workload.httperf.arrival.rate=100..600/6").unwrap(),
        sweep::parse_vary("net.ipv4.ip_local_port_range=49152 65535,40000 65535").unwrap(),
    ];
    Sweep::new(
        "scenarios/httperf-error-99.toml",
        &httperf(),
        &[whatif::parse_set("scenario.duration=200s").unwrap()],
        &vary,
        shard,
    )
    .unwrap()
}

#[test]
fn a_sweep_gives_min_of_offered_and_the_formula_at_every_point() {
    let r = rate_sweep(None).run(2, &|| {});
    assert_eq!(r.rows.len(), 12);
    for row in &r.rows {
        let rate = row.values[0].as_f64().unwrap();
        let ports = match row.values[1].as_str().unwrap() {
            "49152 65535" => 16384.0,
            _ => 25536.0,
        };
        // A TIME-WAIT lasts 60 s plus up to one 2.048 s slot of the HZ=250 timer wheel
        // (src/tw_timer.rs), and ports come back a slot at a time: the sustained rate lies
        // between ports / 62.048 s and ports / 60 s, less up to 5 % for a slot's batch
        // (about 540 ports) cut at each end of the sweep's short sustained window.
        let got = row.sustained_per_s.unwrap();
        let (lo, hi) = (
            rate.min(ports / 62.048) * 0.95,
            rate.min(ports / 60.0) * 1.01,
        );
        assert!((lo..=hi).contains(&got), "{row:?}");
        assert_eq!(row.failed == 0, rate <= ports / 62.048, "{row:?}");
    }
}

#[test]
fn sweep_results_do_not_depend_on_threads_and_shards_merge_into_the_whole() {
    let one = rate_sweep(None).run(1, &|| {});
    let two = rate_sweep(None).run(2, &|| {});
    assert_eq!(one.to_json(), two.to_json());
    assert_eq!(one.to_csv(), two.to_csv());
    let parts: Vec<(String, SweepReport)> = (1..=3)
        .map(|i| {
            let r = rate_sweep(Some((i, 3))).run(1, &|| {});
            assert_eq!(r.shard.as_deref(), Some(format!("{i}/3").as_str()));
            assert_eq!(r.rows.len(), 4);
            // Through JSON, as shards travel between machines.
            let back: SweepReport = serde_json::from_str(&r.to_json()).unwrap();
            (format!("shard{i}.json"), back)
        })
        .collect();
    let merged = sweep::merge(&parts).unwrap();
    assert_eq!(merged.to_json(), one.to_json());
    let e = sweep::merge(&parts[..2]).unwrap_err().to_string();
    assert!(e.contains("4 of 12 points are missing"), "{e}");
    let twice = [parts[0].clone(), parts[0].clone()];
    assert!(
        sweep::merge(&twice)
            .unwrap_err()
            .to_string()
            .contains("more than one file")
    );
}

#[test]
fn the_sweep_and_merge_commands_write_files_and_refuse_bad_arguments() {
    let dir = std::env::temp_dir().join(format!("portsim-sweep-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = |n: &str| dir.join(n).display().to_string();
    let base = [
        "sweep",
        "scenarios/httperf-error-99.toml",
        "--set",
        "scenario.duration=130s",
        "--vary",
        "workload.httperf.arrival.rate=200,400",
    ];
    for i in 1..=2 {
        let mut a = base.to_vec();
        let (out, shard) = (path(&format!("s{i}.json")), format!("{i}/2"));
        a.extend(["--shard", &shard, "-o", &out]);
        let o = portsim(&a);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let (csv, svg) = (path("all.csv"), path("all.svg"));
    let o = portsim(&[
        "merge",
        &path("s1.json"),
        &path("s2.json"),
        "-o",
        &csv,
        "--plot",
        &svg,
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(&csv).unwrap();
    assert!(text.starts_with("point,workload.httperf.arrival.rate,attempted"));
    assert_eq!(text.lines().count(), 3);
    assert!(std::fs::read_to_string(&svg).unwrap().starts_with("<svg"));
    let mut a = base.to_vec();
    a.extend(["--shard", "3/2"]);
    let o = portsim(&a);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("1 ≤ I ≤ N"));
    let o = portsim(&[
        "sweep",
        "scenarios/httperf-error-99.toml",
        "--vary",
        "workload.nobody.rate=1,2",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no workload named"));
    let o = portsim(&[
        "sweep",
        "scenarios/httperf-error-99.toml",
        "--vary",
        "net.ipv4.tcp_tw_reuse=0,9",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("0, 1 or 2"));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn run_and_plan_take_what_ifs_from_the_command_line() {
    let o = portsim(&[
        "run",
        "scenarios/httperf-error-99.toml",
        "--format",
        "json",
        "--set",
        "net.ipv4.ip_local_port_range=1024 65535",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["summary"]["connections"]["failed"], 0);
    assert_eq!(v["pools"][0]["ports"], 64512);
    let o = portsim(&[
        "plan",
        "--profile",
        "linux",
        "--rate",
        "800/s",
        "--set",
        "net.ipv4.tcp_tw_reuse=1",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("BEFORE the what-if") && text.contains("AFTER the what-if"),
        "{text}"
    );
    let o = portsim(&["plan", "--profile", "solaris", "--rate", "800/s"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown"));
    let o = portsim(&["plan", "--rate", "fast"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn host_imports_read_each_tools_output() {
    let sample = |n: &str| {
        std::fs::read_to_string(format!("{}/tests/samples/{n}", env!("CARGO_MANIFEST_DIR")))
            .unwrap()
    };
    let l = import::from_sysctl("linux", &sample("linux-sysctl-a.txt")).unwrap();
    // Its kernel.osrelease = 6.1.0-27-amd64 picks the 6.1 release.
    assert_eq!(l.name, "linux@6.1");
    assert_eq!(l.profile.port_range, (15000, 64999));
    assert_eq!(
        l.profile.reserved_ports,
        vec![(30000, 30010), (40000, 40000)]
    );
    assert_eq!(l.profile.tw_reuse, 1);
    assert_eq!(l.profile.max_tw_buckets, 262144);
    assert_eq!(l.profile.usable_ports(), 50000 - 12);
    let f = import::from_sysctl("freebsd", &sample("freebsd-sysctl-a.txt")).unwrap();
    assert_eq!(f.name, "freebsd");
    assert_eq!(f.profile.port_range, (20000, 65535));
    assert_eq!(f.profile.time_wait.as_secs_f64(), 60.0);
    let m = import::from_sysctl("macos", &sample("macos-sysctl-a.txt")).unwrap();
    assert_eq!(m.name, "macos");
    assert_eq!(m.profile.time_wait.as_secs_f64(), 10.0);
    let w = import::from_netsh("netsh", &sample("netsh-dynamicport-tcp.txt")).unwrap();
    assert_eq!(w.profile.port_range, (10000, 65534));
    // What they print is a host block a scenario takes as it is.
    for i in [&l, &f, &m, &w] {
        let block = i.to_toml();
        let text = format!(
            "[scenario]\nname = \"x\"\nduration = \"1s\"\n\n{block}\n[[host]]\nname = \"s\"\nips = [\"10.9.9.9\"]\nlisten = [\"10.9.9.9:80\"]\n\n[[workload]]\nname = \"w\"\nclient = \"client\"\ndestinations = [\"10.9.9.9:80\"]\narrival = {{ kind = \"constant\", rate = 1 }}\nrtt = \"1ms\"\n"
        );
        let sc =
            portsim::scenario::parse("import", &text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(sc.hosts[0].profile, i.profile, "{}", i.name);
    }
    // A value the kernel would refuse names its line.
    let bad = sample("linux-sysctl-a.txt").replace("tcp_tw_reuse = 1", "tcp_tw_reuse = 5");
    let e = import::from_sysctl("bad", &bad).unwrap_err();
    assert_eq!(e.line, 15);
    assert!(e.to_string().contains("0, 1 or 2"), "{e}");
    assert!(import::from_sysctl("x", "hello world\n").is_err());
    assert!(import::from_netsh("x", "Start Port : 1\n").is_err());
}

#[test]
fn the_schema_knows_every_key_of_every_shipped_scenario() {
    let o = portsim(&["schema"]);
    assert!(o.status.success());
    let schema: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    fn walk(v: &serde_json::Value, s: &serde_json::Value, at: &str, bad: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                let props = &s["properties"];
                for (k, x) in m {
                    match props.get(k) {
                        Some(sub) => walk(x, sub, &format!("{at}.{k}"), bad),
                        None => {
                            // A value that may also be a table (rtt, service_time).
                            let alt = s["anyOf"]
                                .as_array()
                                .and_then(|a| a.iter().find(|x| x["properties"].get(k).is_some()));
                            if alt.is_none() {
                                bad.push(format!("{at}.{k}"));
                            }
                        }
                    }
                }
            }
            serde_json::Value::Array(a) => {
                for x in a {
                    walk(x, &s["items"], at, bad);
                }
            }
            _ => {}
        }
    }
    let mut n = 0;
    for dir in ["scenarios", "scenarios/live", "benches/scenarios"] {
        for e in std::fs::read_dir(format!("{}/{dir}", env!("CARGO_MANIFEST_DIR"))).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_none_or(|x| x != "toml") {
                continue;
            }
            let t: toml::Value = toml::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
            let v = serde_json::to_value(&t).unwrap();
            let mut bad = vec![];
            walk(&v, &schema, "", &mut bad);
            assert!(bad.is_empty(), "{}: {bad:?}", p.display());
            n += 1;
        }
    }
    assert!(n > 20);
    // And it refuses what the parser refuses: an unknown key.
    assert_eq!(
        schema["properties"]["workload"]["items"]["additionalProperties"],
        false
    );
    assert!(schema["properties"]["host"]["items"]["properties"]["knobs"]["properties"]
        ["net.inet.tcp.msl"]["description"]
        .as_str()
        .unwrap()
        .contains("FreeBSD"));
}

#[test]
fn completions_cover_the_commands() {
    let o = portsim(&["completions", "bash"]);
    assert!(o.status.success());
    let s = String::from_utf8_lossy(&o.stdout);
    for c in ["plan", "sweep", "merge", "--vary", "--shard"] {
        assert!(s.contains(c), "{c}");
    }
}

#[test]
fn the_limit_follows_the_kernel_rule_that_holds() {
    let file = |n: &str| {
        std::fs::read_to_string(format!("{}/scenarios/{n}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    };
    // macOS, server on the same host closing first: its TIME-WAIT holds the port host-wide
    // (§3.3), so 16,384 ports / 2 s = 8,192/s is the limit; the closed loop asks for more.
    let p = plan::plan("m", &file("macos-16k-cap-msl-1000.toml"), &[]).unwrap();
    let pool = &p.now.pools[0];
    assert_eq!(pool.limit_per_s, Some(8192.0));
    assert!((pool.simulated_per_s.unwrap() - 8192.0).abs() / 8192.0 < 0.01);
    assert!(pool.offered_per_s > 8192.0 && pool.offered_from.starts_with("closed"));
    assert!(p.verdict.contains("closed loop"), "{}", p.verdict);
    // Linux loopback, client closing: the default tcp_tw_reuse = 2 applies (§2.3).
    let t = whatif::apply(
        "l",
        &file("linux-loopback-server-close.toml"),
        &[
            whatif::parse_set("workload.oha.closer=client").unwrap(),
            whatif::parse_set("scenario.duration=5s").unwrap(),
        ],
    )
    .unwrap();
    let sc = portsim::scenario::parse("l", &t).unwrap();
    let (r, _) = plan::assess(&sc);
    let pools = plan::pools(&sc, &r);
    assert_eq!(pools[0].limit_per_s, Some(28232.0));
    assert!(pools[0].formula_note.as_ref().unwrap().contains("loopback"));
    // tcp_tw_reuse = 1 without the server's timestamps: no reuse, the formula holds.
    let text = plan::quick_scenario(&quick("linux", 800.0)).unwrap();
    let p = plan::plan(
        "(flags)",
        &text,
        &[
            whatif::parse_set("host.client.knobs.\"net.ipv4.tcp_tw_reuse\"=1").unwrap(),
            whatif::parse_set("host.server.knobs.\"net.ipv4.tcp_timestamps\"=0").unwrap(),
        ],
    )
    .unwrap();
    assert_eq!(p.now.pools[0].limit_per_s, Some(470.533));
    assert!(p.now.outcome.failed > 0);
    // FreeBSD toward its own address: nolocaltimewait skips TIME-WAIT (§3.2).
    let t = "[scenario]\nname = \"f\"\nduration = \"240s\"\n\n[[host]]\nname = \"bsd\"\nprofile = \"freebsd\"\nips = [\"10.0.0.1\"]\nlisten = [\"10.0.0.1:80\"]\n\n[[workload]]\nname = \"w\"\nclient = \"bsd\"\ndestinations = [\"10.0.0.1:80\"]\narrival = { kind = \"constant\", rate = 2000 }\nrtt = \"100us\"\ncloser = \"client\"\n";
    let p = plan::plan("f", t, &[]).unwrap_or_else(|e| panic!("{e}\n{t}"));
    assert_eq!(p.now.pools[0].limit_per_s, None, "{t}");
    assert!(
        p.now.pools[0]
            .formula_note
            .as_ref()
            .unwrap()
            .contains("nolocaltimewait")
    );
    assert_eq!(p.now.outcome.failed, 0);
}

#[test]
fn a_remedy_fixes_only_with_headroom_and_no_more_unprotected_reuse() {
    // 2,400/s over 2 IPs × 3 destinations: 400/s per pool, under its 470.5/s, but 6 × 24,000
    // TIME-WAITs exceed tcp_max_tw_buckets (131,072): overflowing closes are unprotected.
    let mut q = quick("linux", 2400.0);
    q.client_ips = 2;
    q.destinations = 3;
    let p = plan::plan("(flags)", &plan::quick_scenario(&q).unwrap(), &[]).unwrap();
    let base = p.now.outcome.unprotected_reuse;
    assert!(base > 0);
    assert!(
        p.verdict.contains("reused with no TIME-WAIT"),
        "{}",
        p.verdict
    );
    for r in &p.remedies {
        let o = r.outcome.as_ref().unwrap();
        if r.fixes {
            assert!(o.failed == 0 && o.stalled == 0, "{r:?}");
            assert!(o.unprotected_reuse <= base, "{r:?}");
            assert!(o.headroom_percent.is_none_or(|h| h >= 20.0), "{r:?}");
        }
    }
    // Two client machines at twice the capacity become four.
    let text = std::fs::read_to_string(format!(
        "{}/scenarios/fix-more-clients.toml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let t = whatif::apply(
        "c",
        &text,
        &[whatif::parse_set("workload.httperf.arrival.rate=600").unwrap()],
    )
    .unwrap();
    let p = plan::plan("c", &t, &[]).unwrap();
    let r = p
        .remedies
        .iter()
        .find(|r| r.title.contains("client machines"))
        .unwrap();
    assert!(
        r.title.contains("(2×)") && r.how[0].contains("from 4 machines instead of 2"),
        "{r:?}"
    );
    // On macOS more client addresses cannot be modelled: listed, with the reason.
    let p = plan::plan(
        "(flags)",
        &plan::quick_scenario(&quick("macos", 800.0)).unwrap(),
        &[],
    )
    .unwrap();
    let r = p
        .remedies
        .iter()
        .find(|r| r.title.contains("client IP"))
        .unwrap();
    assert!(r.outcome.is_none() && !r.fixes);
    assert!(r.not_simulated.as_ref().unwrap().contains("Linux"), "{r:?}");
}

#[test]
fn merge_refuses_shards_of_a_changed_scenario_and_imports_take_utf16() {
    let one = rate_sweep(Some((1, 2))).run(1, &|| {});
    let mut two = rate_sweep(Some((2, 2))).run(1, &|| {});
    two.scenario_hash = "0".repeat(16);
    let e = sweep::merge(&[("a".into(), one), ("b".into(), two)]).unwrap_err();
    assert!(
        e.to_string().contains("not a shard of the same sweep"),
        "{e}"
    );
    let text = "\r\nProtocol tcp Dynamic Port Range\r\n---------------------------------\r\nStart Port      : 20000\r\nNumber of Ports : 10000\r\n";
    let mut bytes = vec![0xFF, 0xFE];
    bytes.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
    let f = std::env::temp_dir().join(format!("netsh-{}.txt", std::process::id()));
    std::fs::write(&f, bytes).unwrap();
    let o = portsim(&["profile", "--from-netsh", f.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("\"dynamicport.tcp.num\" = 10000"));
    let l = import::from_sysctl("x", "net.ipv4.ip_local_reserved_ports = 8080\n").unwrap();
    assert_eq!(l.profile.reserved_ports, vec![(8080, 8080)]);
}

#[test]
fn a_key_varied_twice_is_refused_and_plan_writes_json_to_a_json_file() {
    let o = portsim(&[
        "sweep",
        "scenarios/httperf-error-99.toml",
        "--vary",
        "workload.httperf.arrival.rate=1,2",
        "--vary",
        "workload.httperf.arrival.rate=3",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("varied twice"));
    let out = std::env::temp_dir().join(format!("plan-{}.JSON", std::process::id()));
    let o = portsim(&["plan", "--rate", "100/s", "-o", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(v["schema"], "portsim.plan/1");
    assert_eq!(v["pools"][0]["offered_per_s"], 100.0);
    std::fs::remove_file(&out).ok();
}

fn scenario(name: &str) -> String {
    std::fs::read_to_string(format!("{}/scenarios/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// macos-16k-cap with `n` server ports from 3779 up, each a destination: what the "more
/// destinations" remedy changes, built here from the scenario text.
fn macos_with_destinations(n: u16) -> String {
    let ports: Vec<String> = (0..n)
        .map(|k| format!("\"127.0.0.1:{}\"", 3779 + k))
        .collect();
    let list = format!("[{}]", ports.join(", "));
    scenario("macos-16k-cap.toml")
        .replace("listen = [\"127.0.0.1:3779\"]", &format!("listen = {list}"))
        .replace(
            "destinations = [\"127.0.0.1:3779\"]",
            &format!("destinations = {list}"),
        )
        .replace("duration = \"10s\"", "duration = \"120s\"")
}

#[test]
fn on_macos_keep_alive_ranks_above_more_destinations() {
    // 50 workers against a loopback server that closes first: the host-wide pool carries
    // 16,384 ports / 30 s TIME_WAIT connections per second (§3.3, §3.4), and every worker
    // stalls in SYN-SENT on a SYN the server's TIME-WAIT does not accept.
    let p = plan::plan("m", &scenario("macos-16k-cap.toml"), &[]).unwrap();
    assert_eq!(p.horizon_s, 4.0 * 30.0, "four XNU TIME_WAITs of 2 × 15 s");
    let limit = 16384.0 / 30.0;
    let today = &p.now.outcome;
    let near = |x: f64, want: f64| (x - want).abs() / want < RATE_TOLERANCE;
    assert!(near(today.requests_per_s, limit), "{today:?}");
    let at = |t: &str| p.remedies.iter().position(|r| r.title.contains(t)).unwrap();
    let (ka, dest) = (at("keep-alive"), at("server ports"));
    assert!(ka < dest, "{:#?}", p.remedies);
    let (ka, dest) = (&p.remedies[ka], &p.remedies[dest]);
    let (k, d) = (ka.outcome.as_ref().unwrap(), dest.outcome.as_ref().unwrap());
    // Keep-alive: 64 requests on each connection the same pool carries, and no failure.
    assert!(ka.title.contains("64×"), "{}", ka.title);
    assert!(near(k.requests_per_s, 64.0 * limit), "{k:?}");
    assert_eq!(k.failed, 0);
    // Neither fixes it: both leave connects stalled past a SYN retransmission.
    assert!(!ka.fixes && k.stalled > 0, "{k:?}");
    assert!(!dest.fixes && d.stalled > 0 && d.failed > 0, "{d:?}");
    // What more destinations gained is said from its run, not from fixed text.
    assert!(
        !dest.side_effects.contains("nothing"),
        "{}",
        dest.side_effects
    );
    let gain = d.requests_per_s / today.requests_per_s;
    assert!(gain > 1.0 + RATE_TOLERANCE, "{d:?}");
    assert!(
        dest.findings[0].starts_with(&format!("{gain:.1}× today's requests/s")),
        "{:?}",
        dest.findings
    );
    assert!(
        dest.findings[1].starts_with(&format!("{} connects still fail", group(d.failed))),
        "{:?}",
        dest.findings
    );
    // Its headroom is taken against what its own pool carried while saturated: the rate the
    // 64-destination scenario sustains when run on its own, above today's limit. The
    // closed loop asks 50 workers / (40 µs handshake + 40 µs + 988 µs request).
    let sc = portsim::scenario::parse("m64", &macos_with_destinations(64)).unwrap();
    let carried = portsim::sim::Simulation::new(&sc).run().pools[0]
        .sustained_per_s
        .unwrap();
    let l = d.headroom_limit_per_s.unwrap();
    assert_eq!(d.headroom_limit_from, Some(LimitSource::Simulated));
    assert!(
        (l - carried).abs() < 1e-3 && l > limit * (1.0 + RATE_TOLERANCE),
        "{l} {carried}"
    );
    let offered = 50.0 / (40e-6 + 40e-6 + 988e-6);
    let headroom = 100.0 * (l - offered) / l;
    assert!(
        (d.headroom_percent.unwrap() - headroom).abs() < 0.1,
        "{d:?}"
    );
    assert!(d.headroom_percent > today.headroom_percent);
}

#[test]
fn on_httperf_the_fixes_keep_their_order_of_effort() {
    // Sysctls first (range, then tcp_tw_reuse), then the client's code (keep-alive), then
    // more addresses, more server ports, more machines.
    let p = plan::plan("scenarios/httperf-error-99.toml", &httperf(), &[]).unwrap();
    let want = [
        "port range",
        "tcp_tw_reuse",
        "keep-alive",
        "client IP",
        "server ports",
        "client machines",
    ];
    let titles: Vec<&str> = p.remedies.iter().map(|r| r.title.as_str()).collect();
    assert_eq!(titles.len(), want.len(), "{titles:?}");
    for (t, w) in titles.iter().zip(want) {
        assert!(t.contains(w), "{titles:?}");
    }
    // Today: each of 16,384 ports carries one connection per 60 s TIME_WAIT, 5 in 300 s.
    let today = &p.now.outcome;
    assert_eq!(today.requests_completed, 5 * 16384);
    assert_eq!(today.stalled, 0);
    // The pool is saturated and the rule holds: what it carried is ports / TIME_WAIT.
    assert_eq!(today.headroom_limit_from, Some(LimitSource::Simulated));
    assert!((today.headroom_limit_per_s.unwrap() - 16384.0 / 60.0).abs() < 1e-3);
    for r in &p.remedies {
        let o = r.outcome.as_ref().unwrap();
        assert!(r.fixes, "{r:?}");
        // 500/s for 300 s, each connection done within 1.4 ms: every request completes.
        assert_eq!(o.requests_completed, 150_000, "{}", r.title);
        assert_eq!((o.failed, o.stalled), (0, 0), "{}", r.title);
        // Not saturated: the headroom is the rule's.
        assert_eq!(
            o.headroom_limit_from,
            Some(LimitSource::Rule),
            "{}",
            r.title
        );
        assert!(
            r.findings[1] == "no connect fails or stalls",
            "{:?}",
            r.findings
        );
    }
}

#[test]
fn the_plan_prints_what_users_get_as_aligned_columns() {
    let o = portsim(&["plan", "scenarios/httperf-error-99.toml"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    let columns = [
        "requests/s",
        "failed",
        "stalled",
        "stall time",
        "unprotected",
        "headroom",
    ];
    let mut lines = text
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("requests/s"));
    let header = lines.next().expect("a table of remedies");
    let rows: Vec<&str> = lines.take_while(|l| !l.is_empty()).collect();
    // Today, six fixes, two not recommended.
    assert_eq!(rows.len(), 9, "{text}");
    for c in columns {
        let end = header.find(c).unwrap() + c.len();
        for row in &rows {
            let ch: Vec<char> = row.chars().collect();
            assert!(
                ch[end - 1] != ' ' && ch.get(end).is_none_or(|c| *c == ' '),
                "column {c:?} out of line:\n{header}\n{row}"
            );
        }
    }
    // Today's row, derived: 81,920 requests in 300 s, 150,000 − 81,920 failed, and
    // 100 × (16,384 / 60 − 500) / (16,384 / 60) = −83.1 % headroom.
    let today: Vec<&str> = rows[0].split_whitespace().collect();
    assert_eq!(
        today,
        [
            "today", "273.1", "68,080", "0", "0.0", "s", "0", "-83.1", "%"
        ]
    );
    assert!(rows[1].starts_with(" 1.") && rows[1].ends_with("[fixes]"));
    assert!(rows[8].contains("SO_LINGER") && rows[8].contains("139,745"));
    // JSON carries the same numbers.
    let o = portsim(&[
        "plan",
        "scenarios/httperf-error-99.toml",
        "--format",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["outcome"]["requests_completed"], 81920);
    assert_eq!(v["outcome"]["stalled"], 0);
    assert_eq!(v["outcome"]["headroom_limit_from"], "simulated");
    let r = &v["remedies"][0];
    assert_eq!(r["outcome"]["requests_per_s"], 500.0);
    assert_eq!(r["outcome"]["stall_s"], 0.0);
    assert!(
        r["findings"][0]
            .as_str()
            .unwrap()
            .contains("today's requests/s")
    );
}

#[test]
fn a_replicated_plan_ranks_by_the_means_and_fixes_only_what_every_seed_fixes() {
    // httperf's arrivals are constant: every seed gives the same counts, so the fixes and
    // their order are the one run's, and each number's spread is zero.
    let seeds = Some(portsim::replicate::Seeds::parse("1..4").unwrap());
    let p = plan::plan_seeds("scenarios/httperf-error-99.toml", &httperf(), &[], seeds).unwrap();
    let one = plan::plan("scenarios/httperf-error-99.toml", &httperf(), &[]).unwrap();
    let titles = |p: &plan::Plan| {
        p.remedies
            .iter()
            .map(|r| r.title.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(titles(&p), titles(&one));
    assert!(p.remedies.iter().all(|r| r.fixes));
    let today = p.now.outcome.replicates.as_ref().expect("replicated");
    assert_eq!(today["requests_completed"].mean, (5 * 16384) as f64);
    assert_eq!(today["requests_completed"].sd, 0.0);
    // macOS: the ISN coins vary the count; the table shows the mean, the JSON the spread, and
    // keep-alive still ranks above more destinations on the means.
    let seeds = Some(portsim::replicate::Seeds::parse("1..4").unwrap());
    let p = plan::plan_seeds("m", &scenario("macos-16k-cap.toml"), &[], seeds).unwrap();
    let at = |w: &str| p.remedies.iter().position(|r| r.title.contains(w)).unwrap();
    assert!(at("keep-alive") < at("destinations"));
    let json: serde_json::Value = serde_json::from_str(&p.to_json()).unwrap();
    assert_eq!(json["seeds"], "1..4");
    let s = &json["outcome"]["replicates"]["requests_per_s"];
    assert!(s["min"].as_f64().unwrap() <= s["mean"].as_f64().unwrap());
    assert!(p.to_text().contains("means over the seeds"));
}

/// Four pod addresses behind a Linux 5.10 masquerade to 40000–40009, 20 new connections/s.
fn nat_router() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/samples/nat-router.toml"
    ))
    .unwrap()
}

/// Ten ports (40000–40009) on one address, held 120 s by conntrack's TIME_WAIT
/// (`nf_conntrack_tcp_timeout_time_wait`'s default): from the fixture and the kernel, not
/// from the NAT's profile.
const NAT_LIMIT: f64 = 10.0 * 1.0 / 120.0;

#[test]
fn a_nat_out_of_ports_is_the_tightest_limit_at_addresses_times_ports_over_its_time_wait() {
    let p = plan::plan("nat-router.toml", &nat_router(), &[]).unwrap();
    let [n] = p.now.nat_pools.as_slice() else {
        panic!("one NAT, one destination: {:?}", p.now.nat_pools)
    };
    assert_eq!((n.ports, n.hold_state, n.hold_s), (10, "TIME_WAIT", 120.0));
    assert!((n.formula_limit_per_s - NAT_LIMIT).abs() < 5e-4, "{n:?}");
    assert_eq!(n.limit_per_s, Some(n.formula_limit_per_s));
    // Before 6.5 no SYN evicts a closing entry: the run carries the formula's rate.
    let carried = n.simulated_per_s.unwrap();
    assert!(
        (carried - NAT_LIMIT).abs() < NAT_LIMIT * RATE_TOLERANCE,
        "{n:?}"
    );
    let headroom = 100.0 * (NAT_LIMIT - 20.0) / NAT_LIMIT;
    assert!(
        (n.headroom_percent.unwrap() - headroom).abs() < 1.0,
        "{n:?}"
    );
    assert_eq!(
        p.now.outcome.tightest.as_deref(),
        Some("NAT router → 203.0.113.2:8080")
    );
    assert!(
        p.verdict.contains("the tightest limit is NAT router"),
        "{}",
        p.verdict
    );
    // The NAT's drops time out at the client, whose own pools have ports to spare.
    assert!(p.now.outcome.errors.contains_key("ETIMEDOUT"));
    assert!(p.now.pools.iter().all(|q| q.saturated_per_s.is_none()));
    assert!(
        p.to_text()
            .contains("0.083 /s = 1 address(es) × 10 ports / 120 s TIME_WAIT")
    );
}

#[test]
fn nat_remedies_carry_their_exact_lines_and_rank_by_what_their_runs_gave() {
    let p = plan::plan("nat-router.toml", &nat_router(), &[]).unwrap();
    let all: Vec<_> = p.remedies.iter().chain(&p.not_recommended).collect();
    let find = |title: &str| {
        all.iter()
            .position(|r| r.title.starts_with(title))
            .unwrap_or_else(|| panic!("no remedy {title:?}"))
    };
    let has = |i: usize, line: &str| {
        assert!(
            all[i].how.iter().any(|h| h.contains(line)),
            "{line:?} not in {:?}",
            all[i].how
        )
    };
    let wide = find("Widen the NAT's port range");
    has(
        wide,
        r#"nft add rule ip nat POSTROUTING oifname "eth0" meta l4proto tcp masquerade to :1024-65535"#,
    );
    has(
        wide,
        "iptables -t nat -A POSTROUTING -o eth0 -p tcp -j MASQUERADE --to-ports 1024-65535",
    );
    let random = find("NAT port chosen fully at random");
    has(random, "masquerade to :40000-40009 fully-random");
    has(
        random,
        "-j MASQUERADE --to-ports 40000-40009 --random-fully",
    );
    let addresses = find("More NAT addresses");
    has(
        addresses,
        "snat ip to 203.0.113.10-203.0.113.13:40000-40009",
    );
    has(
        addresses,
        "-j SNAT --to-source 203.0.113.10-203.0.113.13:40000-40009",
    );
    let ct60 = find("Conntrack TIME_WAIT down to the hosts' TCP TIME-WAIT");
    has(
        ct60,
        "sysctl -w net.netfilter.nf_conntrack_tcp_timeout_time_wait=60",
    );
    let ct30 = find("Conntrack TIME_WAIT down to a quarter");
    has(
        ct30,
        "sysctl -w net.netfilter.nf_conntrack_tcp_timeout_time_wait=30",
    );
    let reuse = find("Reuse connections");
    has(reuse, "requests per connection");
    // 64,512 ports / 120 s = 537.6 /s: the range alone fixes 20 /s, so it ranks first.
    assert_eq!(wide, 0);
    assert!(all[wide].fixes);
    // The others are ranked by their runs: TIME_WAIT at 60 s doubles the NAT's rate, four
    // addresses serve the four pods (as many as they hash to), fully-random adds no port.
    let rate = |i: usize| all[i].outcome.as_ref().unwrap().requests_per_s;
    let today = p.now.outcome.requests_per_s;
    assert!((rate(ct60) / today - 2.0).abs() < 0.1, "{}", rate(ct60));
    assert!((rate(random) / today - 1.0).abs() < RATE_TOLERANCE);
    assert!(ct60 < random && addresses < random);
    assert!(rate(reuse) > rate(ct60) && reuse < ct60);
    // Below the endpoints' TIME-WAIT the NAT reuses tuples a server may still get old
    // segments for: listed apart.
    assert!(ct30 >= p.remedies.len());
    assert!(!all[ct30].fixes);
}

#[test]
fn from_linux_6_4_the_run_not_the_formula_gives_the_nat_s_limit() {
    let set = [whatif::parse_set(r#"nat.router.knobs.kernel="6.18""#).unwrap()];
    let p = plan::plan("nat-router.toml", &nat_router(), &set).unwrap();
    let n = &p.now.nat_pools[0];
    assert!((n.formula_limit_per_s - NAT_LIMIT).abs() < 5e-4);
    assert_eq!(n.limit_per_s, None);
    assert!(
        n.notes[0].contains("nf_nat_used_tuple_harder"),
        "{:?}",
        n.notes
    );
    // Evicting TIME_WAIT entries a new SYN has passed, it carries far more than 10 / 120 s.
    assert!(n.simulated_per_s.unwrap() > 100.0 * NAT_LIMIT, "{n:?}");
    let before = p.before.as_ref().unwrap();
    assert_eq!(before.nat_pools[0].limit_per_s, Some(n.formula_limit_per_s));
}
