//! `[[workload]]` tables, assembled in the order their keys are checked: name, endpoints
//! ([`super::endpoints`]), arrival ([`super::arrival`]), the exchange (requests, latencies,
//! who closes), what a failed connect() does (`on_error`), and when the workload ends
//! (`start`, `stop`, `limit`).

use super::ScenarioError;
use super::arrival;
use super::endpoints;
use super::hosts::Hosts;
use super::raw::{RawLimit, RawOnError, RawWorkload};
use super::value::{Ctx, dist, duration, one_of};
use crate::time::{Duration, Instant};
use crate::workload::{Arrival, Closer, Dist, Limit, OnError, PerInstance, Rate, Workload};
use toml::Spanned;

/// Names the keys of `[[workload]]` entry `.0` in errors: `workload[2].arrival.rate`.
#[derive(Clone, Copy)]
pub(super) struct Key(pub(super) usize);

impl Key {
    pub(super) fn of(self, k: &str) -> String {
        format!("workload[{}].{k}", self.0)
    }
}

/// Every `[[workload]]`, on `hosts`, within a scenario of length `total`; at least one.
pub(super) fn workloads(
    ctx: &Ctx,
    raw: &[RawWorkload],
    hosts: &Hosts,
    total: Duration,
) -> Result<Vec<Workload>, ScenarioError> {
    let mut workloads: Vec<Workload> = Vec::new();
    for (i, w) in raw.iter().enumerate() {
        let workload = workload(ctx, Key(i), w, hosts, total, &workloads)?;
        workloads.push(workload);
    }
    if workloads.is_empty() {
        return Err(ctx.err(0..0, "workload", "no [[workload]]: nothing would connect"));
    }
    Ok(workloads)
}

/// One workload; `before` are the ones above it in the file.
fn workload(
    ctx: &Ctx,
    key: Key,
    w: &RawWorkload,
    hosts: &Hosts,
    total: Duration,
    before: &[Workload],
) -> Result<Workload, ScenarioError> {
    let name = w.name.get_ref().clone();
    if name.is_empty() || before.iter().any(|x| x.name == name) {
        return Err(ctx.err(
            w.name.span(),
            key.of("name"),
            format!("{name:?}: workload names must be unique and non-empty"),
        ));
    }
    let clients = endpoints::client_hosts(ctx, w, hosts, key)?;
    let mode = endpoints::mode(ctx, w, &hosts.specs, &clients, key)?;
    let sources = endpoints::sources(ctx, w, &hosts.specs, &clients, mode, key)?;
    let destinations = endpoints::destinations(ctx, w, hosts, &clients, key)?;
    let spread = endpoints::spread(ctx, w, key)?;
    let arrival = arrival::arrival(ctx, w, key)?;
    let requests = requests_per_connection(ctx, w, key)?;
    let rtt = dist(ctx, &w.rtt, &key.of("rtt"))?;
    let service_time = match &w.service_time {
        None => Dist::Fixed(Duration::ZERO),
        Some(s) => dist(ctx, s, &key.of("service_time"))?,
    };
    let request_bytes = request_bytes(ctx, w, key)?;
    let closer = closer(ctx, w, requests, key)?;
    let local_port_range = endpoints::local_port_range(ctx, w, mode, key)?;
    if let Some(r) = w
        .local_port_range
        .as_ref()
        .filter(|_| local_port_range.is_some())
    {
        super::hosts::local_port_range_exists(
            ctx,
            r.span(),
            &hosts.specs,
            &clients,
            key.of("local_port_range"),
        )?;
    }
    let closed = matches!(arrival, Arrival::Closed { .. });
    let on_error = match &w.on_error {
        None => OnError::Count {
            delay: Duration::from_millis(1),
        },
        Some(o) => on_error(ctx, o.get_ref(), closed, key)?,
    };
    let (start, stop) = window(ctx, w, total, key)?;
    arrival::bursts_open_before_stop(ctx, w, &arrival, start, stop, key)?;
    let limit = match &w.limit {
        None => Limit::default(),
        Some(l) => limit(ctx, l, requests, &key.of("limit"))?,
    };
    let threads = threads(ctx, w, &arrival, key)?;
    let pool = super::pool::pool(ctx, w, key)?;
    let on_fleet = hosts.specs[clients[0] as usize].fleet.is_some();
    if let (true, Some(t)) = (
        on_fleet && pool.is_some(),
        w.pool.as_ref().or(w.library.as_ref()),
    ) {
        return Err(ctx.err(
            t.span(),
            key.of(if w.pool.is_some() { "pool" } else { "library" }),
            "a client pool on a fleet is not modelled: each instance would keep its own; \
             give the pool's workload a listed client host",
        ));
    }
    let (arrival, per_instance) = if on_fleet {
        let arrival = per_instance(ctx, w, arrival, clients.len(), key)?;
        (arrival, Some(PerInstance::of(&sources)))
    } else {
        (arrival, None)
    };
    Ok(Workload {
        name,
        sources,
        per_instance,
        destinations,
        spread,
        arrival,
        requests_per_connection: requests,
        rtt,
        service_time,
        request_bytes,
        closer,
        linger_zero: w.linger_zero,
        mode,
        reuseaddr: w.reuseaddr,
        local_port_range,
        on_error,
        start,
        stop,
        limit,
        threads,
        pool,
    })
}

/// `threads`: the application threads a closed loop's connections share (memtier `-t`,
/// wrk `-t`), 1 to `concurrency`; absent, a thread per connection. Open loops have no
/// thread limit.
fn threads(
    ctx: &Ctx,
    w: &RawWorkload,
    arrival: &Arrival,
    key: Key,
) -> Result<Option<u32>, ScenarioError> {
    let Some(t) = &w.threads else {
        return Ok(None);
    };
    let Arrival::Closed { concurrency } = *arrival else {
        return Err(ctx.err(
            t.span(),
            key.of("threads"),
            "threads applies to closed loops (arrival.kind = \"closed\"): an open loop's \
             arrivals have no thread limit",
        ));
    };
    let n = *t.get_ref();
    if n < 1 || n > i64::from(concurrency) {
        return Err(ctx.err(
            t.span(),
            key.of("threads"),
            format!(
                "{n}: allowed 1 to the concurrency ({concurrency}), each thread serving \
                 concurrency / threads connections"
            ),
        ));
    }
    Ok(Some(n as u32))
}

/// A workload on fleets runs on each of its `instances` ([`PerInstance`]): its Poisson rate
/// (or each Poisson step's) is per instance, returned as the aggregate stream's, `instances`
/// times it. Refused: arrival kinds whose instances would move in lock step or wait on each
/// other, a `limit`, and `on_error` other than `count`.
fn per_instance(
    ctx: &Ctx,
    w: &RawWorkload,
    arrival: Arrival,
    instances: usize,
    key: Key,
) -> Result<Arrival, ScenarioError> {
    let a = w.arrival.get_ref();
    let n = instances as u64;
    let times = |r: Rate| {
        r.num
            .checked_mul(n)
            .map(|num| Rate { num, den: r.den })
            .ok_or_else(|| {
                let span = a.rate.as_ref().map_or(w.arrival.span(), |r| r.span());
                ctx.err(
                    span,
                    key.of("arrival.rate"),
                    format!("× {n} instances overflows: give a smaller rate"),
                )
            })
    };
    let arrival = match arrival {
        Arrival::Poisson(r) => Arrival::Poisson(times(r)?),
        Arrival::Steps {
            steps,
            poisson: true,
        } => Arrival::Steps {
            steps: steps
                .into_iter()
                .map(|(at, r)| Ok((at, times(r)?)))
                .collect::<Result<_, ScenarioError>>()?,
            poisson: true,
        },
        _ => {
            return Err(ctx.err(
                a.kind.span(),
                key.of("arrival.kind"),
                format!(
                    "{:?} on a fleet: a fleet's workload runs on each instance, modelled exactly \
                     for kind = \"poisson\" and kind = \"steps\" with process = \"poisson\" \
                     (one aggregate Poisson stream, each connection to an instance drawn \
                     uniformly); constant rates, constant steps, bursts and closed loops are not \
                     modelled per instance",
                    a.kind.get_ref()
                ),
            ));
        }
    };
    if let Some(l) = &w.limit {
        return Err(ctx.err(
            l.span(),
            key.of("limit"),
            "a limit on a fleet's workload is not modelled: each instance would stop at its own; \
             bound the run with `stop` instead",
        ));
    }
    if let Some(o) = &w.on_error
        && o.get_ref().action.get_ref() != "count"
    {
        return Err(ctx.err(
            o.get_ref().action.span(),
            key.of("on_error.action"),
            format!(
                "{:?} on a fleet: a retry or a stop belongs to one instance, which is not \
                 modelled; on a fleet use action = \"count\"",
                o.get_ref().action.get_ref()
            ),
        ));
    }
    Ok(arrival)
}

/// `requests_per_connection`: 1 unless set; 0 connects and closes.
fn requests_per_connection(ctx: &Ctx, w: &RawWorkload, key: Key) -> Result<u32, ScenarioError> {
    match &w.requests_per_connection {
        None => Ok(1),
        Some(r) if (0..=1_000_000_000).contains(r.get_ref()) => Ok(*r.get_ref() as u32),
        Some(r) => Err(ctx.err(
            r.span(),
            key.of("requests_per_connection"),
            format!("{}: expected an integer 0–1,000,000,000", r.get_ref()),
        )),
    }
}

/// `request_bytes`: 100 unless set.
fn request_bytes(ctx: &Ctx, w: &RawWorkload, key: Key) -> Result<u32, ScenarioError> {
    match &w.request_bytes {
        None => Ok(100),
        Some(b) if (0..=i64::from(u32::MAX)).contains(b.get_ref()) => Ok(*b.get_ref() as u32),
        Some(b) => Err(ctx.err(
            b.span(),
            key.of("request_bytes"),
            "expected an integer 0–4294967295",
        )),
    }
}

/// `closer`: the client unless "server"; a server with no request to answer never closes.
fn closer(ctx: &Ctx, w: &RawWorkload, requests: u32, key: Key) -> Result<Closer, ScenarioError> {
    let Some(c) = &w.closer else {
        return Ok(Closer::Client);
    };
    if one_of(ctx, c, &key.of("closer"), &["client", "server"])? == "client" {
        return Ok(Closer::Client);
    }
    if requests == 0 {
        return Err(ctx.err(
            c.span(),
            key.of("closer"),
            "with requests_per_connection = 0 the server has nothing to answer and would \
             never close; use closer = \"client\" (connect, then close)",
        ));
    }
    Ok(Closer::Server)
}

/// `on_error`: count the failure, retry after a delay (with backoff), or stop the workload.
/// A closed loop needs a delay, or a failed slot would retry at the same instant forever.
fn on_error(ctx: &Ctx, o: &RawOnError, closed: bool, key: Key) -> Result<OnError, ScenarioError> {
    let delay = match &o.delay {
        Some(d) => duration(ctx, d, &key.of("on_error.delay"))?,
        None => Duration::from_millis(1),
    };
    if closed && delay.0 == 0 && o.action.get_ref() != "stop" {
        let span = o.delay.as_ref().map_or(o.action.span(), |d| d.span());
        return Err(ctx.err(span, key.of("on_error.delay"), "must be > 0 in a closed loop: a failed connect() would be retried at the same instant forever"));
    }
    let action = one_of(
        ctx,
        &o.action,
        &key.of("on_error.action"),
        &["count", "retry", "stop"],
    )?;
    match action {
        "count" => Ok(OnError::Count { delay }),
        "stop" => Ok(OnError::Stop),
        _ => retry(ctx, o, delay, key),
    }
}

/// `action = "retry"`: `delay` × `backoff` per retry, at most `max_delay`, `max_retries`
/// times.
fn retry(ctx: &Ctx, o: &RawOnError, delay: Duration, key: Key) -> Result<OnError, ScenarioError> {
    let backoff = match &o.backoff {
        None => 1.0,
        Some(b) if b.get_ref().is_finite() && (1.0..=1000.0).contains(b.get_ref()) => *b.get_ref(),
        Some(b) => {
            return Err(ctx.err(
                b.span(),
                key.of("on_error.backoff"),
                "expected a number 1–1000",
            ));
        }
    };
    let max_delay = match &o.max_delay {
        Some(d) => duration(ctx, d, &key.of("on_error.max_delay"))?,
        None => Duration::from_secs(3600),
    };
    let max_retries = match &o.max_retries {
        None => u32::MAX,
        Some(m) if (0..=i64::from(u32::MAX)).contains(m.get_ref()) => *m.get_ref() as u32,
        Some(m) => {
            return Err(ctx.err(
                m.span(),
                key.of("on_error.max_retries"),
                "expected an integer ≥ 0",
            ));
        }
    };
    if delay.0 == 0 {
        return Err(ctx.err(
            o.action.span(),
            key.of("on_error.delay"),
            "retry needs a delay > 0",
        ));
    }
    Ok(OnError::Retry {
        delay,
        backoff,
        max_delay,
        max_retries,
    })
}

/// `start` and `stop`: from 0 to the scenario's end unless set; start before stop, stop no
/// later than the end.
fn window(
    ctx: &Ctx,
    w: &RawWorkload,
    total: Duration,
    key: Key,
) -> Result<(Instant, Instant), ScenarioError> {
    let start = match &w.start {
        Some(s) => Instant::ZERO + duration(ctx, s, &key.of("start"))?,
        None => Instant::ZERO,
    };
    let stop = match &w.stop {
        Some(s) => Instant::ZERO + duration(ctx, s, &key.of("stop"))?,
        None => Instant::ZERO + total,
    };
    if stop > Instant::ZERO + total {
        let span = w.stop.as_ref().map_or(w.name.span(), |s| s.span());
        return Err(ctx.err(
            span,
            key.of("stop"),
            format!("after the end of the scenario ({total})"),
        ));
    }
    if start >= stop {
        let span = w
            .start
            .as_ref()
            .or(w.stop.as_ref())
            .map_or(w.name.span(), |s| s.span());
        return Err(ctx.err(span, key.of("start"), "start must be before stop"));
    }
    Ok((start, stop))
}

/// `limit = { connections = N }` and/or `{ requests = N }`.
fn limit(
    ctx: &Ctx,
    l: &Spanned<RawLimit>,
    requests_per_connection: u32,
    key: &str,
) -> Result<Limit, ScenarioError> {
    let count = |v: &Option<Spanned<i64>>, name: &str| match v {
        None => Ok(None),
        Some(n) if *n.get_ref() >= 1 => Ok(Some(*n.get_ref() as u64)),
        Some(n) => Err(ctx.err(
            n.span(),
            format!("{key}.{name}"),
            format!("{}: expected an integer ≥ 1", n.get_ref()),
        )),
    };
    let raw = l.get_ref();
    let limit = Limit {
        connections: count(&raw.connections, "connections")?,
        requests: count(&raw.requests, "requests")?,
    };
    if !limit.is_set() {
        return Err(ctx.err(
            l.span(),
            key,
            "give connections = N (connect() calls) or requests = N",
        ));
    }
    if let (Some(r), 0) = (&raw.requests, requests_per_connection) {
        return Err(ctx.err(
            r.span(),
            format!("{key}.requests"),
            "with requests_per_connection = 0 no request is ever made; limit connections instead",
        ));
    }
    Ok(limit)
}
