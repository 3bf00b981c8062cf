//! HTTP load generators written in C and Rust: oha, wrk, ab, httperf (the Go ones, hey and
//! k6, are in `go`). Defaults, flags and what each does
//! on the wire are from `notes/client-libraries.md` §5 (the tool's source named per
//! parser); a value no source confirmed is marked UNVERIFIED.

use super::scan::{At, MAX_RATE, Spec, Style, scan, switch, val};
use super::{Destination, OnConnectError, Tool, ToolError, ToolLimit, ToolRate, ToolRun};
use crate::time::Duration;
use crate::workload::{Closer, Rate};

/// Requests or connections a flag may ask for in all.
pub(super) const MAX_TOTAL: u64 = 1_000_000_000_000;

/// The one URL among an HTTP tool's positional arguments.
pub(super) fn one_url(
    tool: Tool,
    positional: &[String],
    scheme_optional: bool,
) -> Result<Destination, ToolError> {
    match positional {
        [u] => super::url(tool, u, scheme_optional),
        [] => Err(ToolError::MissingTarget {
            tool,
            expected: "a URL (http://HOST[:PORT]/…)",
        }),
        [_, extra, ..] => Err(ToolError::BadValue {
            tool,
            flag: "argument".into(),
            value: Some(extra.clone()),
            allowed: "one URL, after the flags".into(),
        }),
    }
}

const OHA: Spec = Spec {
    tool: Tool::Oha,
    style: Style::Getopt,
    read: &[
        val(&["-c"]),
        val(&["-n"]),
        val(&["-z"]),
        val(&["-q"]),
        switch(&["--disable-keepalive"]),
    ],
    ignored: &[
        val(&["-m", "--method"]),
        val(&["-H"]),
        val(&["-t"]),
        val(&["-A"]),
        val(&["-d"]),
        val(&["-D"]),
        val(&["-T"]),
        val(&["-a"]),
        val(&["-o"]),
        val(&["--fps"]),
        switch(&["--no-tui"]),
        switch(&["-j", "--json"]),
        switch(&["--insecure"]),
        switch(&["--latency-correction"]),
        switch(&["-w", "--wait-ongoing-requests-after-deadline"]),
        switch(&["--disable-compression"]),
    ],
};

/// Why `oha --disable-keepalive` leaves TIME-WAIT on the server.
const OHA_KEPT: &str = "oha keeps each worker's connection while it stays ready and dials \
    again when the server closes it (hatoo/oha src/client.rs @ 014a3dcd; notes §5)";

const OHA_CLOSE: &str = "oha --disable-keepalive sends `Connection: close` and drops its \
    connection after each response (hatoo/oha src/client.rs @ 014a3dcd); the server closes on \
    `Connection: close`, usually first (server TIME-WAIT); the order is UNVERIFIED \
    (notes/client-libraries.md §5)";

/// oha: `-c` 50 workers, each with one connection reused while it stays ready; `-n` 200
/// requests, or `-z` a duration ("If duration is specified, n is ignored"); `-q` a rate for
/// all workers ("Rate limit for all, in queries per second"); `--disable-keepalive` dials
/// per request. Source: hatoo/oha `src/main.rs` @ 00229000 (notes §5).
pub(super) fn oha(args: &[String]) -> Result<ToolRun, ToolError> {
    let s = scan(&OHA, args)?;
    let (mut c, mut n, mut z, mut q, mut keep_alive) = (50, 200, None, None, true);
    for (flag, v) in &s.flags {
        let at = At {
            tool: Tool::Oha,
            flag,
        };
        match *flag {
            "-c" => c = at.count(v, "concurrent connections")?,
            "-n" => n = at.int(v, 1, MAX_TOTAL, "requests in all")?,
            "-z" => z = Some(at.duration(v, false)?),
            "-q" => q = Some(at.rate(v, "requests per second for all workers")?),
            _ => keep_alive = !at.on(v)?,
        }
    }
    let mut run = ToolRun::new(
        Tool::Oha,
        one_url(Tool::Oha, &s.positional, false)?,
        OHA_KEPT,
    );
    run.concurrency = Some(c);
    run.limit = requests_or_duration(n, z);
    run.rate = q.map(ToolRate::Requests);
    if !keep_alive {
        run.one_request_each(Closer::Server, OHA_CLOSE);
    }
    Ok(run)
}

/// `-z` overrides `-n` (oha, hey).
pub(super) fn requests_or_duration(n: u64, z: Option<Duration>) -> ToolLimit {
    match z {
        Some(d) => ToolLimit {
            duration: Some(d),
            ..ToolLimit::default()
        },
        None => ToolLimit {
            requests: Some(n),
            ..ToolLimit::default()
        },
    }
}

const WRK_KEPT: &str = "wrk keeps its connections; when the server closes one it \
    reconnects (wg/wrk src/wrk.c @ 03d41cdd, response_complete → reconnect_socket)";

const WRK: Spec = Spec {
    tool: Tool::Wrk,
    style: Style::Getopt,
    read: &[
        val(&["-t", "--threads"]),
        val(&["-c", "--connections"]),
        val(&["-d", "--duration"]),
    ],
    ignored: &[
        val(&["-s", "--script"]),
        val(&["-H", "--header"]),
        val(&["-T", "--timeout"]),
        switch(&["-L", "--latency"]),
        switch(&["-v", "--version"]),
    ],
};

/// wrk: `-t` 2 threads, `-c` 10 connections in all (`connections / threads` each), `-d`
/// 10 s (`cfg->threads = 2; cfg->connections = 10; cfg->duration = 10;`). It keeps its
/// connections and reconnects when the server closes one (`reconnect_socket`). Source:
/// wg/wrk `src/wrk.c` @ 03d41cdd (notes §5). A bare `-d` number as seconds, and the refusal
/// of fewer connections than threads, are from memory of `wrk.c` (UNVERIFIED).
pub(super) fn wrk(args: &[String]) -> Result<ToolRun, ToolError> {
    let s = scan(&WRK, args)?;
    let (mut t, mut c, mut d) = (2, 10, Duration::from_secs(10));
    for (flag, v) in &s.flags {
        let at = At {
            tool: Tool::Wrk,
            flag,
        };
        match *flag {
            "-t" => t = at.count(v, "threads")?,
            "-c" => c = at.count(v, "connections in all")?,
            _ => d = at.duration(v, true)?,
        }
    }
    if c < t {
        return Err(ToolError::BadValue {
            tool: Tool::Wrk,
            flag: "-c".into(),
            value: Some(c.to_string()),
            allowed: format!("at least the threads (-t {t}): each thread holds c / t connections"),
        });
    }
    let mut run = ToolRun::new(
        Tool::Wrk,
        one_url(Tool::Wrk, &s.positional, false)?,
        WRK_KEPT,
    );
    run.concurrency = Some(c);
    run.threads = Some(t);
    run.limit.duration = Some(d);
    Ok(run)
}

const AB: Spec = Spec {
    tool: Tool::Ab,
    style: Style::Getopt,
    read: &[val(&["-c"]), val(&["-n"]), switch(&["-k"]), val(&["-t"])],
    ignored: &[
        val(&["-s"]),
        val(&["-b"]),
        val(&["-B"]),
        val(&["-p"]),
        val(&["-u"]),
        val(&["-T"]),
        val(&["-v"]),
        val(&["-H"]),
        val(&["-C"]),
        val(&["-A"]),
        val(&["-P"]),
        val(&["-X"]),
        val(&["-m"]),
        val(&["-g"]),
        val(&["-e"]),
        switch(&["-i"]),
        switch(&["-d"]),
        switch(&["-S"]),
        switch(&["-q"]),
        switch(&["-r"]),
        switch(&["-l"]),
        switch(&["-w"]),
    ],
};

/// Ab's requests when `-t` is given ("This implies -n 50000", its usage text).
const AB_TIMELIMIT_REQUESTS: u64 = 50_000;

const AB_KEPT: &str = "ab -k reuses a connection until the server closes it (\"server has \
    legitimately shut down an idle keep alive request\"; support/ab.c, stored copies; notes §5)";

const AB_CLOSE: &str = "ab sends HTTP/1.0 requests without `Connection: Keep-Alive` unless \
    -k, so the server closes after the response, first (server TIME-WAIT); ab reads EOF and \
    connects again (support/ab.c close_connection → start_connect, stored copies; \
    notes/client-libraries.md §5)";

/// ab: `-c` concurrency and `-n` requests, both 1 by default (`int requests = 1;`,
/// `int concurrency = 1;` in stored copies of `support/ab.c`), `-t` seconds ("This implies
/// -n 50000"), `-k` keep-alive. It refuses a concurrency above the requests and aborts after
/// 10 failed connects (from memory of ab.c: UNVERIFIED; modelled as a stop).
pub(super) fn ab(args: &[String]) -> Result<ToolRun, ToolError> {
    let s = scan(&AB, args)?;
    let (mut c, mut n, mut t, mut keep_alive) = (1, 1, None, false);
    for (flag, v) in &s.flags {
        let at = At {
            tool: Tool::Ab,
            flag,
        };
        match *flag {
            "-c" => c = at.count(v, "concurrent requests")?,
            "-n" => n = at.int(v, 1, MAX_TOTAL, "requests in all")?,
            "-t" => {
                let secs = at.int(v, 1, 1_000_000_000, "seconds")?;
                t = Some(Duration::from_secs(secs));
                n = AB_TIMELIMIT_REQUESTS;
            }
            _ => keep_alive = at.on(v)?,
        }
    }
    if u64::from(c) > n {
        return Err(ToolError::BadValue {
            tool: Tool::Ab,
            flag: "-c".into(),
            value: Some(c.to_string()),
            allowed: format!("at most the requests (-n {n}): ab refuses more"),
        });
    }
    let mut run = ToolRun::new(Tool::Ab, one_url(Tool::Ab, &s.positional, true)?, AB_KEPT);
    run.concurrency = Some(c);
    run.limit = ToolLimit {
        requests: Some(n),
        duration: t,
        connections: None,
    };
    run.on_connect_error = OnConnectError::Stop;
    if !keep_alive {
        run.one_request_each(Closer::Server, AB_CLOSE);
    }
    Ok(run)
}

const HTTPERF: Spec = Spec {
    tool: Tool::Httperf,
    style: Style::Getopt,
    read: &[
        val(&["--server"]),
        val(&["--port"]),
        val(&["--num-conns"]),
        val(&["--num-calls"]),
        val(&["--rate"]),
        switch(&["--close-with-reset"]),
    ],
    ignored: &[
        val(&["--uri"]),
        val(&["--timeout"]),
        val(&["--think-timeout"]),
        val(&["--send-buffer"]),
        val(&["--recv-buffer"]),
        val(&["--client"]),
        val(&["--add-header"]),
        val(&["--method"]),
        val(&["--http-version"]),
        switch(&["--hog"]),
        switch(&["-v", "--verbose"]),
        switch(&["-d", "--debug"]),
    ],
};

const HTTPERF_CLOSE: &str = "httperf closes each connection after its last reply (client \
    TIME-WAIT): UNVERIFIED from source (notes/client-libraries.md §5); --close-with-reset \
    sets SO_LINGER 0 (core.c core_connect), an RST and no TIME-WAIT";

/// httperf: `--server` and `--port` (80), `--num-conns` connections, `--num-calls` requests
/// on each, `--rate` new connections per second (0: one after another), and
/// `--close-with-reset` (SO_LINGER 0, `linger.l_linger = 0` in `core.c` `core_connect`).
/// `--num-calls` 1 is what httperf echoes for a run without it (a stored run's output);
/// `--server` localhost, `--num-conns` 1 and `--rate` 0 are UNVERIFIED (notes §5). A
/// failed connect is counted (`addrunavail`).
pub(super) fn httperf(args: &[String]) -> Result<ToolRun, ToolError> {
    let s = scan(&HTTPERF, args)?;
    if let Some(extra) = s.positional.first() {
        return Err(ToolError::BadValue {
            tool: Tool::Httperf,
            flag: "argument".into(),
            value: Some(extra.clone()),
            allowed: "flags only (--server HOST --port N …)".into(),
        });
    }
    let (mut server, mut port) = ("localhost".to_string(), 80);
    let (mut conns, mut calls, mut rate, mut reset) = (1, 1, None, false);
    for (flag, v) in &s.flags {
        let at = At {
            tool: Tool::Httperf,
            flag,
        };
        match *flag {
            "--server" => server = at.text(v)?.to_string(),
            "--port" => port = at.int(v, 1, 65_535, "the server's port")? as u16,
            "--num-conns" => conns = at.int(v, 1, MAX_TOTAL, "connections in all")?,
            "--num-calls" => calls = at.int(v, 1, 1_000_000_000, "requests per connection")?,
            "--rate" => rate = httperf_rate(&at, v)?,
            _ => reset = at.on(v)?,
        }
    }
    let bad_server = || ToolError::BadValue {
        tool: Tool::Httperf,
        flag: "--server".into(),
        value: Some(server.clone()),
        allowed: "an IPv4 address, localhost or a host name".into(),
    };
    let dest = super::host_port(&server, port).ok_or_else(bad_server)?;
    let mut run = ToolRun::new(Tool::Httperf, dest, HTTPERF_CLOSE);
    run.concurrency = if rate.is_some() { None } else { Some(1) };
    run.rate = rate.map(ToolRate::Connections);
    run.limit.connections = Some(conns);
    run.keep_alive = calls > 1;
    run.requests_per_connection = Some(calls as u32);
    run.closer = Some(Closer::Client);
    run.close_with_reset = reset;
    Ok(run)
}

/// `--rate`: connections per second; 0 means one connection after another.
fn httperf_rate(at: &At<'_>, v: &Option<String>) -> Result<Option<Rate>, ToolError> {
    let t = at.text(v)?;
    match Rate::parse_decimal(t) {
        Some(r) if r.num == 0 => Ok(None),
        Some(r) if r.num / r.den <= MAX_RATE => Ok(Some(r)),
        _ => Err(at.bad(
            t,
            format!("a number 0–{MAX_RATE} of connections per second (0: sequential)"),
        )),
    }
}
