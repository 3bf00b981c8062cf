//! The `[live]` table: how `portsim live` judges predicted against measured. Metrics judged
//! exactly or ignored, the tolerance for the others, and the live run's connection cap.

use super::raw::RawLive;
use super::value::{Ctx, list};
use super::{LIVE_METRICS, LiveSpec, SAMPLED_METRICS, ScenarioError};
use toml::Spanned;

/// `[live]`, or the defaults (5 % tolerance, nothing exact) when the file has none.
pub(super) fn live(ctx: &Ctx, raw: Option<&Spanned<RawLive>>) -> Result<LiveSpec, ScenarioError> {
    let mut live = LiveSpec {
        exact: Vec::new(),
        ignore: Vec::new(),
        tolerance: 0.05,
        max_connections: None,
    };
    let Some(l) = raw else {
        return Ok(live);
    };
    let l = l.get_ref();
    for e in &l.exact {
        live.exact.push(metric(ctx, "live.exact", e)?);
    }
    for e in &l.ignore {
        live.ignore.push(metric(ctx, "live.ignore", e)?);
    }
    if let Some(t) = &l.tolerance {
        let v = *t.get_ref();
        if !(0.0..=1.0).contains(&v) {
            return Err(ctx.err(
                t.span(),
                "live.tolerance",
                format!("{v}: a relative difference between 0 and 1, e.g. 0.05"),
            ));
        }
        live.tolerance = v;
    }
    if let Some(m) = &l.max_connections {
        if *m.get_ref() == 0 {
            return Err(ctx.err(m.span(), "live.max_connections", "must be at least 1"));
        }
        live.max_connections = Some(*m.get_ref());
    }
    Ok(live)
}

/// A metric of [`LIVE_METRICS`] or "failed ERRNO"; a sampled gauge cannot be `exact`.
fn metric(ctx: &Ctx, field: &str, e: &Spanned<String>) -> Result<String, ScenarioError> {
    let name = e.get_ref();
    let base = name.split(' ').next().unwrap_or("");
    if !LIVE_METRICS.contains(&base) || (base != "failed" && name.contains(' ')) {
        return Err(ctx.err(
            e.span(),
            field,
            format!(
                "{name:?}: not a metric; allowed: {}, or \"failed ERRNO\"",
                list(LIVE_METRICS)
            ),
        ));
    }
    if field == "live.exact" && SAMPLED_METRICS.contains(&name.as_str()) {
        return Err(ctx.err(
            e.span(),
            field,
            format!(
                "{name:?} is sampled at bin ends through sock_diag and a sample can miss the peak, so it cannot be judged exactly; judge \"time_wait_at_end\" exactly (counted once the run is quiet) and leave {name:?} to the tolerance"
            ),
        ));
    }
    Ok(name.clone())
}
