//! Host import: a profile block from the running Linux host (`/proc/sys`), from `sysctl -a`
//! output (Linux `key = value`, FreeBSD and macOS `key: value`) or from Windows
//! `netsh int ipv4 show dynamicport tcp`. Knobs portsim does not model are skipped; a modelled
//! knob with a value its kernel would refuse is an error naming the line. A Linux host's
//! release (`kernel.osrelease`, what `uname -r` prints) picks the newest shipped `linux@X.Y`
//! at or below it ([`linux_release`]).

use crate::profile::linux_versions;
use crate::profile::{FREEBSD_KNOBS, KnobSpec, LINUX_KNOBS, MACOS_KNOBS, Profile};
use std::fmt;
use std::path::Path;

/// Why an import failed.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportError {
    pub source: String,
    /// 1-based; 0 when the error is about the whole input.
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.source, self.message)
        } else {
            write!(f, "{}:{}: {}", self.source, self.line, self.message)
        }
    }
}

impl std::error::Error for ImportError {}

/// An imported profile: the shipped profile it starts from and the knobs read.
#[derive(Debug, Clone, PartialEq)]
pub struct Imported {
    pub name: &'static str,
    pub profile: Profile,
    /// (knob, value as read, line) in the order read.
    pub knobs: Vec<(String, String, usize)>,
    pub source: String,
    /// Which release profile was picked and why, for standard error.
    pub note: Option<String>,
}

/// The shipped Linux profile for a host whose `kernel.osrelease` is `osrelease`: the newest
/// release at or below it, and a sentence saying which and why.
pub fn linux_release(osrelease: Option<&str>) -> (&'static str, String) {
    let Some(text) = osrelease else {
        return (
            "linux",
            "no kernel.osrelease: using \"linux\", the newest release".into(),
        );
    };
    let oldest = &linux_versions::RELEASES[0];
    match linux_versions::parse_version(text) {
        None => (
            "linux",
            format!(
                "kernel.osrelease {text:?} is not a release number: using \"linux\", the newest release"
            ),
        ),
        Some(v) => match linux_versions::at_or_below(v) {
            Some(r) if r.version == linux_versions::NEWEST && v > r.version => (
                "linux",
                format!(
                    "kernel {text} is newer than every shipped release: using \"linux\" (Linux {}.{})",
                    r.version.0, r.version.1
                ),
            ),
            Some(r) => (
                r.name,
                format!(
                    "kernel {text}: using profile \"{}\", the newest shipped release at or below {}.{} ({})",
                    r.name, v.0, v.1, r.title
                ),
            ),
            None => (
                oldest.name,
                format!(
                    "kernel {text} is older than every shipped release: using \"{}\", the oldest",
                    oldest.name
                ),
            ),
        },
    }
}

impl Imported {
    /// A `[[host]]` block with the imported values, to paste into a scenario.
    pub fn to_toml(&self) -> String {
        let mut s = format!(
            "# Imported from {} ({} knob(s) portsim models: {}).\n",
            self.source,
            self.knobs.len(),
            if self.knobs.is_empty() {
                "none".to_string()
            } else {
                self.knobs
                    .iter()
                    .map(|k| k.0.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        );
        s.push_str(&self.profile.to_toml_block(self.name));
        s
    }
}

fn apply(
    (name, note): (&'static str, Option<String>),
    specs: &[KnobSpec],
    pairs: &[(String, String, usize)],
    source: &str,
) -> Result<Imported, ImportError> {
    let mut profile = Profile::named(name).expect("a shipped profile");
    let mut knobs = vec![];
    let mut absent = vec![];
    for (key, raw, line) in pairs {
        if !specs.iter().any(|k| k.name == key) {
            continue;
        }
        // The host has a sysctl its release did not ship with (a distribution backport):
        // the release's rule is kept, and the note says so.
        if profile.release_has(key).is_err() {
            absent.push(format!("{key} (line {line})"));
            continue;
        }
        // Linux prints the range with a tab, the BSDs print numbers; both go in as text.
        let value = raw.split_whitespace().collect::<Vec<_>>().join(" ");
        let v = match value.parse::<i64>() {
            Ok(i) => toml::Value::Integer(i),
            Err(_) => toml::Value::String(value.clone()),
        };
        profile.set_knob(key, &v).map_err(|e| ImportError {
            source: source.to_string(),
            line: *line,
            message: format!("{key} = {value:?}: {e}"),
        })?;
        knobs.push((key.clone(), value, *line));
    }
    profile.validate().map_err(|e| ImportError {
        source: source.to_string(),
        line: 0,
        message: e,
    })?;
    let note = if absent.is_empty() {
        note
    } else {
        let skipped = format!(
            "not in the {name} release, so not applied (the release's own rule is kept): {}",
            absent.join(", ")
        );
        Some(note.map_or(skipped.clone(), |n| format!("{n}; {skipped}")))
    };
    Ok(Imported {
        name,
        profile,
        knobs,
        source: source.to_string(),
        note,
    })
}

/// Reads the running Linux host's knobs from `root` (normally `/proc/sys`).
pub fn from_proc(root: &Path) -> Result<Imported, ImportError> {
    let mut pairs = vec![];
    for k in LINUX_KNOBS {
        let path = root.join(k.name.replace('.', "/"));
        if let Ok(text) = std::fs::read_to_string(&path) {
            pairs.push((k.name.to_string(), text.trim().to_string(), 0));
        }
    }
    if pairs.is_empty() {
        return Err(ImportError {
            source: root.display().to_string(),
            line: 0,
            message: "no net.ipv4 knob could be read: not a Linux /proc/sys".into(),
        });
    }
    let osrelease = std::fs::read_to_string(root.join("kernel/osrelease")).ok();
    let (name, note) = linux_release(osrelease.as_deref().map(str::trim));
    apply(
        (name, Some(note)),
        LINUX_KNOBS,
        &pairs,
        &root.display().to_string(),
    )
}

/// Parses `sysctl -a` output from Linux, FreeBSD or macOS; which one is told by its keys.
pub fn from_sysctl(source: &str, text: &str) -> Result<Imported, ImportError> {
    let mut pairs = vec![];
    let mut ostype = None;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // Linux: "key = value"; the BSDs: "key: value". A value may hold either separator.
        let cut = match (line.find(" = "), line.find(": ")) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let Some(cut) = cut else {
            if let Some(k) = line.strip_suffix(':').or_else(|| line.strip_suffix(" =")) {
                pairs.push((k.trim().to_string(), String::new(), i + 1));
            }
            continue;
        };
        let key = line[..cut].trim();
        let value = line[cut..]
            .trim_start_matches([' ', '=', ':'])
            .trim()
            .to_string();
        if key == "kern.ostype" {
            ostype = Some(value.clone());
        }
        pairs.push((key.to_string(), value, i + 1));
    }
    let has = |k: &str| pairs.iter().any(|p| p.0 == k);
    let osrelease = pairs
        .iter()
        .find(|p| p.0 == "kernel.osrelease")
        .map(|p| p.1.as_str());
    let (name, specs): (&'static str, &[KnobSpec]) = match ostype.as_deref() {
        Some("Darwin") => ("macos", MACOS_KNOBS),
        Some("FreeBSD") => ("freebsd", FREEBSD_KNOBS),
        Some("Linux") => ("linux", LINUX_KNOBS),
        _ if pairs.iter().any(|p| p.0.starts_with("net.ipv4.")) => ("linux", LINUX_KNOBS),
        _ if has("net.inet.tcp.randomize_ports") => ("macos", MACOS_KNOBS),
        _ if has("net.inet.ip.portrange.randomized") => ("freebsd", FREEBSD_KNOBS),
        _ => {
            return Err(ImportError {
                source: source.to_string(),
                line: 0,
                message: "not `sysctl -a` output from Linux (net.ipv4.*), FreeBSD or macOS (kern.ostype, net.inet.*)".into(),
            });
        }
    };
    let picked = if name == "linux" {
        let (n, note) = linux_release(osrelease);
        (n, Some(note))
    } else {
        (name, None)
    };
    apply(picked, specs, &pairs, source)
}

/// Parses `netsh int ipv4 show dynamicport tcp` (English output).
pub fn from_netsh(source: &str, text: &str) -> Result<Imported, ImportError> {
    let mut start = None;
    let mut num = None;
    for (i, line) in text.lines().enumerate() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let k = k.trim().to_ascii_lowercase();
        let v = v.trim();
        let slot = match k.as_str() {
            "start port" => &mut start,
            "number of ports" => &mut num,
            _ => continue,
        };
        let n: u32 = v.parse().map_err(|_| ImportError {
            source: source.to_string(),
            line: i + 1,
            message: format!("{k}: {v:?} is not a number"),
        })?;
        *slot = Some((n, i + 1));
    }
    let (Some((s, sl)), Some((n, nl))) = (start, num) else {
        return Err(ImportError {
            source: source.to_string(),
            line: 0,
            message: "expected the \"Start Port\" and \"Number of Ports\" lines of `netsh int ipv4 show dynamicport tcp` (English output)".into(),
        });
    };
    let pairs = vec![
        ("dynamicport.tcp.start".to_string(), s.to_string(), sl),
        ("dynamicport.tcp.num".to_string(), n.to_string(), nl),
    ];
    apply(
        ("windows", None),
        crate::profile::WINDOWS_KNOBS,
        &pairs,
        source,
    )
}
