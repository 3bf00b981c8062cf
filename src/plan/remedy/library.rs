//! Remedies in a client library's own settings: for a workload with `[workload.library]`, the
//! options its user would change, written as they would change them; for a `[workload.pool]`
//! without a library, the generic keys. Each is a change to the scenario, simulated and ranked
//! with the kernel's remedies ([`super::evaluate`]).
//!
//! The values come from the workload: `N`, the most requests it has in flight at once
//! ([`in_flight`]), is what a pool must keep idle per host for no request to open a
//! connection once the pool is warm. Library facts: `notes/client-libraries.md` §1 (Go
//! `net/http`, `src/net/http/transport.go`), §2 (Python `requests`, `adapters.py`, urllib3
//! `connectionpool.py`), §3 (.NET `SocketsHttpHandler`), §4 (HikariCP `HikariPool.java`).
//!
//! Adding a library: one entry in [`LIBRARIES`] (its `[workload.library]` name and a function
//! from [`Ctx`] to its [`Fix`]es), written like [`go`] and [`requests`].

use super::{Variant, workload_mut};
use crate::client::pool::Pool;
use crate::scenario::Scenario;
use crate::workload::{Arrival, Workload};
use std::collections::BTreeSet;
use toml::{Table, Value};

/// Effort of a library's own setting: a line in the client's code or configuration that
/// removes the connections it churns, where the kernel's remedies make room for them; ranked
/// before them when both fix ([`super::rank`]).
const EFFORT: u8 = 0;

/// A library whose options `[workload.library]` takes, and its remedies.
struct Library {
    /// `[workload.library] name`.
    name: &'static str,
    fixes: fn(&Ctx) -> Vec<Fix>,
}

/// The libraries with remedies, by their `crate::client::pool::library::NAMES`.
const LIBRARIES: [Library; 4] = [
    Library {
        name: "go-net-http",
        fixes: go,
    },
    Library {
        name: "python-requests",
        fixes: requests,
    },
    Library {
        name: "dotnet-httpclient",
        fixes: dotnet,
    },
    Library {
        name: "hikaricp",
        fixes: hikari,
    },
];

/// What a library's remedies are computed from: one workload.
pub(super) struct Ctx<'a> {
    /// The workload's pool as parsed (library defaults, its options, `[workload.pool]`).
    pub pool: &'a Pool,
    /// The `[workload.library]` table as the file gives it.
    pub options: &'a Table,
    /// Requests in flight at once, at most ([`in_flight`]).
    pub n: u32,
    /// How `n` was derived, for the remedy's text.
    pub why_n: &'a str,
    /// Distinct destinations.
    pub hosts: u32,
    /// Whether arrivals are an open loop (a rate): requests in flight are not bounded by the
    /// workload, so only a cap on connections bounds the pool.
    pub open: bool,
}

/// One remedy for one workload.
pub(super) struct Fix {
    /// The same remedy across workloads (one simulated variant).
    pub id: &'static str,
    pub title: String,
    /// As the user writes the change, in the library's language.
    pub how: String,
    /// Library options to set (`[workload.library]`), or generic keys (`[workload.pool]`)
    /// for a pool without a library.
    pub set: Vec<(&'static str, Value)>,
    /// The `[workload.pool]` keys with the same meaning: set too where the file's pool table
    /// gives them, since they override the library's.
    pub generic: Vec<(&'static str, Value)>,
    pub side_effects: &'static str,
}

fn int(n: u32) -> Value {
    Value::Integer(i64::from(n))
}

/// Requests the workload has in flight at once, at most, and how that was derived.
///
/// A closed loop: its concurrency. Bursts: the largest (a burst's requests start together).
/// An open loop at rate λ: Little's law gives L = λ·W requests in flight on average, W the
/// time one request holds a connection (one RTT to connect, one for the request, the service
/// time); Poisson arrivals make the count in flight Poisson with mean L (M/G/∞), so
/// L + 3√L covers 99.87 % of the time; a constant rate never exceeds ⌈L⌉.
pub(super) fn in_flight(w: &Workload) -> (u32, String) {
    let hold = 2.0 * w.rtt.mean().as_secs_f64() + w.service_time.mean().as_secs_f64();
    let open = |rate: f64, poisson: bool| {
        let l = rate * hold;
        let n = if poisson { l + 3.0 * l.sqrt() } else { l };
        let n = (n.ceil() as u32).max(1);
        let law = if poisson {
            " + 3√L, the count in flight being Poisson (M/G/∞)"
        } else {
            ""
        };
        (
            n,
            format!(
                "{n} = requests in flight: L = {rate} /s × {:.1} ms per request by Little's law{law}",
                hold * 1000.0
            ),
        )
    };
    match &w.arrival {
        Arrival::Closed { concurrency } => (
            *concurrency,
            format!(
                "{concurrency} = the closed loop's concurrency, its requests in flight at once"
            ),
        ),
        Arrival::Bursts(b) => {
            let n = b
                .iter()
                .map(|x| x.1)
                .max()
                .unwrap_or(1)
                .min(u64::from(u32::MAX)) as u32;
            (
                n,
                format!("{n} = the largest burst, its requests in flight at once"),
            )
        }
        Arrival::Constant(r) => open(r.per_sec(), false),
        Arrival::Poisson(r) => open(r.per_sec(), true),
        Arrival::Steps { poisson, .. } => open(w.arrival.peak_rate().unwrap_or(0.0), *poisson),
    }
}

/// Go `net/http` (notes §1). `MaxIdleConnsPerHost` below the requests in flight closes every
/// connection a burst returns beyond it (`tryPutIdleConn`, `errTooManyIdleHost`) and the next
/// burst dials again (golang/go #13801); `MaxIdleConns` caps idle connections over all hosts
/// (`idleLRU`); `DisableKeepAlives` or a negative `MaxIdleConnsPerHost` closes every
/// connection after its response. `MaxConnsPerHost` makes requests above it wait
/// (`queueForDial`), which bounds the pool when the arrivals do not.
fn go(c: &Ctx) -> Vec<Fix> {
    let n = c.n;
    let p = c.pool;
    let mut out = vec![];
    if !p.keep_alive || p.max_idle_per_host < n {
        let mut set = vec![("MaxIdleConnsPerHost", int(n))];
        let mut generic = vec![
            ("max_idle_per_host", int(n)),
            ("keep_alive", Value::Boolean(true)),
        ];
        let mut code = format!("t.MaxIdleConnsPerHost = {n}");
        if c.options.get("DisableKeepAlives").and_then(Value::as_bool) == Some(true) {
            set.push(("DisableKeepAlives", Value::Boolean(false)));
            code.push_str("; t.DisableKeepAlives = false");
        }
        let all = n.saturating_mul(c.hosts);
        if p.max_idle.is_some_and(|m| m < all) {
            set.push(("MaxIdleConns", int(all)));
            generic.push(("max_idle", int(all)));
            code.push_str(&format!("; t.MaxIdleConns = {all}"));
        }
        let title = set
            .iter()
            .map(|(k, v)| format!("{k} = {v}"))
            .collect::<Vec<_>>()
            .join(", ");
        out.push(Fix {
            id: "go-idle",
            title: format!("Go net/http: {title}"),
            how: format!(
                "t := http.DefaultTransport.(*http.Transport).Clone(); {code}; client := &http.Client{{Transport: t}}, one client for the process; {}",
                c.why_n
            ),
            set,
            generic,
            side_effects: "up to N idle connections per host stay open between bursts (until IdleConnTimeout, 90 s by default), holding a socket and server memory each; the server must keep idle connections at least as long",
        });
    }
    if c.open && p.max_conns_per_host.is_none_or(|m| m > n) {
        out.push(Fix {
            id: "go-conns",
            title: format!("Go net/http: MaxIdleConnsPerHost = {n}, MaxConnsPerHost = {n}"),
            how: format!(
                "t.MaxIdleConnsPerHost = {n}; t.MaxConnsPerHost = {n} on the client's Transport: at most {n} connections per host, a request above waits for one; {}",
                c.why_n
            ),
            set: vec![("MaxIdleConnsPerHost", int(n)), ("MaxConnsPerHost", int(n))],
            generic: vec![
                ("max_idle_per_host", int(n)),
                ("max_conns_per_host", int(n)),
                ("keep_alive", Value::Boolean(true)),
            ],
            side_effects: "a request beyond N in flight waits for a connection instead of dialing (latency under a spike, and no error: set a request timeout); N idle connections per host stay open",
        });
    }
    out
}

/// Python `requests` (notes §2). Without a Session every call opens a connection and closes
/// it (api.py `with sessions.Session()`); a Session keeps `pool_maxsize` per host (urllib3
/// `_put_conn` closes the rest, "Connection pool is full, discarding connection");
/// `pool_block` makes a request wait for one of them (`_get_conn`).
fn requests(c: &Ctx) -> Vec<Fix> {
    let n = c.n;
    let p = c.pool;
    let maxsize = c
        .options
        .get("pool_maxsize")
        .and_then(Value::as_integer)
        .map_or(10, |m| m.clamp(0, i64::from(u32::MAX)) as u32);
    let mut out = vec![];
    let session = ("session", Value::Boolean(true));
    let keep = ("keep_alive", Value::Boolean(true));
    if !p.keep_alive {
        out.push(Fix {
            id: "requests-session",
            title: "python-requests: use a Session".into(),
            how: "s = requests.Session() once, then s.get(...) for every call instead of requests.get(...), which opens a connection and closes it per call".into(),
            set: vec![session.clone()],
            generic: vec![keep.clone(), ("max_idle_per_host", int(maxsize))],
            side_effects: "a Session is not documented as thread-safe: one per thread, or one shared with care; idle connections stay open until the server closes them",
        });
    }
    let kept = if p.keep_alive {
        p.max_idle_per_host
    } else {
        maxsize
    };
    let adapter = |block: bool| {
        format!(
            "s = requests.Session(); a = requests.adapters.HTTPAdapter(pool_maxsize={n}{}); s.mount(\"https://\", a); s.mount(\"http://\", a); {}",
            if block { ", pool_block=True" } else { "" },
            c.why_n
        )
    };
    if kept < n {
        out.push(Fix {
            id: "requests-maxsize",
            title: format!("python-requests: a Session with pool_maxsize = {n}"),
            how: adapter(false),
            set: vec![session.clone(), ("pool_maxsize", int(n))],
            generic: vec![keep.clone(), ("max_idle_per_host", int(n))],
            side_effects: "up to N idle connections per host stay open until the server closes them",
        });
    }
    if c.open && p.max_conns_per_host.is_none_or(|m| m > n) {
        out.push(Fix {
            id: "requests-block",
            title: format!("python-requests: a Session with pool_maxsize = {n}, pool_block = True"),
            how: adapter(true),
            set: vec![
                session,
                ("pool_maxsize", int(n)),
                ("pool_block", Value::Boolean(true)),
            ],
            generic: vec![
                keep,
                ("max_idle_per_host", int(n)),
                ("max_conns_per_host", int(n)),
            ],
            side_effects: "a request beyond N in flight waits for a connection (pool_timeout unset: without limit) instead of opening one",
        });
    }
    out
}

/// .NET `HttpClient` (notes §3). An `HttpClient` made and disposed per request closes its
/// connection after each response (a client TIME-WAIT per request); one shared client keeps
/// them, with `PooledConnectionLifetime` bounding how long (DNS changes are seen; 2 min is
/// `IHttpClientFactory`'s `HandlerLifetime`, dotnet/runtime PR #101808). The pool has no idle
/// cap, so an open loop grows it to its peak; `MaxConnectionsPerServer` bounds it.
fn dotnet(c: &Ctx) -> Vec<Fix> {
    let n = c.n;
    let p = c.pool;
    let mut out = vec![];
    if !p.keep_alive {
        let mut set = vec![
            ("shared", Value::Boolean(true)),
            ("PooledConnectionLifetime", Value::String("2m".into())),
        ];
        let zero_idle = c
            .options
            .get("PooledConnectionIdleTimeout")
            .is_some_and(|v| {
                v.as_integer() == Some(0)
                    || v.as_str()
                        .and_then(|t| crate::time::Duration::parse(t).ok())
                        .is_some_and(|d| d.0 == 0)
            });
        if zero_idle {
            set.push(("PooledConnectionIdleTimeout", Value::String("1m".into())));
        }
        out.push(Fix {
            id: "dotnet-shared",
            title: ".NET HttpClient: one shared client, PooledConnectionLifetime = 2 min".into(),
            how: "static readonly HttpClient Client = new(new SocketsHttpHandler { PooledConnectionLifetime = TimeSpan.FromMinutes(2) }); used by every request instead of a new HttpClient per request (or IHttpClientFactory, whose handlers do the same)".into(),
            set,
            generic: vec![
                ("keep_alive", Value::Boolean(true)),
                ("max_lifetime", Value::String("2m".into())),
            ],
            side_effects: "every connection is closed and reopened every 2 minutes (a client TIME-WAIT each), so DNS changes are seen; one client must be shared across threads (HttpClient is thread-safe for requests)",
        });
    }
    if p.keep_alive && c.open && p.max_conns_per_host.is_none_or(|m| m > n) {
        out.push(Fix {
            id: "dotnet-max-conns",
            title: format!(".NET HttpClient: MaxConnectionsPerServer = {n}"),
            how: format!(
                "new SocketsHttpHandler {{ MaxConnectionsPerServer = {n} }} for the shared client: a request above waits for a connection; {}",
                c.why_n
            ),
            set: vec![("MaxConnectionsPerServer", int(n))],
            generic: vec![("max_conns_per_host", int(n))],
            side_effects: "a request beyond N in flight waits in the pool's queue instead of opening a connection (latency under a spike)",
        });
    }
    out
}

/// HikariCP (notes §4). The pool closes each connection at its `maxLifetime` and opens a
/// replacement: `maximumPoolSize / maxLifetime` connections per second, each a client
/// TIME-WAIT; below maximumPoolSize, `minimumIdle` with `idleTimeout` closes idle connections
/// and the next load reopens them. HikariCP's own advice is a fixed pool (minimumIdle unset)
/// and a maxLifetime a few seconds shorter than the database's own connection time limit.
fn hikari(c: &Ctx) -> Vec<Fix> {
    let p = c.pool;
    let size = p.max_conns_per_host.unwrap_or(10);
    let mut out = vec![];
    let default_life = crate::time::Duration::from_secs(30 * 60);
    if p.max_lifetime.is_some_and(|l| l < default_life) {
        out.push(Fix {
            id: "hikari-lifetime",
            title: "HikariCP: maxLifetime = 30 min (the default)".into(),
            how: "config.setMaxLifetime(1_800_000) (or spring.datasource.hikari.max-lifetime=1800000), kept a few seconds below the database's own connection time limit (MySQL wait_timeout, a proxy's idle timeout)".into(),
            set: vec![("maxLifetime", int(1_800_000))],
            generic: vec![("max_lifetime", Value::String("30m".into()))],
            side_effects: "connections live longer: a database or proxy that drops them sooner breaks them first (HikariCP then evicts the broken connection at its next borrow)",
        });
    }
    if p.idle_timeout.is_some() && p.min_idle.is_some_and(|m| m < size) {
        out.push(Fix {
            id: "hikari-fixed",
            title: format!("HikariCP: minimumIdle = maximumPoolSize ({size}), a fixed pool"),
            how: format!(
                "leave minimumIdle unset (or config.setMinimumIdle({size})): the pool keeps its {size} connections instead of closing the idle ones at idleTimeout and reopening them under load"
            ),
            set: vec![("minimumIdle", int(size))],
            generic: vec![],
            side_effects: "the database holds maximumPoolSize connections from this client at all times",
        });
    }
    out
}

/// A pool by its generic keys (`[workload.pool]`, no library).
fn generic(c: &Ctx) -> Vec<Fix> {
    let n = c.n;
    let p = c.pool;
    let mut out = vec![];
    if !p.keep_alive || p.max_idle_per_host < n {
        let mut set = vec![
            ("keep_alive", Value::Boolean(true)),
            ("max_idle_per_host", int(n)),
        ];
        let all = n.saturating_mul(c.hosts);
        if p.max_idle.is_some_and(|m| m < all) {
            set.push(("max_idle", int(all)));
        }
        out.push(Fix {
            id: "pool-idle",
            title: format!("Pool: keep-alive, {n} idle connections per host"),
            how: format!(
                "the client's pool keeps connections alive and up to {n} idle per host; {}",
                c.why_n
            ),
            set,
            generic: vec![],
            side_effects: "up to N idle connections per host stay open between bursts, holding a socket and server memory each",
        });
    }
    if c.open && p.max_conns_per_host.is_none_or(|m| m > n) {
        out.push(Fix {
            id: "pool-conns",
            title: format!("Pool: at most {n} connections per host, {n} kept idle"),
            how: format!(
                "the client's pool caps connections per host at {n} and keeps them idle, requests above wait; {}",
                c.why_n
            ),
            set: vec![
                ("keep_alive", Value::Boolean(true)),
                ("max_idle_per_host", int(n)),
                ("max_conns_per_host", int(n)),
            ],
            generic: vec![],
            side_effects: "a request beyond N in flight waits for a connection instead of opening one",
        });
    }
    out
}

/// The library remedies for the target workloads, one variant per remedy (by [`Fix::id`]),
/// in the order the libraries list them.
pub(super) fn remedies(sc: &Scenario, targets: &[usize], doc: &Table) -> Vec<Variant> {
    let mut variants: Vec<(&'static str, Variant)> = vec![];
    for &i in targets {
        let w = &sc.workloads[i];
        let Some(pool) = &w.pool else { continue };
        let library = workload(doc, &w.name)
            .and_then(|t| t.get("library"))
            .and_then(Value::as_table);
        let name = library
            .and_then(|l| l.get("name"))
            .and_then(Value::as_str)
            .map(str::to_string);
        let (n, why_n) = in_flight(w);
        let hosts: BTreeSet<(u32, u16)> = w.destinations.iter().map(|d| (d.ip, d.port)).collect();
        let empty = Table::new();
        let ctx = Ctx {
            pool,
            options: library.unwrap_or(&empty),
            n,
            why_n: &why_n,
            hosts: hosts.len().max(1) as u32,
            open: matches!(
                w.arrival,
                Arrival::Constant(_) | Arrival::Poisson(_) | Arrival::Steps { .. }
            ),
        };
        let fixes = match &name {
            Some(name) => match LIBRARIES.iter().find(|l| l.name == name) {
                Some(l) => (l.fixes)(&ctx),
                None => continue,
            },
            None => generic(&ctx),
        };
        for f in fixes {
            let at = match variants.iter().position(|v| v.0 == f.id) {
                Some(k) => k,
                None => {
                    variants.push((f.id, Variant::draft(doc)));
                    variants.len() - 1
                }
            };
            let v = &mut variants[at].1;
            apply(v, &w.name, name.is_some(), &f);
            if v.title.is_empty() {
                v.title = f.title.clone();
                v.side_effects = f.side_effects.into();
            }
        }
    }
    variants
        .into_iter()
        .filter_map(|(_, v)| {
            let (title, side) = (v.title.clone(), v.side_effects.clone());
            v.done(title, &side, EFFORT)
        })
        .collect()
}

/// Workload `name`'s table in the file.
fn workload<'a>(doc: &'a Table, name: &str) -> Option<&'a Table> {
    doc.get("workload")?
        .as_array()?
        .iter()
        .filter_map(Value::as_table)
        .find(|w| w.get("name").and_then(Value::as_str) == Some(name))
}

/// Writes `f` into workload `name`'s tables in `v.doc`, and says so.
fn apply(v: &mut Variant, name: &str, library: bool, f: &Fix) {
    let t = workload_mut(&mut v.doc, name);
    let table = if library { "library" } else { "pool" };
    let mut changed = vec![];
    {
        let lib = super::sub(t, table);
        for (k, val) in &f.set {
            lib.insert((*k).into(), val.clone());
            changed.push(format!("workload.{name}.{table}.{k} = {val}"));
        }
    }
    if library && let Some(pool) = t.get_mut("pool").and_then(Value::as_table_mut) {
        for (k, val) in &f.generic {
            if pool.contains_key(*k) {
                pool.insert((*k).into(), val.clone());
                changed.push(format!(
                    "workload.{name}.pool.{k} = {val} (it overrides the library)"
                ));
            }
        }
    }
    v.how.push(format!("{name}: {}", f.how));
    v.simulated_change.push(changed.join("; "));
}
