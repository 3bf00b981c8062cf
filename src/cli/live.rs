//! `portsim live`.

use super::io::{check_plot, emit, refuse};
use super::{BAD_INPUT, LiveFormat, Outcome};
use crate::live;
use crate::plot;
use crate::scenario::{self, Scenario};
use crate::time::Duration;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub(super) struct LiveArgs {
    /// The scenario file (TOML); not with --calibrate or --reconnect-loop.
    #[arg(
        required_unless_present_any = ["calibrate", "reconnect_loop"],
        conflicts_with_all = ["calibrate", "reconnect_loop"]
    )]
    scenario: Option<PathBuf>,
    /// Measure what connect() costs on this kernel (fixed + per candidate port examined) in
    /// a private network namespace and print the fit and the `[host.model]` lines to paste.
    #[arg(long)]
    calibrate: bool,
    /// Calibrate, then run memtier's `-t 1 -c 128 --reconnect-interval 1` loop on this kernel
    /// in a private namespace (until the first EADDRNOTAVAIL, 60 s or 40,000 connections)
    /// and judge portsim's prediction with the calibrated cost against it.
    #[arg(long, conflicts_with = "calibrate")]
    reconnect_loop: bool,
    /// With --reconnect-loop: the namespace's ip_local_port_range, e.g. "32768 43007"
    /// (default: Linux's "32768 60999"; a narrower one runs in less time).
    #[arg(long, value_name = "LOW HIGH", requires = "reconnect_loop")]
    port_range: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = LiveFormat::Text)]
    format: LiveFormat,
    /// Write the report to this file instead of standard output (atomically).
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Stop after starting this many connections (default: the scenario's
    /// [live] max_connections, else 2,000,000).
    #[arg(long)]
    max_connections: Option<u64>,
    /// Also draw predicted against measured to this file (.svg or .png).
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Fault injection: the server waits this long before each accept(), e.g. "20ms"
    /// (a listener slow to accept; the prediction does not model it).
    #[arg(long, value_name = "DURATION")]
    accept_delay: Option<String>,
    /// Fault injection: the server never calls accept() (the kernel still completes
    /// handshakes into the backlog; no request is answered).
    #[arg(long)]
    never_accept: bool,
    /// Fault injection: write this knob into the run's namespace after the prediction's
    /// knobs were read back, e.g. 'net.ipv4.ip_local_port_range=40000 40004'; the
    /// prediction does not know it. Through a NAT, a
    /// 'net.netfilter.nf_conntrack_tcp_timeout_*' knob goes to the router's namespace.
    /// Repeatable.
    #[arg(long, value_name = "NAME=VALUE")]
    fault_sysctl: Vec<String>,
}

/// `portsim live`: the report, the chart if asked; exit status 0 when the run agreed with
/// the prediction, else 1.
pub(super) fn live(a: LiveArgs) -> Outcome {
    if a.reconnect_loop {
        return reconnect_loop(&a);
    }
    let Some(path) = a.scenario.clone() else {
        return calibrate(&a);
    };
    let sc = scenario::load(&path).map_err(|e| refuse(&e))?;
    check_plot(a.plot.as_deref())?;
    let opts = options(&sc, &a)?;
    let report = live::run(&sc, opts).map_err(|e| match e {
        live::LiveError::Refused(_) => {
            eprintln!("error: {}: {e}", path.display());
            ExitCode::from(BAD_INPUT)
        }
        e => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    })?;
    write(&a, || report.to_text(), || report.to_json())?;
    if let Some(p) = &a.plot
        && let Err(e) = plot::save(&plot::live_chart(&plot::LiveView::of(&report)), p)
    {
        eprintln!("error: {e}");
        return Err(ExitCode::FAILURE);
    }
    Ok(exit_status(report.verdict))
}

/// The report as `--format` asks, to `-o` or standard output.
fn write(
    a: &LiveArgs,
    text: impl FnOnce() -> String,
    json: impl FnOnce() -> String,
) -> Result<(), ExitCode> {
    let out = match a.format {
        LiveFormat::Text => text(),
        LiveFormat::Json => json(),
    };
    emit(a.output.as_deref(), &out)
}

/// Exit status 0 when the prediction and the kernel agree, else 1.
fn exit_status(verdict: &str) -> ExitCode {
    if verdict == "agree" {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// `portsim live --calibrate`: the fit as text (or JSON), exit status 0.
fn calibrate(a: &LiveArgs) -> Outcome {
    let fit = live::calibrate::run(live::calibrate::HELD).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::FAILURE
    })?;
    let kernel = live::calibrate::kernel_release();
    write(a, || fit.to_text(&kernel), || fit.to_json(&kernel))?;
    Ok(ExitCode::SUCCESS)
}

/// `portsim live --reconnect-loop`: the measurement, the prediction and the verdict; exit
/// status 0 when they agree, else 1.
fn reconnect_loop(a: &LiveArgs) -> Outcome {
    let range = match a.port_range.as_deref().map(port_range).transpose() {
        Ok(r) => r.unwrap_or(live::reconnect::DEFAULT_RANGE),
        Err(e) => {
            eprintln!(
                "error: --port-range {:?}: {e}",
                a.port_range.as_deref().unwrap_or("")
            );
            return Err(ExitCode::from(BAD_INPUT));
        }
    };
    let report = live::reconnect::run(range).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::FAILURE
    })?;
    write(a, || report.to_text(), || report.to_json())?;
    Ok(exit_status(report.verdict))
}

/// `LOW HIGH` for --port-range: `LOW` even and at least 1024, `HIGH` odd (an even count:
/// `__inet_hash_connect` leaves out the last port of an odd one), at least 1,024 ports (the
/// 128 connections need room in each parity).
fn port_range(text: &str) -> Result<(u16, u16), String> {
    let bad = || {
        "expected \"LOW HIGH\" with LOW even and ≥ 1024, HIGH odd, ≥ LOW + 1023 and ≤ 65535"
            .to_string()
    };
    let mut it = text.split_whitespace().map(str::parse::<u16>);
    let (Some(Ok(low)), Some(Ok(high)), None) = (it.next(), it.next(), it.next()) else {
        return Err(bad());
    };
    if low % 2 != 0 || high % 2 != 1 || low < 1024 || u32::from(high) < u32::from(low) + 1023 {
        return Err(bad());
    }
    Ok((low, high))
}

/// The run's cap and faults, from the flags and the scenario's `[live]` table.
fn options(sc: &Scenario, a: &LiveArgs) -> Result<live::Options, ExitCode> {
    let accept_delay = match a.accept_delay.as_deref().map(Duration::parse).transpose() {
        Ok(d) => std::time::Duration::from_nanos(d.map_or(0, |d| d.0)),
        Err(e) => {
            eprintln!("error: --accept-delay: {e}");
            return Err(ExitCode::from(BAD_INPUT));
        }
    };
    let mut fault_sysctls = Vec::new();
    for f in &a.fault_sysctl {
        let Some((name, value)) = f.split_once('=') else {
            eprintln!(
                "error: --fault-sysctl {f:?}: expected NAME=VALUE, e.g. \
                 'net.ipv4.ip_local_port_range=40000 40004'"
            );
            return Err(ExitCode::from(BAD_INPUT));
        };
        fault_sysctls.push((name.trim().to_string(), value.trim().to_string()));
    }
    Ok(live::Options {
        max_connections: a
            .max_connections
            .or(sc.live.max_connections)
            .unwrap_or(live::MAX_CONNECTIONS),
        server_faults: live::load::ServerFaults {
            accept_delay,
            never_accept: a.never_accept,
        },
        fault_sysctls,
    })
}
