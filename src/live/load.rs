//! The scenario's workload with real, non-blocking sockets: client threads (see
//! [`client_threads`]) and one server thread, each an epoll loop (mio), inside the run's
//! namespace.
//!
//! Arrivals, source/destination picks and service times come from the same seeded
//! [`Runner`] the simulator uses, in wall-clock time from the start of the run. A request is
//! `request_bytes` bytes, a response [`RESPONSE_BYTES`]; the server answers each request
//! after the workload's service time and, when it is the closer, closes after the last one.

use crate::report::{FIRST_PORTS, Hist};
use crate::rng::stream;
use crate::workload::{AfterFailure, Arrival, Closer, Dist, Mode, OnError, Runner, Workload};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use rand_chacha::ChaCha8Rng;
use socket2::{Domain, SockAddr, SockRef, Socket, Type};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant as StdInstant};

/// Bytes of each response.
pub const RESPONSE_BYTES: usize = 32;
const NONE: u32 = u32::MAX;
/// Longest a loop sleeps in epoll, so a stop request is seen within this.
const TICK: StdDuration = StdDuration::from_millis(5);

/// A nanosecond alarm in the epoll set. epoll's own timeout counts whole milliseconds (and
/// mio rounds up), which made 2 ms service times fire at 3 ms; a timerfd wakes the loop on
/// time without spinning.
struct Alarm {
    fd: std::os::fd::OwnedFd,
    /// The deadline armed and not yet rung.
    armed: Option<StdInstant>,
}

const ALARM: Token = Token(usize::MAX - 1);

impl Alarm {
    fn new(poll: &Poll) -> std::io::Result<Alarm> {
        use std::os::fd::{AsRawFd, FromRawFd};
        // SAFETY: timerfd_create returns a new descriptor or -1.
        let raw = unsafe {
            nix::libc::timerfd_create(
                nix::libc::CLOCK_MONOTONIC,
                nix::libc::TFD_NONBLOCK | nix::libc::TFD_CLOEXEC,
            )
        };
        if raw < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `raw` is a descriptor this function owns.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(raw) };
        poll.registry().register(
            &mut mio::unix::SourceFd(&fd.as_raw_fd()),
            ALARM,
            Interest::READABLE,
        )?;
        Ok(Alarm { fd, armed: None })
    }

    /// The epoll timeout that wakes the loop at `at`: zero when it is due, else `TICK`
    /// with the alarm armed for `at` (re-armed only when the deadline changes).
    fn timeout_for(&mut self, now: StdInstant, at: Option<StdInstant>) -> StdDuration {
        let Some(at) = at else {
            return TICK;
        };
        let wait = at.saturating_duration_since(now);
        if wait.is_zero() {
            return StdDuration::ZERO;
        }
        if wait < TICK && self.armed != Some(at) {
            self.set(wait);
            self.armed = Some(at);
        }
        TICK
    }

    /// Rings once, `wait` from now (at least 1 µs).
    fn set(&self, wait: StdDuration) {
        use std::os::fd::AsRawFd;
        let wait = wait.max(StdDuration::from_micros(1));
        let spec = nix::libc::itimerspec {
            it_interval: nix::libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: nix::libc::timespec {
                tv_sec: wait.as_secs() as _,
                tv_nsec: wait.subsec_nanos() as _,
            },
        };
        // SAFETY: a valid timerfd and a local itimerspec.
        unsafe {
            nix::libc::timerfd_settime(self.fd.as_raw_fd(), 0, &spec, std::ptr::null_mut());
        }
    }

    /// Consumes the expiry count so the next ring is a new edge.
    fn clear(&mut self) {
        self.armed = None;
        use std::os::fd::AsRawFd;
        let mut n = [0u8; 8];
        // SAFETY: reading 8 bytes into a local buffer.
        unsafe { nix::libc::read(self.fd.as_raw_fd(), n.as_mut_ptr().cast(), 8) };
    }
}

/// What the server on one listener does with a connection.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerSpec {
    pub request_bytes: u32,
    pub requests_per_connection: u32,
    pub closer: Closer,
    pub linger_zero: bool,
    pub service: Dist,
}

impl ServerSpec {
    pub fn of(w: &Workload) -> ServerSpec {
        ServerSpec {
            request_bytes: w.request_bytes.max(1),
            requests_per_connection: w.requests_per_connection,
            closer: w.closer,
            linger_zero: w.linger_zero,
            service: w.service_time,
        }
    }
}

/// One bin of what the clients saw.
#[derive(Clone, Debug, Default)]
pub struct ClientBin {
    pub attempts: u64,
    pub established: u64,
    pub failed: BTreeMap<String, u64>,
    pub requests: u64,
    pub connect_latency: Hist,
}

/// What the client thread measured.
#[derive(Debug, Default)]
pub struct ClientResult {
    pub bins: Vec<ClientBin>,
    pub attempted: u64,
    pub established: u64,
    pub failed: BTreeMap<String, u64>,
    pub requests: u64,
    pub in_flight: u64,
    pub connect_latency: Hist,
    pub request_latency: Hist,
    /// Connections that failed after the handshake (reset, early close), by errno.
    pub broken: BTreeMap<String, u64>,
    /// Open-loop arrivals started more than 5 ms after their time: the generator fell behind.
    pub late_arrivals: u64,
    /// How long after its time each open-loop arrival started, ns.
    pub arrival_lag: Hist,
}

/// Binds a listener (SO_REUSEADDR, backlog 4096) in the calling thread's namespace.
pub fn listen(addr: SocketAddrV4) -> std::io::Result<std::net::TcpListener> {
    let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    s.set_reuse_address(true)?;
    s.bind(&SockAddr::from(addr))?;
    s.listen(4096)?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

fn errno_name(code: i32) -> String {
    format!("{:?}", nix::errno::Errno::from_raw(code))
}

fn io_errno(e: &std::io::Error) -> String {
    e.raw_os_error()
        .map_or_else(|| e.kind().to_string(), errno_name)
}

// ---- servers ---------------------------------------------------------------------------

struct SConn {
    sock: TcpStream,
    spec: usize,
    got: u64,
    served: u32,
    generation: u32,
}

/// What reading a server connection left to do.
enum Served {
    /// Wait for more bytes or a timer.
    Open,
    /// The client closed, reset, or the server is done: close it.
    Close,
}

/// Reads what `c` has, answers each complete request (at once for a zero service time, else
/// by a timer) and says whether the connection is done. `fresh`: just accepted, not yet in
/// the epoll set.
#[allow(clippy::too_many_arguments)]
fn serve_reads(
    fresh: bool,
    c: &mut SConn,
    i: usize,
    spec: &ServerSpec,
    rng: &mut ChaCha8Rng,
    buf: &mut [u8],
    timers: &mut BinaryHeap<Reverse<(StdInstant, u64, usize, u32)>>,
    seq: &mut u64,
) -> Served {
    loop {
        match c.sock.read(buf) {
            Ok(0) => return Served::Close,
            Ok(k) => {
                c.got += k as u64;
                while c.got >= u64::from(spec.request_bytes) {
                    c.got -= u64::from(spec.request_bytes);
                    let wait = StdDuration::from_nanos(spec.service.sample(rng).0);
                    if !wait.is_zero() {
                        *seq += 1;
                        timers.push(Reverse((StdInstant::now() + wait, *seq, i, c.generation)));
                    } else if respond(c, spec) {
                        // Zero service time: answered at once, no timer round trip.
                        return Served::Close;
                    }
                }
                if fresh && k < buf.len() {
                    // A short read emptied the queue. The socket is not in the epoll set
                    // yet, and registering it polls its state, so a FIN or reset already
                    // queued is still reported: the read that would say EAGAIN is skipped.
                    return Served::Open;
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Served::Open,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return Served::Close,
        }
    }
}

/// Writes one response; true when the server closes now (SO_LINGER 0 set first if asked).
///
/// A last response before the server's close is sent with MSG_MORE, so it stays queued
/// until close() sets FIN on the same segment, as servers that write and close at once get
/// from the kernel: one segment fewer per connection, and nothing the ports see changes. Not
/// with SO_LINGER 0, whose close() discards queued data and sends RST.
fn respond(c: &mut SConn, spec: &ServerSpec) -> bool {
    c.served += 1;
    let closes = c.served >= spec.requests_per_connection && spec.closer == Closer::Server;
    let response = [b'r'; RESPONSE_BYTES];
    if closes && !spec.linger_zero {
        let _ = SockRef::from(&c.sock).send_with_flags(&response, nix::libc::MSG_MORE);
    } else {
        let _ = c.sock.write(&response);
    }
    if closes && spec.linger_zero {
        let _ = SockRef::from(&c.sock).set_linger(Some(StdDuration::ZERO));
    }
    closes
}

/// Faults the server can inject, to check that a live run can fail: the prediction models
/// neither.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServerFaults {
    /// Wait this long before each accept(): a listener slow to accept. Its backlog fills and
    /// the kernel drops SYNs beyond it.
    pub accept_delay: StdDuration,
    /// Never call accept(): the kernel still completes each handshake into the backlog (up to
    /// 4096), so connect() succeeds, but no request is ever read or answered.
    pub never_accept: bool,
}

/// Sleeps for `d`, waking early when `stop` is set.
fn pause(d: StdDuration, stop: &AtomicBool) {
    let end = StdInstant::now() + d;
    while !stop.load(Ordering::Relaxed) {
        let left = end.saturating_duration_since(StdInstant::now());
        if left.is_zero() {
            break;
        }
        std::thread::sleep(left.min(TICK));
    }
}

/// Runs every listener until `stop`.
/// Returns how many accept() calls failed for lack of descriptors or memory.
///
/// An accepted connection is read at once: on loopback the request is usually queued
/// before accept() returns, and with a zero service time and the server closing, the
/// connection is answered and closed without ever entering the epoll set.
pub fn serve(
    listeners: Vec<(std::net::TcpListener, ServerSpec)>,
    seed: u64,
    stop: Arc<AtomicBool>,
    faults: ServerFaults,
) -> std::io::Result<u64> {
    let mut events = Events::with_capacity(1024);
    let mut s = Server::new(listeners, seed, faults)?;
    let n = s.listeners.len();
    let mut tokens: Vec<usize> = Vec::with_capacity(1024);
    while !stop.load(Ordering::Relaxed) {
        let now = StdInstant::now();
        s.answer_due(now);
        let timeout = s
            .alarm
            .timeout_for(now, s.timers.peek().map(|Reverse((at, ..))| *at));
        if let Err(e) = s.poll.poll(&mut events, Some(timeout)) {
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        tokens.clear();
        tokens.extend((0..n).filter(|&t| s.pending_accept[t]));
        tokens.extend(events.iter().map(|ev| ev.token().0));
        for &t in &tokens {
            if t == ALARM.0 {
                s.alarm.clear();
            } else if t < n {
                s.accept_from(t, &stop)?;
            } else {
                s.read(t - n);
            }
        }
    }
    Ok(s.accept_errors)
}

/// The server thread's state. Token `t < listeners.len()` is listener `t`; a connection in
/// slot `i` is token `listeners.len() + i`; [`ALARM`] is the timer.
struct Server {
    poll: Poll,
    listeners: Vec<TcpListener>,
    /// The behaviour of each listener, by index.
    specs: Vec<ServerSpec>,
    faults: ServerFaults,
    rng: ChaCha8Rng,
    conns: Vec<Option<SConn>>,
    /// Each slot's generation, so a timer outliving its connection finds none.
    generations: Vec<u32>,
    free: Vec<usize>,
    /// Responses waiting on a service time: (due, sequence, slot, generation).
    timers: BinaryHeap<Reverse<(StdInstant, u64, usize, u32)>>,
    seq: u64,
    buf: Vec<u8>,
    /// Listeners to accept from on the next pass without waiting for an event.
    pending_accept: Vec<bool>,
    alarm: Alarm,
    accept_errors: u64,
}

impl Server {
    /// The listeners in an epoll set (none with [`ServerFaults::never_accept`]), then the
    /// alarm.
    fn new(
        listeners: Vec<(std::net::TcpListener, ServerSpec)>,
        seed: u64,
        faults: ServerFaults,
    ) -> std::io::Result<Server> {
        let poll = Poll::new()?;
        let n = listeners.len();
        let mut ls = Vec::new();
        let mut specs = Vec::new();
        for (i, (l, spec)) in listeners.into_iter().enumerate() {
            let mut l = TcpListener::from_std(l);
            if !faults.never_accept {
                // Unregistered, a listener is never accepted from: its sockets stay in the
                // backlog the kernel fills.
                poll.registry()
                    .register(&mut l, Token(i), Interest::READABLE)?;
            }
            ls.push(l);
            specs.push(spec);
        }
        let alarm = Alarm::new(&poll)?;
        Ok(Server {
            poll,
            listeners: ls,
            specs,
            faults,
            rng: stream(seed, "live:server"),
            conns: Vec::new(),
            generations: Vec::new(),
            free: Vec::new(),
            timers: BinaryHeap::new(),
            seq: 0,
            buf: vec![0u8; 64 * 1024],
            pending_accept: vec![false; n],
            alarm,
            accept_errors: 0,
        })
    }

    /// Sends every response whose service time is over by `now`.
    fn answer_due(&mut self, now: StdInstant) {
        while let Some(Reverse((at, _, i, generation))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(c) = self.conns[i]
                .as_mut()
                .filter(|c| c.generation == generation)
            else {
                continue;
            };
            if respond(c, &self.specs[c.spec]) {
                close(&mut self.conns, &mut self.free, i);
            }
        }
    }

    /// Accepts from listener `t` until its queue is empty; with an accept delay, one
    /// connection per pass after the delay.
    fn accept_from(&mut self, t: usize, stop: &AtomicBool) -> std::io::Result<()> {
        let accept_delay = self.faults.accept_delay;
        self.pending_accept[t] = false;
        let mut first = true;
        loop {
            if !accept_delay.is_zero() {
                // One accept per pass, after the delay; the rest wait their turn.
                if !first {
                    self.pending_accept[t] = true;
                    break;
                }
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                pause(accept_delay, stop);
            }
            first = false;
            match self.listeners[t].accept() {
                Ok((sock, _)) => self.take(t, sock)?,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(
                            nix::libc::EMFILE
                                | nix::libc::ENFILE
                                | nix::libc::ENOBUFS
                                | nix::libc::ENOMEM
                        )
                    ) =>
                {
                    // Out of descriptors: the queue is not drained, and with
                    // edge-triggered epoll no new event would come. Retry each pass.
                    self.pending_accept[t] = true;
                    self.accept_errors += 1;
                    break;
                }
                // ECONNABORTED, EPERM, EINTR …: that one connection is gone; go on.
                Err(_) => continue,
            }
        }
        Ok(())
    }

    /// A connection just accepted from listener `t`, in a free slot: read at once, then
    /// watched if still open.
    fn take(&mut self, t: usize, sock: TcpStream) -> std::io::Result<()> {
        let i = self.free.pop().unwrap_or_else(|| {
            self.conns.push(None);
            self.generations.push(0);
            self.conns.len() - 1
        });
        self.generations[i] = self.generations[i].wrapping_add(1);
        let mut c = SConn {
            sock,
            spec: t,
            got: 0,
            served: 0,
            generation: self.generations[i],
        };
        let served = serve_reads(
            true,
            &mut c,
            i,
            &self.specs[t],
            &mut self.rng,
            &mut self.buf,
            &mut self.timers,
            &mut self.seq,
        );
        if let Served::Close = served {
            self.free.push(i);
            return Ok(());
        }
        // Registering with edge triggering reports bytes that are already queued, so none
        // is missed between the read and here.
        self.poll.registry().register(
            &mut c.sock,
            Token(self.listeners.len() + i),
            Interest::READABLE,
        )?;
        self.conns[i] = Some(c);
        Ok(())
    }

    /// Reads the connection in slot `i`, closing it when it is done.
    fn read(&mut self, i: usize) {
        let Some(c) = self.conns[i].as_mut() else {
            return;
        };
        let spec = &self.specs[c.spec];
        if let Served::Close = serve_reads(
            false,
            c,
            i,
            spec,
            &mut self.rng,
            &mut self.buf,
            &mut self.timers,
            &mut self.seq,
        ) {
            close(&mut self.conns, &mut self.free, i);
        }
    }
}

fn close(conns: &mut [Option<SConn>], free: &mut Vec<usize>, i: usize) {
    // Closing the descriptor removes it from the epoll set: no EPOLL_CTL_DEL needed.
    if conns[i].take().is_some() {
        free.push(i);
    }
}

// ---- clients ---------------------------------------------------------------------------

/// A pool of local ports as the prediction keys it (`pools[]` of the report): connect() and
/// IP_BIND_ADDRESS_NO_PORT share a port per four-tuple, so a pool per (source, destination
/// address, destination port) (§1.3); bind() takes a port of its own per source address, so
/// one pool per source (§1.6, §2.6), with the destination left zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PoolKey {
    pub source: u32,
    pub destination: u32,
    pub port: u16,
}

impl PoolKey {
    fn of(w: &Workload, source: u32, destination: u32, port: u16) -> PoolKey {
        if w.mode.binds() {
            PoolKey {
                source,
                destination: 0,
                port: 0,
            }
        } else {
            PoolKey {
                source,
                destination,
                port,
            }
        }
    }
}

impl std::fmt::Display for PoolKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = Ipv4Addr::from(self.source);
        if self.destination == 0 {
            write!(f, "{s} (bind)")
        } else {
            write!(
                f,
                "{s} → {}:{}",
                Ipv4Addr::from(self.destination),
                self.port
            )
        }
    }
}

/// The ports each pool handed out first (at most [`FIRST_PORTS`] a pool), in the order the
/// kernel handed them out, as the prediction's `pools[].port_use.first`. Until a pool has its
/// first ports, its socket()-bind()-connect() calls run one at a time across the client
/// threads, under this lock: the port is chosen inside the call, so threads racing at one
/// instant (a burst), or one preempted between the call and its note, would otherwise
/// record ports out of the kernel's order.
#[derive(Default)]
pub struct FirstPorts {
    inner: Mutex<FirstInner>,
}

#[derive(Default)]
struct FirstInner {
    /// Per pool, each port with its place in the order across pools.
    pools: BTreeMap<PoolKey, Vec<(u64, u16)>>,
    next: u64,
}

impl FirstPorts {
    /// Per pool, its first ports in order.
    pub fn by_pool(&self) -> BTreeMap<PoolKey, Vec<u16>> {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.pools
            .iter()
            .map(|(k, v)| (*k, v.iter().map(|&(_, p)| p).collect()))
            .collect()
    }

    /// The first ports of every pool together, in order, at most [`FIRST_PORTS`].
    pub fn all(&self) -> Vec<u16> {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<(u64, u16)> = g.pools.values().flatten().copied().collect();
        all.sort_unstable();
        all.iter().take(FIRST_PORTS).map(|&(_, p)| p).collect()
    }
}

/// How each workload ends, shared by every client thread: its [`crate::workload::Limit`]
/// taken through the simulator's own [`Runner::take`] behind a lock, so that three threads
/// start exactly the connections and requests one would; and when it stopped (the limit
/// spent, or `on_error = "stop"`).
pub struct Ends {
    t0: StdInstant,
    each: Vec<End>,
}

struct End {
    /// The limit's state, for a workload with one.
    budget: Option<Mutex<Runner>>,
    /// No new request starts: the limit is spent or the workload stopped on an error.
    over: AtomicBool,
    /// When it stopped, ns from the start (`u64::MAX`: it did not).
    at_ns: AtomicU64,
    /// Connections the limit let start.
    taken: AtomicU64,
}

/// How a workload ended in the live run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ended {
    /// When its limit was spent or it stopped on an error (from the run's start).
    pub stopped: Option<StdDuration>,
    /// Connections started under its limit by then.
    pub connections: u64,
}

impl Ends {
    pub fn new(workloads: &[Workload], seed: u64, t0: StdInstant) -> Ends {
        let each = workloads
            .iter()
            .map(|w| {
                let limited = w.limit.is_set();
                let rng = |k: &str| stream(seed, &format!("live:limit:{}:{k}", w.name));
                End {
                    budget: limited
                        .then(|| Mutex::new(Runner::new(w, rng("a"), rng("l"), rng("s")))),
                    over: AtomicBool::new(false),
                    at_ns: AtomicU64::new(u64::MAX),
                    taken: AtomicU64::new(0),
                }
            })
            .collect();
        Ends { t0, each }
    }

    /// Whether workload `wl` starts no new request.
    pub fn over(&self, wl: u32) -> bool {
        self.each[wl as usize].over.load(Ordering::Relaxed)
    }

    /// The requests a connect() attempt of `w` due at `due` (from the run's start) carries,
    /// or `None` when none may start: outside the workload's `[start, stop)` (judged at `due`,
    /// as the simulator does, not at how late a thread got to it), or its limit allows no
    /// attempt ([`Runner::take`]). The attempt that spends the limit stops the workload.
    fn take(
        &self,
        wl: u32,
        w: &Workload,
        due: crate::time::Instant,
        retry: bool,
        now: StdInstant,
    ) -> Option<u32> {
        if (!retry && self.over(wl)) || !w.opens_at(due) {
            return None;
        }
        let e = &self.each[wl as usize];
        let Some(budget) = &e.budget else {
            return Some(w.requests_per_connection);
        };
        let mut r = budget.lock().unwrap_or_else(|p| p.into_inner());
        let requests = r.take(w, due, retry, false)?;
        e.taken.fetch_add(1, Ordering::Relaxed);
        if r.stopped {
            self.stop(wl, now);
        }
        Some(requests)
    }

    /// Stops workload `wl` at `now` (the first stop is the one recorded).
    fn stop(&self, wl: u32, now: StdInstant) {
        let e = &self.each[wl as usize];
        e.over.store(true, Ordering::Relaxed);
        let at = now.saturating_duration_since(self.t0).as_nanos() as u64;
        let _ = e
            .at_ns
            .compare_exchange(u64::MAX, at, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// How each workload ended, in order.
    pub fn ended(&self) -> Vec<Ended> {
        self.each
            .iter()
            .map(|e| {
                let at = e.at_ns.load(Ordering::Relaxed);
                Ended {
                    stopped: (at != u64::MAX).then(|| StdDuration::from_nanos(at)),
                    connections: e.taken.load(Ordering::Relaxed),
                }
            })
            .collect()
    }
}

struct CConn {
    sock: TcpStream,
    wl: u32,
    slot: u32,
    retry: u32,
    start: StdInstant,
    req_start: StdInstant,
    left: u32,
    to_write: u32,
    got: usize,
    established: bool,
    awaiting_eof: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Due {
    Arrival { wl: u32 },
    Start { wl: u32, slot: u32, retry: u32 },
}

/// Runs the workloads from `t0` for `duration`, starting at most `max_connections`.
pub struct Clients<'a> {
    workloads: &'a [Workload],
    runners: Vec<Runner>,
    t0: StdInstant,
    bin: StdDuration,
    end: StdInstant,
    max_connections: u64,
    poll: Poll,
    conns: Vec<Option<CConn>>,
    free: Vec<usize>,
    timers: BinaryHeap<Reverse<(StdInstant, u64, Due)>>,
    seq: u64,
    stopped: Vec<bool>,
    /// This thread runs arrival j and closed-loop slot j when j % part.1 == part.0.
    part: (u64, u64),
    arrivals: Vec<u64>,
    /// Connections started by every client thread, against the shared cap.
    started: Arc<AtomicU64>,
    /// Limits and stops, shared by every client thread.
    ends: Arc<Ends>,
    /// The pools' first ports, shared by every client thread.
    first: Arc<FirstPorts>,
    /// Pools whose first ports this thread has seen complete.
    noted: std::collections::BTreeSet<PoolKey>,
    /// Source address routing picks per destination.
    routes: BTreeMap<u32, Option<u32>>,
    /// Request bytes, written from here.
    request: Vec<u8>,
    r: ClientResult,
}

impl ClientResult {
    /// Adds another client thread's measurements.
    pub fn merge(&mut self, o: ClientResult) {
        for (a, b) in self.bins.iter_mut().zip(o.bins) {
            a.attempts += b.attempts;
            a.established += b.established;
            a.requests += b.requests;
            a.connect_latency.merge(&b.connect_latency);
            for (k, v) in b.failed {
                *a.failed.entry(k).or_default() += v;
            }
        }
        self.attempted += o.attempted;
        self.established += o.established;
        self.requests += o.requests;
        self.in_flight += o.in_flight;
        for (k, v) in o.failed {
            *self.failed.entry(k).or_default() += v;
        }
        self.connect_latency.merge(&o.connect_latency);
        self.request_latency.merge(&o.request_latency);
        for (k, v) in o.broken {
            *self.broken.entry(k).or_default() += v;
        }
        self.late_arrivals += o.late_arrivals;
        self.arrival_lag.merge(&o.arrival_lag);
    }
}

/// Client threads a run uses: three, to keep both cores busy (the kernel's loopback work
/// runs in the sender's context, so one client thread saturates a core; two client threads
/// measured 23,400–25,000 lifecycles/s on `ceiling.toml` against 25,800–28,800 with three),
/// or one where the order of the application's own actions matters (explicit port cursors,
/// stop on error).
pub fn client_threads(workloads: &[Workload]) -> u64 {
    if workloads
        .iter()
        .any(|w| matches!(w.mode, Mode::Explicit { .. }) || w.on_error == OnError::Stop)
    {
        1
    } else {
        3
    }
}

impl<'a> Clients<'a> {
    /// A client thread: its share `part` of arrivals and slots, counting its starts into
    /// `started` against the shared cap, taking its workloads' limits from `ends` and
    /// noting the pools' first ports in `first`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        workloads: &'a [Workload],
        seed: u64,
        t0: StdInstant,
        duration: StdDuration,
        bin: StdDuration,
        max_connections: u64,
        part: (u64, u64),
        started: Arc<AtomicU64>,
        ends: Arc<Ends>,
        first: Arc<FirstPorts>,
    ) -> std::io::Result<Self> {
        let runners = workloads
            .iter()
            .map(|w| {
                let name = &w.name;
                Runner::new(
                    w,
                    stream(seed, &format!("workload:{name}:arrivals")),
                    stream(seed, &format!("workload:{name}:latency")),
                    stream(seed, &format!("workload:{name}:spread")),
                )
            })
            .collect();
        let bins = (duration.as_nanos().div_ceil(bin.as_nanos().max(1))) as usize;
        Ok(Clients {
            workloads,
            runners,
            t0,
            bin,
            end: t0 + duration,
            max_connections,
            poll: Poll::new()?,
            conns: Vec::new(),
            free: Vec::new(),
            timers: BinaryHeap::new(),
            seq: 0,
            stopped: vec![false; workloads.len()],
            part,
            arrivals: vec![0; workloads.len()],
            started,
            ends,
            first,
            noted: Default::default(),
            routes: BTreeMap::new(),
            request: vec![b'q'; 64 * 1024],
            r: ClientResult {
                bins: vec![ClientBin::default(); bins.max(1)],
                ..ClientResult::default()
            },
        })
    }

    fn at(&self, t: crate::time::Instant) -> StdInstant {
        self.t0 + StdDuration::from_nanos(t.0)
    }

    fn push(&mut self, at: StdInstant, due: Due) {
        self.seq += 1;
        self.timers.push(Reverse((at, self.seq, due)));
    }

    fn bin(&mut self, now: StdInstant) -> &mut ClientBin {
        let i = (now.saturating_duration_since(self.t0).as_nanos() / self.bin.as_nanos().max(1))
            as usize;
        let last = self.r.bins.len() - 1;
        &mut self.r.bins[i.min(last)]
    }

    /// Runs until the end of the run or `stop`.
    /// Runs until the end of the run (or `stop`), then keeps its sockets open until
    /// `release`, so the final sample sees the kernel's table as the run left it.
    pub fn run(mut self, stop: &AtomicBool, release: &AtomicBool) -> std::io::Result<ClientResult> {
        for (i, w) in self.workloads.iter().enumerate() {
            let wl = i as u32;
            match w.arrival {
                Arrival::Closed { concurrency } => {
                    let (k, n) = self.part;
                    for slot in (0..concurrency).filter(|s| u64::from(*s) % n == k) {
                        let at = self.at(w.start);
                        self.push(at, Due::Start { wl, slot, retry: 0 });
                    }
                }
                _ => {
                    if let Some(t) = self.runners[i].next_arrival(w) {
                        let at = self.at(t);
                        self.push(at, Due::Arrival { wl });
                    }
                }
            }
        }
        let mut events = Events::with_capacity(256);
        let mut buf = vec![0u8; 64 * 1024];
        let mut alarm = Alarm::new(&self.poll)?;
        loop {
            let now = StdInstant::now();
            if now >= self.end || stop.load(Ordering::Relaxed) {
                break;
            }
            // At most a batch of due timers per pass, so sockets are served between them.
            let mut batch = 0;
            while let Some(Reverse((at, _, due))) = self.timers.peek().copied() {
                if at > now || at >= self.end || batch >= 256 {
                    break;
                }
                batch += 1;
                self.timers.pop();
                match due {
                    Due::Arrival { wl } => {
                        let w = &self.workloads[wl as usize];
                        if !self.stopped[wl as usize]
                            && !self.ends.over(wl)
                            && let Some(t) = self.runners[wl as usize].next_arrival(w)
                        {
                            let at = self.at(t);
                            self.push(at, Due::Arrival { wl });
                        }
                        let j = self.arrivals[wl as usize];
                        self.arrivals[wl as usize] += 1;
                        if j % self.part.1 == self.part.0 {
                            let lag = now.saturating_duration_since(at);
                            self.r.arrival_lag.record(lag.as_nanos() as u64);
                            if lag > StdDuration::from_millis(5) {
                                self.r.late_arrivals += 1;
                            }
                            self.start(wl, NONE, 0, at, now);
                        } else {
                            // Another thread's arrival: keep the round-robin position in step.
                            self.runners[wl as usize].pick(w);
                        }
                    }
                    Due::Start { wl, slot, retry } => self.start(wl, slot, retry, at, now),
                }
            }
            let next = self
                .timers
                .peek()
                .map(|Reverse((at, ..))| *at)
                .map_or(self.end, |at| at.min(self.end));
            let timeout = alarm.timeout_for(now, Some(next));
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() == ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            for ev in events.iter() {
                if ev.token() == ALARM {
                    alarm.clear();
                    continue;
                }
                // The peer's FIN is queued behind the bytes (EPOLLRDHUP without an error).
                let fin = ev.is_read_closed() && !ev.is_error();
                self.on_event(
                    ev.token().0,
                    ev.is_writable() || ev.is_error(),
                    fin,
                    &mut buf,
                );
            }
        }
        self.r.in_flight = self.conns.iter().filter(|c| c.is_some()).count() as u64;
        while !release.load(Ordering::Relaxed) {
            std::thread::sleep(StdDuration::from_millis(1));
        }
        // Connections the end cut short are reset: SO_LINGER 0 makes close() send RST and
        // leave no TIME-WAIT on either side (§2.5), as in the prediction, which stops at the
        // end and holds no TIME-WAIT for a connection still open then. The count taken once
        // the run is quiet (`time_wait_at_end`) then compares like with like.
        for c in self.conns.iter().flatten() {
            let _ = SockRef::from(&c.sock).set_linger(Some(StdDuration::ZERO));
        }
        Ok(self.r)
    }

    /// Starts a connection of workload `wl` due at `due`, if [`Ends::take`] lets it.
    fn start(&mut self, wl: u32, slot: u32, retry: u32, due: StdInstant, now: StdInstant) {
        if self.stopped[wl as usize] {
            return;
        }
        let w = &self.workloads[wl as usize];
        let t = crate::time::Instant(due.saturating_duration_since(self.t0).as_nanos() as u64);
        let Some(left) = self.ends.take(wl, w, t, retry > 0, now) else {
            return;
        };
        if self.started.fetch_add(1, Ordering::Relaxed) >= self.max_connections {
            self.stopped.iter_mut().for_each(|s| *s = true);
            return;
        }
        let (src, dst) = self.runners[wl as usize].pick(w);
        self.r.attempted += 1;
        self.bin(now).attempts += 1;
        let pool = PoolKey::of(w, src.ip, dst.ip, dst.port);
        let first = self.first.clone();
        // Hold the lock across the call only while the pool's first ports are being noted.
        let mut noting = None;
        if !self.noted.contains(&pool) {
            let g = first.inner.lock().unwrap_or_else(|p| p.into_inner());
            if g.pools.get(&pool).map_or(0, Vec::len) < FIRST_PORTS {
                noting = Some(g);
            } else {
                self.noted.insert(pool);
            }
        }
        let sock = match self.open(wl, src.ip, dst.ip, dst.port) {
            Ok(sock) => sock,
            Err(errno) => {
                drop(noting);
                return self.fail(wl, slot, retry, errno, now);
            }
        };
        if let Some(g) = noting.as_mut()
            && let Some(a) = sock.local_addr().ok().and_then(|a| a.as_socket_ipv4())
        {
            let at = g.next;
            g.next += 1;
            g.pools.entry(pool).or_default().push((at, a.port()));
        }
        drop(noting);
        // On loopback the handshake is over when connect() returns (the SYN-ACK is processed
        // as the socket lock is released), so the request goes out at once; in SYN-SENT the
        // write says EAGAIN and the socket's first writable event sends it instead. A refused
        // connect() reports its error here, as SO_ERROR would.
        let n = w.request_bytes.max(1) as usize;
        let mut early = None;
        if left > 0 {
            match (&sock).write(&self.request[..n.min(self.request.len())]) {
                Ok(k) => early = Some(n - k),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => return self.fail(wl, slot, retry, io_errno(&e), now),
            }
        }
        let i = self.free.pop().unwrap_or_else(|| {
            self.conns.push(None);
            self.conns.len() - 1
        });
        let mut sock = TcpStream::from_std(sock.into());
        // Edge-triggered registration polls the socket's state, so nothing that happened
        // since the write is missed.
        let interest = if early == Some(0) {
            Interest::READABLE
        } else {
            Interest::READABLE | Interest::WRITABLE
        };
        if self
            .poll
            .registry()
            .register(&mut sock, Token(i), interest)
            .is_err()
        {
            self.free.push(i);
            self.fail(wl, slot, retry, "EPOLL".into(), now);
            return;
        }
        self.conns[i] = Some(CConn {
            sock,
            wl,
            slot,
            retry,
            start: now,
            req_start: now,
            left,
            to_write: early.unwrap_or(0) as u32,
            got: 0,
            established: false,
            awaiting_eof: false,
        });
        if early.is_some() {
            // Connect latency ends when connect() and the write have returned.
            self.established(i, StdInstant::now());
        }
    }

    /// The source address routing gives a connect() to `dst` in this namespace (a UDP
    /// connect() sends nothing and reveals it), cached per destination.
    fn routed_source(&mut self, dst: u32) -> Option<u32> {
        if let Some(&s) = self.routes.get(&dst) {
            return s;
        }
        let found = std::net::UdpSocket::bind("0.0.0.0:0")
            .and_then(|u| {
                u.connect(SocketAddrV4::new(Ipv4Addr::from(dst), 9))?;
                u.local_addr()
            })
            .ok()
            .and_then(|a| match a.ip() {
                std::net::IpAddr::V4(v4) => Some(u32::from(v4)),
                std::net::IpAddr::V6(_) => None,
            });
        self.routes.insert(dst, found);
        found
    }

    /// socket(), options, bind as the mode says, non-blocking connect().
    fn open(&mut self, wl: u32, src: u32, dst: u32, port: u16) -> Result<Socket, String> {
        let w = &self.workloads[wl as usize];
        let err = |e: std::io::Error| io_errno(&e);
        // SOCK_NONBLOCK at creation: one syscall fewer per connection. Requests and responses
        // are single small writes, so Nagle never delays them.
        let s = Socket::new(Domain::IPV4, Type::STREAM.nonblocking(), None).map_err(err)?;
        if w.reuseaddr {
            s.set_reuse_address(true).map_err(err)?;
        }
        if w.linger_zero {
            s.set_linger(Some(StdDuration::ZERO)).map_err(err)?;
        }
        if let Some((lo, hi)) = w.local_port_range {
            // IP_LOCAL_PORT_RANGE (51): upper 16 bits the high end, lower the low end.
            let v = (u32::from(hi) << 16) | u32::from(lo);
            setsockopt_u32(&s, 0, 51, v).map_err(err)?;
        }
        let src_addr = SockAddr::from(SocketAddrV4::new(Ipv4Addr::from(src), 0));
        match w.mode {
            // Every host shares one namespace here, so routing may pick another of its
            // addresses (the destination's own, for a local one) as the source. Where it
            // would, pin the workload's source without choosing a port: with
            // IP_BIND_ADDRESS_NO_PORT the port is still connect()'s autoselection, exactly as
            // an unbound connect() from that host would do (§1.1, §1.6).
            Mode::Connect if self.routed_source(dst) == Some(src) => {}
            Mode::Connect | Mode::BindNoPort => {
                // IP_BIND_ADDRESS_NO_PORT (24).
                setsockopt_u32(&s, 0, 24, 1).map_err(err)?;
                s.bind(&src_addr).map_err(err)?;
            }
            Mode::Bind => s.bind(&src_addr).map_err(err)?,
            Mode::Explicit { low, high } => {
                let r = &mut self.runners[wl as usize];
                let span = u32::from(high) - u32::from(low) + 1;
                let mut bound = false;
                for _ in 0..span {
                    let p = r.cursor;
                    r.cursor = if p >= high { low } else { p + 1 };
                    let a = SockAddr::from(SocketAddrV4::new(Ipv4Addr::from(src), p));
                    if s.bind(&a).is_ok() {
                        bound = true;
                        break;
                    }
                }
                if !bound {
                    return Err("EADDRINUSE".into());
                }
            }
        }
        let to = SockAddr::from(SocketAddrV4::new(Ipv4Addr::from(dst), port));
        match s.connect(&to) {
            Ok(()) => Ok(s),
            Err(e) if e.raw_os_error() == Some(nix::libc::EINPROGRESS) => Ok(s),
            Err(e) => Err(io_errno(&e)),
        }
    }

    fn fail(&mut self, wl: u32, slot: u32, retry: u32, errno: String, now: StdInstant) {
        *self.r.failed.entry(errno.clone()).or_default() += 1;
        *self.bin(now).failed.entry(errno).or_default() += 1;
        let policy = self.workloads[wl as usize].on_error;
        match policy.after_failure(retry, slot != NONE).0 {
            AfterFailure::Start { wait, retry } => self.push(
                now + StdDuration::from_nanos(wait.0),
                Due::Start { wl, slot, retry },
            ),
            AfterFailure::Idle => {}
            AfterFailure::Stop => self.ends.stop(wl, now),
        }
    }

    fn done(&mut self, i: usize, now: StdInstant) {
        // Closing the descriptor removes it from the epoll set: no EPOLL_CTL_DEL needed.
        let Some(c) = self.conns[i].take() else {
            return;
        };
        drop(c.sock);
        self.free.push(i);
        if c.slot != NONE {
            self.push(
                now,
                Due::Start {
                    wl: c.wl,
                    slot: c.slot,
                    retry: 0,
                },
            );
        }
    }

    fn on_event(&mut self, i: usize, writable: bool, fin: bool, buf: &mut [u8]) {
        let now = StdInstant::now();
        let Some(c) = self.conns[i].as_mut() else {
            return;
        };
        if !c.established {
            // A non-blocking connect() is done when the socket turns writable (or errs).
            if !writable {
                return;
            }
            let failed = if c.left == 0 {
                c.sock.take_error().ok().flatten()
            } else {
                // The first write tells success from failure (it reports a refused or timed
                // out connect as SO_ERROR would): one syscall fewer than getsockopt.
                let n = self.workloads[c.wl as usize].request_bytes.max(1) as usize;
                match c.sock.write(&self.request[..n.min(self.request.len())]) {
                    Ok(k) => {
                        c.to_write = (n - k) as u32;
                        None
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        c.to_write = n as u32;
                        None
                    }
                    Err(e) => Some(e),
                }
            };
            if let Some(e) = failed {
                let (wl, slot, retry) = (c.wl, c.slot, c.retry);
                self.conns[i] = None;
                self.free.push(i);
                self.fail(wl, slot, retry, io_errno(&e), now);
                return;
            }
            if !self.established(i, now) {
                return;
            }
        }
        let Some(c) = self.conns[i].as_mut() else {
            return;
        };
        while c.to_write > 0 {
            let n = (c.to_write as usize).min(self.request.len());
            match c.sock.write(&self.request[..n]) {
                Ok(k) => c.to_write -= k as u32,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => {
                    *self.r.broken.entry(io_errno(&e)).or_default() += 1;
                    self.done(i, now);
                    return;
                }
            }
        }
        let mut responses = 0;
        let mut eof = false;
        let mut read_error = None;
        loop {
            match c.sock.read(buf) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(k) => {
                    c.got += k;
                    if fin && k < buf.len() {
                        // A short read drained the queue and the FIN is next: the read
                        // that would return 0 is skipped.
                        eof = true;
                        break;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    eof = true;
                    read_error = Some(io_errno(&e));
                    break;
                }
            }
        }
        while c.got >= RESPONSE_BYTES && c.left > 0 {
            c.got -= RESPONSE_BYTES;
            c.left -= 1;
            responses += 1;
        }
        for _ in 0..responses {
            let c = self.conns[i].as_mut().expect("present");
            let latency = now.saturating_duration_since(c.req_start).as_nanos() as u64;
            c.req_start = now;
            self.r.request_latency.record(latency);
            self.r.requests += 1;
            self.bin(now).requests += 1;
        }
        let c = self.conns[i].as_mut().expect("present");
        if c.left > 0 && responses > 0 && !eof {
            c.to_write = self.workloads[c.wl as usize].request_bytes.max(1);
            let _ = self.poll.registry().reregister(
                &mut c.sock,
                Token(i),
                Interest::READABLE | Interest::WRITABLE,
            );
            return;
        }
        if eof {
            if c.left > 0 {
                // The connection ended before its last response.
                let why = read_error.unwrap_or_else(|| "EOF".into());
                *self.r.broken.entry(why).or_default() += 1;
            }
            self.done(i, now);
        } else if c.left == 0 && !c.awaiting_eof {
            self.finish(i, now);
        }
    }

    /// Records connection `i` as established; false when it is finished with (no requests).
    fn established(&mut self, i: usize, now: StdInstant) -> bool {
        let c = self.conns[i].as_mut().expect("present");
        c.established = true;
        let latency = now.saturating_duration_since(c.start).as_nanos() as u64;
        let left = c.left;
        self.r.established += 1;
        self.r.connect_latency.record(latency);
        let b = self.bin(now);
        b.established += 1;
        b.connect_latency.record(latency);
        if left == 0 {
            self.finish(i, now);
            return false;
        }
        true
    }

    /// The last response is in: the client closes now, or waits for the server's FIN.
    fn finish(&mut self, i: usize, now: StdInstant) {
        let c = self.conns[i].as_mut().expect("present");
        match self.workloads[c.wl as usize].closer {
            Closer::Client => self.done(i, now),
            Closer::Server => c.awaiting_eof = true,
        }
    }
}

pub fn setsockopt_u32(s: &Socket, level: i32, name: i32, v: u32) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid fd, a pointer to a live u32 and its size.
    let r = unsafe {
        nix::libc::setsockopt(
            s.as_raw_fd(),
            level,
            name,
            (&v as *const u32).cast(),
            std::mem::size_of::<u32>() as nix::libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Whether this kernel has IP_LOCAL_PORT_RANGE (Linux 6.3+).
pub fn has_local_port_range() -> bool {
    Socket::new(Domain::IPV4, Type::STREAM, None)
        .map(|s| setsockopt_u32(&s, 0, 51, 0).is_ok())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::{Duration, Instant};
    use crate::workload::{Destination, Limit, Source, Spread};

    fn workload(limit: Limit, requests_per_connection: u32) -> Workload {
        Workload {
            name: "w".into(),
            sources: vec![Source { host: 0, ip: 1 }],
            per_instance: None,
            destinations: vec![Destination {
                host: 0,
                ip: 1,
                port: 80,
            }],
            spread: Spread::RoundRobin,
            arrival: Arrival::Closed { concurrency: 8 },
            requests_per_connection,
            rtt: Dist::Fixed(Duration::ZERO),
            service_time: Dist::Fixed(Duration::ZERO),
            request_bytes: 1,
            closer: Closer::Client,
            linger_zero: false,
            mode: Mode::Connect,
            reuseaddr: false,
            local_port_range: None,
            on_error: OnError::Stop,
            start: Instant::ZERO,
            stop: Instant(Duration::from_secs(10).0),
            limit,
            threads: None,
            pool: None,
        }
    }

    #[test]
    fn three_threads_share_a_limit_exactly() {
        // 1,000 requests, 3 per connection: 333 connections of 3 and one of 1, whichever
        // thread takes them.
        let w = workload(
            Limit {
                connections: None,
                requests: Some(1000),
            },
            3,
        );
        let ends = Ends::new(std::slice::from_ref(&w), 7, StdInstant::now());
        let taken: Vec<Vec<u32>> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..3)
                .map(|_| {
                    s.spawn(|| {
                        std::iter::from_fn(|| {
                            ends.take(0, &w, Instant::ZERO, false, StdInstant::now())
                        })
                        .collect::<Vec<u32>>()
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let all: Vec<u32> = taken.into_iter().flatten().collect();
        assert_eq!(all.len(), 334);
        assert_eq!(all.iter().map(|&r| u64::from(r)).sum::<u64>(), 1000);
        assert_eq!(all.iter().filter(|&&r| r == 1).count(), 1);
        let end = ends.ended()[0];
        assert_eq!(end.connections, 334);
        assert!(end.stopped.is_some());
        assert!(ends.over(0));
    }

    #[test]
    fn a_retry_needs_only_a_connection_left() {
        let w = workload(
            Limit {
                connections: Some(2),
                requests: None,
            },
            1,
        );
        let ends = Ends::new(std::slice::from_ref(&w), 7, StdInstant::now());
        let now = StdInstant::now();
        let t = Instant::ZERO;
        assert_eq!(ends.take(0, &w, t, false, now), Some(1));
        assert_eq!(ends.take(0, &w, t, true, now), Some(1));
        // Spent: neither a new request nor a retry.
        assert_eq!(ends.take(0, &w, t, true, now), None);
        assert_eq!(ends.take(0, &w, t, false, now), None);
        // Unlimited and stopped on an error: only retries go on.
        let free = workload(Limit::default(), 1);
        let ends = Ends::new(std::slice::from_ref(&free), 7, now);
        ends.stop(0, now);
        assert_eq!(ends.take(0, &free, t, false, now), None);
        assert_eq!(ends.take(0, &free, t, true, now), Some(1));
    }
}
