//! What the live tests share: one run at a time, the binary, the shipped live scenarios, a
//! run's JSON report and exit status, and a run that must agree.

use serde_json::Value;
use std::path::Path;
use std::process::Command;

/// Live runs one at a time: run side by side, the CPU-bound ceiling runs starve the small
/// exact ones, whose counts then depend on the scheduler rather than on the kernel's rules.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn portsim() -> Command {
    Command::new(env!("CARGO_BIN_EXE_portsim"))
}

pub fn shipped(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios/live")
        .join(name)
}

/// Runs `portsim live --format json` on `path` with `args`: the report and the exit status;
/// `None` (with the reason printed) when this machine cannot make a network namespace.
pub fn run_live(path: &Path, args: &[&str]) -> Option<(Value, Option<i32>)> {
    let path = path.to_str().expect("a UTF-8 path");
    live_json(&[args, &[path]].concat())
}

/// Runs `portsim live --format json ARGS`: the report and the exit status; `None` (with the
/// reason printed) when this machine cannot make a network namespace.
pub fn live_json(args: &[&str]) -> Option<(Value, Option<i32>)> {
    let out = portsim()
        .args(["live", "--format", "json"])
        .args(args)
        .output()
        .expect("portsim runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("namespace:") {
        eprintln!("SKIPPED {args:?}: {}", stderr.trim());
        return None;
    }
    let r: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{args:?}: {e}\nstderr: {stderr}"));
    Some((r, out.status.code()))
}

/// Runs a shipped scenario live; it must agree (exit status 0).
pub fn agree(name: &str) -> Option<Value> {
    let (r, code) = run_live(&shipped(name), &[])?;
    assert_eq!(
        r["verdict"], "agree",
        "{name}: {}\n{}",
        r["checks"], r["notes"]
    );
    assert_eq!(code, Some(0));
    Some(r)
}
