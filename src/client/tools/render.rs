//! A [`ToolRun`] as a scenario's TOML, in the `[[workload]]` syntax: a closed loop of
//! `concurrency` connections (or a constant rate of connections), `threads`,
//! `requests_per_connection`, `closer`, `linger_zero`, `on_error`, `stop` and `limit`.
//!
//! Keep-alive (notes/client-libraries.md §5), the simplest faithful rendering per tool:
//! - oha, wrk, ab `-k`, k6, memtier_benchmark, redis-benchmark `-k 1`, and hey with `-c` ≤ 500:
//!   one connection per worker, kept for the run (reconnected only when it fails or the
//!   server closes it). A closed loop of `-c` whose connections carry every request until
//!   the end of a timed run, or their share ⌈n / c⌉ of a request limit, after which the tool
//!   exits and the client closes them. No connection is opened after the first `c`.
//! - hey with `-c` > 500: one Go `Transport` with `MaxIdleConnsPerHost: min(c, 500)` (stored
//!   copies of hey's `requester/requester.go`, notes §5), so a `[workload.pool]` with that idle
//!   cap and no global cap or idle timeout (a zero `Transport{}` field: "Zero means no
//!   limit", notes §1): a connection returned to a full idle list is closed by the client.
//! - keep-alive off (oha `--disable-keepalive`, ab without `-k`, hey `-disable-keepalive`, k6
//!   `--no-connection-reuse`, redis-benchmark `-k 0`) and httperf `--num-calls`: a connection
//!   per request (per `--num-calls` requests) closed by the side the tool's notes say.

use super::{Destination, OnConnectError, ToolLimit, ToolRate, ToolRun};
use crate::time::Duration;
use crate::workload::{Closer, Rate};
use std::fmt::{self, Write};
use std::net::{Ipv4Addr, SocketAddrV4};

/// The most requests a connection may carry in a scenario (`requests_per_connection`).
const MAX_PER_CONNECTION: u64 = 1_000_000_000;

/// What the command line does not say.
#[derive(Clone, Debug)]
pub struct RenderOptions {
    /// The hosts' kernel profile (`portsim run --tool` gives the local host's).
    pub profile: String,
    /// The destination's address: needed when the command names a host or a k6 script;
    /// replaces the command's address when given.
    pub address: Option<SocketAddrV4>,
    /// Round-trip time: an assumption, not in the command line.
    pub rtt: Duration,
    /// The server's time per request: an assumption, not in the command line.
    pub service_time: Duration,
    /// How long a run limited by requests or connections is simulated.
    pub run_for: Duration,
    /// Simulated time after a timed run's end, for its TIME-WAITs to expire.
    pub tail: Duration,
    pub seed: u64,
}

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions {
            profile: "linux".into(),
            address: None,
            rtt: Duration::from_micros(200),
            service_time: Duration::from_millis(1),
            run_for: Duration::from_secs(60),
            tail: Duration::from_secs(60),
            seed: 1,
        }
    }
}

/// Why a run could not be rendered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RenderError {
    /// The destination is a host name or a k6 script: the scenario needs an IPv4 address.
    NeedsAddress { what: String },
}

impl fmt::Display for RenderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RenderError::NeedsAddress { what } => write!(
                f,
                "{what}: the scenario needs the destination's IPv4 address and port \
                 (resolve the name, e.g. `getent hosts NAME`, and give IP:PORT)"
            ),
        }
    }
}

impl std::error::Error for RenderError {}

/// The scenario text for `run`.
pub fn render(run: &ToolRun, opts: &RenderOptions) -> Result<String, RenderError> {
    let dest = destination(run, opts)?;
    let per_conn = run.requests_per_connection.map(u64::from);
    let kept = per_conn.is_none();
    let (duration, stop) = window(&run.limit, kept, opts);
    let mut t = String::new();
    header(&mut t, run, opts, duration);
    hosts(&mut t, dest, &opts.profile);
    let pool = idle_cap(run);
    workload(&mut t, run, opts, dest, per_conn, pool.is_some(), stop);
    if let Some(cap) = pool {
        pool_table(&mut t, run, cap);
    }
    Ok(t)
}

/// A kept-alive run's idle cap when it is below the workers, so that a pool decides which
/// connections are closed (hey above 500 workers); `None` otherwise.
fn idle_cap(run: &ToolRun) -> Option<u32> {
    let cap = run.max_idle_per_host?;
    (run.keep_alive && run.requests_per_connection.is_none() && Some(cap) < run.concurrency)
        .then_some(cap)
}

fn destination(run: &ToolRun, opts: &RenderOptions) -> Result<SocketAddrV4, RenderError> {
    let what = match (&run.destination, opts.address) {
        (_, Some(a)) => return Ok(a),
        (Destination::Addr(a), None) => return Ok(*a),
        (Destination::Name { host, port }, None) => format!("{host}:{port}"),
        (Destination::Script { path }, None) => format!("k6 script {path:?}"),
    };
    Err(RenderError::NeedsAddress { what })
}

/// A kept connection's share of a request limit, or every request until the end.
fn kept_share(run: &ToolRun) -> u64 {
    match (run.limit.requests, run.concurrency) {
        (Some(n), Some(c)) => n.div_ceil(u64::from(c)).min(MAX_PER_CONNECTION),
        _ => MAX_PER_CONNECTION,
    }
}

/// The scenario's length and the workload's `stop`: a timed run stops at its duration and
/// is simulated `tail` longer, unless its connections are kept to the end; other runs are
/// simulated `run_for`.
fn window(limit: &ToolLimit, kept: bool, opts: &RenderOptions) -> (Duration, Option<Duration>) {
    match limit.duration {
        Some(d) if kept && limit.requests.is_none() => (d, None),
        Some(d) => (Duration(d.0.saturating_add(opts.tail.0)), Some(d)),
        None => (opts.run_for, None),
    }
}

fn header(t: &mut String, run: &ToolRun, opts: &RenderOptions, duration: Duration) {
    let _ = writeln!(t, "# A scenario for: {}", comment(&run.command));
    t.push_str(
        "# Rendered by portsim from the command line (src/client/tools.rs); the tool's \
         behaviour:\n# notes/client-libraries.md §5. rtt and service_time are assumptions: \
         set your network's.\n\n[scenario]\n",
    );
    let _ = writeln!(t, "name = {}", quote(run.tool.name()));
    let _ = writeln!(t, "description = {}", quote(&run.command));
    let _ = writeln!(t, "duration = \"{duration}\"");
    let _ = writeln!(t, "seed = {}\n", opts.seed);
}

/// One host for a loopback destination (client and server share it), else a client and a
/// server.
fn hosts(t: &mut String, dest: SocketAddrV4, profile: &str) {
    let profile = quote(profile);
    if dest.ip().is_loopback() {
        let _ = writeln!(
            t,
            "[[host]]\nname = \"client\"\nprofile = {profile}\nips = [\"{}\"]\n\
             listen = [\"{dest}\"]\n",
            dest.ip()
        );
        return;
    }
    let client = client_ip(*dest.ip());
    let _ = writeln!(
        t,
        "[[host]]\nname = \"client\"\nprofile = {profile}\nips = [\"{client}\"]\n\n\
         [[host]]\nname = \"server\"\nprofile = {profile}\nips = [\"{}\"]\n\
         listen = [\"{dest}\"]\n",
        dest.ip()
    );
}

/// A documentation address for the client (RFC 5737) that is not the server's.
fn client_ip(server: Ipv4Addr) -> Ipv4Addr {
    let a = Ipv4Addr::new(192, 0, 2, 1);
    if server == a {
        Ipv4Addr::new(198, 51, 100, 1)
    } else {
        a
    }
}

fn workload(
    t: &mut String,
    run: &ToolRun,
    opts: &RenderOptions,
    dest: SocketAddrV4,
    per_conn: Option<u64>,
    pooled: bool,
    stop: Option<Duration>,
) {
    let _ = writeln!(
        t,
        "[[workload]]\nname = {}\nclient = \"client\"\ndestinations = [\"{dest}\"]",
        quote(run.tool.name())
    );
    let closed = arrival(t, run);
    if let (true, false, Some(threads)) = (closed, pooled, run.threads) {
        let _ = writeln!(t, "threads = {threads}");
    }
    if !pooled {
        let requests = per_conn.unwrap_or_else(|| kept_share(run));
        let _ = writeln!(t, "requests_per_connection = {requests}");
    }
    let _ = writeln!(t, "rtt = \"{}\"", opts.rtt);
    let _ = writeln!(t, "service_time = \"{}\"", opts.service_time);
    closer(t, run, per_conn.is_none(), pooled);
    let _ = match run.on_connect_error {
        OnConnectError::Count => {
            writeln!(t, "on_error = {{ action = \"count\", delay = \"1ms\" }}")
        }
        OnConnectError::Stop => writeln!(t, "on_error = {{ action = \"stop\" }}"),
    };
    if let Some(s) = stop {
        let _ = writeln!(t, "stop = \"{s}\"");
    }
    limit(t, &run.limit);
}

/// The `arrival` line; whether it is a closed loop.
fn arrival(t: &mut String, run: &ToolRun) -> bool {
    let c = run.concurrency.unwrap_or(1);
    match run.rate {
        Some(ToolRate::Connections(r)) => {
            let _ = writeln!(
                t,
                "arrival = {{ kind = \"constant\", rate = {} }}",
                rate_text(r)
            );
            false
        }
        Some(ToolRate::Requests(r)) if !run.keep_alive => {
            let _ = writeln!(
                t,
                "# The tool's rate limit, a new connection per request; its cap of {c} in \
                 flight is not modelled.\narrival = {{ kind = \"constant\", rate = {} }}",
                rate_text(r)
            );
            false
        }
        Some(ToolRate::Requests(r)) => {
            let _ = writeln!(
                t,
                "# The tool's rate limit ({}/s) paces requests on kept connections: not \
                 modelled.\narrival = {{ kind = \"closed\", concurrency = {c} }}",
                rate_text(r)
            );
            true
        }
        None => {
            let _ = writeln!(t, "arrival = {{ kind = \"closed\", concurrency = {c} }}");
            true
        }
    }
}

fn closer(t: &mut String, run: &ToolRun, kept: bool, pooled: bool) {
    if kept {
        comment_lines(t, run.closer_source);
        comment_lines(
            t,
            if pooled {
                "Rendered as: a pool of kept connections (below); the client closes what its \
                 idle cap refuses."
            } else {
                "Rendered as: one connection per worker, kept: it carries every request until \
                 the end of a timed run, or its share of a request limit, after which the tool \
                 exits and the client closes it. A server that closes kept connections (nginx \
                 keepalive_requests / keepalive_timeout) needs a [workload.pool] with \
                 server_keepalive_requests / server_keepalive_timeout instead of \
                 requests_per_connection and threads."
            },
        );
        t.push_str("closer = \"client\"\n");
        return;
    }
    let side = match run.closer {
        Some(Closer::Server) => "server",
        _ => "client",
    };
    comment_lines(t, run.closer_source);
    let _ = writeln!(t, "closer = \"{side}\"");
    if run.close_with_reset {
        t.push_str("linger_zero = true\n");
    }
}

fn limit(t: &mut String, limit: &ToolLimit) {
    if let Some(n) = limit.requests {
        let _ = writeln!(t, "limit = {{ requests = {n} }}");
    } else if let Some(n) = limit.connections {
        let _ = writeln!(t, "limit = {{ connections = {n} }}");
    }
}

/// hey's shared Go `Transport` above 500 workers: `MaxIdleConnsPerHost: min(c, 500)`, no
/// `MaxIdleConns` and no `IdleConnTimeout` (zero: "Zero means no limit", notes §1).
fn pool_table(t: &mut String, run: &ToolRun, cap: u32) {
    let c = run.concurrency.unwrap_or(1);
    let _ = writeln!(
        t,
        "\n# Go Transport: MaxIdleConnsPerHost = {cap} for {c} workers; MaxIdleConns and \
         IdleConnTimeout\n# unset (no limit). A connection returned to a full idle list is \
         closed by the client.\n\
         [workload.pool]\nmax_idle_per_host = {cap}\nmax_idle = 0\nidle_timeout = \"0s\""
    );
}

/// `text` as comment lines of at most about 96 columns, broken at spaces.
fn comment_lines(t: &mut String, text: &str) {
    let mut line = String::from("#");
    for word in comment(text).split_whitespace() {
        if line.len() > 1 && line.len() + 1 + word.len() > 96 {
            let _ = writeln!(t, "{line}");
            line = String::from("#");
        }
        line.push(' ');
        line.push_str(word);
    }
    let _ = writeln!(t, "{line}");
}

/// Text for a comment: control characters (a newline, a NUL) become `\u{…}` escapes.
fn comment(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            c if c.is_control() => c.escape_unicode().to_string(),
            c => c.to_string(),
        })
        .collect()
}

/// A TOML basic string: `"` and `\\` escaped, control characters (DEL too) as `\\uXXXX`.
fn quote(s: &str) -> String {
    let mut q = String::from('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                q.push('\\');
                q.push(c);
            }
            c if c.is_control() => {
                let _ = write!(q, "\\u{:04X}", u32::from(c));
            }
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

/// A rate exactly, as a TOML number.
fn rate_text(r: Rate) -> String {
    if r.den == 0 {
        return "0".into();
    }
    if r.num.is_multiple_of(r.den) {
        return (r.num / r.den).to_string();
    }
    let digits = r.den.ilog10() as usize;
    if 10u64.pow(digits as u32) != r.den {
        return format!("{}", r.per_sec());
    }
    let frac = format!("{:0digits$}", r.num % r.den);
    format!("{}.{}", r.num / r.den, frac.trim_end_matches('0'))
}
