//! What the subcommands share: reading files, loading scenarios with `--set`, writing output,
//! reporting refused input. Each helper prints its own error and returns the exit status.

use super::BAD_INPUT;
use crate::plan::whatif;
use crate::scenario::{self, ScenarioError};
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

/// Prints a refused scenario; exit status [`BAD_INPUT`].
pub(super) fn refuse(e: &ScenarioError) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(BAD_INPUT)
}

/// Whether `path` ends in `.ext`, in any case.
pub(super) fn extension_is(path: Option<&Path>, ext: &str) -> bool {
    path.and_then(|p| p.extension())
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case(ext))
}

/// A `--plot` file named .svg or .png.
pub(super) fn check_plot(path: Option<&Path>) -> Result<(), ExitCode> {
    if let Some(p) = path
        && let Err(e) = crate::plot::check_extension(p)
    {
        eprintln!("error: --plot {e}");
        return Err(ExitCode::from(BAD_INPUT));
    }
    Ok(())
}

/// The `--seeds A..B` argument, if given.
pub(super) fn parse_seeds(arg: Option<&str>) -> Result<Option<crate::replicate::Seeds>, ExitCode> {
    arg.map(crate::replicate::Seeds::parse)
        .transpose()
        .map_err(|e| {
            eprintln!("error: {e}");
            ExitCode::from(BAD_INPUT)
        })
}

/// The `--set KEY=VALUE` arguments.
pub(super) fn parse_sets(set: &[String]) -> Result<Vec<whatif::Change>, ExitCode> {
    set.iter()
        .map(|s| whatif::parse_set(s))
        .collect::<Result<_, _>>()
        .map_err(|e| {
            eprintln!("error: --set {e}");
            ExitCode::from(BAD_INPUT)
        })
}

/// A text file: UTF-8, or UTF-16 with its byte-order mark (what PowerShell 5.1's `>` writes).
pub(super) fn read_text(path: &Path) -> Result<String, ExitCode> {
    let fail = |e: &dyn std::fmt::Display| {
        eprintln!("error: {}: {e}", path.display());
        ExitCode::from(BAD_INPUT)
    };
    let bytes = std::fs::read(path).map_err(|e| fail(&e))?;
    decode(&bytes).map_err(|e| fail(&e))
}

/// `bytes` as text: UTF-16 after its byte-order mark, else UTF-8 (a BOM skipped).
pub(super) fn decode(bytes: &[u8]) -> Result<String, String> {
    let utf16 = |le: bool| {
        let units: Vec<u16> = bytes[2..]
            .chunks_exact(2)
            .map(|c| {
                if le {
                    u16::from_le_bytes([c[0], c[1]])
                } else {
                    u16::from_be_bytes([c[0], c[1]])
                }
            })
            .collect();
        String::from_utf16(&units).map_err(|_| "not valid UTF-16 text".to_string())
    };
    match bytes {
        [0xFF, 0xFE, ..] => utf16(true),
        [0xFE, 0xFF, ..] => utf16(false),
        [0xEF, 0xBB, 0xBF, rest @ ..] => {
            String::from_utf8(rest.to_vec()).map_err(|_| "not valid UTF-8 text".to_string())
        }
        _ => String::from_utf8(bytes.to_vec()).map_err(|_| "not valid UTF-8 text".to_string()),
    }
}

/// A scenario file with `--set` changes made.
pub(super) fn load_with(path: &Path, set: &[String]) -> Result<scenario::Scenario, ExitCode> {
    if set.is_empty() {
        return scenario::load(path).map_err(|e| refuse(&e));
    }
    let changes = parse_sets(set)?;
    let text = read_text(path)?;
    let file = path.display().to_string();
    let text = with_changes(&file, &text, &changes)?;
    scenario::parse(&file, &text).map_err(|e| refuse(&e))
}

/// Scenario `text` with the `--set` changes made, once it parses as it is (an error in the
/// file is reported against the file, not the change).
pub(super) fn with_changes(
    file: &str,
    text: &str,
    changes: &[whatif::Change],
) -> Result<String, ExitCode> {
    scenario::parse(file, text).map_err(|e| refuse(&e))?;
    whatif::apply(file, text, changes).map_err(|e| {
        eprintln!("error: --set {e}");
        ExitCode::from(BAD_INPUT)
    })
}

/// Writes `text` to standard output, or atomically to `output`.
pub(super) fn emit(output: Option<&Path>, text: &str) -> Result<(), ExitCode> {
    match output {
        None => {
            if std::io::stdout().lock().write_all(text.as_bytes()).is_err() {
                return Err(ExitCode::FAILURE);
            }
        }
        Some(path) => {
            if let Err(e) = crate::write_atomically(path, text.as_bytes()) {
                eprintln!("error: cannot write {}: {e}", path.display());
                return Err(ExitCode::FAILURE);
            }
        }
    }
    Ok(())
}

/// A progress bar on standard error (drawn only on a terminal) counting `len` `what`.
pub(super) fn progress(len: u64, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(len),
        indicatif::ProgressDrawTarget::stderr(),
    );
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{{bar:40}} {{pos}}/{{len}} {what} · {{elapsed_precise}} · about {{eta}} left"
        ))
        .expect("a valid template"),
    );
    bar
}
