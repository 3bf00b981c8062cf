//! A client library's connection pool as a workload sees it: which connections it keeps idle
//! after a request, which it closes, and when idle ones go (`[workload.pool]`), and the
//! libraries' presets mapped onto it (`[workload.library]`).
//!
//! Facts and sources: `notes/client-libraries.md` (§1 Go `net/http`, §2 Python `requests`,
//! §3 .NET `HttpClient`, §4 HikariCP, §6 nginx). What the pool does on the wire is in `src/sim/pool.rs`.

use crate::time::Duration;

/// Which idle connection a request takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reuse {
    /// The most recently returned first: Go `queueForIdleConn` takes `list[len(list)-1]`;
    /// urllib3's pool is a `LifoQueue`; .NET's a `ConcurrentStack` (notes §1, §2, §3).
    Lifo,
    /// The longest idle first.
    Fifo,
}

/// A connection's lifetime as the pool draws it when the connection opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Jitter {
    /// Exactly `max_lifetime` (.NET `PooledConnectionLifetime`: no jitter seen, notes §3).
    None,
    /// HikariCP `HikariPool.createPoolEntry`: `maxLifetime − U`, U uniform over the integer
    /// milliseconds in `[0, maxLifetime / divisor)`, none when `maxLifetime ≤ 10 s`; divisor
    /// 40 (2.5 %) in 3.x–5.x, 4 (25 %) after commit 28f81da4 (notes §4).
    Subtract { divisor: u32 },
}

impl Jitter {
    /// The lifetime of one connection, drawing from `rng` when the formula takes a draw.
    pub fn lifetime(self, max: Duration, rng: &mut rand_chacha::ChaCha8Rng) -> Duration {
        use rand::RngExt;
        match self {
            Jitter::None => max,
            Jitter::Subtract { divisor } => {
                let ms = max.0 / 1_000_000;
                if ms <= 10_000 || ms / u64::from(divisor) == 0 {
                    return max;
                }
                let variance = rng.random_range(0..ms / u64::from(divisor));
                Duration(max.0 - variance * 1_000_000)
            }
        }
    }
}

/// A pool's periodic sweep: ticks at `first`, `first + every`, … from the run's start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sweep {
    pub first: Duration,
    pub every: Duration,
    /// Whether the lifetime of an idle connection waits for a tick too (.NET's scavenger
    /// checks both; HikariCP schedules each lifetime on its own).
    pub lifetime: bool,
}

impl Sweep {
    /// The first tick at or after `t` (in nanoseconds since the start).
    pub fn next(self, t: u64) -> u64 {
        if t <= self.first.0 {
            return self.first.0;
        }
        self.first.0 + (t - self.first.0).div_ceil(self.every.0) * self.every.0
    }
}

/// A server's keep-alive limits on the workload's connections: it closes them first, so the
/// TIME-WAIT is the server's (nginx, notes §6).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServerKeepAlive {
    /// nginx `keepalive_timeout` (75 s by default): an idle connection is closed by the
    /// server this long after its last response was sent.
    pub timeout: Option<Duration>,
    /// nginx `keepalive_requests` (1000 since 1.19.10, 100 before): the server closes after
    /// the response to this many requests on one connection.
    pub requests: Option<u32>,
}

/// A connection pool: every request takes an idle connection to its destination or opens
/// one; after its response the connection goes back idle or is closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool {
    /// Idle connections kept per destination; a connection returned to a full list is closed
    /// by the client (Go `errTooManyIdleHost`, urllib3 "Connection pool is full, discarding
    /// connection").
    pub max_idle_per_host: u32,
    /// Idle connections kept over all destinations; above it the oldest idle one is closed
    /// (Go `idleLRU.removeOldest`). `None`: no limit.
    pub max_idle: Option<u32>,
    /// Connections per destination, dialing, busy and idle; a request above it waits, in the
    /// order requests came, for one to come back or close (Go `MaxConnsPerHost`, urllib3
    /// `pool_block`). `None`: no limit.
    pub max_conns_per_host: Option<u32>,
    /// An idle connection is closed by the client this long after it went idle (Go
    /// `IdleConnTimeout`). `None`: never.
    pub idle_timeout: Option<Duration>,
    /// A connection this old is closed when it is next idle, at once if it is idle.
    pub max_lifetime: Option<Duration>,
    pub lifetime_jitter: Jitter,
    /// False: a connection per request (Go `DisableKeepAlives`, `requests` without a Session),
    /// closed after its response by the workload's `closer`.
    pub keep_alive: bool,
    pub reuse: Reuse,
    pub server: ServerKeepAlive,
    /// The client's idle timer (and, if the sweep says so, an idle connection's lifetime)
    /// act only at the ticks of a periodic sweep (.NET's scavenger, HikariCP's
    /// housekeeper). `None`: at the instant they fall due.
    pub sweep: Option<Sweep>,
    /// A pool that opens its own connections (HikariCP, notes §4): one at a time, to keep
    /// this many idle (`fillPool`) and for a waiting request (`addBagItem`), never more than
    /// `max_conns_per_host`; a request never dials, it takes an idle connection or waits.
    /// Its idle timeout closes only idle connections beyond this many. `None`: requests
    /// open connections.
    pub min_idle: Option<u32>,
}

impl Default for Pool {
    /// No limits: every connection kept idle forever.
    fn default() -> Pool {
        Pool {
            max_idle_per_host: u32::MAX,
            max_idle: None,
            max_conns_per_host: None,
            idle_timeout: None,
            max_lifetime: None,
            lifetime_jitter: Jitter::None,
            keep_alive: true,
            reuse: Reuse::Lifo,
            server: ServerKeepAlive::default(),
            sweep: None,
            min_idle: None,
        }
    }
}

/// A library's pool by its own option names.
pub mod library {
    use super::{Jitter, Pool, Reuse, Sweep};
    use crate::time::Duration;

    /// The libraries `[workload.library]` knows, by `name`.
    pub const NAMES: [&str; 4] = [
        "go-net-http",
        "python-requests",
        "dotnet-httpclient",
        "hikaricp",
    ];

    /// Go `net/http` `Transport` options (golang/go `src/net/http/transport.go`, notes §1).
    pub const GO_OPTIONS: [&str; 5] = [
        "MaxIdleConns",
        "MaxIdleConnsPerHost",
        "MaxConnsPerHost",
        "IdleConnTimeout",
        "DisableKeepAlives",
    ];

    /// Python `requests` options (psf/requests `adapters.py`, urllib3 `connectionpool.py`,
    /// notes §2).
    pub const REQUESTS_OPTIONS: [&str; 4] =
        ["session", "pool_connections", "pool_maxsize", "pool_block"];

    /// `http.DefaultTransport`'s options.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Go {
        /// `MaxIdleConns: 100` in `var DefaultTransport` (transport.go); 0 = no limit.
        pub max_idle_conns: u32,
        /// 0 = `DefaultMaxIdleConnsPerHost = 2` (`Transport.maxIdleConnsPerHost`); negative
        /// disables keep-alives (`errKeepAlivesDisabled` in `tryPutIdleConn`).
        pub max_idle_conns_per_host: i64,
        /// 0 = no limit (field doc: "Zero means no limit").
        pub max_conns_per_host: u32,
        /// `IdleConnTimeout: 90 * time.Second` in `DefaultTransport`; zero = no limit.
        pub idle_conn_timeout: Duration,
        /// false by default.
        pub disable_keep_alives: bool,
    }

    impl Default for Go {
        fn default() -> Go {
            Go {
                max_idle_conns: 100,
                max_idle_conns_per_host: 0,
                max_conns_per_host: 0,
                idle_conn_timeout: Duration::from_secs(90),
                disable_keep_alives: false,
            }
        }
    }

    impl Go {
        /// The pool: per-host idle list used most-recent-first (`queueForIdleConn`), the
        /// global LRU cap, per-host dial cap, idle timer (`closeConnIfStillIdle`). With
        /// keep-alives off, who sends the first FIN is a race (the client closes after the
        /// body, a Go server sends FIN after `Connection: close`); the workload's `closer`
        /// decides, the client unless set (UNVERIFIED, notes §1).
        pub fn pool(&self) -> Pool {
            let per_host = match self.max_idle_conns_per_host {
                0 => 2,
                n if n < 0 => 0,
                n => n.min(i64::from(u32::MAX)) as u32,
            };
            Pool {
                max_idle_per_host: per_host,
                max_idle: (self.max_idle_conns > 0).then_some(self.max_idle_conns),
                max_conns_per_host: (self.max_conns_per_host > 0)
                    .then_some(self.max_conns_per_host),
                idle_timeout: (self.idle_conn_timeout.0 > 0).then_some(self.idle_conn_timeout),
                keep_alive: !self.disable_keep_alives && self.max_idle_conns_per_host >= 0,
                reuse: Reuse::Lifo,
                ..Pool::default()
            }
        }
    }

    /// A `requests` call with or without a `Session`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Requests {
        /// false: `requests.get(...)` runs `with sessions.Session() as session:` (api.py), so
        /// each call opens a connection and the session's close closes it: the client
        /// closes, a TIME-WAIT per call (notes §2; measured with requests 2.34.2 / urllib3
        /// 2.7.0 on Linux 6.18: every connection's TIME-WAIT on the client, none on the
        /// server, notes/client-observations/).
        pub session: bool,
        /// `pool_connections`, `DEFAULT_POOLSIZE = 10`: host pools cached (urllib3
        /// `num_pools`), not connections. Kept for the name; with at most this many
        /// destinations it changes nothing (more destinations: not modelled).
        pub pool_connections: u32,
        /// `pool_maxsize`, `DEFAULT_POOLSIZE = 10` (adapters.py): connections kept per host;
        /// a returned connection beyond it is closed by the client (`_put_conn`).
        pub pool_maxsize: u32,
        /// `pool_block`, `DEFAULT_POOLBLOCK = False`: with true a request waits for one of
        /// `pool_maxsize` connections (`_get_conn`, `pool.get(block=True)`); the
        /// `pool_timeout` error is not modelled.
        pub pool_block: bool,
    }

    impl Default for Requests {
        fn default() -> Requests {
            Requests {
                session: false,
                pool_connections: 10,
                pool_maxsize: 10,
                pool_block: false,
            }
        }
    }

    impl Requests {
        /// The pool: a `LifoQueue` of `pool_maxsize`, no idle timer in urllib3's pool code
        /// (notes §2: idle connections go when the server's keep-alive closes them).
        pub fn pool(&self) -> Pool {
            if !self.session {
                return Pool {
                    keep_alive: false,
                    ..Pool::default()
                };
            }
            Pool {
                max_idle_per_host: self.pool_maxsize,
                max_conns_per_host: self.pool_block.then_some(self.pool_maxsize),
                reuse: Reuse::Lifo,
                ..Pool::default()
            }
        }
    }

    /// .NET `HttpClient` / `SocketsHttpHandler` options (dotnet/runtime
    /// `HttpHandlerDefaults.cs`, `HttpConnectionPool.Http1.cs`, `HttpConnectionPoolManager.cs`,
    /// notes §3), and whether one client is shared.
    pub const DOTNET_OPTIONS: [&str; 4] = [
        "shared",
        "PooledConnectionLifetime",
        "PooledConnectionIdleTimeout",
        "MaxConnectionsPerServer",
    ];

    /// An `HttpClient`, shared by every request or made per request.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct DotNet {
        /// true: one `HttpClient` for all requests, its handler's pool kept (the documented
        /// use). false: `using var c = new HttpClient()` per request: a fresh handler and
        /// pool each time (`HttpClient() : this(new HttpClientHandler())`), disposed after
        /// the response, which closes its connection: the client closes, a client TIME-WAIT
        /// per request (notes §3; the `Dispose` → socket-close lines are UNVERIFIED). A
        /// client that is not disposed is not modelled (its connection would idle until the
        /// scavenger or the GC closes it, notes §3).
        pub shared: bool,
        /// `PooledConnectionLifetime`, `Timeout.InfiniteTimeSpan` by default (`None`): a
        /// connection this old is closed when it comes back (`CheckExpirationOnReturn`), or
        /// by the scavenger when idle. No jitter (notes §3).
        pub pooled_connection_lifetime: Option<Duration>,
        /// `PooledConnectionIdleTimeout`: 1 min on .NET 6 and later (`None`: infinite), 2 min
        /// on .NET Core 2.1–3.1 and .NET 5 (dotnet/runtime PR #52687). The preset's default
        /// is .NET 6+'s. Zero: connections are not kept at all (`HttpConnectionPoolManager`).
        pub pooled_connection_idle_timeout: Option<Duration>,
        /// `MaxConnectionsPerServer`, `int.MaxValue` by default: at the limit a request waits
        /// in `_http11RequestQueue`, first come first served (the assignment to
        /// `_maxHttp11Connections` is UNVERIFIED, notes §3).
        pub max_connections_per_server: u32,
    }

    impl Default for DotNet {
        fn default() -> DotNet {
            DotNet {
                shared: true,
                pooled_connection_lifetime: None,
                pooled_connection_idle_timeout: Some(Duration::from_secs(60)),
                max_connections_per_server: i32::MAX as u32,
            }
        }
    }

    impl DotNet {
        /// The scavenger's period: `_pooledConnectionIdleTimeout / ScavengesPerIdle` (4), at
        /// least `MinScavengeSeconds` (1 s); 30 s (`DefaultScavengeSeconds`) with an infinite
        /// idle timeout (`HttpConnectionPoolManager`, notes §3).
        pub fn scavenge_period(&self) -> Duration {
            match self.pooled_connection_idle_timeout {
                Some(t) => Duration((t.0 / 4).max(Duration::from_secs(1).0)),
                None => Duration::from_secs(30),
            }
        }

        /// The pool: no idle cap (`_http11Connections` is a `ConcurrentStack`, used LIFO, every
        /// returned connection pushed), the per-server cap with FIFO waiting, idle timeout and
        /// lifetime acted on by the scavenger for idle connections, lifetime checked on
        /// return. Per request, or with a zero idle timeout or lifetime: a connection per
        /// request, closed by the client.
        pub fn pool(&self) -> Pool {
            let zero = |d: Option<Duration>| d.is_some_and(|d| d.0 == 0);
            if !self.shared
                || zero(self.pooled_connection_idle_timeout)
                || zero(self.pooled_connection_lifetime)
            {
                return Pool {
                    keep_alive: false,
                    ..Pool::default()
                };
            }
            Pool {
                max_conns_per_host: (self.max_connections_per_server < i32::MAX as u32)
                    .then_some(self.max_connections_per_server),
                idle_timeout: self.pooled_connection_idle_timeout,
                max_lifetime: self.pooled_connection_lifetime,
                lifetime_jitter: Jitter::None,
                reuse: Reuse::Lifo,
                // `new Timer(..., timerPeriod, timerPeriod)`: the first tick one period in.
                sweep: Some(Sweep {
                    first: self.scavenge_period(),
                    every: self.scavenge_period(),
                    lifetime: true,
                }),
                ..Pool::default()
            }
        }
    }

    /// HikariCP `HikariConfig` options (notes §4), and the system property
    /// `com.zaxxer.hikari.lifeTimeVarianceFactor`.
    pub const HIKARI_OPTIONS: [&str; 5] = [
        "maximumPoolSize",
        "minimumIdle",
        "maxLifetime",
        "idleTimeout",
        "lifeTimeVarianceFactor",
    ];

    /// A HikariCP pool to one database.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Hikari {
        /// `maximumPoolSize`, `DEFAULT_POOL_SIZE = 10`.
        pub maximum_pool_size: u32,
        /// `minimumIdle`; unset, or outside 0..=maximumPoolSize, it is maximumPoolSize
        /// (`validateNumerics`: `if (minIdle < 0 || minIdle > maxPoolSize) minIdle =
        /// maxPoolSize`).
        pub minimum_idle: Option<u32>,
        /// `maxLifetime`, `MAX_LIFETIME = MINUTES.toMillis(30)`; `None` (0): none.
        pub max_lifetime: Option<Duration>,
        /// `idleTimeout`, `IDLE_TIMEOUT = MINUTES.toMillis(10)`: acts only when minimumIdle <
        /// maximumPoolSize (`HouseKeeper.run`), and not when idleTimeout + 1 s > maxLifetime;
        /// at the housekeeper's runs, every 30 s, down to minimumIdle idle.
        pub idle_timeout: Option<Duration>,
        /// Lifetime = maxLifetime − U[0, maxLifetime / factor) ms, none at ≤ 10 s
        /// (`createPoolEntry`): 40 (2.5 %) in 3.x–5.x, 4 (25 %, the property's default)
        /// after commit 28f81da4 (2024-11-01), clamped to 2..=40. The default is 4, the
        /// current source; the first release with it is UNVERIFIED (notes §4).
        pub life_time_variance_factor: u32,
    }

    impl Default for Hikari {
        fn default() -> Hikari {
            Hikari {
                maximum_pool_size: 10,
                minimum_idle: None,
                max_lifetime: Some(Duration::from_secs(30 * 60)),
                idle_timeout: Some(Duration::from_secs(10 * 60)),
                life_time_variance_factor: 4,
            }
        }
    }

    impl Hikari {
        /// minimumIdle as `validateNumerics` leaves it.
        pub fn min_idle(&self) -> u32 {
            match self.minimum_idle {
                Some(m) if m <= self.maximum_pool_size => m,
                _ => self.maximum_pool_size,
            }
        }

        /// The pool: it opens its own connections, one at a time (`addConnectionExecutor`,
        /// one thread), up to minimumIdle idle and for waiting requests, at most
        /// maximumPoolSize; a request takes an idle connection or waits
        /// (`ConcurrentBag.borrow`). A connection past its lifetime is closed by the pool,
        /// the client, at once when idle (`softEvictConnection` reserves it), else when it
        /// comes back (HikariCP marks it and closes it at the next borrow that finds it:
        /// the model closes it on return); each close runs `fillPool`. Keep-alive queries
        /// (`keepaliveTime`, 0 = off in 4.x/5.x) open no connection and are not modelled.
        /// Reuse is most recent first, as `ConcurrentBag.borrow` tries the thread's own list
        /// from its end first (UNVERIFIED: not in the notes; a shared-list borrow goes in
        /// insertion order).
        pub fn pool(&self) -> Pool {
            let min = self.min_idle();
            let idle = self.idle_timeout.filter(|t| {
                min < self.maximum_pool_size
                    && self
                        .max_lifetime
                        .is_none_or(|l| t.0.saturating_add(Duration::from_secs(1).0) <= l.0)
            });
            Pool {
                max_conns_per_host: Some(self.maximum_pool_size),
                min_idle: Some(min),
                idle_timeout: idle,
                max_lifetime: self.max_lifetime,
                lifetime_jitter: Jitter::Subtract {
                    divisor: self.life_time_variance_factor.clamp(2, 40),
                },
                reuse: Reuse::Lifo,
                // `scheduleWithFixedDelay(new HouseKeeper(), 100L, HOUSEKEEPING_PERIOD_MS)`,
                // 30 s (HikariPool.java @ 00604807): idleTimeout acts there, and `fillPool`.
                sweep: Some(Sweep {
                    first: Duration::from_millis(100),
                    every: Duration::from_secs(30),
                    lifetime: false,
                }),
                ..Pool::default()
            }
        }
    }
}
