//! The verdict on a live run: predicted against measured, row by row, by the scenario's
//! `[live]` tolerances ([`compare`]); whether the machine could keep up
//! ([`could_not_keep_up`]); and what the rows add up to ([`verdict`]).

use super::{Check, Measured, leading_even};
use crate::report::Report;
use crate::scenario::Scenario;
use crate::workload::Arrival;
use std::collections::BTreeSet;

/// Why a difference would say nothing about the port model: the machine could not run the
/// workload as scheduled. `None` when it could.
pub(super) fn could_not_keep_up(sc: &Scenario, p: &Report, m: &Measured) -> Option<String> {
    if m.accept_errors > 0 {
        return Some(format!(
            "the server failed {} accept() calls for lack of descriptors or memory",
            m.accept_errors
        ));
    }
    if m.late_arrivals * 100 > m.attempted.max(1) {
        return Some(format!(
            "the generator fell behind its arrivals: {} of {} started more than 5 ms late",
            m.late_arrivals, m.attempted
        ));
    }
    if m.generator_busy <= 0.8 && m.machine_busy <= 0.9 {
        return None;
    }
    let cpu = format!(
        "the machine was CPU-bound (this run used {:.0} % of its CPUs, every process {:.0} %)",
        100.0 * m.generator_busy,
        100.0 * m.machine_busy
    );
    if sc
        .workloads
        .iter()
        .any(|w| matches!(w.arrival, Arrival::Closed { .. }) && !w.limit.is_set())
    {
        return Some(format!(
            "{cpu}, and a closed loop's rate is what the CPU allows"
        ));
    }
    // A limit the prediction reached and the run did not, while the run was still
    // establishing connections at its end: the machine was too slow, not the ports.
    let working = m.series.last().is_some_and(|b| b.established > 0);
    let unfinished = sc
        .workloads
        .iter()
        .zip(&p.workloads)
        .zip(&m.workloads)
        .any(|((w, pw), mw)| w.limit.is_set() && pw.stopped_s.is_some() && mw.stopped_s.is_none());
    (working && unfinished).then(|| {
        format!("{cpu}, and it was still working through a limit the prediction reached when the run ended")
    })
}

/// The verdict on a run's checks, and the note that says why when it is not plain. `agree`
/// needs every judged check to pass and at least one judged metric the run produced (non-zero
/// on a side): judged metrics that are all zero on both sides could not have shown a
/// difference, so such a run is `inconclusive`. A failing check is `disagree`, or
/// `inconclusive` with `excuse` (the machine could not keep up).
pub fn verdict(
    checks: &[Check],
    interrupted: bool,
    capped: bool,
    excuse: Option<String>,
) -> (&'static str, Option<String>) {
    if interrupted {
        return ("interrupted", None);
    }
    if capped {
        return ("capped", None);
    }
    let judged: Vec<&Check> = checks.iter().filter(|c| c.judged).collect();
    if judged.is_empty() {
        return (
            "inconclusive",
            Some("inconclusive: no metric is judged".into()),
        );
    }
    if judged.iter().all(|c| c.pass) {
        if judged
            .iter()
            .any(|c| c.predicted != 0.0 || c.measured != 0.0)
        {
            return ("agree", None);
        }
        return (
            "inconclusive",
            Some(
                "inconclusive: every judged metric is zero, predicted and measured, so this \
                 run could not have shown a difference"
                    .into(),
            ),
        );
    }
    match excuse {
        Some(why) => (
            "inconclusive",
            Some(format!(
                "inconclusive: {why}; the difference says nothing about the port model"
            )),
        ),
        None => ("disagree", None),
    }
}

/// Predicted against measured, by the scenario's `[live]` tolerances. `leading_even_ports`
/// is not judged unless named where the application or IP_LOCAL_PORT_RANGE picks the ports
/// (explicit ports; no parity rule with a per-socket range, §1.2 step 6).
pub(super) fn compare(sc: &Scenario, p: &Report, m: &Measured) -> Vec<Check> {
    let tol = sc.live.tolerance;
    let predicted_even: u64 = p
        .pools
        .iter()
        .filter_map(|pool| pool.port_use.as_ref())
        .map(|u| leading_even(&u.first))
        .sum();
    let mut rows: Vec<(String, f64, f64)> = vec![
        (
            "attempted".into(),
            p.summary.connections.attempted as f64,
            m.attempted as f64,
        ),
        (
            "established".into(),
            p.summary.connections.established as f64,
            m.established as f64,
        ),
        (
            "failed".into(),
            p.summary.connections.failed as f64,
            m.failed.values().sum::<u64>() as f64,
        ),
        (
            "requests_completed".into(),
            p.summary.requests.completed as f64,
            m.requests_completed as f64,
        ),
        (
            "time_wait_peak".into(),
            p.series
                .iter()
                .map(|b| b.time_wait_client + b.time_wait_server)
                .max()
                .unwrap_or(0) as f64,
            f64::from(m.time_wait_peak_sampled),
        ),
        (
            "time_wait_at_end".into(),
            f64::from(p.summary.time_wait.at_end),
            f64::from(m.time_wait_at_end),
        ),
        (
            "leading_even_ports".into(),
            predicted_even as f64,
            m.leading_even_ports as f64,
        ),
    ];
    rows.extend(super::nat::rows(p, &m.nat));
    let predicted_refill = first_refill(
        p.series
            .iter()
            .map(|b| (b.t_s, b.failed.values().sum(), b.established)),
    );
    let measured_refill = first_refill(
        m.series
            .iter()
            .map(|b| (b.t_s, b.failed.values().sum(), b.established)),
    );
    if predicted_refill.is_some() || measured_refill.is_some() {
        rows.push((
            FIRST_REFILL.into(),
            predicted_refill.unwrap_or(0.0),
            measured_refill.unwrap_or(0.0),
        ));
    }
    let names: BTreeSet<String> = p
        .summary
        .errors
        .keys()
        .map(|k| k.to_string())
        .chain(m.failed.keys().cloned())
        .collect();
    for n in names {
        rows.push((
            format!("failed {n}"),
            p.summary.errors.get(n.as_str()).copied().unwrap_or(0) as f64,
            m.failed.get(&n).copied().unwrap_or(0) as f64,
        ));
    }
    let app_ports = sc.workloads.iter().any(|w| {
        matches!(w.mode, crate::workload::Mode::Explicit { .. }) || w.local_port_range.is_some()
    });
    rows.into_iter()
        .map(|(metric, predicted, measured)| {
            let named = |list: &[String]| {
                list.iter()
                    .any(|e| metric == *e || metric.starts_with(&format!("{e} ")))
            };
            let exact = named(&sc.live.exact);
            let ignored = named(&sc.live.ignore);
            let unruled = metric == "leading_even_ports" && app_ports && !exact;
            let (rule, judged, pass) = if ignored {
                ("not judged".to_string(), false, true)
            } else if unruled {
                (
                    "not judged: the application picks the ports".to_string(),
                    false,
                    true,
                )
            } else if metric == FIRST_REFILL {
                let slack = refill_slack(sc);
                (
                    format!("within {slack:.3} s (the TIME-WAIT clock's granularity and two bins)"),
                    true,
                    (predicted - measured).abs() <= slack,
                )
            } else if exact {
                ("exact".to_string(), true, predicted == measured)
            } else {
                (
                    format!("relative ≤ {tol}"),
                    true,
                    (predicted - measured).abs() <= tol * predicted.abs().max(measured.abs()),
                )
            };
            Check {
                metric,
                predicted,
                measured,
                rule,
                judged,
                pass,
            }
        })
        .collect()
}

/// The row of [`first_refill`].
const FIRST_REFILL: &str = "first_refill_s";

/// When ports came back: the start of the first bin, after one where connect() failed, in
/// which a connection was established. After a burst fills the range, that is the first
/// TIME-WAIT's expiry, which the kernel's timer wheel rounds (src/tw_timer.rs).
fn first_refill(bins: impl Iterator<Item = (f64, u64, u64)>) -> Option<f64> {
    let mut failed = false;
    for (t, fails, established) in bins {
        if failed && established > 0 {
            return Some(t);
        }
        failed |= fails > 0;
    }
    None
}

/// How far apart a prediction and a run's [`first_refill`] may be: the largest TIME-WAIT
/// clock granularity of the scenario's hosts plus two bins.
fn refill_slack(sc: &Scenario) -> f64 {
    let gran = sc
        .hosts
        .iter()
        .map(|h| {
            crate::tw_timer::TwClock::new(h.profile.tw_timer, 0, h.profile.time_wait).granularity()
        })
        .max()
        .unwrap_or_default();
    gran.as_secs_f64() + 2.0 * sc.bin.as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(metric: &str, predicted: f64, measured: f64, judged: bool) -> Check {
        Check {
            metric: metric.into(),
            predicted,
            measured,
            rule: String::new(),
            judged,
            pass: !judged || predicted == measured,
        }
    }

    #[test]
    fn a_verdict_on_zeros_alone_is_inconclusive_however_much_else_ran() {
        let checks = [
            row("failed", 0.0, 0.0, true),
            row("time_wait_at_end", 0.0, 0.0, true),
            // The run: established far apart, but ignored.
            row("established", 110_336.0, 128.0, false),
        ];
        let (v, why) = verdict(&checks, false, false, None);
        assert_eq!(v, "inconclusive");
        assert!(why.unwrap().contains("zero"));
    }

    #[test]
    fn agree_needs_one_judged_metric_the_run_produced() {
        let checks = [
            row("failed", 0.0, 0.0, true),
            row("established", 25.0, 25.0, true),
        ];
        assert_eq!(verdict(&checks, false, false, None), ("agree", None));
        // A difference on one side only is a difference, not a zero.
        let checks = [row("failed", 0.0, 3.0, true)];
        assert_eq!(verdict(&checks, false, false, None).0, "disagree");
        assert_eq!(verdict(&[], false, false, None).0, "inconclusive");
    }

    #[test]
    fn a_difference_is_inconclusive_only_with_an_excuse_and_a_stop_outranks_both() {
        let checks = [row("established", 100.0, 60.0, true)];
        assert_eq!(verdict(&checks, false, false, None).0, "disagree");
        let (v, why) = verdict(&checks, false, false, Some("the machine was busy".into()));
        assert_eq!(v, "inconclusive");
        assert!(why.unwrap().contains("the machine was busy"));
        assert_eq!(verdict(&checks, true, true, None).0, "interrupted");
        assert_eq!(verdict(&checks, false, true, None).0, "capped");
    }
}
