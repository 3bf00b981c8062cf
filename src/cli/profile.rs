//! `portsim profiles` and `portsim profile`.

use super::io::{decode, read_text};
use super::{BAD_INPUT, Outcome};
use crate::plan::import;
use crate::profile::{Profile, Scope, all_profiles, unknown_profile};
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Args)]
pub(super) struct ProfileArgs {
    #[command(subcommand)]
    action: Option<ProfileAction>,
    /// Read this Linux host's knobs from /proc/sys.
    #[arg(long, group = "from")]
    from_host: bool,
    /// Parse `sysctl -a` output (Linux, FreeBSD or macOS) saved to FILE ("-": stdin).
    #[arg(long, group = "from", value_name = "FILE")]
    from_sysctl: Option<PathBuf>,
    /// Parse `netsh int ipv4 show dynamicport tcp` output saved to FILE ("-": stdin).
    #[arg(long, group = "from", value_name = "FILE")]
    from_netsh: Option<PathBuf>,
}

#[derive(Subcommand)]
enum ProfileAction {
    /// Print a profile's defaults as a [[host]] block to paste into a scenario.
    Show { name: String },
}

/// `portsim profiles`: each shipped profile's name, title and deciding numbers.
pub(super) fn profiles() -> Outcome {
    for (name, title) in all_profiles() {
        let Some(p) = Profile::named(name) else {
            continue;
        };
        let (lo, hi) = p.port_range;
        println!(
            "{name:<11} {title}\n            ports {lo}–{hi} ({}), TIME-WAIT {}, {}, selection {}{}",
            p.range_len(),
            p.time_wait,
            match p.scope {
                Scope::FourTuple => "ports shared across destinations",
                Scope::HostWide => "one connection per port host-wide",
            },
            p.selection.name(),
            linux_numbers(&p)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The numbers that tell Linux releases apart: tcp_tw_reuse and its clock, the SYN schedule,
/// the TSval offset and bind(0)'s search.
fn linux_numbers(p: &Profile) -> String {
    use crate::profile::{BindSearch, Kernel, ReuseClock, TsOffset, TwTimer};
    if p.kernel != Kernel::Linux {
        return String::new();
    }
    let reuse = match p.tw_reuse_clock {
        ReuseClock::Millis => format!("after {} ms", p.tw_reuse_delay_ms),
        ReuseClock::Seconds { more_than: 0 } => "after (0, 1] s".into(),
        ReuseClock::Seconds { more_than } => {
            format!("after ({more_than}, {}] s", u16::from(more_than) + 1)
        }
    };
    format!(
        "\n            tcp_tw_reuse {} {reuse}, tcp_syn_linear_timeouts {}, TSval offset {}, bind(0) {}, TIME-WAIT timer {}",
        p.tw_reuse,
        p.syn_linear,
        match p.ts_offset {
            TsOffset::None => "none",
            TsOffset::PerHostPair => "per host pair",
            TsOffset::PerTuple => "per four-tuple",
            TsOffset::PerConnection => "per connection",
        },
        match p.bind_search {
            BindSearch::Strict => "strict",
            BindSearch::SmallestShared => "falls back to a shared SO_REUSEADDR port",
            BindSearch::Sequential => "sequential, falls back to a shared SO_REUSEADDR port",
        },
        match p.tw_timer {
            TwTimer::Exact => "exact".to_string(),
            TwTimer::Wheel { hz } => format!("wheel at HZ={hz}"),
            TwTimer::DeathRow { hz } => format!("death row at HZ={hz}"),
            TwTimer::Scan { period_ms } => format!("scanned every {period_ms} ms"),
        }
    )
}

/// `portsim profile`: an imported host's or a named profile's `[[host]]` block.
pub(super) fn profile(a: ProfileArgs) -> Outcome {
    match (imported(&a)?, a.action) {
        (Some(Ok(i)), _) => {
            if let Some(note) = &i.note {
                eprintln!("{note}");
            }
            print!("{}", i.to_toml());
            Ok(ExitCode::SUCCESS)
        }
        (Some(Err(e)), _) => {
            eprintln!("error: {e}");
            Err(ExitCode::from(BAD_INPUT))
        }
        (None, Some(ProfileAction::Show { name })) => match Profile::named(&name) {
            Some(p) => {
                print!("{}", p.to_toml_block(&name));
                Ok(ExitCode::SUCCESS)
            }
            None => {
                eprintln!("error: {}", unknown_profile(&name));
                Err(ExitCode::from(BAD_INPUT))
            }
        },
        (None, None) => {
            eprintln!(
                "error: give `show NAME`, --from-host, --from-sysctl FILE or --from-netsh FILE"
            );
            Err(ExitCode::from(BAD_INPUT))
        }
    }
}

/// The host the `--from-…` flag names, imported; `None` without one.
fn imported(
    a: &ProfileArgs,
) -> Result<Option<Result<import::Imported, import::ImportError>>, ExitCode> {
    Ok(if a.from_host {
        Some(import::from_proc(Path::new("/proc/sys")))
    } else if let Some(p) = &a.from_sysctl {
        let (src, t) = read(p)?;
        Some(import::from_sysctl(&src, &t))
    } else if let Some(p) = &a.from_netsh {
        let (src, t) = read(p)?;
        Some(import::from_netsh(&src, &t))
    } else {
        None
    })
}

/// A file's name and text; "-" is standard input.
fn read(p: &Path) -> Result<(String, String), ExitCode> {
    if p != Path::new("-") {
        return Ok((p.display().to_string(), read_text(p)?));
    }
    let fail = |e: &dyn std::fmt::Display| {
        eprintln!("error: standard input: {e}");
        ExitCode::from(BAD_INPUT)
    };
    let mut b = vec![];
    std::io::Read::read_to_end(&mut std::io::stdin(), &mut b).map_err(|e| fail(&e))?;
    let t = decode(&b).map_err(|e| fail(&e))?;
    Ok(("standard input".into(), t))
}
