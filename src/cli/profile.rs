//! `portsim profiles` and `portsim profile`.

use super::io::{decode, read_text};
use super::{BAD_INPUT, Outcome};
use crate::plan::import;
use crate::profile::{PROFILES, Profile, Scope};
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
    for (name, title) in PROFILES {
        let p = Profile::named(name).expect("shipped profile");
        let (lo, hi) = p.port_range;
        println!(
            "{name:<8} {title}\n         ports {lo}–{hi} ({}), TIME-WAIT {}, {}, selection {}",
            p.range_len(),
            p.time_wait,
            match p.scope {
                Scope::FourTuple => "ports shared across destinations",
                Scope::HostWide => "one connection per port host-wide",
            },
            p.selection.name()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `portsim profile`: an imported host's or a named profile's `[[host]]` block.
pub(super) fn profile(a: ProfileArgs) -> Outcome {
    match (imported(&a)?, a.action) {
        (Some(Ok(i)), _) => {
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
                let names: Vec<&str> = PROFILES.iter().map(|p| p.0).collect();
                eprintln!(
                    "error: {name:?}: unknown profile; available: {}",
                    names.join(", ")
                );
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
