//! The fuzz target's interesting inputs (`tests/fuzz-regressions/`, one per distinct outcome of
//! a 12-minute `cargo fuzz` run, README "Fuzzing"): each parses or is refused with a reason,
//! and each valid one runs in checking mode without breaking an invariant.

#[test]
fn every_saved_fuzz_input_is_refused_cleanly_or_runs_checked() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-regressions");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() > 200);
    for f in files {
        let data = std::fs::read(&f).unwrap();
        let run = std::panic::catch_unwind(|| portsim::fuzz_scenario(&data));
        assert!(run.is_ok(), "{}", f.display());
    }
}
