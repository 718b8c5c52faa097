//! The `seccomp` key of a container file and the profile format: a JSON
//! object that names the calls allowed and what every other call gets.
//!
//! ```json
//! {"default-action": "errno", "errno": "EPERM", "allow": ["read", "write", ...]}
//! ```
//!
//! `default-action` is `errno` (the default), `kill` (the process dies of
//! SIGSYS) or `log` (allowed and logged by the kernel: for finding what a
//! program needs); `errno` (only with `errno`) is a name like `"EPERM"`
//! or a number from 1 to 4095; `allow` lists system call names. Text in,
//! values out: reading a profile file is `load`'s.

use std::collections::HashSet;
use std::path::Path;

use super::fields::{
    field_error, get_array, get_path, get_str, members, number_text, quoted, unknown_key,
    wrong_type,
};
use super::types::{ConfigError, MAX_LIST_LEN};
use crate::json::{Node, Value};
use crate::sys::seccomp::{self, Action, Profile, Seccomp};

/// The calls berth makes itself after installing the filter: execve to
/// run the command, and write and exit_group to report why it could not.
pub const NEEDED: &[&str] = &["execve", "exit_group", "write"];

/// Errno names a profile may give (and their numbers on Linux).
const ERRNOS: &[(&str, i32)] = &[
    ("EPERM", libc::EPERM),
    ("ENOENT", libc::ENOENT),
    ("EIO", libc::EIO),
    ("ENXIO", libc::ENXIO),
    ("ENOMEM", libc::ENOMEM),
    ("EACCES", libc::EACCES),
    ("EFAULT", libc::EFAULT),
    ("EBUSY", libc::EBUSY),
    ("ENODEV", libc::ENODEV),
    ("EINVAL", libc::EINVAL),
    ("ENOTTY", libc::ENOTTY),
    ("ENOSYS", libc::ENOSYS),
    ("EOPNOTSUPP", libc::EOPNOTSUPP),
    ("ENOTSUP", libc::ENOTSUP),
    ("EPROTONOSUPPORT", libc::EPROTONOSUPPORT),
    ("EAFNOSUPPORT", libc::EAFNOSUPPORT),
];

/// The `seccomp` key: `"default"`, `"unconfined"`, the path of a profile
/// file (relative ones from `file`'s directory), or a profile inline.
pub fn get_seccomp(node: &Node, file: &Path) -> Result<Seccomp, ConfigError> {
    let err = |reason: String| field_error(file, "seccomp", reason);
    match &node.value {
        Value::String(_) => Ok(match get_str(node).map_err(err)? {
            "default" => Seccomp::Default,
            "unconfined" => Seccomp::Unconfined,
            _ => Seccomp::File(get_path(node, file).map_err(err)?),
        }),
        Value::Object(_) => parse_profile(node, file, "seccomp.").map(Seccomp::Profile),
        _ => Err(err(wrong_type(
            "\"default\", \"unconfined\", a profile file or a profile",
            node,
        ))),
    }
}

/// A profile object; `prefix` goes before the field names in errors ("" in
/// a profile file, "seccomp." inline in a container file).
pub fn parse_profile(node: &Node, file: &Path, prefix: &str) -> Result<Profile, ConfigError> {
    let err = |key: &str, reason: String| field_error(file, format!("{prefix}{key}"), reason);
    let mut action = None;
    let mut errno = None;
    let mut allow = None;
    for (key, value) in members(node) {
        match key.as_str() {
            "default-action" => {
                action = Some(match get_str(value).map_err(|r| err(key, r))? {
                    "errno" => "errno",
                    "kill" => "kill",
                    "log" => "log",
                    s => {
                        return Err(err(
                            key,
                            format!(
                                "expected \"errno\", \"kill\" or \"log\", found {}",
                                quoted(s)
                            ),
                        ));
                    }
                })
            }
            "errno" => errno = Some(get_errno(value).map_err(|r| err(key, r))?),
            "allow" => allow = Some(get_allow(value, file, prefix)?),
            _ => return Err(unknown_key(file, prefix, key)),
        }
    }
    let Some(allow) = allow else {
        return Err(err("allow", "required key is missing".to_string()));
    };
    let default_action = match action.unwrap_or("errno") {
        "kill" | "log" if errno.is_some() => {
            return Err(err(
                "errno",
                "only allowed with \"default-action\": \"errno\"".to_string(),
            ));
        }
        "kill" => Action::Kill,
        "log" => Action::Log,
        _ => Action::Errno(errno.unwrap_or(libc::EPERM as u16)),
    };
    if default_action != Action::Log
        && let Some(missing) = NEEDED.iter().find(|n| !allow.iter().any(|a| a == *n))
    {
        return Err(err(
            "allow",
            format!(
                "must include {}: berth calls execve, write and exit_group after \
                 installing the filter (to run the command, or to report why it could not)",
                quoted(missing)
            ),
        ));
    }
    Ok(Profile {
        default_action,
        allow,
    })
}

/// An errno name or number (1 to 4095, what a filter can return).
fn get_errno(node: &Node) -> Result<u16, String> {
    match &node.value {
        Value::String(_) => {
            let s = get_str(node)?;
            ERRNOS
                .iter()
                .find(|(name, _)| *name == s)
                .map(|(_, n)| *n as u16)
                .ok_or_else(|| {
                    let names: Vec<&str> = ERRNOS.iter().map(|(n, _)| *n).collect();
                    format!(
                        "unknown errno {}: use a number or one of {}",
                        quoted(s),
                        names.join(" ")
                    )
                })
        }
        Value::Number(n) => match n.as_u64() {
            Some(v) if (1..=4095).contains(&v) => Ok(v as u16),
            _ => Err(format!("must be from 1 to 4095, found {}", number_text(n))),
        },
        _ => Err(wrong_type("an errno name or number", node)),
    }
}

/// The allowed calls: known names, each once.
fn get_allow(node: &Node, file: &Path, prefix: &str) -> Result<Vec<String>, ConfigError> {
    let items = get_array(node, MAX_LIST_LEN)
        .map_err(|r| field_error(file, format!("{prefix}allow"), r))?;
    let mut seen = HashSet::new();
    let mut allow = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let err = |reason: String| field_error(file, format!("{prefix}allow[{i}]"), reason);
        let name = get_str(item).map_err(err)?;
        if !seccomp::is_known(name) {
            return Err(err(format!("unknown system call {}", quoted(name))));
        }
        if !seen.insert(name) {
            return Err(err(format!("{} is listed twice", quoted(name))));
        }
        allow.push(name.to_string());
    }
    Ok(allow)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::field;
    use crate::json;

    const FILE: &str = "/etc/berth/seccomp/app.json";

    fn profile(text: &str) -> Result<Profile, (Option<String>, String)> {
        let node = json::parse(text).unwrap();
        parse_profile(&node, Path::new(FILE), "").map_err(|e| {
            assert_eq!(e.file, Path::new(FILE));
            (e.field, e.reason)
        })
    }

    const NEEDS: &str = r#""execve", "exit_group", "write""#;

    #[test]
    fn a_profile_and_its_defaults() {
        let p = profile(&format!(r#"{{"allow": ["read", {NEEDS}]}}"#)).unwrap();
        assert_eq!(p.default_action, Action::Errno(1));
        assert_eq!(p.allow, ["read", "execve", "exit_group", "write"]);
        let p = profile(&format!(
            r#"{{"default-action": "errno", "errno": "ENOSYS", "allow": [{NEEDS}]}}"#
        ))
        .unwrap();
        assert_eq!(p.default_action, Action::Errno(38));
        let p = profile(&format!(r#"{{"errno": 13, "allow": [{NEEDS}]}}"#)).unwrap();
        assert_eq!(p.default_action, Action::Errno(13));
        let p = profile(&format!(
            r#"{{"default-action": "kill", "allow": [{NEEDS}]}}"#
        ))
        .unwrap();
        assert_eq!(p.default_action, Action::Kill);
        // Logging allows everything: nothing is needed.
        let p = profile(r#"{"default-action": "log", "allow": []}"#).unwrap();
        assert_eq!(p.default_action, Action::Log);
        // Names of other architectures are known (a profile serves a fleet).
        let p = profile(&format!(
            r#"{{"allow": ["set_tls", "arch_prctl", {NEEDS}]}}"#
        ))
        .unwrap();
        assert_eq!(p.allow.len(), 5);
    }

    #[test]
    fn profile_errors_name_the_field() {
        let cases = [
            (
                r#"{}"#.to_string(),
                field("allow", "required key is missing"),
            ),
            (
                r#"{"allow": ["read", "fooo"]}"#.to_string(),
                field("allow[1]", "unknown system call \"fooo\""),
            ),
            (
                format!(r#"{{"allow": [{NEEDS}, "read", "read"]}}"#),
                field("allow[4]", "\"read\" is listed twice"),
            ),
            (
                r#"{"allow": ["read", 3]}"#.to_string(),
                field("allow[1]", "expected a string, found a number"),
            ),
            (
                r#"{"allow": "read"}"#.to_string(),
                field("allow", "expected an array, found a string"),
            ),
            (
                format!(r#"{{"allow": [{NEEDS}], "deny": []}}"#),
                field("deny", "unknown key"),
            ),
            (
                format!(r#"{{"default-action": "allow", "allow": [{NEEDS}]}}"#),
                field(
                    "default-action",
                    "expected \"errno\", \"kill\" or \"log\", found \"allow\"",
                ),
            ),
            (
                format!(r#"{{"errno": 0, "allow": [{NEEDS}]}}"#),
                field("errno", "must be from 1 to 4095, found 0"),
            ),
            (
                format!(r#"{{"errno": 4096, "allow": [{NEEDS}]}}"#),
                field("errno", "must be from 1 to 4095, found 4096"),
            ),
            (
                format!(r#"{{"default-action": "kill", "errno": 1, "allow": [{NEEDS}]}}"#),
                field("errno", "only allowed with \"default-action\": \"errno\""),
            ),
            (
                r#"{"allow": ["execve", "write"]}"#.to_string(),
                field(
                    "allow",
                    "must include \"exit_group\": berth calls execve, write and exit_group \
                     after installing the filter (to run the command, or to report why it \
                     could not)",
                ),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(profile(&text).unwrap_err(), want, "{text}");
        }
        let e = profile(&format!(r#"{{"errno": "EWHAT", "allow": [{NEEDS}]}}"#)).unwrap_err();
        assert_eq!(e.0.as_deref(), Some("errno"));
        assert!(e.1.starts_with("unknown errno \"EWHAT\": use a number or one of EPERM"));
    }

    #[test]
    fn the_seccomp_key() {
        let file = Path::new("/etc/berth/containers/app.json");
        let get = |text: &str| get_seccomp(&json::parse(text).unwrap(), file);
        assert_eq!(get(r#""default""#), Ok(Seccomp::Default));
        assert_eq!(get(r#""unconfined""#), Ok(Seccomp::Unconfined));
        assert_eq!(
            get(r#""/etc/p.json""#),
            Ok(Seccomp::File("/etc/p.json".into()))
        );
        assert_eq!(
            get(r#""../seccomp/p.json""#),
            Ok(Seccomp::File(
                "/etc/berth/containers/../seccomp/p.json".into()
            ))
        );
        let inline = get(&format!(r#"{{"allow": [{NEEDS}]}}"#)).unwrap();
        assert!(matches!(inline, Seccomp::Profile(_)));

        let err = |text: &str| {
            let e = get(text).unwrap_err();
            (e.field, e.reason)
        };
        assert_eq!(err(r#""""#), field("seccomp", "must not be empty"));
        assert_eq!(
            err("true"),
            field(
                "seccomp",
                "expected \"default\", \"unconfined\", a profile file or a profile, found a boolean"
            )
        );
        assert_eq!(
            err(r#"{"allow": ["x"]}"#),
            field("seccomp.allow[0]", "unknown system call \"x\"")
        );
    }
}
