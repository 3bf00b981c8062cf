//! `[workload.pool]` (a connection pool by generic keys) and `[workload.library]` (a client
//! library by its own option names, mapped onto the pool with the library's defaults,
//! [`crate::client::pool::library`]). With both, the library gives the pool and the pool
//! table's keys override it.

use super::ScenarioError;
use super::raw::{RawTable, RawWorkload};
use super::value::{Ctx, list, one_of};
use super::workloads::Key;
use crate::client::pool::library::{
    DOTNET_OPTIONS, DotNet, GO_OPTIONS, Go, HIKARI_OPTIONS, Hikari, NAMES, REQUESTS_OPTIONS,
    Requests,
};
use crate::client::pool::{Jitter, Pool, Reuse};
use crate::profile::nearest;
use crate::time::Duration;
use toml::Spanned;

/// `[workload.pool]`'s keys.
pub(super) const POOL_KEYS: [&str; 10] = [
    "max_idle_per_host",
    "max_idle",
    "max_conns_per_host",
    "idle_timeout",
    "max_lifetime",
    "lifetime_jitter",
    "keep_alive",
    "reuse",
    "server_keepalive_timeout",
    "server_keepalive_requests",
];

/// `lifetime_jitter`'s values: none, HikariCP 3.x–5.x (2.5 %), HikariCP after 28f81da4 (25 %).
const JITTERS: [&str; 3] = ["none", "hikaricp", "hikaricp-25%"];

/// The workload's pool, if it has a `[workload.pool]` or `[workload.library]` table, and the
/// workload keys a pool decides refused.
pub(super) fn pool(ctx: &Ctx, w: &RawWorkload, key: Key) -> Result<Option<Pool>, ScenarioError> {
    let mut pool = match &w.library {
        Some(t) => Some(library(ctx, t, key)?),
        None => None,
    };
    if let Some(t) = &w.pool {
        let mut p = pool.unwrap_or_default();
        generic(ctx, t, &mut p, key)?;
        pool = Some(p);
    }
    if pool.is_some() {
        refuse_with_pool(ctx, w, key)?;
    }
    Ok(pool)
}

/// Keys whose meaning a pool takes over.
fn refuse_with_pool(ctx: &Ctx, w: &RawWorkload, key: Key) -> Result<(), ScenarioError> {
    let taken = [
        (
            w.requests_per_connection.as_ref().map(|r| r.span()),
            "requests_per_connection",
            "the pool decides how many requests a connection carries",
        ),
        (
            w.threads.as_ref().map(|t| t.span()),
            "threads",
            "a pool's requesters are not modelled on shared threads",
        ),
        (
            w.limit
                .as_ref()
                .filter(|l| l.get_ref().connections.is_some())
                .map(|l| l.span()),
            "limit.connections",
            "a pool's limit counts requests: use limit = { requests = N }",
        ),
    ];
    for (span, name, why) in taken {
        if let Some(span) = span {
            return Err(ctx.err(span, key.of(name), format!("not with a pool: {why}")));
        }
    }
    Ok(())
}

/// The key of `k` in `table` of workload `key`: `workload[0].pool.max_idle`.
fn at(key: Key, table: &str, k: &str) -> String {
    key.of(&format!("{table}.{k}"))
}

/// An unknown key: what is allowed, the nearest named.
fn unknown(ctx: &Ctx, k: &Spanned<String>, key: String, allowed: &[&str]) -> ScenarioError {
    let hint = nearest(k.get_ref(), allowed.iter().copied())
        .map(|s| format!("; did you mean {s:?}?"))
        .unwrap_or_default();
    ctx.err(
        k.span(),
        key,
        format!("unknown key; allowed: {}{hint}", list(allowed)),
    )
}

fn int(
    ctx: &Ctx,
    v: &Spanned<toml::Value>,
    key: &str,
    lo: i64,
    hi: i64,
) -> Result<i64, ScenarioError> {
    match v.get_ref().as_integer() {
        Some(n) if (lo..=hi).contains(&n) => Ok(n),
        _ => Err(ctx.err(
            v.span(),
            key,
            format!("{}: expected an integer {lo}–{hi}", v.get_ref()),
        )),
    }
}

fn boolean(ctx: &Ctx, v: &Spanned<toml::Value>, key: &str) -> Result<bool, ScenarioError> {
    v.get_ref().as_bool().ok_or_else(|| {
        ctx.err(
            v.span(),
            key,
            format!("{}: expected true or false", v.get_ref()),
        )
    })
}

/// A duration such as "90s"; "0s" is none.
fn dur(ctx: &Ctx, v: &Spanned<toml::Value>, key: &str) -> Result<Option<Duration>, ScenarioError> {
    let bad = || {
        ctx.err(
            v.span(),
            key,
            format!("{}: expected a duration such as \"90s\"", v.get_ref()),
        )
    };
    let s = v.get_ref().as_str().ok_or_else(bad)?;
    let d = Duration::parse(s).map_err(|e| ctx.err(v.span(), key, format!("{s:?}: {e}")))?;
    Ok((d.0 > 0).then_some(d))
}

fn text(ctx: &Ctx, v: &Spanned<toml::Value>, key: &str) -> Result<Spanned<String>, ScenarioError> {
    match v.get_ref().as_str() {
        Some(s) => Ok(Spanned::new(v.span(), s.to_string())),
        None => Err(ctx.err(v.span(), key, format!("{}: expected a string", v.get_ref()))),
    }
}

/// `[workload.pool]` onto `p`.
fn generic(ctx: &Ctx, t: &Spanned<RawTable>, p: &mut Pool, key: Key) -> Result<(), ScenarioError> {
    const MAX: i64 = u32::MAX as i64;
    for (k, v) in t.get_ref() {
        let name = at(key, "pool", k.get_ref());
        let kk = name.as_str();
        match k.get_ref().as_str() {
            "max_idle_per_host" => p.max_idle_per_host = int(ctx, v, kk, 0, MAX)? as u32,
            "max_idle" => p.max_idle = Some(int(ctx, v, kk, 0, MAX)? as u32).filter(|&n| n > 0),
            "max_conns_per_host" => {
                p.max_conns_per_host = Some(int(ctx, v, kk, 0, MAX)? as u32).filter(|&n| n > 0)
            }
            "idle_timeout" => p.idle_timeout = dur(ctx, v, kk)?,
            "max_lifetime" => p.max_lifetime = dur(ctx, v, kk)?,
            "lifetime_jitter" => {
                p.lifetime_jitter = match one_of(ctx, &text(ctx, v, kk)?, kk, &JITTERS)? {
                    "hikaricp" => Jitter::Subtract { divisor: 40 },
                    "hikaricp-25%" => Jitter::Subtract { divisor: 4 },
                    _ => Jitter::None,
                }
            }
            "keep_alive" => p.keep_alive = boolean(ctx, v, kk)?,
            "reuse" => {
                p.reuse = match one_of(ctx, &text(ctx, v, kk)?, kk, &["lifo", "fifo"])? {
                    "fifo" => Reuse::Fifo,
                    _ => Reuse::Lifo,
                }
            }
            "server_keepalive_timeout" => p.server.timeout = dur(ctx, v, kk)?,
            "server_keepalive_requests" => {
                p.server.requests = Some(int(ctx, v, kk, 0, MAX)? as u32).filter(|&n| n > 0)
            }
            _ => return Err(unknown(ctx, k, name.clone(), &POOL_KEYS)),
        }
    }
    Ok(())
}

/// `[workload.library]`: `name` and the library's options.
fn library(ctx: &Ctx, t: &Spanned<RawTable>, key: Key) -> Result<Pool, ScenarioError> {
    let table = t.get_ref();
    let Some((nk, nv)) = table.iter().find(|(k, _)| k.get_ref() == "name") else {
        return Err(ctx.err(
            t.span(),
            key.of("library"),
            format!("give name = one of {}", list(&NAMES)),
        ));
    };
    let name_key = at(key, "library", "name");
    let name = one_of(ctx, &text(ctx, nv, &name_key)?, &name_key, &NAMES)?;
    let options = table.iter().filter(|(k, _)| k.get_ref() != nk.get_ref());
    let options: Vec<_> = options.collect();
    match name {
        "go-net-http" => {
            let mut go = Go::default();
            for (k, v) in options {
                let kname = at(key, "library", k.get_ref());
                let kk = kname.as_str();
                match k.get_ref().as_str() {
                    "MaxIdleConns" => {
                        go.max_idle_conns = int(ctx, v, kk, 0, u32::MAX.into())? as u32
                    }
                    "MaxIdleConnsPerHost" => {
                        go.max_idle_conns_per_host = int(ctx, v, kk, -1, u32::MAX.into())?
                    }
                    "MaxConnsPerHost" => {
                        go.max_conns_per_host = int(ctx, v, kk, 0, u32::MAX.into())? as u32
                    }
                    "IdleConnTimeout" => {
                        go.idle_conn_timeout = dur(ctx, v, kk)?.unwrap_or(Duration::ZERO)
                    }
                    "DisableKeepAlives" => go.disable_keep_alives = boolean(ctx, v, kk)?,
                    _ => return Err(unknown(ctx, k, kname.clone(), &GO_OPTIONS)),
                }
            }
            Ok(go.pool())
        }
        "dotnet-httpclient" => dotnet(ctx, options, key),
        "hikaricp" => hikari(ctx, options, key),
        _ => {
            let mut rq = Requests::default();
            for (k, v) in options {
                let kname = at(key, "library", k.get_ref());
                let kk = kname.as_str();
                match k.get_ref().as_str() {
                    "session" => rq.session = boolean(ctx, v, kk)?,
                    "pool_connections" => {
                        rq.pool_connections = int(ctx, v, kk, 1, u32::MAX.into())? as u32
                    }
                    "pool_maxsize" => rq.pool_maxsize = int(ctx, v, kk, 1, u32::MAX.into())? as u32,
                    "pool_block" => rq.pool_block = boolean(ctx, v, kk)?,
                    _ => return Err(unknown(ctx, k, kname.clone(), &REQUESTS_OPTIONS)),
                }
            }
            Ok(rq.pool())
        }
    }
}

type Options<'a> = Vec<(&'a Spanned<String>, &'a Spanned<toml::Value>)>;

/// A .NET `TimeSpan` option: "infinite" (`Timeout.InfiniteTimeSpan`, `None`) or a duration,
/// zero allowed.
fn timespan(
    ctx: &Ctx,
    v: &Spanned<toml::Value>,
    key: &str,
) -> Result<Option<Duration>, ScenarioError> {
    if v.get_ref().as_str() == Some("infinite") {
        return Ok(None);
    }
    Ok(Some(
        dur(ctx, v, key)
            .map_err(|_| {
                ctx.err(
                    v.span(),
                    key,
                    format!(
                        "{}: expected \"infinite\" or a duration such as \"2m\"",
                        v.get_ref()
                    ),
                )
            })?
            .unwrap_or(Duration::ZERO),
    ))
}

/// `[workload.library] name = "dotnet-httpclient"`.
fn dotnet(ctx: &Ctx, options: Options, key: Key) -> Result<Pool, ScenarioError> {
    let mut n = DotNet::default();
    for (k, v) in options {
        let kname = at(key, "library", k.get_ref());
        let kk = kname.as_str();
        match k.get_ref().as_str() {
            "shared" => n.shared = boolean(ctx, v, kk)?,
            "PooledConnectionLifetime" => n.pooled_connection_lifetime = timespan(ctx, v, kk)?,
            "PooledConnectionIdleTimeout" => {
                n.pooled_connection_idle_timeout = timespan(ctx, v, kk)?
            }
            "MaxConnectionsPerServer" => {
                n.max_connections_per_server = int(ctx, v, kk, 1, i32::MAX.into())? as u32
            }
            _ => return Err(unknown(ctx, k, kname.clone(), &DOTNET_OPTIONS)),
        }
    }
    Ok(n.pool())
}

/// A HikariCP time option: milliseconds, as HikariCP takes them, or a duration; 0 = none.
fn millis(
    ctx: &Ctx,
    v: &Spanned<toml::Value>,
    key: &str,
) -> Result<Option<Duration>, ScenarioError> {
    match v.get_ref().as_integer() {
        Some(ms) if (0..=(u64::MAX / 1_000_000) as i64).contains(&ms) => {
            Ok((ms > 0).then(|| Duration::from_millis(ms as u64)))
        }
        Some(_) => Err(ctx.err(
            v.span(),
            key,
            format!(
                "{}: expected milliseconds from 0 to 18446744073709 or a duration such as \"30m\"",
                v.get_ref()
            ),
        )),
        None => dur(ctx, v, key),
    }
}

/// `[workload.library] name = "hikaricp"`.
fn hikari(ctx: &Ctx, options: Options, key: Key) -> Result<Pool, ScenarioError> {
    let mut h = Hikari::default();
    for (k, v) in options {
        let kname = at(key, "library", k.get_ref());
        let kk = kname.as_str();
        match k.get_ref().as_str() {
            "maximumPoolSize" => h.maximum_pool_size = int(ctx, v, kk, 1, u32::MAX.into())? as u32,
            "minimumIdle" => h.minimum_idle = Some(int(ctx, v, kk, 0, u32::MAX.into())? as u32),
            "maxLifetime" => h.max_lifetime = millis(ctx, v, kk)?,
            "idleTimeout" => h.idle_timeout = millis(ctx, v, kk)?,
            "lifeTimeVarianceFactor" => {
                h.life_time_variance_factor = int(ctx, v, kk, 2, 40)? as u32
            }
            _ => return Err(unknown(ctx, k, kname.clone(), &HIKARI_OPTIONS)),
        }
    }
    Ok(h.pool())
}
