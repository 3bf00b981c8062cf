#!/usr/bin/env python3
"""Linux conntrack + nftables masquerade: measured ground truth.

Run as root from the repository root (stdlib only, needs `ip`, `nft`, `conntrack`):

    python3 notes/nat-lab/natlab.py run              # every experiment, ~2.5 min
    python3 notes/nat-lab/natlab.py run A C E        # a subset

Topology, rebuilt from scratch for every experiment (so counters start at 0):

    natlab-c  192.0.2.2/24 --veth-- natlab-r 192.0.2.1/24 | 203.0.113.10/24 --veth-- natlab-s 203.0.113.2/24
    natlab-c2 192.0.2.3/24 --veth-- natlab-r 192.0.2.1/32 (+ route 192.0.2.3/32)      (experiment F only)

Router: ip_forward=1 and
    table ip natlab { chain post { type nat hook postrouting priority srcnat;
        oifname "veth-rs" meta l4proto tcp masquerade to :40000-40009 [flags] } }
Every link, address, route, rule and sysctl is created inside the natlab-* namespaces
(`ip -n NS ...`, `ip netns exec NS ...`); nothing is written in the caller's namespace.
The namespaces are deleted at the end.

Output: one JSON object per line on stdout (`--out FILE` to also write it to a file),
then a human summary per experiment on stderr.

Internal subcommands (run inside a namespace by the driver): server, connect, hold, sniff.
"""
import errno
import json
import os
import re
import select
import socket
import struct
import subprocess
import sys
import threading
import time

ME = os.path.abspath(__file__)
NS_C, NS_C2, NS_R, NS_S = "natlab-c", "natlab-c2", "natlab-r", "natlab-s"
ALL_NS = (NS_C, NS_C2, NS_R, NS_S)
SRV_IP, SRV_PORT = "203.0.113.2", 8080
R_OUT_IP = "203.0.113.10"
PMIN, PMAX = 40000, 40009


# ------------------------------------------------------------------ shell helpers
def sh(*args, check=True, input=None):
    r = subprocess.run(list(args), capture_output=True, text=True, input=input)
    if check and r.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (" ".join(args), r.returncode, r.stderr.strip()))
    return r


def nsx(ns, *args, check=True, input=None):
    return sh("ip", "netns", "exec", ns, *args, check=check, input=input)


def sysctl(ns, key, val):
    nsx(ns, "sysctl", "-q", "-w", "%s=%s" % (key, val))


def teardown():
    existing = sh("ip", "netns", "list").stdout
    for ns in ALL_NS:
        if re.search(r"^%s( |$)" % re.escape(ns), existing, re.M):
            sh("ip", "netns", "del", ns, check=False)


def setup(flags="", port_range=True, tw=None, second_client=False, client_sysctls=None):
    """Fresh namespaces; returns the nft rule text used."""
    teardown()
    nss = [NS_C, NS_R, NS_S] + ([NS_C2] if second_client else [])
    for ns in nss:
        sh("ip", "netns", "add", ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
    sh("ip", "-n", NS_C, "link", "add", "veth-c", "type", "veth", "peer", "name", "veth-rc", "netns", NS_R)
    sh("ip", "-n", NS_S, "link", "add", "veth-s", "type", "veth", "peer", "name", "veth-rs", "netns", NS_R)
    sh("ip", "-n", NS_C, "addr", "add", "192.0.2.2/24", "dev", "veth-c")
    sh("ip", "-n", NS_R, "addr", "add", "192.0.2.1/24", "dev", "veth-rc")
    sh("ip", "-n", NS_R, "addr", "add", R_OUT_IP + "/24", "dev", "veth-rs")
    sh("ip", "-n", NS_S, "addr", "add", SRV_IP + "/24", "dev", "veth-s")
    for ns, dev in ((NS_C, "veth-c"), (NS_R, "veth-rc"), (NS_R, "veth-rs"), (NS_S, "veth-s")):
        sh("ip", "-n", ns, "link", "set", dev, "up")
    sh("ip", "-n", NS_C, "route", "add", "default", "via", "192.0.2.1")
    if second_client:
        sh("ip", "-n", NS_C2, "link", "add", "veth-c", "type", "veth", "peer", "name", "veth-rc2", "netns", NS_R)
        sh("ip", "-n", NS_C2, "addr", "add", "192.0.2.3/24", "dev", "veth-c")
        sh("ip", "-n", NS_R, "addr", "add", "192.0.2.1/32", "dev", "veth-rc2")
        sh("ip", "-n", NS_C2, "link", "set", "veth-c", "up")
        sh("ip", "-n", NS_R, "link", "set", "veth-rc2", "up")
        sh("ip", "-n", NS_R, "route", "add", "192.0.2.3/32", "dev", "veth-rc2")
        sh("ip", "-n", NS_C2, "route", "add", "default", "via", "192.0.2.1")
    sysctl(NS_R, "net.ipv4.ip_forward", 1)
    if tw is not None:
        sysctl(NS_R, "net.netfilter.nf_conntrack_tcp_timeout_time_wait", tw)
    for ns in [NS_C] + ([NS_C2] if second_client else []):
        sysctl(ns, "net.ipv4.tcp_syn_retries", 2)
        for k, v in (client_sysctls or {}).items():
            sysctl(ns, k, v)
    target = "masquerade"
    if port_range:
        target += " to :%d-%d" % (PMIN, PMAX)
    if flags:
        target += " " + flags
    rule = 'oifname "veth-rs" meta l4proto tcp %s' % target
    nsx(NS_R, "nft", "-f", "-", input="""table ip natlab {
  chain post {
    type nat hook postrouting priority srcnat; policy accept;
    %s
  }
}
""" % rule)
    listed = nsx(NS_R, "nft", "list", "chain", "ip", "natlab", "post").stdout
    m = re.search(r"(oifname.*masquerade.*)", listed)
    return m.group(1).strip() if m else rule


# ------------------------------------------------------------------ conntrack readers
CT_RE = re.compile(r"(\w+)=(\S+)")


def ct_list():
    out = nsx(NS_R, "conntrack", "-L", "-p", "tcp", check=False).stdout
    rows = []
    for line in out.splitlines():
        tok = line.split()
        if len(tok) < 5 or tok[0] != "tcp":
            continue
        kv = CT_RE.findall(line)
        orig = dict(kv[:4])
        repl = dict(kv[4:8])
        rows.append({
            "timeout": int(tok[2]), "state": tok[3],
            "src": orig.get("src"), "sport": int(orig.get("sport", 0)),
            "nat_ip": repl.get("dst"), "nat_port": int(repl.get("dport", 0)),
            "assured": "[ASSURED]" in line, "unreplied": "[UNREPLIED]" in line,
        })
    rows.sort(key=lambda r: (r["nat_port"], r["src"], r["sport"]))
    return rows


def ct_stats():
    out = nsx(NS_R, "conntrack", "-S", check=False).stdout
    tot = {}
    for line in out.splitlines():
        for k, v in CT_RE.findall(line):
            if k == "cpu":
                continue
            tot[k] = tot.get(k, 0) + int(v)
    return tot


def ct_count():
    return int(nsx(NS_R, "cat", "/proc/sys/net/netfilter/nf_conntrack_count").stdout.strip())


def delta(a, b):
    return {k: b.get(k, 0) - a.get(k, 0) for k in b if b.get(k, 0) != a.get(k, 0)}


def ct_brief(rows):
    return ["%d:%s%s/%d" % (r["nat_port"], r["state"], "" if r["assured"] else "(!A)", r["timeout"])
            for r in rows]


# ------------------------------------------------------------------ in-namespace roles
def role_server(mode):
    """mode cc: reply, then wait for the client's FIN, then close.  mode sc: reply, close."""
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((SRV_IP, SRV_PORT))
    ls.listen(1024)
    print(json.dumps({"ready": True}), flush=True)

    def handle(c, peer):
        try:
            buf = b""
            while not buf.endswith(b"\n"):
                d = c.recv(100)
                if not d:
                    break
                buf += d
            c.sendall(("%s:%d\n" % peer).encode())
            if mode == "cc":
                while c.recv(100):
                    pass
        except OSError:
            pass
        finally:
            c.close()

    while True:
        c, peer = ls.accept()
        print(json.dumps({"t": time.time(), "accept": "%s:%d" % peer}), flush=True)
        threading.Thread(target=handle, args=(c, peer), daemon=True).start()


def one_connect(mode, bind_port=0, hold=None):
    s = socket.socket()
    res = {"bind": bind_port}
    if bind_port:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("", bind_port))
        except OSError as e:
            res.update(err=errno.errorcode.get(e.errno, str(e.errno)), stage="bind")
            s.close()
            return res, None
    t0 = time.monotonic()
    res["t_start"] = time.time()
    try:
        s.connect((SRV_IP, SRV_PORT))
    except OSError as e:
        res.update(err=errno.errorcode.get(e.errno, str(e.errno)), stage="connect",
                   connect_s=round(time.monotonic() - t0, 3), lport=s.getsockname()[1])
        s.close()
        return res, None
    res["connect_s"] = round(time.monotonic() - t0, 3)
    res["lport"] = s.getsockname()[1]
    s.sendall(b"GET\n")
    buf = b""
    while not buf.endswith(b"\n"):
        d = s.recv(100)
        if not d:
            break
        buf += d
    res["seen_by_server"] = buf.decode().strip()
    try:
        res["nat_port"] = int(res["seen_by_server"].rsplit(":", 1)[1])
    except (IndexError, ValueError):
        pass
    if hold:
        return res, s
    if mode == "sc":
        while s.recv(100):
            pass
    s.close()
    return res, None


def role_connect(mode, bind_port):
    r, _ = one_connect(mode, bind_port)
    print(json.dumps(r), flush=True)


def role_hold(n, bind_ports):
    """Open n connections at once, print each result, close all on a stdin line."""
    socks, lock = [], threading.Lock()
    ports = (bind_ports + [0] * n)[:n]

    def worker(i):
        r, s = one_connect("cc", ports[i], hold=True)
        r["idx"] = i
        with lock:
            if s:
                socks.append(s)
            print(json.dumps(r), flush=True)

    ths = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    print(json.dumps({"all_done": True}), flush=True)
    sys.stdin.readline()
    for s in socks:
        s.close()
    time.sleep(0.3)


FLOOD_PER_SPORT = 60000


def role_udpflood(nflows):
    """Create nflows distinct UDP flows (one datagram each) towards the server address:
    source ports 20000, 20001, ... each to destination ports 1024 .. 1024+59999."""
    sent, i = 0, 0
    t0 = time.time()
    while sent < nflows:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("", 20000 + i))
        for dport in range(1024, 1024 + min(FLOOD_PER_SPORT, nflows - sent)):
            s.sendto(b"x", (SRV_IP, dport))
            sent += 1
        s.close()
        i += 1
    print(json.dumps({"sent": sent, "secs": round(time.time() - t0, 2)}), flush=True)


def role_udpreply(nflows):
    """From the server namespace, send one reply datagram for every flow of role_udpflood
    (raw socket, so no socket per port is needed); the router's entries get SEEN_REPLY."""
    r = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
    sent, i = 0, 0
    t0 = time.time()
    while sent < nflows:
        for dport in range(1024, 1024 + min(FLOOD_PER_SPORT, nflows - sent)):
            r.sendto(struct.pack("!HHHH", dport, 20000 + i, 9, 0) + b"y", ("192.0.2.2", 0))
            sent += 1
        i += 1
    print(json.dumps({"sent": sent, "secs": round(time.time() - t0, 2)}), flush=True)


def role_sniff(ifaces):
    """Print every IPv4/TCP packet seen on the given interfaces (AF_PACKET, pre-netfilter
    on input, post-netfilter on output)."""
    socks = {}
    for i in ifaces:
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
        s.bind((i, 0))
        socks[s] = i
    print(json.dumps({"ready": True}), flush=True)
    while True:
        rd, _, _ = select.select(list(socks), [], [], 1.0)
        for s in rd:
            pkt, addr = s.recvfrom(65535)
            if len(pkt) < 34 or pkt[12:14] != b"\x08\x00":
                continue
            ip = pkt[14:]
            ihl = (ip[0] & 15) * 4
            if ip[9] != 6:
                continue
            tot = struct.unpack("!H", ip[2:4])[0]
            tcp = ip[ihl:]
            sport, dport, seq, ack, off, fl = struct.unpack("!HHIIBB", tcp[:14])
            doff = (off >> 4) * 4
            plen = tot - ihl - doff
            flags = "".join(c for c, b in zip("FSRPAU", (1, 2, 4, 8, 16, 32)) if fl & b)
            tsval = None
            opt, k = tcp[20:doff], 0
            while k < len(opt):
                kind = opt[k]
                if kind == 0:
                    break
                if kind == 1:
                    k += 1
                    continue
                if k + 1 >= len(opt) or opt[k + 1] < 2:
                    break
                if kind == 8 and opt[k + 1] == 10:
                    tsval = struct.unpack("!I", opt[k + 2:k + 6])[0]
                k += opt[k + 1]
            print(json.dumps({"t": time.time(), "if": socks[s], "out": addr[2] == 4, "tsval": tsval,
                              "src": socket.inet_ntoa(ip[12:16]), "sport": sport,
                              "dst": socket.inet_ntoa(ip[16:20]), "dport": dport,
                              "flags": flags, "seq": seq, "ack": ack, "len": plen}), flush=True)


# ------------------------------------------------------------------ driver helpers
class Bg:
    """A background process inside a namespace that prints JSON lines."""

    def __init__(self, ns, *args):
        self.p = subprocess.Popen(["ip", "netns", "exec", ns, "python3", ME] + list(args),
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.lines = []
        self.cv = threading.Condition()
        threading.Thread(target=self._rd, daemon=True).start()

    def _rd(self):
        for line in self.p.stdout:
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            with self.cv:
                self.lines.append(obj)
                self.cv.notify_all()

    def wait_for(self, pred, timeout=30):
        end = time.time() + timeout
        with self.cv:
            while not any(pred(o) for o in self.lines):
                left = end - time.time()
                if left <= 0:
                    raise TimeoutError("background process output")
                self.cv.wait(left)

    def send(self, text):
        self.p.stdin.write(text)
        self.p.stdin.flush()

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()   # only the process this driver started
            try:
                self.p.wait(5)
            except subprocess.TimeoutExpired:
                self.p.kill()


def start_common(mode):
    srv = Bg(NS_S, "server", mode)
    srv.wait_for(lambda o: o.get("ready"))
    snf = Bg(NS_R, "sniff", "veth-rc", "veth-rs")
    snf.wait_for(lambda o: o.get("ready"))
    return srv, snf


def client_connect(mode, bind_port=0, ns=NS_C):
    out = nsx(ns, "python3", ME, "connect", mode, str(bind_port)).stdout
    return json.loads(out.strip().splitlines()[-1])


def s32(x):
    x &= 0xffffffff
    return x - (1 << 32) if x & 0x80000000 else x


def client_ends(pkts):
    """client sport -> (isn_end, last_end) as conntrack computes td_end for ORIGINAL dir."""
    ends = {}
    for p in pkts:
        if p["if"] != "veth-rc" or p["out"] or p["src"] not in ("192.0.2.2", "192.0.2.3"):
            continue
        end = (p["seq"] + p["len"] + ("S" in p["flags"]) + ("F" in p["flags"])) & 0xffffffff
        key = (p["src"], p["sport"])
        if "S" in p["flags"] and "A" not in p["flags"]:
            ends.setdefault(key, {"syn_end": end, "end": end, "syn_t": []})
            ends[key]["syn_t"].append(p["t"])
        elif key in ends and s32(end - ends[key]["end"]) > 0:
            ends[key]["end"] = end
    return ends


def emit(obj, fh):
    line = json.dumps(obj)
    print(line, flush=True)
    if fh:
        fh.write(line + "\n")
        fh.flush()


def say(*a):
    print(*a, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ experiments
def sequential(name, mode, n, fh, flags="", tw=None, gap=0.25, note=""):
    rule = setup(flags=flags, tw=tw)
    srv, snf = start_common(mode)
    base = ct_stats()
    owner = {}          # nat_port -> (client sport) of the entry currently holding it
    rows_out = []
    try:
        for i in range(1, n + 1):
            before = ct_list()
            st0 = ct_stats()
            r = client_connect(mode)
            time.sleep(gap)
            after = ct_list()
            st1 = ct_stats()
            r.update(i=i, ct_before=ct_brief(before), ct_after=ct_brief(after),
                     stats_delta=delta(st0, st1), ct_entries=len(after))
            r["holders_before"] = {row["nat_port"]: [row["sport"], row["state"]] for row in before}
            rows_out.append(r)
        time.sleep(0.3)
        pkts = list(snf.lines)
    finally:
        snf.stop()
        srv.stop()
    ends = client_ends([p for p in pkts if "seq" in p])
    # eviction analysis: for each connect, which holders had nf_seq_has_advanced() true?
    for r in rows_out:
        lp = r.get("lport")
        e = ends.get(("192.0.2.2", lp))
        if not e:
            continue
        r["syn_count"] = len(e["syn_t"])
        r["syn_times_rel"] = [round(t - e["syn_t"][0], 3) for t in e["syn_t"]]
        adv = {}
        for port, (sp, state) in r["holders_before"].items():
            old = ends.get(("192.0.2.2", sp))
            if old:
                adv[port] = s32(e["syn_end"] - old["end"]) > 0
        r["seq_advanced_vs_holders"] = adv
        r["evicted_holder"] = (r.get("nat_port") in r["holders_before"])
        if r["evicted_holder"]:
            r["evicted_holder_seq_advanced"] = adv.get(r["nat_port"])
    emit({"exp": name, "note": note, "rule": rule, "mode": mode, "tw": tw,
          "stats_total": delta(base, ct_stats()), "conns": rows_out,
          "pkts": [[round(p["t"], 4), p["if"], int(p["out"]), "%s:%d" % (p["src"], p["sport"]),
                    "%s:%d" % (p["dst"], p["dport"]), p["flags"], p["seq"], p["ack"], p["len"], p.get("tsval")]
                   for p in pkts if "seq" in p and mode == "sc"]}, fh)
    # summary
    say("== %s  (%s; mode=%s; tw=%s) %s" % (name, rule, mode, tw, note))
    for r in rows_out:
        adv = r.get("seq_advanced_vs_holders", {})
        say("  #%2d lport=%-5s nat=%-6s connect=%-6s err=%-10s syns=%s evicted=%s(adv=%s) adv=%s/%d ct=%d %s" % (
            r["i"], r.get("lport"), r.get("nat_port"), r.get("connect_s"), r.get("err", "-"),
            r.get("syn_times_rel"), r.get("evicted_holder"), r.get("evicted_holder_seq_advanced"),
            sum(adv.values()), len(adv), r["ct_entries"], r["stats_delta"]))
    say("  totals:", delta(base, ct_stats()))
    return rows_out


def exp_A(fh):
    sequential("A", "cc", 30, fh, note="client closes first, default TIME_WAIT 120 s")


def exp_A2(fh):
    """TIME_WAIT 5 s: watch entries expire, then connect again."""
    rule = setup(tw=5)
    srv, snf = start_common("cc")
    base = ct_stats()
    conns, timeline = [], []
    try:
        for i in range(10):
            conns.append(client_connect("cc"))
            time.sleep(0.05)
        t0 = time.time()
        while time.time() - t0 < 7.0:
            rows = ct_list()
            timeline.append({"t": round(time.time() - t0, 2), "n": len(rows),
                             "states": sorted(set(r["state"] for r in rows)),
                             "timeouts": [r["timeout"] for r in rows]})
            time.sleep(0.5)
        c11 = client_connect("cc")
        time.sleep(0.2)
        after = ct_list()
    finally:
        snf.stop()
        srv.stop()
    emit({"exp": "A2", "rule": rule, "tw": 5, "conns": conns, "timeline": timeline,
          "conn11": c11, "ct_after": ct_brief(after), "stats_total": delta(base, ct_stats())}, fh)
    say("== A2 (%s; tw=5)" % rule)
    say("  first 10 nat ports:", [c.get("nat_port") for c in conns])
    for t in timeline:
        say("  t=%5.2f entries=%2d states=%s timeouts=%s" % (t["t"], t["n"], t["states"], t["timeouts"]))
    say("  11th:", {k: c11.get(k) for k in ("nat_port", "connect_s", "err")}, "ct_after:", ct_brief(after))
    say("  totals:", delta(base, ct_stats()))


def exp_B(fh):
    sequential("B", "sc", 30, fh, note="server closes first, default TIME_WAIT 120 s")
    tw = nsx(NS_S, "ss", "-Htan", "state", "time-wait", check=False).stdout.splitlines()
    ctw = nsx(NS_C, "ss", "-Htan", "state", "time-wait", check=False).stdout.splitlines()
    emit({"exp": "B-sockets", "server_time_wait": len(tw), "client_time_wait": len(ctw)}, fh)
    say("  TIME-WAIT sockets after B: server ns %d, client ns %d" % (len(tw), len(ctw)))


def hold(name, n, fh, flags="", note=""):
    rule = setup(flags=flags)
    csys = {k: nsx(NS_C, "sysctl", "-n", "net.ipv4." + k, check=False).stdout.strip()
            for k in ("tcp_syn_retries", "tcp_syn_linear_timeouts", "tcp_timestamps", "tcp_tw_reuse")}
    srv, snf = start_common("cc")
    base = ct_stats()
    h = Bg(NS_C, "hold", str(n))
    try:
        h.wait_for(lambda o: o.get("all_done"), timeout=60)
        res = [o for o in h.lines if "idx" in o]
        rows = ct_list()
        st = delta(base, ct_stats())
        h.send("close\n")
        time.sleep(0.8)
        after_close = ct_list()
        pkts = list(snf.lines)
    finally:
        h.stop()
        snf.stop()
        srv.stop()
    ends = client_ends([p for p in pkts if "seq" in p])
    fwd = {}
    for p in pkts:
        if p.get("if") == "veth-rs" and p.get("out") and p["flags"] == "S":
            fwd[p["sport"]] = fwd.get(p["sport"], 0) + 1
    for r in res:
        e = ends.get(("192.0.2.2", r.get("lport")))
        if e:
            r["syn_times_rel"] = [round(t - e["syn_t"][0], 3) for t in e["syn_t"]]
    syn_out_total = sum(fwd.values())
    syn_in_total = sum(len(e["syn_t"]) for e in ends.values())
    res.sort(key=lambda r: (r.get("err") is not None, r.get("nat_port") or 0))
    emit({"exp": name, "note": note, "rule": rule, "n": n, "client_sysctls": csys, "results": res,
          "ct_while_held": ct_brief(rows), "stats_while_held": st,
          "syn_from_client": syn_in_total, "syn_to_server": syn_out_total,
          "ct_after_close": ct_brief(after_close), "stats_total": delta(base, ct_stats())}, fh)
    say("== %s (%s; %d concurrent held) %s; client %s" % (name, rule, n, note, csys))
    for r in res:
        say("  lport=%-5s nat=%-6s connect_s=%-6s err=%-10s syns=%s" % (
            r.get("lport"), r.get("nat_port"), r.get("connect_s"), r.get("err", "-"), r.get("syn_times_rel")))
    say("  held ct:", ct_brief(rows))
    say("  SYNs from client %d, SYNs forwarded to server %d; stats while held %s; after close %s" % (
        syn_in_total, syn_out_total, st, ct_brief(after_close)))


def exp_C(fh):
    hold("C", 15, fh, note="15 concurrent idle connections, 10 NAT ports, client tcp_syn_retries=2")


def exp_D(fh):
    sequential("D1", "cc", 30, fh, flags="fully-random", note="as A with fully-random")
    hold("D2", 15, fh, flags="fully-random", note="as C with fully-random")
    sequential("D3", "cc", 14, fh, flags="random", note="as A with random (short)")
    sequential("D4", "cc", 14, fh, flags="persistent", note="as A with persistent (short)")


def exp_order(fh):
    """First-10 NAT port order, 4 fresh runs per flag set."""
    out = {}
    for flags in ("", "fully-random"):
        runs = []
        for _ in range(4):
            setup(flags=flags)
            srv, snf = start_common("cc")
            try:
                runs.append([client_connect("cc").get("nat_port") for _ in range(10)])
            finally:
                snf.stop()
                srv.stop()
        out[flags or "default"] = runs
    emit({"exp": "ORDER", "runs": out}, fh)
    say("== ORDER (first 10 NAT ports, fresh router each run)")
    for k, runs in out.items():
        for r in runs:
            say("  %-13s %s" % (k, r))


def exp_E(fh):
    res = {}
    for flags in ("", "random", "fully-random", "persistent"):
        setup(flags=flags)
        srv, snf = start_common("cc")
        try:
            a = client_connect("cc", 40003)          # in range, free
            time.sleep(0.2)
            b = client_connect("cc", 45003)          # out of range
            time.sleep(0.2)
            # 40003 now in TIME_WAIT in conntrack (and in the client's own TW table):
            # bind 40004 (in range, free) and then ask for 40003 again from another address
            c = client_connect("cc", 40004)
            time.sleep(0.2)
            cts = ct_brief(ct_list())
        finally:
            snf.stop()
            srv.stop()
        res[flags or "default"] = {"bind40003": a, "bind45003": b, "bind40004": c, "ct": cts}
    # E3: same 4-tuple reopened while conntrack holds it in TIME_WAIT (client tcp_tw_reuse=1)
    setup(client_sysctls={"net.ipv4.tcp_tw_reuse": 1})
    srv, snf = start_common("cc")
    try:
        st0 = ct_stats()
        first = client_connect("cc", 40003)
        time.sleep(0.3)
        ct_mid = ct_list()
        time.sleep(1.2)                              # tcp_tw_reuse_delay is 1 s
        second = client_connect("cc", 40003)
        time.sleep(0.3)
        ct_end = ct_list()
        st1 = ct_stats()
        pkts = list(snf.lines)
    finally:
        snf.stop()
        srv.stop()
    ends = client_ends([p for p in pkts if "seq" in p])
    res["reopen_same_tuple"] = {"first": first, "ct_after_first": ct_brief(ct_mid),
                                "second": second, "ct_after_second": ct_brief(ct_end),
                                "stats_delta": delta(st0, st1),
                                "syn_count_40003": len(ends.get(("192.0.2.2", 40003), {}).get("syn_t", []))}
    emit({"exp": "E", "res": res}, fh)
    say("== E (original source port kept?)")
    for k in ("default", "random", "fully-random", "persistent"):
        v = res[k]
        say("  %-12s bind 40003 -> nat %s; bind 45003 -> nat %s; bind 40004 -> nat %s" % (
            k, v["bind40003"].get("nat_port"), v["bind45003"].get("nat_port"), v["bind40004"].get("nat_port")))
    v = res["reopen_same_tuple"]
    say("  reopen 192.0.2.2:40003 while ct TIME_WAIT: first nat %s, ct %s; second nat %s connect_s %s err %s; ct %s; stats %s" % (
        v["first"].get("nat_port"), v["ct_after_first"], v["second"].get("nat_port"),
        v["second"].get("connect_s"), v["second"].get("err", "-"), v["ct_after_second"], v["stats_delta"]))


def exp_F(fh):
    res = {}
    for label, port_range, bport in (("range_port45000", True, 45000), ("range_port40005", True, 40005),
                                     ("norange_port45000", False, 45000)):
        setup(port_range=port_range, second_client=True)
        srv, snf = start_common("cc")
        try:
            h1 = Bg(NS_C, "hold", "1", str(bport))
            h1.wait_for(lambda o: o.get("all_done"))
            h2 = Bg(NS_C2, "hold", "1", str(bport))
            h2.wait_for(lambda o: o.get("all_done"))
            r1 = [o for o in h1.lines if "idx" in o][0]
            r2 = [o for o in h2.lines if "idx" in o][0]
            cts = ct_brief(ct_list())
            raw = [(r["src"], r["sport"], r["nat_port"]) for r in ct_list()]
            h1.send("close\n")
            h2.send("close\n")
            time.sleep(0.4)
            h1.stop()
            h2.stop()
        finally:
            snf.stop()
            srv.stop()
        res[label] = {"c1": r1, "c2": r2, "ct": cts, "map": raw}
    emit({"exp": "F", "res": res}, fh)
    say("== F (two clients, same source port, same destination)")
    for k, v in res.items():
        say("  %-18s 192.0.2.2:%s -> nat %s ; 192.0.2.3:%s -> nat %s ; ct %s" % (
            k, v["c1"].get("lport"), v["c1"].get("nat_port"), v["c2"].get("lport"), v["c2"].get("nat_port"), v["map"]))


def exp_G(fh):
    setup()
    path = "/proc/sys/net/netfilter/nf_conntrack_max"
    mode = nsx(NS_R, "stat", "-c", "%A", path).stdout.strip()
    before = nsx(NS_R, "cat", path).stdout.strip()
    w = nsx(NS_R, "sysctl", "-w", "net.netfilter.nf_conntrack_max=8", check=False)
    after = nsx(NS_R, "cat", path).stdout.strip()
    host = open(path).read().strip()       # read only
    res = {"mode_in_router_ns": mode, "value_before": before, "write_rc": w.returncode,
           "write_stderr": w.stderr.strip(), "value_after": after, "value_in_caller_ns": host,
           "count_in_router_ns": ct_count(),
           "buckets": nsx(NS_R, "cat", "/proc/sys/net/netfilter/nf_conntrack_buckets").stdout.strip()}
    emit({"exp": "G", "res": res}, fh)
    say("== G nf_conntrack_max in router netns:", res)


def exp_G2(fh):
    """Fill the router netns table up to the global nf_conntrack_max with unreplied UDP flows,
    then open a TCP connection: the SYN's allocation must early_drop a non-ASSURED entry."""
    setup()
    nsx(NS_S, "nft", "-f", "-", input="table ip sink {\n  chain inp {\n"
        "    type filter hook input priority 0; policy accept;\n    meta l4proto udp drop\n  }\n}\n")
    mx = int(nsx(NS_R, "cat", "/proc/sys/net/netfilter/nf_conntrack_max").stdout)
    srv = Bg(NS_S, "server", "cc")
    srv.wait_for(lambda o: o.get("ready"))
    st0 = ct_stats()
    t0 = time.time()
    fl = nsx(NS_C, "python3", ME, "udpflood", str(mx + 40000)).stdout.strip().splitlines()[-1]
    time.sleep(1.0)
    st1 = ct_stats()
    cnt1 = ct_count()
    tcps = []
    for _ in range(3):
        sa = ct_stats()
        ca = ct_count()
        c = client_connect("cc")
        time.sleep(0.2)
        c["count_before"], c["count_after"], c["stats_delta"] = ca, ct_count(), delta(sa, ct_stats())
        tcps.append(c)
    tcp = tcps[-1]
    st2 = ct_stats()
    cnt2 = ct_count()
    tcp_ct = [r for r in ct_list() if r["nat_port"]]
    srv.stop()
    res = {"nf_conntrack_max": mx, "flood": json.loads(fl), "flood_wall_s": round(time.time() - t0, 1),
           "count_after_flood": cnt1, "stats_flood": delta(st0, st1),
           "tcp_connects": tcps, "count_after_tcp": cnt2, "stats_tcp": delta(st1, st2),
           "tcp_ct": ct_brief(tcp_ct)}
    emit({"exp": "G2", "res": res}, fh)
    say("== G2 table full in router netns (global nf_conntrack_max=%d)" % mx)
    say("  flood:", res["flood"], "count:", cnt1, "stats:", res["stats_flood"])
    for c in tcps:
        say("  tcp connect during full table:", {k: c.get(k) for k in (
            "nat_port", "connect_s", "err", "count_before", "count_after", "stats_delta")})
    say("  ct:", res["tcp_ct"])


def exp_G3(fh):
    """Table full of ASSURED entries: every UDP flow gets a reply and a third packet after
    2 s (nf_conntrack_udp_packet sets ASSURED), so early_drop finds nothing it may drop."""
    setup()
    sysctl(NS_R, "net.netfilter.nf_conntrack_udp_timeout", 600)
    sysctl(NS_R, "net.netfilter.nf_conntrack_udp_timeout_stream", 600)
    sh("ip", "-n", NS_S, "route", "add", "192.0.2.0/24", "via", R_OUT_IP)
    nsx(NS_S, "nft", "-f", "-", input="table ip sink {\n  chain inp {\n"
        "    type filter hook input priority 0; policy accept;\n    meta l4proto udp drop\n  }\n}\n")
    nsx(NS_C, "nft", "-f", "-", input="table ip sink {\n  chain inp {\n"
        "    type filter hook input priority 0; policy accept;\n    meta l4proto udp drop\n  }\n}\n")
    mx = int(nsx(NS_R, "cat", "/proc/sys/net/netfilter/nf_conntrack_max").stdout)
    srv = Bg(NS_S, "server", "cc")
    srv.wait_for(lambda o: o.get("ready"))
    st0 = ct_stats()
    f1 = json.loads(nsx(NS_C, "python3", ME, "udpflood", str(mx)).stdout.strip().splitlines()[-1])
    time.sleep(0.5)
    c1 = ct_count()
    f2 = json.loads(nsx(NS_S, "python3", ME, "udpreply", str(mx)).stdout.strip().splitlines()[-1])
    time.sleep(2.5)
    f3 = json.loads(nsx(NS_C, "python3", ME, "udpflood", str(mx)).stdout.strip().splitlines()[-1])
    time.sleep(0.5)
    st1, cnt1 = ct_stats(), ct_count()
    assured = int(nsx(NS_R, "sh", "-c", "conntrack -L -p udp 2>/dev/null | grep -c ASSURED",
                      check=False).stdout.strip() or 0)
    c = client_connect("cc")
    time.sleep(0.2)
    st2, cnt2 = ct_stats(), ct_count()
    srv.stop()
    dm = [l for l in sh("dmesg", check=False).stdout.splitlines() if "table full" in l][-2:]
    res = {"nf_conntrack_max": mx, "flood1": f1, "count_after_flood1": c1, "replies": f2,
           "flood3": f3, "stats_fill": delta(st0, st1), "count_before_tcp": cnt1,
           "udp_assured": assured, "tcp_connect": c, "count_after_tcp": cnt2,
           "stats_tcp": delta(st1, st2), "dmesg_table_full": dm}
    emit({"exp": "G3", "res": res}, fh)
    say("== G3 table full of ASSURED entries (router netns, nf_conntrack_max=%d)" % mx)
    say("  fill: flood %s count %d; replies %s; flood again %s; stats %s; count %d; ASSURED udp %d" % (
        f1, c1, f2, f3, res["stats_fill"], cnt1, assured))
    say("  tcp connect:", {k: c.get(k) for k in ("nat_port", "connect_s", "err")},
        "stats delta:", res["stats_tcp"], "count after:", cnt2)
    say("  dmesg:", dm)


EXPS = {"A": exp_A, "A2": exp_A2, "B": exp_B, "C": exp_C, "D": exp_D, "ORDER": exp_order,
        "E": exp_E, "F": exp_F, "G": exp_G, "G2": exp_G2, "G3": exp_G3}


def run(names, out_path):
    if os.geteuid() != 0:
        sys.exit("run as root")
    fh = open(out_path, "w") if out_path else None
    emit({"meta": {"uname": os.uname().release, "nft": sh("nft", "--version").stdout.strip(),
                   "conntrack": sh("conntrack", "--version").stdout.strip(),
                   "python": sys.version.split()[0], "t": time.time()}}, fh)
    try:
        for n in names or list(EXPS):
            t0 = time.time()
            EXPS[n](fh)
            say("  (%s took %.1f s)" % (n, time.time() - t0))
    finally:
        teardown()
        if fh:
            fh.close()


def main():
    a = sys.argv[1:]
    if not a:
        sys.exit(__doc__)
    cmd = a[0]
    if cmd == "server":
        role_server(a[1])
    elif cmd == "connect":
        role_connect(a[1], int(a[2]))
    elif cmd == "hold":
        role_hold(int(a[1]), [int(x) for x in a[2:]])
    elif cmd == "udpflood":
        role_udpflood(int(a[1]))
    elif cmd == "udpreply":
        role_udpreply(int(a[1]))
    elif cmd == "sniff":
        role_sniff(a[1:])
    elif cmd == "run":
        out = None
        rest = a[1:]
        if "--out" in rest:
            k = rest.index("--out")
            out = rest[k + 1]
            rest = rest[:k] + rest[k + 2:]
        run(rest, out)
    elif cmd == "teardown":
        teardown()
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
