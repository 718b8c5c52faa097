//! daemon.json: the defaults, each key read and checked, paths resolved
//! against the file's directory, and the derived socket and log paths.

use std::path::{Path, PathBuf};

use super::fields::{
    field_error, get_bool, get_path, get_size, get_str, get_uint, members, parse_top, quoted,
    unknown_key, validate_name, wrong_type,
};
use super::load::read_capped;
use super::types::{
    ConfigError, DaemonConfig, GIB, KIB, LogTarget, MAX_GID, MAX_SOCKET_PATH, MAX_TIMEOUT, MIB,
    SYSLOG_SOCKET, SocketGroup,
};
use crate::json::{Node, Value};

/// "off", "error", "warn", "info", "debug" or "trace".
pub fn parse_log_level(s: &str) -> Option<log::LevelFilter> {
    Some(match s {
        "off" => log::LevelFilter::Off,
        "error" => log::LevelFilter::Error,
        "warn" => log::LevelFilter::Warn,
        "info" => log::LevelFilter::Info,
        "debug" => log::LevelFilter::Debug,
        "trace" => log::LevelFilter::Trace,
        _ => return None,
    })
}

/// The options daemon.json gives when it is `{}` at /etc/berth/daemon.json.
pub fn default_daemon() -> DaemonConfig {
    let state_dir = PathBuf::from("/var/lib/berth");
    let run_dir = PathBuf::from("/run/berth");
    DaemonConfig {
        live_restore: false,
        containers_dir: PathBuf::from("/etc/berth/containers"),
        socket: run_dir.join("berth.sock"),
        log_dir: state_dir.join("logs"),
        state_dir,
        run_dir,
        log_level: log::LevelFilter::Info,
        log_max_size: MIB,
        log_max_files: 3,
        cgroup_parent: "berth".to_string(),
        shutdown_timeout: 10,
        socket_group: None,
        log_target: LogTarget::Stderr,
        networks: Vec::new(),
    }
}

/// Parses daemon.json; `file` names it in errors and relative paths in it
/// are taken from the directory that holds it.
pub fn parse_daemon(text: &str, file: &Path) -> Result<DaemonConfig, ConfigError> {
    let root = parse_top(text, file)?;
    let mut cfg = default_daemon();
    let mut socket = None;
    let mut log_dir = None;
    for (key, node) in members(&root) {
        let err = |reason: String| field_error(file, key, reason);
        match key.as_str() {
            "live-restore" => cfg.live_restore = get_bool(node).map_err(err)?,
            "containers-dir" => cfg.containers_dir = get_path(node, file).map_err(err)?,
            "state-dir" => cfg.state_dir = get_path(node, file).map_err(err)?,
            "run-dir" => cfg.run_dir = get_path(node, file).map_err(err)?,
            "socket" => socket = Some(get_path(node, file).map_err(err)?),
            "log-dir" => log_dir = Some(get_path(node, file).map_err(err)?),
            "log-level" => {
                let s = get_str(node).map_err(err)?;
                cfg.log_level = parse_log_level(s).ok_or_else(|| {
                    err(format!(
                        "expected one of off, error, warn, info, debug, trace, found {}",
                        quoted(s)
                    ))
                })?;
            }
            "log-max-size" => cfg.log_max_size = get_size(node, 4 * KIB, GIB).map_err(err)?,
            "log-max-files" => cfg.log_max_files = get_uint(node, 1, 100).map_err(err)? as u32,
            "cgroup-parent" => {
                let s = get_str(node).map_err(err)?;
                check_cgroup_parent(s).map_err(err)?;
                cfg.cgroup_parent = s.to_string();
            }
            "shutdown-timeout" => {
                cfg.shutdown_timeout = get_uint(node, 0, MAX_TIMEOUT).map_err(err)?;
            }
            "socket-group" => cfg.socket_group = Some(get_group(node).map_err(err)?),
            "log-target" => {
                cfg.log_target = parse_log_target(get_str(node).map_err(err)?).map_err(err)?
            }
            "networks" => cfg.networks = super::network::get_networks(node, file)?,
            _ => return Err(unknown_key(file, "", key)),
        }
    }
    let socket_field = if socket.is_some() {
        "socket"
    } else {
        "run-dir"
    };
    cfg.socket = socket.unwrap_or_else(|| cfg.run_dir.join("berth.sock"));
    cfg.log_dir = log_dir.unwrap_or_else(|| cfg.state_dir.join("logs"));
    if cfg.socket.as_os_str().len() > MAX_SOCKET_PATH {
        return Err(field_error(
            file,
            socket_field,
            format!(
                "socket path {} is longer than {MAX_SOCKET_PATH} bytes",
                cfg.socket.display()
            ),
        ));
    }
    Ok(cfg)
}

/// `log-target`: "stderr", "syslog", or "syslog:PATH" (an absolute path
/// to a syslog datagram socket other than /dev/log).
fn parse_log_target(s: &str) -> Result<LogTarget, String> {
    match s {
        "stderr" => Ok(LogTarget::Stderr),
        "syslog" => Ok(LogTarget::Syslog(PathBuf::from(SYSLOG_SOCKET))),
        _ => match s.strip_prefix("syslog:") {
            Some(path) if path.starts_with('/') && path.len() <= MAX_SOCKET_PATH => {
                Ok(LogTarget::Syslog(PathBuf::from(path)))
            }
            Some(path) => Err(format!(
                "syslog:PATH needs an absolute socket path of at most {MAX_SOCKET_PATH} bytes, found {}",
                quoted(path)
            )),
            None => Err(format!(
                "expected \"stderr\", \"syslog\" or \"syslog:PATH\", found {}",
                quoted(s)
            )),
        },
    }
}

/// Reads (at most `MAX_FILE_SIZE` bytes) and parses daemon.json.
pub fn read_daemon_file(path: &Path) -> Result<DaemonConfig, ConfigError> {
    let text = read_capped(path)?;
    parse_daemon(&text, path)
}

/// Where the daemon that read `path` listens: its socket as a start
/// would take it, or, when the file has an error in another key (a change
/// waiting for a reload that will refuse it), from the `socket` and
/// `run-dir` keys alone, so clients still reach the daemon that runs.
pub fn read_socket(path: &Path) -> Result<PathBuf, ConfigError> {
    let text = read_capped(path)?;
    let whole = parse_daemon(&text, path);
    let err = match whole {
        Ok(cfg) => return Ok(cfg.socket),
        Err(e) => e,
    };
    let Ok(root) = parse_top(&text, path) else {
        return Err(err);
    };
    let key = |name: &str| {
        members(&root)
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, n)| n)
    };
    let path_of = |name: &str| key(name).map(|n| get_path(n, path));
    match (path_of("socket"), path_of("run-dir")) {
        (Some(Ok(socket)), _) => Ok(socket),
        (None, Some(Ok(run))) => Ok(run.join("berth.sock")),
        (None, None) => Ok(default_daemon().socket),
        _ => Err(err),
    }
}

/// A group name, or its number (a JSON number or a string of digits).
fn get_group(node: &Node) -> Result<SocketGroup, String> {
    match node.value {
        Value::String(_) => {}
        Value::Number(_) => return Ok(SocketGroup::Id(get_uint(node, 0, MAX_GID)? as u32)),
        _ => return Err(wrong_type("a group name or number", node)),
    }
    let s = get_str(node)?;
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return match s.parse::<u64>() {
            Ok(gid) if gid <= MAX_GID => Ok(SocketGroup::Id(gid as u32)),
            _ => Err(format!(
                "group number must be from 0 to {MAX_GID}, found {s}"
            )),
        };
    }
    // What /etc/group can hold as a name: no separators, no blanks.
    let bad = |c: char| c == ':' || c == ',' || c.is_whitespace() || c.is_control();
    if s.is_empty() || s.len() > 256 || s.starts_with('-') || s.contains(bad) {
        return Err(format!("not a group name or number: {}", quoted(s)));
    }
    Ok(SocketGroup::Name(s.to_string()))
}

/// Each '/'-separated component a valid name; one leading '/' allowed.
fn check_cgroup_parent(s: &str) -> Result<(), String> {
    let relative = s.strip_prefix('/').unwrap_or(s);
    if relative.is_empty() {
        return Err(format!("must name a cgroup, found {}", quoted(s)));
    }
    for component in relative.split('/') {
        if component.is_empty() {
            return Err(format!(
                "{} has an empty component (\"//\" or a trailing '/')",
                quoted(s)
            ));
        }
        validate_name(component)?;
    }
    Ok(())
}
#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::config::testing::{TempDir, field};
    use crate::config::types::MAX_FILE_SIZE;

    const DAEMON_FILE: &str = "/etc/berth/daemon.json";

    fn daemon(text: &str) -> DaemonConfig {
        parse_daemon(text, Path::new(DAEMON_FILE)).unwrap()
    }

    #[test]
    fn clients_find_the_socket_past_an_error_in_another_key() {
        let tmp = TempDir::new("read-socket");
        let file = tmp.path().join("daemon.json");
        let socket = |text: &str| {
            fs::write(&file, text).unwrap();
            read_socket(&file)
        };
        let bad = r#""networks": {"lan": {"bridge": "b0", "subnet": "10.1.0.1/24"}}"#;
        assert_eq!(
            socket(&format!(r#"{{"run-dir": "/r", {bad}}}"#)).unwrap(),
            Path::new("/r/berth.sock")
        );
        assert_eq!(
            socket(&format!(r#"{{"socket": "s.sock", {bad}}}"#)).unwrap(),
            tmp.path().join("s.sock")
        );
        assert_eq!(
            socket(&format!("{{{bad}}}")).unwrap(),
            default_daemon().socket
        );
        // The file's own socket when it is whole; its error when the
        // socket itself is what is wrong, or the file is no JSON.
        assert_eq!(
            socket(r#"{"socket": "/x.sock"}"#).unwrap(),
            Path::new("/x.sock")
        );
        let e = socket(&format!(r#"{{"socket": 3, {bad}}}"#)).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("socket"), "{e}");
        assert!(socket(r#"{"socket": "#).is_err());
    }

    fn daemon_err(text: &str) -> (Option<String>, String) {
        let e = parse_daemon(text, Path::new(DAEMON_FILE)).expect_err(text);
        assert_eq!(e.file, Path::new(DAEMON_FILE));
        (e.field, e.reason)
    }

    #[test]
    fn daemon_defaults() {
        let cfg = default_daemon();
        assert_eq!(daemon("{}"), cfg);
        assert_eq!(daemon("\u{feff} {\n}\n"), cfg);
        assert!(!cfg.live_restore);
        assert_eq!(cfg.containers_dir, Path::new("/etc/berth/containers"));
        assert_eq!(cfg.state_dir, Path::new("/var/lib/berth"));
        assert_eq!(cfg.run_dir, Path::new("/run/berth"));
        assert_eq!(cfg.socket, Path::new("/run/berth/berth.sock"));
        assert_eq!(cfg.log_dir, Path::new("/var/lib/berth/logs"));
        assert_eq!(cfg.log_level, log::LevelFilter::Info);
        assert_eq!(cfg.log_max_size, 1_048_576);
        assert_eq!(cfg.log_max_files, 3);
        assert_eq!(cfg.cgroup_parent, "berth");
        assert_eq!(cfg.shutdown_timeout, 10);
    }

    #[test]
    fn daemon_every_key() {
        let cfg = daemon(
            r#"{
                "live-restore": true,
                "containers-dir": "/c",
                "state-dir": "/s",
                "run-dir": "/r",
                "socket": "/x/b.sock",
                "log-dir": "/l",
                "log-level": "debug",
                "log-max-size": "64k",
                "log-max-files": 7,
                "cgroup-parent": "/system.slice/berth",
                "shutdown-timeout": 0,
                "socket-group": "berth",
                "log-target": "syslog"
            }"#,
        );
        assert_eq!(
            cfg,
            DaemonConfig {
                live_restore: true,
                containers_dir: "/c".into(),
                state_dir: "/s".into(),
                run_dir: "/r".into(),
                socket: "/x/b.sock".into(),
                log_dir: "/l".into(),
                log_level: log::LevelFilter::Debug,
                log_max_size: 65536,
                log_max_files: 7,
                cgroup_parent: "/system.slice/berth".into(),
                shutdown_timeout: 0,
                socket_group: Some(SocketGroup::Name("berth".into())),
                log_target: LogTarget::Syslog("/dev/log".into()),
                networks: Vec::new(),
            }
        );
        for (text, group) in [
            ("0", SocketGroup::Id(0)),
            ("4242", SocketGroup::Id(4242)),
            ("\"4242\"", SocketGroup::Id(4242)),
            ("\"docker-users\"", SocketGroup::Name("docker-users".into())),
            ("\"_berth.1\"", SocketGroup::Name("_berth.1".into())),
        ] {
            let cfg = daemon(&format!(r#"{{"socket-group": {text}}}"#));
            assert_eq!(cfg.socket_group, Some(group), "{text}");
        }
        // Derived defaults follow the configured directories.
        let cfg = daemon(r#"{"run-dir": "/r", "state-dir": "/s"}"#);
        assert_eq!(cfg.socket, Path::new("/r/berth.sock"));
        assert_eq!(cfg.log_dir, Path::new("/s/logs"));
        // Relative paths are taken from the file's directory.
        let cfg = parse_daemon(
            r#"{"containers-dir": "containers", "state-dir": "../state", "run-dir": "/abs"}"#,
            Path::new("/opt/berth/etc/daemon.json"),
        )
        .unwrap();
        assert_eq!(cfg.containers_dir, Path::new("/opt/berth/etc/containers"));
        assert_eq!(cfg.state_dir, Path::new("/opt/berth/etc/../state"));
        assert_eq!(cfg.run_dir, Path::new("/abs"));
        for (level, filter) in [
            ("off", log::LevelFilter::Off),
            ("error", log::LevelFilter::Error),
            ("warn", log::LevelFilter::Warn),
            ("trace", log::LevelFilter::Trace),
        ] {
            let cfg = daemon(&format!(r#"{{"log-level": "{level}"}}"#));
            assert_eq!(cfg.log_level, filter);
        }
        assert_eq!(daemon(r#"{"log-max-size": 4096}"#).log_max_size, 4096);
        assert_eq!(daemon(r#"{"log-max-size": 1.5e6}"#).log_max_size, 1_500_000);
        assert_eq!(daemon(r#"{"log-max-size": "1g"}"#).log_max_size, GIB);
        assert_eq!(daemon(r#"{"log-max-files": 1}"#).log_max_files, 1);
        assert_eq!(daemon(r#"{"log-max-files": 100}"#).log_max_files, 100);
        assert_eq!(
            daemon(r#"{"shutdown-timeout": 3600}"#).shutdown_timeout,
            3600
        );
        assert_eq!(
            daemon(r#"{"cgroup-parent": "a/b.c/d-e"}"#).cgroup_parent,
            "a/b.c/d-e"
        );
    }

    #[test]
    fn daemon_bad_values() {
        assert_eq!(
            daemon_err(r#"{"live_restore": true}"#),
            field("live_restore", "unknown key")
        );
        assert_eq!(
            daemon_err(r#"{"socket": "/s", "bogus": 1}"#),
            field("bogus", "unknown key")
        );
        assert_eq!(
            daemon_err(r#"{"live-restore": "yes"}"#),
            field("live-restore", "expected a boolean, found a string")
        );
        assert_eq!(
            daemon_err(r#"{"state-dir": 5}"#),
            field("state-dir", "expected a string, found a number")
        );
        assert_eq!(
            daemon_err(r#"{"run-dir": ""}"#),
            field("run-dir", "must not be empty")
        );
        assert_eq!(
            daemon_err(r#"{"log-dir": null}"#),
            field("log-dir", "expected a string, found null")
        );
        assert_eq!(
            daemon_err(r#"{"log-level": "verbose"}"#),
            field(
                "log-level",
                "expected one of off, error, warn, info, debug, trace, found \"verbose\""
            )
        );
        assert_eq!(
            daemon_err(r#"{"log-max-size": "4095"}"#),
            field("log-max-size", "must be at least 4096 bytes, found 4095")
        );
        assert_eq!(
            daemon_err(r#"{"log-max-size": "2g"}"#),
            field(
                "log-max-size",
                "must be at most 1073741824 bytes, found 2147483648"
            )
        );
        assert_eq!(
            daemon_err(r#"{"log-max-size": 4096.5}"#),
            field(
                "log-max-size",
                "expected a whole number of bytes, found 4096.5"
            )
        );
        assert_eq!(
            daemon_err(r#"{"log-max-size": true}"#),
            field(
                "log-max-size",
                "expected a size like \"64m\" or a number of bytes, found a boolean"
            )
        );
        assert_eq!(
            daemon_err(r#"{"log-max-files": 0}"#),
            field("log-max-files", "must be from 1 to 100, found 0")
        );
        assert_eq!(
            daemon_err(r#"{"log-max-files": 101}"#),
            field("log-max-files", "must be from 1 to 100, found 101")
        );
        assert_eq!(
            daemon_err(r#"{"log-max-files": -1}"#),
            field("log-max-files", "must be from 1 to 100, found -1")
        );
        assert_eq!(
            daemon_err(r#"{"log-max-files": 2.5}"#),
            field("log-max-files", "expected an integer, found 2.5")
        );
        assert_eq!(
            daemon_err(r#"{"log-max-files": "3"}"#),
            field("log-max-files", "expected an integer, found a string")
        );
        assert_eq!(
            daemon_err(r#"{"shutdown-timeout": 3601}"#),
            field("shutdown-timeout", "must be from 0 to 3600, found 3601")
        );
        for bad in ["", "/", "a//b", "a/", "../x", "a/.b", "a/b c"] {
            let (f, _) = daemon_err(&format!(r#"{{"cgroup-parent": "{bad}"}}"#));
            assert_eq!(f.as_deref(), Some("cgroup-parent"), "{bad}");
        }
        assert_eq!(
            daemon_err(r#"{"cgroup-parent": "a/../b"}"#),
            field("cgroup-parent", "name \"..\" must not start with '.'")
        );
        assert_eq!(
            daemon_err(r#"{"socket-group": -1}"#),
            field("socket-group", "must be from 0 to 4294967294, found -1")
        );
        assert_eq!(
            daemon_err(r#"{"socket-group": "4294967295"}"#),
            field(
                "socket-group",
                "group number must be from 0 to 4294967294, found 4294967295"
            )
        );
        assert_eq!(
            daemon_err(r#"{"socket-group": true}"#),
            field(
                "socket-group",
                "expected a group name or number, found a boolean"
            )
        );
        for bad in [
            r#""""#,
            r#""a:b""#,
            r#""a b""#,
            r#""a,b""#,
            r#""-x""#,
            r#""a\nb""#,
        ] {
            let (f, reason) = daemon_err(&format!(r#"{{"socket-group": {bad}}}"#));
            assert_eq!(f.as_deref(), Some("socket-group"), "{bad:?}");
            assert!(reason.starts_with("not a group name or number"), "{reason}");
        }
        let long = format!(r#"{{"run-dir": "/{}"}}"#, "r".repeat(100));
        assert_eq!(daemon_err(&long).0.as_deref(), Some("run-dir"));
        let long = format!(r#"{{"socket": "/{}"}}"#, "s".repeat(107));
        assert_eq!(daemon_err(&long).0.as_deref(), Some("socket"));
    }

    #[test]
    fn daemon_file_shape() {
        let at = |text: &str| {
            let e = parse_daemon(text, Path::new(DAEMON_FILE)).unwrap_err();
            (e.field, e.position, e.reason)
        };
        assert_eq!(at(""), (None, None, "empty file".to_string()));
        assert_eq!(at(" \n\t\n"), (None, None, "empty file".to_string()));
        assert_eq!(
            at("[]"),
            (
                None,
                Some((1, 1)),
                "expected an object at the top level, found an array".to_string()
            )
        );
        assert_eq!(
            at("{\n  \"live-restore\": true\n  \"socket\": \"/s\"\n}"),
            (None, Some((3, 3)), "expected ',' or '}'".to_string())
        );
        assert_eq!(
            at("{\"socket\": \"/a\", \"socket\": \"/b\"}"),
            (None, Some((1, 18)), "duplicate key \"socket\"".to_string())
        );
        assert_eq!(
            at("{\"live-restore\": yes}"),
            (
                None,
                Some((1, 18)),
                "expected a value, found 'yes' (strings need double quotes)".to_string()
            )
        );
        let e = parse_daemon("{\n\"a\": [}", Path::new(DAEMON_FILE)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "/etc/berth/daemon.json: line 2 column 7: expected a value, found '}'"
        );
        let e = parse_daemon("{\"log-max-files\": 0}", Path::new(DAEMON_FILE)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "/etc/berth/daemon.json: field \"log-max-files\": must be from 1 to 100, found 0"
        );
    }

    #[test]
    fn daemon_file() {
        let tmp = TempDir::new("daemon");
        let path = tmp.0.join("daemon.json");
        fs::write(&path, r#"{"containers-dir": "c", "log-level": "warn"}"#).unwrap();
        let cfg = read_daemon_file(&path).unwrap();
        assert_eq!(cfg.containers_dir, tmp.0.join("c"));
        assert_eq!(cfg.log_level, log::LevelFilter::Warn);

        fs::write(&path, format!("{{}}{}", " ".repeat(MAX_FILE_SIZE as usize))).unwrap();
        let e = read_daemon_file(&path).unwrap_err();
        assert_eq!(e.reason, "file is larger than 65536 bytes");
        fs::write(&path, "").unwrap();
        assert_eq!(read_daemon_file(&path).unwrap_err().reason, "empty file");
        let e = read_daemon_file(&tmp.0.join("missing.json")).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{}/missing.json: no such file or directory",
                tmp.0.display()
            )
        );
        assert_eq!(
            read_daemon_file(&tmp.0).unwrap_err().reason,
            "not a regular file"
        );
    }
}
