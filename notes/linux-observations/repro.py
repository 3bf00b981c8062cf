#!/usr/bin/env python3
"""Linux TCP source-port allocation / TIME_WAIT ground-truth experiments.

Run as:   unshare -n python3 notes/linux-observations/repro.py
          (optionally followed by experiment names, e.g. ... repro.py A D I)

Safety: the script refuses to do anything unless the network namespace it runs
in contains only the `lo` interface (i.e. a fresh `unshare -n` namespace), so
the /proc/sys/net/ipv4/* writes never touch the host's namespace.  Every
experiment (and every sub-variant) additionally runs in its own fresh child
namespace (`unshare -n` again, via subprocess) so that TIME_WAIT sockets, bind
buckets and sysctls from one experiment cannot influence another.

Output: one JSON object per line (first a "meta" object, then one object per
experiment variant).  Stdlib only.
"""
import errno
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time

SYS = "/proc/sys/net/ipv4/"
LHOST = "127.0.0.1"
LPORT = 10000          # listener port: > 1024, outside 40000-40009 and 32768-60999
LPORT2 = 10001
IP_BIND_ADDRESS_NO_PORT = 24


# ----------------------------------------------------------------- helpers
def only_lo_netns():
    with open("/proc/net/dev") as f:
        names = [l.split(":")[0].strip() for l in f.readlines()[2:]]
    return names == ["lo"], names


def die_unless_private():
    ok, names = only_lo_netns()
    if not ok:
        print(json.dumps({"error": "refusing to run: this network namespace has "
                          "interfaces %r (expected only lo). Run under `unshare -n`." % names}))
        sys.exit(2)


def lo_up():
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)


def setsys(name, val):
    die_unless_private()
    with open(SYS + name, "w") as f:
        f.write(str(val))


def getsys(name):
    try:
        with open(SYS + name) as f:
            return f.read().strip()
    except FileNotFoundError:
        return None


def ename(e):
    return errno.errorcode.get(e.errno, str(e.errno)) if isinstance(e, OSError) and e.errno else repr(e)


def tcp_states():
    """List of (local_port, remote_port, state_hex) from /proc/net/tcp (this netns)."""
    out = []
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            p = line.split()
            out.append((int(p[1].split(":")[1], 16), int(p[2].split(":")[1], 16), p[3]))
    return out


def tw_list():
    return [(l, r) for (l, r, st) in tcp_states() if st == "06"]


def ss_tw_count():
    """Cross-check with `ss -tan state time-wait` (count of data lines)."""
    try:
        r = subprocess.run(["ss", "-tan", "state", "time-wait"], capture_output=True, text=True)
        return len([l for l in r.stdout.splitlines()[1:] if l.strip()])
    except Exception as e:  # pragma: no cover
        return repr(e)


def listener(port, backlog=4096):
    L = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    L.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    L.bind((LHOST, port))
    L.listen(backlog)
    return L


def now_us():
    return time.perf_counter_ns() // 1000


def connect_client_close(L, dport=LPORT, pre=None):
    """connect; accept; client close() first; then server close().
    Returns dict with port or err (+ stage), and connect latency in us."""
    c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    stage = "setup"
    try:
        if pre:
            stage = "bind"
            pre(c)
        stage = "connect"
        t0 = now_us()
        c.connect((LHOST, dport))
        lat = now_us() - t0
    except OSError as e:
        c.close()
        return {"err": ename(e), "stage": stage}
    port = c.getsockname()[1]
    s, _ = L.accept()
    c.close()
    s.close()
    return {"port": port, "lat_us": lat}


def set_range(lo, hi):
    setsys("ip_local_port_range", "%d %d" % (lo, hi))


def diff_stats(ports, times, low, high, boundaries):
    """Histogram of consecutive source-port differences and a classification of every
    difference outside {2,4,...,16}."""
    remaining = (high + 1 - low) & ~1
    diffs = [b - a for a, b in zip(ports, ports[1:])]
    hist = {}
    for d in diffs:
        key = str(d) if d in range(2, 17, 2) else "other"
        hist[key] = hist.get(key, 0) + 1
    ordered = {str(k): hist.get(str(k), 0) for k in range(2, 17, 2)}
    ordered["other"] = hist.get("other", 0)
    jumps = []
    for k, d in enumerate(diffs):
        if d in range(2, 17, 2):
            continue
        a, b = ports[k], ports[k + 1]
        wrapped = (b - a) % remaining
        earlier = set(ports[:k + 1])
        used_between = 0
        if wrapped <= 64:
            p = a
            for _ in range(wrapped // 2 - 1):
                p += 2
                if p > high:
                    p -= remaining
                used_between += p in earlier
        t_prev, t = times[k], times[k + 1]
        # tolerance 10 ms: jiffies granularity (4 ms at HZ=250) + timer_list sampling offset
        at_boundary = [x for x in (boundaries or []) if t_prev - 0.01 < x <= t + 0.01]
        if at_boundary:
            kind = "epoch_change_at_predicted_10s_boundary"
        elif b < a and wrapped in range(2, 17, 2):
            kind = "wrap_at_range_end_normal_step"
        elif used_between > 0:
            kind = "skipped_ports_already_in_TIME_WAIT"
        else:
            kind = "unexplained"
        jumps.append({"k": k + 1, "elapsed_s": round(t, 4), "prev_success_elapsed_s": round(t_prev, 4),
                      "from": a, "to": b, "diff": d, "diff_mod_range": wrapped, "kind": kind,
                      "same_parity_skipped_ports_used_earlier": used_between if wrapped <= 64 else None})
    return diffs, ordered, jumps


def kernel_hz():
    try:
        import gzip
        with gzip.open("/proc/config.gz", "rt") as f:
            for line in f:
                if line.startswith("CONFIG_HZ="):
                    return int(line.split("=")[1])
    except OSError:
        pass
    return 250  # CONFIG_HZ of the 6.18.44 kernel these notes were taken on


def jiffies_now():
    """(jiffies, CLOCK_MONOTONIC seconds) from /proc/timer_list, or None."""
    try:
        j = n = None
        with open("/proc/timer_list") as f:
            for line in f:
                if n is None and line.startswith("now at "):
                    n = int(line.split()[2]) / 1e9
                if line.startswith("jiffies: "):
                    j = int(line.split()[1])
                    break
        return (j, n) if j is not None and n is not None else None
    except OSError:
        return None


# ----------------------------------------------------------------- experiments
def exp_A():
    set_range(40000, 40009)
    setsys("tcp_tw_reuse", 0)
    L = listener(LPORT)
    res = [connect_client_close(L) for _ in range(12)]
    return {"attempts": res,
            "ports_in_order": [r["port"] for r in res if "port" in r],
            "failures": [(i + 1, r["err"]) for i, r in enumerate(res) if "err" in r],
            "time_wait_count_proc": len(tw_list()), "time_wait_count_ss": ss_tw_count(),
            "time_wait_local_ports": sorted(l for l, r in tw_list())}


def exp_B():
    set_range(40000, 40009)
    setsys("tcp_tw_reuse", 0)
    L1, L2 = listener(LPORT), listener(LPORT2)
    seq = []
    for i in range(24):
        L, dp = (L1, LPORT) if i % 2 == 0 else (L2, LPORT2)
        r = connect_client_close(L, dport=dp)
        r["dport"] = dp
        seq.append(r)
    p1 = [r["port"] for r in seq if "port" in r and r["dport"] == LPORT]
    p2 = [r["port"] for r in seq if "port" in r and r["dport"] == LPORT2]
    return {"attempts": 24, "successes": len(p1) + len(p2),
            "ports_to_%d" % LPORT: p1, "ports_to_%d" % LPORT2: p2,
            "ports_used_toward_both": sorted(set(p1) & set(p2)),
            "failures": [(i + 1, r["dport"], r["err"]) for i, r in enumerate(seq) if "err" in r],
            "time_wait_count": len(tw_list())}


def exp_C(no_port):
    set_range(40000, 40009)
    setsys("tcp_tw_reuse", 0)
    L = listener(LPORT)

    def pre(c):
        if no_port:
            c.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        c.bind((LHOST, 0))

    res = [connect_client_close(L, pre=pre) for _ in range(12)]
    return {"IP_BIND_ADDRESS_NO_PORT": bool(no_port), "attempts": res,
            "ports_in_order": [r["port"] for r in res if "port" in r],
            "failures": [(i + 1, r["stage"], r["err"]) for i, r in enumerate(res) if "err" in r],
            "time_wait_count": len(tw_list())}


def exp_D(n=2000, pace_s=0.0, duration_s=None):
    set_range(32768, 60999)
    setsys("tcp_tw_reuse", 0)
    L = listener(LPORT)
    ports, times, fails = [], [], []
    jf = jiffies_now()
    t0 = time.monotonic()
    wall0 = time.time()
    i = 0
    while True:
        if duration_s is None and i >= n:
            break
        if duration_s is not None and time.monotonic() - t0 >= duration_s:
            break
        r = connect_client_close(L)
        el = time.monotonic() - t0
        if "port" in r:
            ports.append(r["port"])
            times.append(el)
        else:
            fails.append((i, r["err"]))
        i += 1
        if pace_s:
            time.sleep(pace_s)
    # secure_ipv4_port_ephemeral() mixes in jiffies / (10*HZ); predict where those epoch
    # boundaries fall (elapsed seconds since t0), using CONFIG_HZ from /proc/config.gz and the
    # (jiffies, CLOCK_MONOTONIC) pair read from /proc/timer_list just before t0
    pred = None
    if jf:
        hz = kernel_hz()
        period = 10 * hz
        j0, n0 = jf
        first = (period - j0 % period) / hz + (n0 - t0)
        pred = [round(first + 10 * k, 4) for k in range(0, 10) if first + 10 * k <= time.monotonic() - t0]
    diffs, hist, jumps = diff_stats(ports, times, 32768, 60999, pred)
    return {"attempts": i, "successes": len(ports), "failures": fails[:20], "n_failures": len(fails),
            "pace_s": pace_s, "elapsed_s": round(time.monotonic() - t0, 3),
            "start_wall_time": wall0,
            "even_fraction": round(sum(1 for p in ports if p % 2 == 0) / max(1, len(ports)), 4),
            "distinct_ports": len(set(ports)),
            "diff_histogram": hist, "n_jumps": len(jumps), "jumps": jumps[:60],
            "jumps_by_kind": {kd: sum(1 for j in jumps if j["kind"] == kd) for kd in
                              sorted(set(j["kind"] for j in jumps))},
            "kernel_HZ": kernel_hz(), "predicted_10s_epoch_boundaries_elapsed_s": pred,
            "ports_first_40": ports[:40],
            "time_wait_count": len(tw_list())}


def exp_E():
    set_range(40000, 40009)
    setsys("tcp_tw_reuse", 0)
    L = listener(LPORT)
    res = []
    for i in range(25):
        c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        t0 = now_us()
        try:
            c.connect((LHOST, LPORT))
        except OSError as e:
            res.append({"err": ename(e), "lat_us": now_us() - t0})
            c.close()
            continue
        lat = now_us() - t0
        port = c.getsockname()[1]
        s, _ = L.accept()
        s.sendall(b"hello")
        s.close()                      # server closes first
        data = b""
        while True:
            d = c.recv(4096)
            if not d:
                break
            data += d
        c.close()
        res.append({"port": port, "lat_us": lat, "bytes": len(data)})
    tw = tw_list()
    return {"ports_in_order": [r.get("port") for r in res],
            "connect_latency_us": [r["lat_us"] for r in res],
            "failures": [(i + 1, r["err"]) for i, r in enumerate(res) if "err" in r],
            "time_wait_count": len(tw),
            "time_wait_local_ports": sorted(set(l for l, r in tw)),
            "time_wait_remote_ports": sorted(r for l, r in tw)}


def exp_F(reuse, delay_ms, total_s, stop_at_first, keep_open=False):
    exists = getsys("tcp_tw_reuse_delay") is not None
    set_range(40000, 40009)
    setsys("tcp_tw_reuse", reuse)
    if exists:
        setsys("tcp_tw_reuse_delay", delay_ms)
    L = listener(LPORT)
    fill = [connect_client_close(L) for _ in range(10)]
    t_close10 = time.monotonic()
    tw_after_fill = len(tw_list())
    succ, fails, held = [], {}, []
    attempts = 0
    while True:
        el = time.monotonic() - t_close10
        if el >= total_s:
            break
        attempts += 1
        c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            c.connect((LHOST, LPORT))
            port = c.getsockname()[1]
            s, _ = L.accept()
            succ.append({"t_ms": round(el * 1000, 1), "port": port})
            if keep_open:
                held.append((c, s))
            else:
                c.close()
                s.close()
            if stop_at_first:
                break
        except OSError as e:
            c.close()
            fails[ename(e)] = fails.get(ename(e), 0) + 1
        time.sleep(0.005)
    return {"tcp_tw_reuse": reuse, "tcp_tw_reuse_delay_exists": exists,
            "tcp_tw_reuse_delay_ms": getsys("tcp_tw_reuse_delay"),
            "tcp_timestamps": getsys("tcp_timestamps"),
            "fill_ports": [r.get("port") for r in fill], "tw_after_fill": tw_after_fill,
            "retry_interval_ms": 5, "window_s": total_s, "keep_successes_open": keep_open,
            "attempts": attempts,
            "first_success_ms_after_10th_close": succ[0]["t_ms"] if succ else None,
            "successes": len(succ), "success_times_ms_first_20": [x["t_ms"] for x in succ[:20]],
            "success_ports_first_20": [x["port"] for x in succ[:20]],
            "failure_errnos": fails}


def exp_G():
    set_range(40000, 40009)
    setsys("tcp_tw_reuse", 0)
    setsys("tcp_max_tw_buckets", 5)
    L = listener(LPORT)
    first = [connect_client_close(L) for _ in range(10)]
    tw1 = tw_list()
    more = [connect_client_close(L) for _ in range(5)]
    tw2 = tw_list()
    return {"tcp_max_tw_buckets": getsys("tcp_max_tw_buckets"),
            "first10": first, "time_wait_after_10": len(tw1),
            "time_wait_ports_after_10": sorted(l for l, r in tw1),
            "next5": more, "next5_successes": sum(1 for r in more if "port" in r),
            "time_wait_after_15": len(tw2)}


def exp_H():
    set_range(40000, 40009)
    setsys("tcp_tw_reuse", 0)
    L = listener(LPORT)

    def pre(c):
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    res = [connect_client_close(L, pre=pre) for _ in range(20)]
    return {"attempts": 20, "successes": sum(1 for r in res if "port" in r),
            "ports_in_order": [r.get("port") for r in res],
            "failures": [(i + 1, r["stage"], r["err"]) for i, r in enumerate(res) if "err" in r],
            "time_wait_count": len(tw_list()), "all_states": tcp_states()[:20]}


PAYLOAD = 4 * 1024 * 1024


def server_close_first_transfer(L, sport):
    """Client bound to sport sends PAYLOAD; server reads it all and closes first;
    client reads EOF and closes.  Returns time (perf_counter_ns) after client close."""
    c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    c.bind((LHOST, sport))
    c.connect((LHOST, LPORT))
    s, _ = L.accept()

    def srv():
        got = 0
        while got < PAYLOAD:
            d = s.recv(1 << 20)
            if not d:
                break
            got += len(d)
        s.close()                      # server closes first -> server-side TIME_WAIT

    th = threading.Thread(target=srv)
    th.start()
    c.sendall(b"x" * PAYLOAD)
    while c.recv(65536):
        pass
    c.close()
    t = time.perf_counter_ns()
    th.join()
    return t


def mib():
    """All Tcp (/proc/net/snmp) and TcpExt (/proc/net/netstat) counters of this netns."""
    out = {}
    for path, pfx in (("/proc/net/snmp", "Tcp:"), ("/proc/net/netstat", "TcpExt:")):
        with open(path) as f:
            rows = [l.split() for l in f if l.startswith(pfx)]
        for hdr, val in zip(rows[0::2], rows[1::2]):
            for k, v in zip(hdr[1:], val[1:]):
                out[pfx[:-1] + "." + k] = int(v)
    return out


def mib_delta(a, b):
    skip = ("Tcp.InSegs", "Tcp.OutSegs", "Tcp.CurrEstab", "TcpExt.TCPHPHits", "TcpExt.TCPPureAcks",
            "TcpExt.TCPHPAcks", "TcpExt.DelayedACKs", "TcpExt.TCPOrigDataSent", "TcpExt.TCPHPHitsToUser",
            "TcpExt.TCPRcvCoalesce", "TcpExt.TCPAutoCorking", "TcpExt.TCPBacklogCoalesce",
            "TcpExt.TCPDelivered", "TcpExt.TCPRcvQDrop", "TcpExt.TCPWantZeroWindowAdv",
            "TcpExt.TCPToZeroWindowAdv", "TcpExt.TCPFromZeroWindowAdv", "TcpExt.TCPZeroWindowDrop",
            "TcpExt.TCPRcvSpaceCorrect", "TcpExt.TCPBacklogDrop")
    return {k: b[k] - a.get(k, 0) for k in b if b[k] != a.get(k, 0) and k not in skip
            and not k.startswith("Tcp.RtoAlgorithm")}


def reconnect_same_port(L, sport, wait_s, check_tw):
    m0 = mib()
    t_closed = server_close_first_transfer(L, sport)
    if wait_s:
        time.sleep(wait_s)
    tw_present = None
    if check_tw:
        tw_present = (LPORT, sport) in tw_list()
    bind_retries = 0
    while True:
        n = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        n.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            n.bind((LHOST, sport))
            gap_us = (time.perf_counter_ns() - t_closed) // 1000
            t0 = now_us()
            n.connect((LHOST, LPORT))
            lat = now_us() - t0
            break
        except OSError as e:
            n.close()
            bind_retries += 1
            if bind_retries > 200:
                return {"sport": sport, "err": ename(e)}
            time.sleep(0.001)
    s, _ = L.accept()
    m1 = mib()
    n.close()
    s.close()
    return {"sport": sport, "wait_before_reconnect_ms": wait_s * 1000,
            "mib_delta_transfer_plus_reconnect": mib_delta(m0, m1),
            "server_tw_present_before_syn": tw_present,
            "gap_close_to_connect_us": gap_us, "connect_latency_ms": round(lat / 1000, 3),
            "bind_connect_retries": bind_retries}


def exp_IJ(timestamps, waits, reps=3, check_tw=True):
    """waits: list of (label, seconds to wait between client close and re-bind/connect)."""
    setsys("tcp_timestamps", timestamps)
    setsys("tcp_tw_reuse", 0)
    L = listener(LPORT)
    out = {"tcp_timestamps": getsys("tcp_timestamps"), "payload_bytes": PAYLOAD,
           "tcp_rfc1337": getsys("tcp_rfc1337"), "kernel_HZ": kernel_hz()}
    details = {}
    for v, (label, w) in enumerate(waits):
        runs = [reconnect_same_port(L, 20001 + 100 * v + k, w, check_tw) for k in range(reps)]
        out[label + "_latency_ms"] = [r.get("connect_latency_ms") for r in runs]
        details[label] = runs
    out["details"] = details
    return out


EXPERIMENTS = {
    "A": exp_A,
    "B": exp_B,
    "C_bind0": lambda: exp_C(False),
    "C_bind0_IP_BIND_ADDRESS_NO_PORT": lambda: exp_C(True),
    "D": lambda: exp_D(2000),
    "D_paced_20ms_21s": lambda: exp_D(pace_s=0.020, duration_s=21.0),
    "E": exp_E,
    "F_reuse1_delay100_close_each": lambda: exp_F(1, 100, 1.0, False),
    "F_reuse1_delay100_keep_open": lambda: exp_F(1, 100, 1.0, False, keep_open=True),
    "F_reuse2_delay1000": lambda: exp_F(2, 1000, 3.0, True),
    "G": exp_G,
    "H": exp_H,
    "I_timestamps0": lambda: exp_IJ(0, [("immediate", 0), ("wait300ms", 0.3)]),
    "J_timestamps1": lambda: exp_IJ(1, [("immediate", 0), ("wait2ms", 0.002), ("wait300ms", 0.3)],
                                    reps=3, check_tw=False),
}


def child(name):
    die_unless_private()
    lo_up()
    t0 = time.monotonic()
    try:
        out = EXPERIMENTS[name]()
    except Exception as e:
        out = {"exception": repr(e)}
    out = dict({"experiment": name, "duration_s": round(time.monotonic() - t0, 3)}, **out)
    print(json.dumps(out))


def main():
    die_unless_private()
    lo_up()
    if len(sys.argv) >= 3 and sys.argv[1] == "--child":
        return child(sys.argv[2])
    wanted = sys.argv[1:]
    names = [n for n in EXPERIMENTS if not wanted or n in wanted or n.split("_")[0] in wanted]
    print(json.dumps({"experiment": "meta", "kernel": os.uname().release,
                      "python": sys.version.split()[0],
                      "defaults": {k: getsys(k) for k in ("ip_local_port_range", "tcp_tw_reuse",
                                                          "tcp_tw_reuse_delay", "tcp_timestamps",
                                                          "tcp_max_tw_buckets", "tcp_rfc1337")}}))
    sys.stdout.flush()
    for n in names:
        # fresh child netns per experiment variant (nested inside the outer unshare -n)
        r = subprocess.run(["unshare", "-n", sys.executable, os.path.abspath(__file__), "--child", n],
                           capture_output=True, text=True, timeout=60)
        line = r.stdout.strip() or json.dumps({"experiment": n, "error": r.stderr.strip()[-2000:],
                                               "rc": r.returncode})
        print(line)
        sys.stdout.flush()


if __name__ == "__main__":
    main()
