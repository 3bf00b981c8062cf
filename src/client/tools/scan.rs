//! A tool's arguments by its own flag syntax, and the readers of their values.
//!
//! Two spellings: getopt's (`-c 50`, `-c50`, `--connections 50`, `--connections=50`) and Go's
//! `flag` package (`-c 50`, `-c=50`, `--c 50`; a boolean as `-disable-keepalive` or
//! `-disable-keepalive=false`). Each tool lists the flags portsim reads and the ones it
//! accepts and ignores because they do not change connections (headers, methods, output);
//! any other flag is refused, so that nothing that shapes connections is dropped silently.

use super::{Tool, ToolError};
use crate::time::Duration;
use crate::workload::Rate;

/// The highest rate a flag may give, per second.
pub(super) const MAX_RATE: u64 = 1_000_000_000;

/// A flag: its spellings (parsers match on the first) and whether it takes a value.
pub(super) struct Flag {
    pub(super) names: &'static [&'static str],
    pub(super) value: bool,
}

/// A flag that takes a value.
pub(super) const fn val(names: &'static [&'static str]) -> Flag {
    Flag { names, value: true }
}

/// A flag without a value (a switch).
pub(super) const fn switch(names: &'static [&'static str]) -> Flag {
    Flag {
        names,
        value: false,
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Style {
    Getopt,
    Go,
}

/// How a tool spells its flags, the ones portsim reads and the ones it ignores.
pub(super) struct Spec {
    pub(super) tool: Tool,
    pub(super) style: Style,
    pub(super) read: &'static [Flag],
    pub(super) ignored: &'static [Flag],
}

/// The flags read, in order (a later one overrides an earlier one, as the tools do), each by
/// its first name, and the positional arguments.
pub(super) struct Scanned {
    pub(super) flags: Vec<(&'static str, Option<String>)>,
    pub(super) positional: Vec<String>,
}

/// Sorts `args` into flags and positional arguments; `--` ends the flags.
pub(super) fn scan(spec: &Spec, args: &[String]) -> Result<Scanned, ToolError> {
    let mut out = Scanned {
        flags: Vec::new(),
        positional: Vec::new(),
    };
    let mut rest = args.iter();
    while let Some(a) = rest.next() {
        if a == "--" {
            out.positional.extend(rest.cloned());
            break;
        }
        if !a.starts_with('-') || a == "-" {
            out.positional.push(a.clone());
            continue;
        }
        let (flag, read, inline) = find(spec, a)?;
        let value = match (flag.value, inline) {
            (true, None) => Some(rest.next().cloned().ok_or_else(|| ToolError::BadValue {
                tool: spec.tool,
                flag: a.clone(),
                value: None,
                allowed: "a value after the flag".into(),
            })?),
            (_, inline) => inline,
        };
        if read {
            out.flags.push((flag.names[0], value));
        }
    }
    Ok(out)
}

/// The flag `arg` names, whether portsim reads it, and a value given in the same word
/// (`--x=v`, Go's `-x=v`, getopt's `-c50`).
fn find<'s>(spec: &'s Spec, arg: &str) -> Result<(&'s Flag, bool, Option<String>), ToolError> {
    let (name, inline) = match arg.split_once('=') {
        Some((n, v)) if spec.style == Style::Go || arg.starts_with("--") => (n, Some(v)),
        _ => (arg, None),
    };
    let name = match spec.style {
        Style::Go => name
            .strip_prefix('-')
            .filter(|n| n.starts_with('-'))
            .unwrap_or(name),
        Style::Getopt => name,
    };
    if let Some(found) = lookup(spec, name) {
        return Ok((found.0, found.1, inline.map(str::to_string)));
    }
    let attached = (spec.style == Style::Getopt && !arg.starts_with("--"))
        .then(|| arg.get(..2).zip(arg.get(2..)))
        .flatten();
    if let Some((short, value)) = attached
        && let Some((flag, read)) = lookup(spec, short).filter(|f| f.0.value)
    {
        return Ok((flag, read, Some(value.to_string())));
    }
    Err(ToolError::UnknownFlag {
        tool: spec.tool,
        flag: arg.to_string(),
        known: known(spec),
    })
}

fn lookup<'s>(spec: &'s Spec, name: &str) -> Option<(&'s Flag, bool)> {
    let has = |f: &&Flag| f.names.contains(&name);
    (spec.read.iter().find(has).map(|f| (f, true)))
        .or_else(|| spec.ignored.iter().find(has).map(|f| (f, false)))
}

fn known(spec: &Spec) -> String {
    let names = |flags: &[Flag]| {
        let all: Vec<&str> = flags.iter().flat_map(|f| f.names.iter().copied()).collect();
        all.join(" ")
    };
    format!(
        "portsim reads {}; accepts and ignores {}",
        names(spec.read),
        names(spec.ignored)
    )
}

/// What parsing one flag's value needs: the tool and the flag, for the error.
pub(super) struct At<'a> {
    pub(super) tool: Tool,
    pub(super) flag: &'a str,
}

impl At<'_> {
    pub(super) fn bad(&self, value: &str, allowed: impl Into<String>) -> ToolError {
        ToolError::BadValue {
            tool: self.tool,
            flag: self.flag.to_string(),
            value: Some(value.to_string()),
            allowed: allowed.into(),
        }
    }

    /// The value of a flag that takes one (present by [`scan`]).
    pub(super) fn text<'v>(&self, v: &'v Option<String>) -> Result<&'v str, ToolError> {
        v.as_deref().ok_or_else(|| ToolError::BadValue {
            tool: self.tool,
            flag: self.flag.to_string(),
            value: None,
            allowed: "a value".into(),
        })
    }

    /// An integer in `min..=max`; `what` says what it counts.
    pub(super) fn int(
        &self,
        v: &Option<String>,
        min: u64,
        max: u64,
        what: &str,
    ) -> Result<u64, ToolError> {
        let t = self.text(v)?;
        t.parse::<u64>()
            .ok()
            .filter(|n| (min..=max).contains(n))
            .ok_or_else(|| self.bad(t, format!("an integer {min}–{max} ({what})")))
    }

    /// A count of connections or threads: 1 to 1,000,000.
    pub(super) fn count(&self, v: &Option<String>, what: &str) -> Result<u32, ToolError> {
        self.int(v, 1, 1_000_000, what).map(|n| n as u32)
    }

    /// A positive rate up to 10⁹ per second, a decimal with at most 9 decimals.
    pub(super) fn rate(&self, v: &Option<String>, what: &str) -> Result<Rate, ToolError> {
        let t = self.text(v)?;
        Rate::parse_decimal(t)
            .filter(|r| r.num > 0 && r.num / r.den <= MAX_RATE)
            .ok_or_else(|| self.bad(t, format!("a number > 0, at most {MAX_RATE} ({what})")))
    }

    /// A switch, or a Go boolean's `=true` / `=false`.
    pub(super) fn on(&self, v: &Option<String>) -> Result<bool, ToolError> {
        match v.as_deref() {
            None | Some("true" | "1" | "t" | "T" | "TRUE" | "True") => Ok(true),
            Some("false" | "0" | "f" | "F" | "FALSE" | "False") => Ok(false),
            Some(t) => Err(self.bad(t, "true or false")),
        }
    }

    /// A positive duration: units such as `10s`, `1m30s`, `2h` (Go's and humantime's
    /// spelling, a sum of number-unit parts); a bare number is seconds when `bare_secs`.
    pub(super) fn duration(
        &self,
        v: &Option<String>,
        bare_secs: bool,
    ) -> Result<Duration, ToolError> {
        let t = self.text(v)?;
        let allowed = if bare_secs {
            "a duration > 0: seconds (10), or with units (10s, 1m30s, 2h)"
        } else {
            "a duration > 0 with units (10s, 1m30s, 2h)"
        };
        let secs = t.parse::<u64>().ok().filter(|_| bare_secs);
        let d = match secs {
            Some(s) => s.checked_mul(1_000_000_000).map(Duration),
            None => sum_of_parts(t),
        };
        d.filter(|d| d.0 > 0).ok_or_else(|| self.bad(t, allowed))
    }
}

/// `1m30s` → 90 s: each number with its unit read by [`Duration::parse`].
fn sum_of_parts(text: &str) -> Option<Duration> {
    let mut total = 0u64;
    let mut rest = text;
    while !rest.is_empty() {
        let num = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let unit_len = rest[num..]
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len() - num);
        let (part, tail) = rest.split_at(num + unit_len);
        if num == 0 {
            return None;
        }
        total = total.checked_add(Duration::parse(part).ok()?.0)?;
        rest = tail;
    }
    (!text.is_empty()).then_some(Duration(total))
}
