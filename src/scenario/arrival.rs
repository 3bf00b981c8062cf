//! A workload's `arrival` table: when its connections start. Open loops at a constant or
//! Poisson rate, rate steps, bursts at set instants, or a closed loop of `concurrency`
//! connections; each kind refuses the keys that belong to another.

use super::ScenarioError;
use super::raw::{RawArrival, RawWorkload};
use super::value::{Ctx, duration, one_of, rate};
use super::workloads::Key;
use crate::time::{Duration, Instant};
use crate::workload::{Arrival, Rate};
use std::ops::Range;
use toml::Spanned;

/// The arrival process of workload `w`.
pub(super) fn arrival(ctx: &Ctx, w: &RawWorkload, key: Key) -> Result<Arrival, ScenarioError> {
    let a = w.arrival.get_ref();
    let span = w.arrival.span();
    let kind = one_of(
        ctx,
        &a.kind,
        &key.of("arrival.kind"),
        &["constant", "poisson", "steps", "closed", "burst"],
    )?;
    if kind != "burst"
        && let Some(at) =
            a.at.as_ref()
                .map(Spanned::span)
                .or(a.count.as_ref().map(Spanned::span))
                .or(a.bursts.as_ref().map(|_| span.clone()))
    {
        return Err(ctx.err(
            at,
            key.of("arrival"),
            "`at`, `count` and `bursts` belong to kind = \"burst\"",
        ));
    }
    let arrival = match kind {
        "burst" => bursts(ctx, a, span.clone(), &key.of("arrival"))?,
        k @ ("constant" | "poisson") => open(ctx, a, span.clone(), k, key)?,
        "steps" => steps(ctx, a, span.clone(), key)?,
        _ => closed(ctx, a, span.clone(), key)?,
    };
    if matches!(arrival, Arrival::Closed { .. }) && a.rate.is_some() {
        return Err(ctx.err(
            span,
            key.of("arrival.rate"),
            "a closed loop has no rate; it runs `concurrency` connections at once",
        ));
    }
    if matches!(arrival, Arrival::Bursts(_)) && a.rate.is_some() {
        return Err(ctx.err(
            span,
            key.of("arrival.rate"),
            "a burst has no rate: its `count` connections open at once, at `at`",
        ));
    }
    Ok(arrival)
}

/// `kind = "constant"` or `"poisson"`: `rate` connections per second.
fn open(
    ctx: &Ctx,
    a: &RawArrival,
    span: Range<usize>,
    kind: &str,
    key: Key,
) -> Result<Arrival, ScenarioError> {
    let r = a.rate.as_ref().ok_or_else(|| {
        ctx.err(
            span,
            key.of("arrival.rate"),
            format!("kind = {kind:?} needs rate = connections per second"),
        )
    })?;
    let r = rate(ctx, r, &key.of("arrival.rate"), false)?;
    Ok(if kind == "constant" {
        Arrival::Constant(r)
    } else {
        Arrival::Poisson(r)
    })
}

/// `kind = "steps"`: `steps = [{ at, rate }, …]` in increasing `at` order, each rate held
/// until the next step, at constant spacing or as a Poisson `process`.
fn steps(
    ctx: &Ctx,
    a: &RawArrival,
    span: Range<usize>,
    key: Key,
) -> Result<Arrival, ScenarioError> {
    let steps = a.steps.as_ref().filter(|s| !s.is_empty()).ok_or_else(|| {
        ctx.err(
            span,
            key.of("arrival.steps"),
            "kind = \"steps\" needs steps = [{ at = \"0s\", rate = 100 }, …]",
        )
    })?;
    let mut out: Vec<(Duration, Rate)> = Vec::new();
    for s in steps {
        let at = duration(ctx, &s.get_ref().at, &key.of("arrival.steps.at"))?;
        if out.last().is_some_and(|(prev, _)| at <= *prev) {
            return Err(ctx.err(
                s.span(),
                key.of("arrival.steps.at"),
                "steps must be in increasing `at` order",
            ));
        }
        let r = rate(ctx, &s.get_ref().rate, &key.of("arrival.steps.rate"), true)?;
        out.push((at, r));
    }
    let poisson = match &a.process {
        None => false,
        Some(p) => {
            one_of(ctx, p, &key.of("arrival.process"), &["constant", "poisson"])? == "poisson"
        }
    };
    Ok(Arrival::Steps {
        steps: out,
        poisson,
    })
}

/// `kind = "closed"`: `concurrency` connections at once, each followed by the next.
fn closed(
    ctx: &Ctx,
    a: &RawArrival,
    span: Range<usize>,
    key: Key,
) -> Result<Arrival, ScenarioError> {
    let c = a.concurrency.as_ref().ok_or_else(|| {
        ctx.err(
            span,
            key.of("arrival.concurrency"),
            "kind = \"closed\" needs concurrency = N (N ≥ 1)",
        )
    })?;
    if !(1..=10_000_000).contains(c.get_ref()) {
        return Err(ctx.err(
            c.span(),
            key.of("arrival.concurrency"),
            format!("{}: expected an integer 1–10,000,000", c.get_ref()),
        ));
    }
    Ok(Arrival::Closed {
        concurrency: *c.get_ref() as u32,
    })
}

/// `kind = "burst"`: `at` and `count` for one burst, or `bursts = [{ at, count }, …]`.
fn bursts(
    ctx: &Ctx,
    a: &RawArrival,
    span: Range<usize>,
    key: &str,
) -> Result<Arrival, ScenarioError> {
    let mut out: Vec<(Duration, u64)> = Vec::new();
    for (at, count) in burst_list(ctx, a, span, key)? {
        let t = duration(ctx, at, &format!("{key}.at"))?;
        if out.last().is_some_and(|(prev, _)| t <= *prev) {
            return Err(ctx.err(
                at.span(),
                format!("{key}.at"),
                "bursts must be in increasing `at` order",
            ));
        }
        if !(1..=10_000_000).contains(count.get_ref()) {
            return Err(ctx.err(
                count.span(),
                format!("{key}.count"),
                format!("{}: expected an integer 1–10,000,000", count.get_ref()),
            ));
        }
        out.push((t, *count.get_ref() as u64));
    }
    Ok(Arrival::Bursts(out))
}

/// One burst as written: its `at` and its `count`.
type Burst<'a> = (&'a Spanned<String>, &'a Spanned<i64>);

/// The bursts given, one way or the other but not both.
fn burst_list<'a>(
    ctx: &Ctx,
    a: &'a RawArrival,
    span: Range<usize>,
    key: &str,
) -> Result<Vec<Burst<'a>>, ScenarioError> {
    let one = match (&a.at, &a.count) {
        (Some(at), Some(count)) => Some((at, count)),
        (None, None) => None,
        _ => {
            return Err(ctx.err(
                span,
                format!("{key}.count"),
                "a burst needs both `at` and `count`",
            ));
        }
    };
    match (one, &a.bursts) {
        (Some(b), None) => Ok(vec![b]),
        (None, Some(list)) if !list.is_empty() => Ok(list
            .iter()
            .map(|b| (&b.get_ref().at, &b.get_ref().count))
            .collect()),
        (Some(_), Some(_)) => Err(ctx.err(
            span,
            format!("{key}.bursts"),
            "give `at` and `count` for one burst, or `bursts = [...]`, not both",
        )),
        _ => Err(ctx.err(
            span,
            format!("{key}.bursts"),
            "kind = \"burst\" needs at = \"0s\" and count = N, or bursts = [{ at = \"0s\", count = N }, …]",
        )),
    }
}

/// Every burst must open before the workload stops: `at` counts from its `start`.
pub(super) fn bursts_open_before_stop(
    ctx: &Ctx,
    w: &RawWorkload,
    arrival: &Arrival,
    start: Instant,
    stop: Instant,
    key: Key,
) -> Result<(), ScenarioError> {
    if let Arrival::Bursts(list) = arrival
        && let Some((at, _)) = list.iter().find(|(at, _)| start + *at >= stop)
    {
        return Err(ctx.err(
            w.arrival.span(),
            key.of("arrival.at"),
            format!(
                "a burst at {at} after the workload's start comes at or after its stop ({}): it would never open",
                stop - Instant::ZERO
            ),
        ));
    }
    Ok(())
}
