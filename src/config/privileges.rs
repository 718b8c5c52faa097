//! What a container's process is allowed, as a container file spells it:
//! capabilities by name (`cap-add`, `cap-drop`) and the default set they
//! change, resource limits by name (`rlimits`), and `oom-score-adj`. Pure:
//! the values the process really gets are worked out at start (see
//! `container::environment`).

use std::path::Path;

use super::fields::{field_error, get_array, get_str, members, number_text, quoted, wrong_type};
use super::types::{CapList, ConfigError, Rlimit};
use crate::json::{Node, Value};

/// Capability names by number (linux/capability.h, up to Linux 5.9's
/// CAP_CHECKPOINT_RESTORE), without the `CAP_` prefix.
pub const CAPABILITIES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// Every capability berth knows, as a set (bit N: capability N).
pub const ALL_CAPS: u64 = (1 << CAPABILITIES.len()) - 1;

/// What a container keeps unless its file says otherwise: Docker's default
/// set without MKNOD (a node made in the rootfs would reach the device
/// wherever the host has no device cgroup): CHOWN, DAC_OVERRIDE, FOWNER, FSETID,
/// KILL, SETGID, SETUID, SETPCAP, NET_BIND_SERVICE, NET_RAW, SYS_CHROOT,
/// AUDIT_WRITE, SETFCAP.
pub const DEFAULT_CAPS: u64 = bits(&[0, 1, 3, 4, 5, 6, 7, 8, 10, 13, 18, 29, 31]);

const fn bits(caps: &[u32]) -> u64 {
    let mut set = 0;
    let mut i = 0;
    while i < caps.len() {
        set |= 1 << caps[i];
        i += 1;
    }
    set
}

/// "CAP_NET_ADMIN" for capability 12; "CAP_63" for one berth has no name for.
pub fn cap_name(cap: u32) -> String {
    match CAPABILITIES.get(cap as usize) {
        Some(name) => format!("CAP_{name}"),
        None => format!("CAP_{cap}"),
    }
}

/// A capability by name: "NET_ADMIN" or "CAP_NET_ADMIN", any case.
fn parse_cap(s: &str) -> Option<u32> {
    let upper = s.to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    CAPABILITIES
        .iter()
        .position(|name| *name == bare)
        .map(|i| i as u32)
}

/// `cap-add` or `cap-drop` (named `key` in errors): an array of names.
pub(super) fn get_caps(node: &Node, file: &Path, key: &str) -> Result<CapList, ConfigError> {
    let items = get_array(node, 64).map_err(|r| field_error(file, key, r))?;
    let mut list = CapList::default();
    for (i, item) in items.iter().enumerate() {
        let err = |reason: String| field_error(file, format!("{key}[{i}]"), reason);
        let s = get_str(item).map_err(err)?;
        if s.eq_ignore_ascii_case("ALL") {
            list.all = true;
            continue;
        }
        let cap = parse_cap(s).ok_or_else(|| {
            err(format!(
                "unknown capability {}: expected a name like \"NET_ADMIN\" or \"CAP_NET_ADMIN\", or \"ALL\"",
                quoted(s)
            ))
        })?;
        list.set |= 1 << cap;
    }
    Ok(list)
}

/// Refuses a capability named in both lists.
pub(super) fn check_caps(add: CapList, drop: CapList, file: &Path) -> Result<(), ConfigError> {
    let both = add.set & drop.set;
    if both == 0 {
        return Ok(());
    }
    Err(field_error(
        file,
        "cap-drop",
        format!("{} is also in cap-add", cap_name(both.trailing_zeros())),
    ))
}

/// The capability set from the default and the two lists, as Docker does
/// it: `cap-add` "ALL" keeps every capability but those dropped; `cap-drop`
/// "ALL" keeps only those added; else the default less those dropped plus
/// those added. Returns (the set, those of it added).
pub fn capabilities(add: CapList, drop: CapList) -> (u64, u64) {
    let set = if add.all {
        ALL_CAPS & !drop.set
    } else if drop.all {
        add.set
    } else {
        (DEFAULT_CAPS & !drop.set) | add.set
    };
    let added = if add.all { ALL_CAPS } else { add.set };
    (set, added & set)
}

/// Resource limits by name (setrlimit(2)'s RLIMIT_*, lower case).
// The C library's type for them is u32 with glibc and c_int with musl.
#[allow(clippy::unnecessary_cast)]
pub const RLIMITS: &[(&str, u32)] = &[
    ("cpu", libc::RLIMIT_CPU as u32),
    ("fsize", libc::RLIMIT_FSIZE as u32),
    ("data", libc::RLIMIT_DATA as u32),
    ("stack", libc::RLIMIT_STACK as u32),
    ("core", libc::RLIMIT_CORE as u32),
    ("rss", libc::RLIMIT_RSS as u32),
    ("nproc", libc::RLIMIT_NPROC as u32),
    ("nofile", libc::RLIMIT_NOFILE as u32),
    ("memlock", libc::RLIMIT_MEMLOCK as u32),
    ("as", libc::RLIMIT_AS as u32),
    ("locks", libc::RLIMIT_LOCKS as u32),
    ("sigpending", libc::RLIMIT_SIGPENDING as u32),
    ("msgqueue", libc::RLIMIT_MSGQUEUE as u32),
    ("nice", libc::RLIMIT_NICE as u32),
    ("rtprio", libc::RLIMIT_RTPRIO as u32),
    ("rttime", libc::RLIMIT_RTTIME as u32),
];

/// No limit (RLIM_INFINITY), written "unlimited".
pub const UNLIMITED: u64 = u64::MAX;

/// One limit value: a whole number below 2^64 - 1, or "unlimited".
fn get_limit(node: &Node) -> Result<u64, String> {
    match &node.value {
        Value::String(s) if s == "unlimited" => Ok(UNLIMITED),
        Value::String(s) => Err(format!(
            "expected a number or \"unlimited\", found {}",
            quoted(s)
        )),
        Value::Number(n) => match n.as_u64() {
            Some(v) if v != UNLIMITED => Ok(v),
            _ => Err(format!(
                "expected a whole number from 0 to {} or \"unlimited\", found {}",
                UNLIMITED - 1,
                number_text(n)
            )),
        },
        _ => Err(wrong_type("a number or \"unlimited\"", node)),
    }
}

/// `rlimits`: an object from limit names to `[soft, hard]`, by RLIMIT_*
/// number.
pub(super) fn get_rlimits(node: &Node, file: &Path) -> Result<Vec<Rlimit>, ConfigError> {
    if !matches!(node.value, Value::Object(_)) {
        return Err(field_error(file, "rlimits", wrong_type("an object", node)));
    }
    let mut limits = Vec::new();
    for (key, value) in members(node) {
        let field = format!("rlimits.{}", super::fields::printable(key));
        let err = |reason: String| field_error(file, &field, reason);
        let Some(&(name, resource)) = RLIMITS.iter().find(|(name, _)| name == key) else {
            let names: Vec<&str> = RLIMITS.iter().map(|(name, _)| *name).collect();
            return Err(err(format!(
                "unknown resource limit: expected one of {}",
                names.join(", ")
            )));
        };
        let pair = match &value.value {
            Value::Array(items) if items.len() == 2 => items,
            _ => return Err(err(wrong_type("[soft, hard]", value))),
        };
        let soft = get_limit(&pair[0]).map_err(|r| field_error(file, format!("{field}[0]"), r))?;
        let hard = get_limit(&pair[1]).map_err(|r| field_error(file, format!("{field}[1]"), r))?;
        if soft > hard {
            return Err(err(format!(
                "the soft limit {} is above the hard limit {}",
                limit_text(soft),
                limit_text(hard)
            )));
        }
        limits.push(Rlimit {
            name,
            resource,
            soft,
            hard,
        });
    }
    // In one order whatever the file's, as in the canonical text.
    limits.sort_by_key(|r| r.resource);
    Ok(limits)
}

/// A limit as a message or a step shows it.
pub fn limit_text(v: u64) -> String {
    if v == UNLIMITED {
        "unlimited".to_string()
    } else {
        v.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_names() {
        assert_eq!(CAPABILITIES.len(), 41);
        assert_eq!(parse_cap("NET_ADMIN"), Some(12));
        assert_eq!(parse_cap("CAP_NET_ADMIN"), Some(12));
        assert_eq!(parse_cap("cap_sys_admin"), Some(21));
        assert_eq!(parse_cap("CHECKPOINT_RESTORE"), Some(40));
        assert_eq!(parse_cap("CAP_"), None);
        assert_eq!(parse_cap("NET"), None);
        assert_eq!(cap_name(24), "CAP_SYS_RESOURCE");
        assert_eq!(cap_name(63), "CAP_63");
        // The default set is the one the README lists.
        let names: Vec<String> = (0..64)
            .filter(|c| DEFAULT_CAPS & (1 << c) != 0)
            .map(cap_name)
            .collect();
        assert_eq!(
            names,
            [
                "CAP_CHOWN",
                "CAP_DAC_OVERRIDE",
                "CAP_FOWNER",
                "CAP_FSETID",
                "CAP_KILL",
                "CAP_SETGID",
                "CAP_SETUID",
                "CAP_SETPCAP",
                "CAP_NET_BIND_SERVICE",
                "CAP_NET_RAW",
                "CAP_SYS_CHROOT",
                "CAP_AUDIT_WRITE",
                "CAP_SETFCAP"
            ]
        );
    }

    #[test]
    fn add_and_drop_as_docker_does() {
        let list = |caps: &[u32], all| CapList {
            set: bits_of(caps),
            all,
        };
        let none = CapList::default();
        let net_admin = 1 << 12;
        let kill = 1 << 5;
        assert_eq!(capabilities(none, none), (DEFAULT_CAPS, 0));
        assert_eq!(
            capabilities(list(&[12], false), list(&[5], false)),
            ((DEFAULT_CAPS & !kill) | net_admin, net_admin)
        );
        assert_eq!(
            capabilities(list(&[12], false), list(&[], true)),
            (net_admin, net_admin)
        );
        assert_eq!(
            capabilities(list(&[], true), list(&[21], false)),
            (ALL_CAPS & !(1 << 21), ALL_CAPS & !(1 << 21))
        );
        // Adding one already in the default set counts as added.
        assert_eq!(capabilities(list(&[5], false), none), (DEFAULT_CAPS, kill));
        let e = check_caps(
            list(&[12], false),
            list(&[12], false),
            Path::new("app.json"),
        )
        .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("cap-drop"));
        assert_eq!(e.reason, "CAP_NET_ADMIN is also in cap-add");
    }

    fn bits_of(caps: &[u32]) -> u64 {
        caps.iter().fold(0, |set, c| set | (1 << c))
    }
}
