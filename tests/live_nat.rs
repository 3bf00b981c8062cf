//! Live mode through a real Linux NAT: each `scenarios/live/nat-*.toml` runs its clients in a
//! namespace behind a router namespace whose nftables rule masquerades to a 10-port range,
//! reads the router's conntrack through ctnetlink, and must agree exactly with the
//! prediction on the counts it judges. CI runs as root with nftables installed (.ci/run);
//! without the privilege or the tools the tests print why and skip.

mod common;

use common::{agree, run_live, serial, shipped};
use serde_json::Value;
use std::process::Command;

/// The row of `metric`: (predicted, measured, judged).
fn row(r: &Value, metric: &str) -> (u64, u64, bool) {
    let c = r["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["metric"] == metric)
        .unwrap_or_else(|| panic!("no {metric} row: {}", r["checks"]));
    let n = |v: &Value| v.as_f64().expect("a number") as u64;
    (
        n(&c["predicted"]),
        n(&c["measured"]),
        c["judged"].as_bool().unwrap(),
    )
}

/// A judged count, the same predicted and measured.
fn exact(r: &Value, metric: &str) -> u64 {
    let (p, m, judged) = row(r, metric);
    assert!(judged, "{metric} is not judged");
    assert_eq!(p, m, "{metric}");
    m
}

fn counter(r: &Value, name: &str) -> u64 {
    r["measured"]["nat"][0]["counters"][name].as_u64().unwrap()
}

#[test]
fn nat_ten_ports_client_closes_every_connect_succeeds_by_evicting_time_wait_entries() {
    let _serial = serial();
    let Some(r) = agree("nat-ten-ports-client-closes.toml") else {
        return;
    };
    // 60 connections through 10 NAT ports, none failed: the port search evicted entries.
    assert_eq!(exact(&r, "established"), 60);
    assert_eq!(exact(&r, "failed"), 0);
    assert_eq!(exact(&r, "time_wait_at_end"), 60);
    assert_eq!(exact(&r, "nat_ports_in_use"), 10);
    assert_eq!(exact(&r, "conntrack_time_wait"), 10);
    assert_eq!(exact(&r, "conntrack_entries"), 10);
}

#[test]
fn nat_ten_ports_client_closes_refutes_a_time_wait_timeout_shortened_behind_the_prediction() {
    let _serial = serial();
    let fault = "net.netfilter.nf_conntrack_tcp_timeout_time_wait=1";
    let Some((r, code)) = run_live(
        &shipped("nat-ten-ports-client-closes.toml"),
        &["--fault-sysctl", fault],
    ) else {
        return;
    };
    // Entries now expire 1 s after the flow closes: the table empties before the end.
    assert!(
        ["disagree", "inconclusive"].contains(&r["verdict"].as_str().unwrap()),
        "{}",
        r["checks"]
    );
    assert_eq!(code, Some(1));
    // Entries expire 1 s after their flow closes. Nearly always none is left; a connect whose
    // SYN was dropped once (insert_failed, about 1 run in 20) closes a second later and its
    // entry can still be there (seen once in CI: 1). Either way, fewer than predicted.
    let (p, m, _) = row(&r, "conntrack_time_wait");
    assert_eq!(p, 10);
    assert!(m < p / 2, "{}", r["measured"]["nat"]);
}

#[test]
fn nat_ten_ports_server_closes_every_connect_succeeds() {
    let _serial = serial();
    let Some(r) = agree("nat-ten-ports-server-closes.toml") else {
        return;
    };
    assert_eq!(exact(&r, "established"), 30);
    assert_eq!(exact(&r, "requests_completed"), 30);
    assert_eq!(exact(&r, "failed"), 0);
    // The server's TIME-WAITs sit on the NAT's ports: at most one per port.
    let tw = r["measured"]["time_wait_at_end"].as_u64().unwrap();
    assert!((1..=10).contains(&tw), "{tw}");
}

/// Held connections beyond the NAT's ports: the SYNs of the extra ones are dropped at every
/// retransmission (insert_failed and drop count each), and the connects time out.
fn held_beyond_ports(name: &str) -> Option<Value> {
    let r = agree(name)?;
    assert_eq!(exact(&r, "established"), 10);
    assert_eq!(exact(&r, "failed ETIMEDOUT"), 5);
    assert_eq!(exact(&r, "nat_ports_in_use"), 10);
    assert_eq!(exact(&r, "conntrack_established"), 10);
    // Six SYNs per failed connect (tcp_syn_linear_timeouts = 4), each counted twice.
    assert_eq!(exact(&r, "insert_failed"), 30);
    assert_eq!(exact(&r, "conntrack_drop"), 30);
    assert_eq!(counter(&r, "early_drop"), 0);
    Some(r)
}

#[test]
fn nat_more_held_connections_than_ports_time_out_the_extra_ones() {
    let _serial = serial();
    held_beyond_ports("nat-held-exceeds-ports.toml");
}

#[test]
fn nat_fully_random_changes_which_port_not_how_many() {
    let _serial = serial();
    let Some(r) = held_beyond_ports("nat-fully-random.toml") else {
        return;
    };
    let notes = r["notes"].to_string();
    assert!(
        notes.contains("masquerade to :40000-40009 fully-random"),
        "{notes}"
    );
}

/// The host's own view: sysctls a NAT run writes in its namespaces, its ruleset, its links.
fn host_state() -> Vec<String> {
    let mut out: Vec<String> = [
        "ipv4/ip_forward",
        "ipv4/ip_local_port_range",
        "ipv4/tcp_syn_retries",
        "netfilter/nf_conntrack_tcp_timeout_time_wait",
        "netfilter/nf_conntrack_tcp_timeout_established",
    ]
    .iter()
    .map(|k| std::fs::read_to_string(format!("/proc/sys/net/{k}")).unwrap_or_default())
    .collect();
    for (tool, args) in [
        ("nft", &["list", "ruleset"][..]),
        ("ip", &["-o", "link"][..]),
    ] {
        let shown = Command::new(tool)
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        out.push(shown);
    }
    out
}

#[test]
fn a_nat_run_leaves_the_hosts_sysctls_ruleset_and_links_unchanged() {
    let _serial = serial();
    let before = host_state();
    if agree("nat-held-exceeds-ports.toml").is_none() {
        return;
    }
    let after = host_state();
    assert_eq!(after, before);
    // The run's rule, links and ip_forward = 1 were in its own namespaces only.
    assert!(!after[5].contains("table ip portsim"), "{}", after[5]);
    assert!(!after[6].contains("nat0"), "{}", after[6]);
}

#[test]
fn what_a_nat_run_cannot_do_is_refused() {
    let _serial = serial();
    let dir = std::env::temp_dir().join(format!("portsim-live-nat-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let base = std::fs::read_to_string(shipped("nat-held-exceeds-ports.toml")).unwrap();
    let cases = [
        (
            "loopback",
            base.replace("192.0.2.2", "127.0.0.2"),
            "documentation ranges",
        ),
        (
            "conntrack-max",
            base.replace(
                "port_range = \"40000 40009\"",
                "port_range = \"40000 40009\"\n\"net.netfilter.nf_conntrack_max\" = 1000",
            ),
            "nf_conntrack_max",
        ),
        (
            "old-kernel",
            base.replace(
                "port_range = \"40000 40009\"",
                "port_range = \"40000 40009\"\nkernel = \"4.19\"",
            ),
            "kernel",
        ),
    ];
    for (tag, text, says) in cases {
        let path = dir.join(format!("{tag}.toml"));
        std::fs::write(&path, text).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_portsim"))
            .args(["live"])
            .arg(&path)
            .output()
            .expect("portsim runs");
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("namespace:") {
            eprintln!("SKIPPED {tag}: {}", err.trim());
            continue;
        }
        assert_eq!(out.status.code(), Some(2), "{tag}: {err}");
        assert!(err.contains(says), "{tag}: {err}");
    }
    std::fs::remove_dir_all(&dir).ok();
}
