//! Every refused scenario names the file, line and column, the key, what was given and what is
//! allowed; exits 2; and leaves the output file as it was. Legal but surprising settings warn.

use std::path::PathBuf;
use std::process::Command;

const BASE: &str = include_str!("../scenarios/httperf-error-99.toml");

fn dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("portsim-bad-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The base scenario with `from` replaced by `to`, and the 1-based line `to` starts on.
fn variant(from: &str, to: &str) -> (String, usize) {
    let at = BASE
        .find(from)
        .unwrap_or_else(|| panic!("{from:?} not in the base"));
    let text = BASE.replacen(from, to, 1);
    (
        text,
        BASE[..at].lines().count() + usize::from(BASE[..at].ends_with('\n')),
    )
}

struct Refusal {
    code: Option<i32>,
    stderr: String,
    output_untouched: bool,
}

fn run(name: &str, text: &str) -> Refusal {
    let d = dir();
    let file = d.join(format!("{name}.toml"));
    std::fs::write(&file, text).unwrap();
    let out = d.join(format!("{name}.json"));
    std::fs::write(&out, "previous report\n").unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_portsim"))
        .args(["run", "--format", "json", "-o"])
        .arg(&out)
        .arg(&file)
        .output()
        .unwrap();
    Refusal {
        code: o.status.code(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        output_untouched: std::fs::read_to_string(&out).unwrap() == "previous report\n",
    }
}

#[test]
fn each_kind_of_bad_input_is_refused_with_where_what_and_what_is_allowed() {
    // (name, from, to, key named, words of the allowed values)
    let cases: &[(&str, &str, &str, &str, &str)] = &[
        (
            "typo",
            "closer = \"client\"",
            "closr = \"client\"",
            "closr",
            "did you mean `closer`?",
        ),
        (
            "address-twice",
            "ips = [\"10.0.0.1\"]",
            "ips = [\"10.0.0.1\", \"10.0.0.1\"]",
            "host[0].ips",
            "listed twice; list each address once",
        ),
        (
            "inverted",
            "49152 65535",
            "65535 49152",
            "ip_local_port_range",
            "1 ≤ LOW ≤ HIGH ≤ 65535",
        ),
        (
            "empty",
            "49152 65535",
            "",
            "ip_local_port_range",
            "LOW HIGH",
        ),
        (
            "outside",
            "49152 65535",
            "49152 70000",
            "ip_local_port_range",
            "≤ 65535",
        ),
        (
            "privileged",
            "49152 65535",
            "500 65535",
            "knobs",
            "ip_unprivileged_port_start",
        ),
        (
            "zero-duration",
            "duration = \"300s\"",
            "duration = \"0s\"",
            "scenario.duration",
            "greater than zero",
        ),
        (
            "bad-duration",
            "duration = \"300s\"",
            "duration = \"5 minutes\"",
            "scenario.duration",
            "ns, us, ms, s, m or h",
        ),
        ("zero-rate", "rate = 500", "rate = 0", "arrival.rate", "> 0"),
        (
            "negative-rate",
            "rate = 500",
            "rate = -1",
            "arrival.rate",
            "> 0",
        ),
        (
            "zero-concurrency",
            "{ kind = \"constant\", rate = 500 }",
            "{ kind = \"closed\", concurrency = 0 }",
            "concurrency",
            "1–10,000,000",
        ),
        ("bad-ip", "\"10.0.0.1\"]", "\"10.0.0.256\"]", "ips", "IPv4"),
        (
            "no-host",
            "client = \"client\"",
            "client = \"clint\"",
            "client",
            "did you mean \"client\"",
        ),
        (
            "no-listener",
            "destinations = [\"10.0.0.2:80\"]",
            "destinations = [\"10.0.0.2:8080\"]",
            "destinations",
            "no listener",
        ),
        (
            "other-kernel",
            "\"net.ipv4.ip_local_port_range\" = \"49152 65535\"",
            "\"net.inet.tcp.msl\" = 1000",
            "net.inet.tcp.msl",
            "\"freebsd\" profile",
        ),
        (
            "kernel-refuses",
            "\"net.ipv4.ip_local_port_range\" = \"49152 65535\"",
            "\"net.ipv4.tcp_tw_reuse\" = 3",
            "tcp_tw_reuse",
            "0, 1 or 2",
        ),
    ];
    for &(name, from, to, key, allowed) in cases {
        let (text, line) = variant(from, to);
        let r = run(name, &text);
        assert_eq!(r.code, Some(2), "{name}: {}", r.stderr);
        let want = format!("{name}.toml:{line}:");
        assert!(
            r.stderr.contains(&want),
            "{name}: wanted {want}: {}",
            r.stderr
        );
        assert!(r.stderr.contains(key), "{name}: key {key}: {}", r.stderr);
        assert!(
            r.stderr.contains(allowed),
            "{name}: {allowed}: {}",
            r.stderr
        );
        assert!(!r.stderr.contains("panicked"), "{name}: {}", r.stderr);
        assert!(r.output_untouched, "{name}: the output file changed");
    }
}

#[test]
fn surprising_but_legal_settings_warn_and_run() {
    let (text, _) = variant("49152 65535", "49152 65534");
    let r = run("parity", &text);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stderr.contains("same parity"), "{}", r.stderr);
    // 20,000/s for 10 days: 1.728e10 attempts, hours at ~2 M/s. `check` only parses.
    let (text, _) = variant("duration = \"300s\"", "duration = \"240h\"");
    let (text, _) = (text.replacen("rate = 500", "rate = 20000", 1), 0);
    let d = dir().join("long.toml");
    std::fs::write(&d, text).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_portsim"))
        .arg("check")
        .arg(&d)
        .output()
        .unwrap();
    assert!(o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("1.728e10 connection attempts") && e.contains(" h of wall time"),
        "{e}"
    );
}

#[test]
fn output_to_a_fifo_or_through_a_symlink_keeps_what_the_path_is() {
    use std::os::unix::fs::FileTypeExt;
    let d = dir();
    let scenario = d.join("out-kinds.toml");
    std::fs::write(&scenario, BASE).unwrap();
    let report = |out: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_portsim"))
            .args(["run", "--format", "json", "-o"])
            .arg(out)
            .arg(&scenario)
            .status()
            .unwrap()
    };

    // A FIFO (as /dev/null or /dev/stdout would be) is written in place, not replaced.
    let fifo = d.join("report.fifo");
    fresh(&[&fifo]);
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read_to_string(fifo).unwrap())
    };
    assert!(report(&fifo).success());
    // Checked before joining: a FIFO renamed over would leave the reader waiting.
    assert!(
        std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo()
    );
    let text = reader.join().unwrap();
    assert!(text.contains("\"schema\": \"portsim.report/1\""), "{text}");

    // A symlink stays a symlink; its target gets the report.
    let target = d.join("target.json");
    let link = d.join("link.json");
    std::fs::write(&target, "old\n").unwrap();
    fresh(&[&link]);
    std::os::unix::fs::symlink(&target, &link).unwrap();
    assert!(report(&link).success());
    assert!(is_link(&link));
    let written = std::fs::read_to_string(&target).unwrap();
    assert!(written.contains("portsim.report/1"), "{written}");

    // A dangling chain: the links stay, the end is created.
    let (first, second, end) = (d.join("chain1"), d.join("chain2"), d.join("chain-end.json"));
    fresh(&[&first, &second, &end]);
    std::os::unix::fs::symlink("chain2", &first).unwrap();
    std::os::unix::fs::symlink("chain-end.json", &second).unwrap();
    assert!(report(&first).success());
    assert!(is_link(&first) && is_link(&second));
    assert!(
        std::fs::read_to_string(&end)
            .unwrap()
            .contains("portsim.report/1")
    );

    // A loop is refused, the links kept.
    let (a, b) = (d.join("loop-a"), d.join("loop-b"));
    fresh(&[&a, &b]);
    std::os::unix::fs::symlink("loop-b", &a).unwrap();
    std::os::unix::fs::symlink("loop-a", &b).unwrap();
    assert!(!report(&a).success());
    assert!(is_link(&a) && is_link(&b));
}

/// Removes what an earlier run left at `paths`.
fn fresh(paths: &[&std::path::Path]) {
    for p in paths {
        let _ = std::fs::remove_file(p);
    }
}

fn is_link(p: &std::path::Path) -> bool {
    std::fs::symlink_metadata(p)
        .unwrap()
        .file_type()
        .is_symlink()
}

#[test]
fn output_to_dev_stdout_appends_where_standard_output_goes() {
    // `portsim run -o /dev/stdout S >> log`: what the log held stays, the report follows it.
    let d = dir();
    let scenario = d.join("stdout.toml");
    std::fs::write(&scenario, BASE).unwrap();
    let log = d.join("stdout.log");
    std::fs::write(&log, "earlier line\n").unwrap();
    let out = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_portsim"))
        .args(["run", "--format", "csv", "-o", "/dev/stdout"])
        .arg(&scenario)
        .stdout(out)
        .status()
        .unwrap();
    assert!(status.success());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.starts_with("earlier line\nt_s,attempts,"), "{text}");
}
