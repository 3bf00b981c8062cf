//! Replicated runs (`--seeds A..B`) through the command line: the distributions do not depend
//! on the thread count, the text shows what the JSON holds, and a chart draws the band.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn portsim(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_portsim"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("portsim runs")
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("portsim-replicates-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

const MAC: &str = "scenarios/macos-16k-cap.toml";

#[test]
fn a_replicated_run_is_the_same_on_one_thread_or_two() {
    let one = portsim(&[
        "run",
        MAC,
        "--seeds",
        "1..16",
        "--threads",
        "1",
        "--format",
        "json",
    ]);
    let two = portsim(&[
        "run",
        MAC,
        "--seeds",
        "1..16",
        "--threads",
        "2",
        "--format",
        "json",
    ]);
    assert!(
        one.status.success(),
        "{}",
        String::from_utf8_lossy(&one.stderr)
    );
    assert_eq!(one.stdout, two.stdout);
    let r: Value = serde_json::from_slice(&one.stdout).unwrap();
    assert_eq!(r["replicates"]["n"], 16);
    assert_eq!(r["replicates"]["seeds"], "1..16");
    // The report itself is seed 1's run.
    let single = portsim(&["run", MAC, "--seed", "1", "--format", "json"]);
    let s: Value = serde_json::from_slice(&single.stdout).unwrap();
    assert_eq!(r["summary"], s["summary"]);
    // The distribution spans that run.
    let m = &r["replicates"]["metrics"]["requests.completed"];
    let done = s["summary"]["requests"]["completed"].as_f64().unwrap();
    for k in ["mean", "sd", "min", "p5", "p50", "p95", "max"] {
        assert!(m[k].is_number(), "{k}: {m}");
    }
    assert!(m["min"].as_f64().unwrap() <= done && done <= m["max"].as_f64().unwrap());
}

#[test]
fn the_text_shows_each_number_over_the_seeds() {
    let out = portsim(&["run", MAC, "--seeds", "1..8"]);
    let t = String::from_utf8_lossy(&out.stdout);
    assert!(t.contains("seeds 1..8"), "{t}");
    let row = t
        .lines()
        .find(|l| l.starts_with("requests.completed "))
        .unwrap_or_else(|| panic!("{t}"));
    assert_eq!(row.split_whitespace().count(), 8, "{row}");
    // A seed range that is not one is refused with the flag named.
    let bad = portsim(&["run", MAC, "--seeds", "9..2"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--seeds"));
}

#[test]
fn a_replicated_chart_draws_the_p5_to_p95_band() {
    // Poisson arrivals into the Linux default range: the established rate varies by seed.
    let json = tmp("churn.json");
    let out = portsim(&[
        "run",
        "scenarios/linux-default-churn.toml",
        "--set",
        "workload.churn.arrival.kind=poisson",
        "--set",
        "scenario.duration=90s",
        "--seeds",
        "1..12",
        "--format",
        "json",
        "-o",
        json.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let svg = tmp("churn.svg");
    let out = portsim(&["plot", json.to_str().unwrap(), "-o", svg.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.contains("<polygon"), "no band drawn");
    assert!(text.contains("p5–p95 over 12 seeds"));
    // One run draws no band.
    let out = portsim(&[
        "run",
        "scenarios/linux-default-churn.toml",
        "--plot",
        svg.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    assert!(!std::fs::read_to_string(&svg).unwrap().contains("<polygon"));
}

#[test]
fn a_replicated_sweep_gives_each_row_its_distribution_whatever_the_threads() {
    let sweep = |threads: &str| {
        portsim(&[
            "sweep",
            MAC,
            "--vary",
            "net.inet.ip.portrange.first=40000,49152",
            "--seeds",
            "1..6",
            "--threads",
            threads,
            "--format",
            "json",
        ])
    };
    let (one, two) = (sweep("1"), sweep("2"));
    assert!(
        one.status.success(),
        "{}",
        String::from_utf8_lossy(&one.stderr)
    );
    assert_eq!(one.stdout, two.stdout);
    let r: Value = serde_json::from_slice(&one.stdout).unwrap();
    assert_eq!(r["seeds"], "1..6");
    for row in r["rows"].as_array().unwrap() {
        let s = &row["replicates"]["requests_completed"];
        let done = row["requests_completed"].as_f64().unwrap();
        assert!(s["min"].as_f64().unwrap() <= done && done <= s["max"].as_f64().unwrap());
    }
    // Shards of a replicated sweep merge only with shards of the same seeds.
    let part = |shard: &str, seeds: &str| {
        let path = tmp(&format!("shard{}-{seeds}.json", shard.replace('/', "of")));
        let out = portsim(&[
            "sweep",
            MAC,
            "--vary",
            "net.inet.ip.portrange.first=40000,49152",
            "--seeds",
            seeds,
            "--shard",
            shard,
            "-o",
            path.to_str().unwrap(),
        ]);
        assert!(out.status.success());
        path
    };
    let (a, b) = (part("1/2", "1..6"), part("2/2", "1..5"));
    let out = Command::new(env!("CARGO_BIN_EXE_portsim"))
        .arg("merge")
        .args([a.as_path(), b.as_path()].map(Path::as_os_str))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--seeds"));
}

/// A client pool's counts depend on the seed (Poisson arrivals decide how many requests find
/// no idle connection): `--seeds` gives their distribution under `workloads.NAME.pool`, and
/// it is the distribution of the single-seed runs' `workloads[].pool` counts.
#[test]
fn a_replicated_run_gives_the_pool_counts_distribution() {
    let json = |args: &[&str]| -> Value {
        let o = portsim(args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let go = "scenarios/go-pool-default.toml";
    let r = json(&["run", go, "--seeds", "1..4", "--format", "json"]);
    let opened = &r["replicates"]["metrics"]["workloads.calls.pool.opened"];
    let each: Vec<f64> = (1..=4)
        .map(|s| {
            let one = json(&["run", go, "--seed", &s.to_string(), "--format", "json"]);
            one["workloads"][0]["pool"]["opened"].as_f64().unwrap()
        })
        .collect();
    let mean = each.iter().sum::<f64>() / 4.0;
    let min = each.iter().cloned().fold(f64::INFINITY, f64::min);
    let max = each.iter().cloned().fold(0.0, f64::max);
    assert!(
        (opened["mean"].as_f64().unwrap() - mean).abs() < 1e-6,
        "{opened} vs {each:?}"
    );
    assert_eq!(opened["min"].as_f64().unwrap(), min);
    assert_eq!(opened["max"].as_f64().unwrap(), max);
    assert!(min < max, "the seed changes what the pool opens: {each:?}");
}
