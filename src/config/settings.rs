//! Container file keys for what `docker run` users expect besides the
//! basics: `sysctl` (namespaced kernel settings only) and `env-file`
//! (KEY=VALUE files read when the definition is loaded).

use std::path::{Path, PathBuf};

use super::fields::{
    field_error, file_error, get_array, get_int, get_path, get_str, quoted, wrong_type,
};
use super::network::Network;
use super::types::{ConfigError, MAX_LIST_LEN};
use crate::json::{Node, Value};

/// Most `sysctl` entries.
pub const MAX_SYSCTLS: usize = 256;
/// Most `env-file` files.
pub const MAX_ENV_FILES: usize = 16;

/// The IPC namespace's settings a container may set (its own IPC
/// namespace is always new).
const IPC_KEYS: &[&str] = &[
    "kernel.msgmax",
    "kernel.msgmnb",
    "kernel.msgmni",
    "kernel.sem",
    "kernel.shmall",
    "kernel.shmmax",
    "kernel.shmmni",
    "kernel.shm_rmid_forced",
];

/// The field name of one sysctl key in errors: `sysctl."net.ipv4.ip_forward"`.
fn sysctl_field(key: &str) -> String {
    format!("sysctl.{}", quoted(key))
}

/// Whether `key` names a setting of a namespace the container has its own
/// of: the IPC keys, fs.mqueue.*, net.*, kernel.domainname (UTS).
fn namespaced(key: &str) -> bool {
    IPC_KEYS.contains(&key)
        || key == "kernel.domainname"
        || key.starts_with("fs.mqueue.")
        || key.starts_with("net.")
}

/// A key is dot-separated components of letters, digits, '_' and '-'.
fn well_formed(key: &str) -> bool {
    key.len() <= 256
        && key.split('.').count() >= 2
        && key.split('.').all(|c| {
            !c.is_empty()
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        })
}

/// The `sysctl` key: an object of key to value (a string, or a number
/// written as text), in the file's order.
pub(super) fn get_sysctl(node: &Node, file: &Path) -> Result<Vec<(String, String)>, ConfigError> {
    let Value::Object(members) = &node.value else {
        return Err(field_error(file, "sysctl", wrong_type("an object", node)));
    };
    if members.len() > MAX_SYSCTLS {
        return Err(field_error(
            file,
            "sysctl",
            format!("at most {MAX_SYSCTLS} entries"),
        ));
    }
    let mut out = Vec::with_capacity(members.len());
    for (key, value) in members {
        let err = |reason: String| field_error(file, sysctl_field(key), reason);
        if !well_formed(key) {
            return Err(err(
                "expected a key like \"net.ipv4.ip_forward\": dot-separated letters, digits, '_' and '-'"
                    .to_string(),
            ));
        }
        if !namespaced(key) {
            return Err(err(format!(
                "not a namespaced setting: only {}, fs.mqueue.*, net.* and kernel.domainname may be set per container",
                IPC_KEYS.join(", ")
            )));
        }
        let text = match &value.value {
            Value::String(_) => get_str(value).map_err(err)?.to_string(),
            Value::Number(_) => get_int(value, i64::MIN, i64::MAX).map_err(err)?.to_string(),
            _ => return Err(err(wrong_type("a string", value))),
        };
        if text.is_empty() || text.contains('\0') {
            return Err(err("must not be empty or hold a NUL byte".to_string()));
        }
        out.push((key.clone(), text));
    }
    Ok(out)
}

/// net.* settings are the host's own with network "host": refused.
pub(super) fn check_sysctl_network(
    sysctl: &[(String, String)],
    network: &Network,
    file: &Path,
) -> Result<(), ConfigError> {
    match sysctl.iter().find(|(k, _)| k.starts_with("net.")) {
        Some((key, _)) if *network == Network::Host => Err(field_error(
            file,
            sysctl_field(key),
            "net.* settings need the container's own network: not with \"network\": \"host\""
                .to_string(),
        )),
        _ => Ok(()),
    }
}

/// The `env-file` key: one path or a list of them, relative ones from the
/// container file's directory.
pub(super) fn get_env_files(node: &Node, file: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let err = |field: String, reason: String| field_error(file, field, reason);
    match &node.value {
        Value::String(_) => Ok(vec![
            get_path(node, file).map_err(|r| err("env-file".to_string(), r))?,
        ]),
        Value::Array(_) => {
            let items =
                get_array(node, MAX_ENV_FILES).map_err(|r| err("env-file".to_string(), r))?;
            items
                .iter()
                .enumerate()
                .map(|(i, item)| get_path(item, file).map_err(|r| err(format!("env-file[{i}]"), r)))
                .collect()
        }
        _ => Err(err(
            "env-file".to_string(),
            wrong_type("a path or a list of paths", node),
        )),
    }
}

/// The variables of one env file's text: `KEY=VALUE` lines (the value
/// as written, up to the end of the line), blank lines and lines starting
/// with '#' skipped. A line with a key alone would take the value from the
/// client's environment in Docker; a daemon has none to give: refused.
/// Errors name `path` and the line.
pub fn parse_env_file(text: &str, path: &Path) -> Result<Vec<String>, ConfigError> {
    let mut vars = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw).trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let err = |reason: String| ConfigError {
            position: Some((n + 1, 1)),
            ..file_error(path, reason)
        };
        let Some((key, _)) = line.split_once('=') else {
            return Err(err(format!(
                "expected KEY=VALUE, found {} (a variable without a value is not taken from the daemon's environment)",
                quoted(line)
            )));
        };
        if key.is_empty() || key.chars().any(char::is_whitespace) {
            return Err(err(format!(
                "the variable name before '=' must not be empty or hold white space, found {}",
                quoted(line)
            )));
        }
        if line.contains('\0') {
            return Err(err("a NUL byte".to_string()));
        }
        if vars.len() == MAX_LIST_LEN {
            return Err(err(format!("more than {MAX_LIST_LEN} variables")));
        }
        vars.push(line.to_string());
    }
    Ok(vars)
}

/// `base` (from env files, in order) with `over` (the definition's `env`)
/// laid on top: a later entry replaces an earlier one with the same key,
/// in the earlier one's place.
pub fn merge_env(base: Vec<String>, over: &[String]) -> Vec<String> {
    let key = |e: &str| e.split_once('=').map_or(e, |(k, _)| k).to_string();
    let mut out: Vec<String> = Vec::with_capacity(base.len() + over.len());
    for entry in base.into_iter().chain(over.iter().cloned()) {
        let k = key(&entry);
        match out.iter_mut().find(|e| key(e) == k) {
            Some(slot) => *slot = entry,
            None => out.push(entry),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::super::testing::parse_app as parse;

    #[test]
    fn namespaced_sysctls_are_taken_and_others_refused() {
        let s = parse(
            r#","sysctl": {"net.ipv4.ip_forward": "1", "kernel.shmmax": 65536,
                "fs.mqueue.msg_max": "20", "kernel.sem": "250 32000 32 128",
                "kernel.domainname": "example.org"}"#,
        )
        .unwrap();
        assert_eq!(
            s.sysctl,
            [
                ("net.ipv4.ip_forward".to_string(), "1".to_string()),
                ("kernel.shmmax".to_string(), "65536".to_string()),
                ("fs.mqueue.msg_max".to_string(), "20".to_string()),
                ("kernel.sem".to_string(), "250 32000 32 128".to_string()),
                ("kernel.domainname".to_string(), "example.org".to_string()),
            ]
        );
        for (extra, field, reason) in [
            (
                r#","sysctl": {"kernel.hostname": "x"}"#,
                "sysctl.\"kernel.hostname\"",
                "not a namespaced setting",
            ),
            (
                r#","sysctl": {"vm.swappiness": "1"}"#,
                "sysctl.\"vm.swappiness\"",
                "not a namespaced setting",
            ),
            (
                r#","sysctl": {"net..x": "1"}"#,
                "sysctl.\"net..x\"",
                "expected a key like",
            ),
            (
                r#","sysctl": {"net/ipv4/ip_forward": "1"}"#,
                "sysctl.\"net/ipv4/ip_forward\"",
                "expected a key like",
            ),
            (
                r#","sysctl": {"net.ipv4.ip_forward": ""}"#,
                "sysctl.\"net.ipv4.ip_forward\"",
                "must not be empty",
            ),
            (
                r#","sysctl": {"net.ipv4.ip_forward": true}"#,
                "sysctl.\"net.ipv4.ip_forward\"",
                "expected a string",
            ),
            (r#","sysctl": []"#, "sysctl", "expected an object"),
            (
                r#","network": "host", "sysctl": {"kernel.shmmax": "1", "net.core.somaxconn": "1"}"#,
                "sysctl.\"net.core.somaxconn\"",
                "not with \"network\": \"host\"",
            ),
        ] {
            let e = parse(extra).unwrap_err();
            assert_eq!(e.field.as_deref(), Some(field), "{extra}");
            assert!(e.reason.contains(reason), "{extra}: {}", e.reason);
        }
        // With the host's network, the IPC ones are still the container's.
        assert!(parse(r#","network": "host", "sysctl": {"kernel.shmmax": "1"}"#).is_ok());
    }

    #[test]
    fn env_files_are_key_value_lines() {
        let p = Path::new("/etc/app.env");
        let vars = parse_env_file(
            "# a comment\n\nA=1\n  B=two words \nC=\nD=x=y\r\n   # indented comment\n",
            p,
        )
        .unwrap();
        assert_eq!(vars, ["A=1", "B=two words ", "C=", "D=x=y"]);
        let e = parse_env_file("A=1\n\nLONELY\n", p).unwrap_err();
        assert_eq!(e.position, Some((3, 1)));
        assert_eq!(e.file, p);
        assert!(e.reason.contains("\"LONELY\""), "{e}");
        assert!(e.to_string().starts_with("/etc/app.env: line 3 column 1: "));
        let e = parse_env_file("=x\n", p).unwrap_err();
        assert_eq!(e.position, Some((1, 1)));
        let e = parse_env_file("A B=x\n", p).unwrap_err();
        assert!(e.reason.contains("white space"), "{e}");
    }

    #[test]
    fn the_definition_overrides_env_files_in_place() {
        let base = vec!["A=1".to_string(), "B=2".to_string(), "A=3".to_string()];
        let over = ["B=def".to_string(), "C=new".to_string()];
        assert_eq!(merge_env(base, &over), ["A=3", "B=def", "C=new"]);
    }

    #[test]
    fn env_file_paths() {
        let s = parse(r#","env-file": "app.env""#).unwrap();
        assert_eq!(
            s.env_files,
            [PathBuf::from("/etc/berth/containers/app.env")]
        );
        let s = parse(r#","env-file": ["/a.env", "b.env"]"#).unwrap();
        assert_eq!(
            s.env_files,
            [
                PathBuf::from("/a.env"),
                PathBuf::from("/etc/berth/containers/b.env")
            ]
        );
        let e = parse(r#","env-file": 3"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("env-file"));
        let e = parse(r#","env-file": ["a", 3]"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("env-file[1]"));
    }
}
