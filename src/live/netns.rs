//! The private network namespace a live run happens in, its addresses and its sysctls.
//!
//! `unshare(CLONE_NEWNET)` moves only the calling thread (shared/reference/crates.md), so
//! [`enter`] must run before any other thread exists; threads spawned afterwards inherit the
//! namespace. Writes under `/proc/sys/net/ipv4` then reach the new namespace only: the host's
//! own values are never touched. The namespace has no name and no other process in it, so it
//! disappears with this process, also on Ctrl-C: nothing is left to clean up.

use super::LiveError;
use crate::profile::Profile;
use nix::sched::{CloneFlags, unshare};
use nix::unistd::{getegid, geteuid};
use std::net::Ipv4Addr;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

/// How the namespace was obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Privilege {
    /// Root: a network namespace.
    Root,
    /// Unprivileged: a user namespace mapping this user to root, plus a network namespace.
    UserNamespace,
}

/// The network namespace the process started in (inode of `/proc/thread-self/ns/net`),
/// recorded by [`enter`]; [`apply`] refuses to write sysctls while still in it.
static ORIGINAL_NS: AtomicU64 = AtomicU64::new(0);

fn current_ns() -> u64 {
    std::fs::metadata("/proc/thread-self/ns/net").map_or(0, |m| m.ino())
}

fn threads() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Moves the calling thread (the only one) into a new network namespace with `lo` up, and
/// raises the open-file limit to its hard limit (every connection is a descriptor).
pub fn enter() -> Result<Privilege, LiveError> {
    if threads() != 1 {
        return Err(LiveError::Namespace(format!(
            "the process has {} threads; unshare moves only the calling one, so live mode \
             must start before any other thread",
            threads()
        )));
    }
    ORIGINAL_NS.store(current_ns(), Ordering::SeqCst);
    raise_nofile();
    let how = if geteuid().is_root() {
        unshare(CloneFlags::CLONE_NEWNET).map_err(|e| {
            LiveError::Namespace(format!("unshare(CLONE_NEWNET) failed as root: {e}"))
        })?;
        Privilege::Root
    } else {
        let (uid, gid) = (geteuid(), getegid());
        unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNET).map_err(|e| {
            LiveError::Namespace(format!(
                "live mode needs a private network namespace: run as root, or allow \
                 unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1, \
                 user.max_user_namespaces > 0); unshare(CLONE_NEWUSER|CLONE_NEWNET) said: {e}"
            ))
        })?;
        let write = |path: &str, text: String| {
            std::fs::write(path, text)
                .map_err(|e| LiveError::Namespace(format!("cannot write {path}: {e}")))
        };
        write("/proc/self/setgroups", "deny".into())?;
        write("/proc/self/uid_map", format!("0 {uid} 1"))?;
        write("/proc/self/gid_map", format!("0 {gid} 1"))?;
        Privilege::UserNamespace
    };
    if current_ns() == ORIGINAL_NS.load(Ordering::SeqCst) {
        return Err(LiveError::Namespace(
            "unshare reported success but the thread is still in its old namespace".into(),
        ));
    }
    ip(&["link", "set", "lo", "up"])?;
    Ok(how)
}

fn raise_nofile() {
    let mut lim = nix::libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a local struct.
    unsafe {
        if nix::libc::getrlimit(nix::libc::RLIMIT_NOFILE, &mut lim) == 0
            && lim.rlim_cur < lim.rlim_max
        {
            lim.rlim_cur = lim.rlim_max;
            nix::libc::setrlimit(nix::libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Runs `ip ARGS` in the calling thread's namespace (a child process inherits it).
pub(super) fn ip(args: &[&str]) -> Result<(), LiveError> {
    tool("ip", "iproute2", args, None).map(|_| ())
}

/// Runs `nft -f -` with `script` in the calling thread's namespace; returns what `nft list
/// ruleset` prints there afterwards.
pub(super) fn nft(script: &str) -> Result<String, LiveError> {
    tool("nft", "nftables", &["-f", "-"], Some(script))?;
    tool("nft", "nftables", &["list", "ruleset"], None)
}

/// Runs the tool `name` (from Debian's package `package`) with `args`, `stdin` on its
/// standard input; its standard output.
fn tool(
    name: &str,
    package: &str,
    args: &[&str],
    stdin: Option<&str>,
) -> Result<String, LiveError> {
    use std::io::Write as _;
    // An absolute path: this may run as root, so PATH is not trusted.
    let bin = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        .into_iter()
        .map(|d| format!("{d}/{name}"))
        .find(|p| Path::new(p).exists())
        .unwrap_or_else(|| format!("/usr/sbin/{name}"));
    let cannot = |e: std::io::Error| {
        LiveError::Namespace(format!(
            "cannot run `{name}` ({package} is needed to set up the namespaces): {e}"
        ))
    };
    let mut child = Command::new(&bin)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(cannot)?;
    if let Some(mut pipe) = child.stdin.take() {
        pipe.write_all(stdin.unwrap_or("").as_bytes())
            .map_err(cannot)?;
    }
    let out = child.wait_with_output().map_err(cannot)?;
    if !out.status.success() {
        return Err(LiveError::Namespace(format!(
            "`{name} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Refuses to go on in the network namespace the process started in.
fn guard() -> Result<(), LiveError> {
    let original = ORIGINAL_NS.load(Ordering::SeqCst);
    if original == 0 || current_ns() == original {
        return Err(LiveError::Namespace(
            "refusing to write sysctls or rules outside the run's own network namespaces".into(),
        ));
    }
    Ok(())
}

/// Writes sysctl `name = value` in the calling thread's namespace, never the one the
/// process started in; returns the value the kernel reads back.
pub(super) fn write(name: &str, value: &str) -> Result<String, LiveError> {
    guard()?;
    std::fs::write(path(name), value).map_err(|e| {
        LiveError::Namespace(format!("cannot set {name} = {value} in a namespace: {e}"))
    })?;
    Ok(read(name).unwrap_or_default())
}

/// Gives the namespace every address the scenario uses: 127.0.0.0/8 is on `lo` already,
/// the others are added to `lo` as /32s. Traffic between a host's own addresses goes through
/// the loopback device whatever interface holds them, so this is what a dummy interface would
/// give, without needing the `dummy` module (absent on some kernels, this CI's included).
/// `tcp_tw_reuse = 2` looks at the address (127.0.0.0/8), not the device, so it still treats
/// these as non-loopback.
pub fn add_addresses(ips: &[u32]) -> Result<(), LiveError> {
    for &a in ips.iter().filter(|&&ip| !crate::host::is_loopback(ip)) {
        ip(&[
            "addr",
            "add",
            &format!("{}/32", Ipv4Addr::from(a)),
            "dev",
            "lo",
        ])?;
    }
    Ok(())
}

/// The Linux sysctls a live run sets, in the order they must be written: the kernel refuses
/// a port range that starts below `ip_unprivileged_port_start`.
const SYSCTLS: &[&str] = &[
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_tw_reuse",
    "net.ipv4.tcp_tw_reuse_delay",
    "net.ipv4.tcp_timestamps",
    "net.ipv4.tcp_max_tw_buckets",
    "net.ipv4.ip_autobind_reuse",
    "net.ipv4.tcp_rfc1337",
    "net.ipv4.tcp_syn_retries",
    "net.ipv4.tcp_syn_linear_timeouts",
];

fn path(name: &str) -> String {
    format!("/proc/sys/{}", name.replace('.', "/"))
}

/// Reads a sysctl of the calling thread's namespace, whitespace-normalised.
pub fn read(name: &str) -> Option<String> {
    std::fs::read_to_string(path(name))
        .ok()
        .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// Writes the profile's knobs into the namespace, reads them back and returns the profile
/// the kernel actually runs, plus notes on knobs this kernel lacks at their default value.
pub fn apply(profile: &Profile) -> Result<(Profile, Vec<String>), LiveError> {
    guard()?;
    let mut effective = profile.clone();
    let mut notes = Vec::new();
    for &name in SYSCTLS {
        let want = profile.sysctl_text(name);
        let Some(current) = read(name) else {
            let default = Profile::linux().sysctl_text(name);
            if want == default {
                notes.push(format!(
                    "{}: not in this kernel; its default {want} is what the kernel does",
                    name
                ));
                continue;
            }
            return Err(LiveError::Refused(format!(
                "{} = {want}: this kernel has no such sysctl (tcp_tw_reuse_delay arrived in Linux 6.14), so the live run cannot apply it",
                name
            )));
        };
        if current != want {
            std::fs::write(path(name), &want).map_err(|e| {
                if e.raw_os_error() == Some(nix::libc::EINVAL) {
                    LiveError::Refused(format!("the kernel refuses {} = {want} (EINVAL)", name))
                } else {
                    LiveError::Namespace(format!(
                        "cannot set {} = {want} in the namespace: {e}",
                        name
                    ))
                }
            })?;
        }
        let got = read(name).unwrap_or_default();
        let value = toml::Value::String(got.clone());
        effective
            .set_knob(name, &value)
            .map_err(|e| LiveError::Namespace(format!("{} reads back as {got:?}: {e}", name)))?;
    }
    Ok((effective, notes))
}

/// Fault injection: writes `name = value` into the run's namespace after [`apply`] read the
/// knobs back, so the kernel runs with a setting the prediction does not know (a narrower
/// `ip_local_port_range`, a longer `tcp_tw_reuse_delay`). Only the knobs a live run sets,
/// only in its own namespace. Returns the value as the kernel reads it back.
pub fn inject(name: &str, value: &str) -> Result<String, LiveError> {
    if !SYSCTLS.contains(&name) {
        return Err(LiveError::Refused(format!(
            "--fault-sysctl {name}: not a knob live mode sets; one of {}",
            SYSCTLS.join(", ")
        )));
    }
    guard()?;
    std::fs::write(path(name), value).map_err(|e| {
        if e.raw_os_error() == Some(nix::libc::EINVAL) {
            LiveError::Refused(format!(
                "--fault-sysctl: the kernel refuses {name} = {value} (EINVAL)"
            ))
        } else if e.kind() == std::io::ErrorKind::NotFound {
            LiveError::Refused(format!("--fault-sysctl: this kernel has no {name}"))
        } else {
            LiveError::Namespace(format!("cannot set {name} = {value} in the namespace: {e}"))
        }
    })?;
    Ok(read(name).unwrap_or_default())
}
