//! One container definition (containers-dir/NAME.json): each key read and
//! checked, the command, environment, user and mounts, and the canonical
//! text and its hash. Text in, spec out: the host is looked at by `load`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::fields::get_int;
use super::fields::{
    field_error, get_array, get_bool, get_path, get_size, get_str, get_uint, members, number_text,
    parse_top, quoted, unknown_key, validate_name, wrong_type,
};
use super::health;
use super::image;
use super::network::{self, Network};
use super::privileges;
use super::seccomp_profile::get_seccomp;
use super::settings;
use super::types::CapList;
use super::types::{
    ConfigError, ContainerSpec, Id, KIB, MAX_LIST_LEN, MAX_MOUNTS, MAX_PIDS, MAX_RESTART_RETRIES,
    MAX_TIMEOUT, MIB, Mount, MountKind, OnUnhealthy, RestartPolicy, User,
};
use crate::json::{self, Node, Value};
use crate::signals::{MAX_SIGNAL, parse_signal};
use crate::sys::seccomp::Seccomp;

/// Parses one container definition; `name` is the file's stem. Relative
/// paths are taken from the directory of `file`, which is only named, never
/// read: `check_container_host` looks at the host.
pub fn parse_container(name: &str, text: &str, file: &Path) -> Result<ContainerSpec, ConfigError> {
    validate_name(name).map_err(|reason| field_error(file, "name", reason))?;
    let mut root = parse_top(text, file)?;
    let mut spec = ContainerSpec {
        name: name.to_string(),
        file: file.to_path_buf(),
        rootfs: PathBuf::new(),
        image: None,
        writable: None,
        verity: None,
        command: Vec::new(),
        env: Vec::new(),
        workdir: "/".to_string(),
        hostname: String::new(),
        user: None,
        cap_add: CapList::default(),
        cap_drop: CapList::default(),
        rlimits: Vec::new(),
        oom_score_adj: 0,
        autostart: true,
        restart: RestartPolicy::No,
        readonly_rootfs: false,
        mounts: Vec::new(),
        devices: Vec::new(),
        network: Network::None,
        address: None,
        ports: Vec::new(),
        memory: None,
        pids: None,
        cpus_milli: None,
        stop_signal: libc::SIGTERM,
        stop_timeout: 10,
        seccomp: Seccomp::Default,
        init: false,
        sysctl: Vec::new(),
        env_files: Vec::new(),
        etc_files: true,
        healthcheck: None,
        on_unhealthy: OnUnhealthy::None,
        depends_on: Vec::new(),
        hash: 0,
        net_mix: 0,
        canonical: String::new(),
    };
    let mut hostname = None;
    for (key, node) in members(&root) {
        let err = |reason: String| field_error(file, key, reason);
        match key.as_str() {
            "rootfs" => spec.rootfs = get_path(node, file).map_err(err)?,
            "image" => spec.image = Some(get_path(node, file).map_err(err)?),
            "writable" => {
                spec.writable =
                    Some(image::parse_writable(get_str(node).map_err(err)?).map_err(err)?);
            }
            "verity" => spec.verity = Some(image::get_verity(node, file)?),
            "command" => spec.command = get_command(node, file)?,
            "env" => spec.env = get_env(node, file)?,
            "workdir" => {
                let s = get_str(node).map_err(err)?;
                if !s.starts_with('/') {
                    return Err(err("must be an absolute path".to_string()));
                }
                spec.workdir = s.to_string();
            }
            "hostname" => {
                let s = get_str(node).map_err(err)?;
                if !is_hostname(s) {
                    return Err(err(format!(
                        "expected 1 to 64 letters, digits, '-' and '.', found {}",
                        quoted(s)
                    )));
                }
                hostname = Some(s.to_string());
            }
            "user" => spec.user = Some(parse_user(get_str(node).map_err(err)?).map_err(err)?),
            "autostart" => spec.autostart = get_bool(node).map_err(err)?,
            "restart" => spec.restart = parse_restart(get_str(node).map_err(err)?).map_err(err)?,
            "readonly-rootfs" => spec.readonly_rootfs = get_bool(node).map_err(err)?,
            "cap-add" => spec.cap_add = privileges::get_caps(node, file, key)?,
            "cap-drop" => spec.cap_drop = privileges::get_caps(node, file, key)?,
            "rlimits" => spec.rlimits = privileges::get_rlimits(node, file)?,
            "oom-score-adj" => spec.oom_score_adj = get_int(node, -1000, 1000).map_err(err)? as i32,
            "mounts" => spec.mounts = get_mounts(node, file)?,
            "devices" => spec.devices = super::devices::get_devices(node, file)?,
            "network" => spec.network = network::get_network_key(node, file, name)?,
            "address" => spec.address = Some(network::get_address(node).map_err(err)?),
            "ports" => spec.ports = network::get_ports(node, file)?,
            "memory" => spec.memory = Some(get_size(node, MIB, u64::MAX).map_err(err)?),
            "pids" => spec.pids = Some(get_uint(node, 1, MAX_PIDS).map_err(err)?),
            "cpus" => spec.cpus_milli = Some(get_cpus(node).map_err(err)?),
            "stop-signal" => spec.stop_signal = get_signal(node).map_err(err)?,
            "stop-timeout" => spec.stop_timeout = get_uint(node, 0, MAX_TIMEOUT).map_err(err)?,
            "seccomp" => spec.seccomp = get_seccomp(node, file)?,
            "init" => spec.init = get_bool(node).map_err(err)?,
            "sysctl" => spec.sysctl = settings::get_sysctl(node, file)?,
            "env-file" => spec.env_files = settings::get_env_files(node, file)?,
            "etc-files" => spec.etc_files = get_bool(node).map_err(err)?,
            "healthcheck" => spec.healthcheck = Some(health::get_healthcheck(node, file)?),
            "on-unhealthy" => {
                spec.on_unhealthy =
                    health::parse_on_unhealthy(get_str(node).map_err(err)?).map_err(err)?;
            }
            "depends-on" => spec.depends_on = super::depends::get_depends_on(node, file, name)?,
            _ => return Err(unknown_key(file, "", key)),
        }
    }
    image::check_root_keys(&spec, &root, file)?;
    if root.get("command").is_none() {
        return Err(field_error(file, "command", "required key is missing"));
    }
    privileges::check_caps(spec.cap_add, spec.cap_drop, file)?;
    if spec.on_unhealthy == OnUnhealthy::Restart && spec.healthcheck.is_none() {
        return Err(field_error(
            file,
            "on-unhealthy",
            "needs a \"healthcheck\" to act on",
        ));
    }
    settings::check_sysctl_network(&spec.sysctl, &spec.network, file)?;
    network::check_keys(&spec.network, spec.address, &spec.ports, file)?;
    // A container sharing another's namespace starts after it: the owner
    // is one more thing it depends on (its own `depends-on` text is left
    // as written).
    if let Network::Container(owner) = &spec.network
        && !spec.depends_on.iter().any(|d| d.name == *owner)
    {
        spec.depends_on.push(super::depends::Dependency {
            name: owner.clone(),
            condition: super::depends::Condition::Running,
        });
    }
    spec.hostname = hostname.unwrap_or_else(|| {
        if is_hostname(name) {
            name.to_string()
        } else {
            "berth".to_string()
        }
    });
    // A relative rootfs or image is written resolved, so the canonical text
    // means the same wherever it is parsed again, and moving the file
    // changes the hash.
    image::resolve_paths(&mut root, &spec);
    spec.canonical = json::to_canonical(&root);
    spec.hash = fnv1a64(spec.canonical.as_bytes());
    Ok(spec)
}

/// "no", "on-failure", "on-failure:N" (N from 1 to 1000000), "always",
/// "unless-stopped".
pub fn parse_restart(s: &str) -> Result<RestartPolicy, String> {
    match s {
        "no" => return Ok(RestartPolicy::No),
        "on-failure" => return Ok(RestartPolicy::OnFailure { max: None }),
        "always" => return Ok(RestartPolicy::Always),
        "unless-stopped" => return Ok(RestartPolicy::UnlessStopped),
        _ => {}
    }
    if let Some(n) = s.strip_prefix("on-failure:") {
        let max = Some(n)
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|n| n.parse::<u32>().ok())
            .filter(|n| (1..=MAX_RESTART_RETRIES).contains(n));
        return match max {
            Some(max) => Ok(RestartPolicy::OnFailure { max: Some(max) }),
            None => Err(format!(
                "the retry count in {} must be a number from 1 to {MAX_RESTART_RETRIES}",
                quoted(s)
            )),
        };
    }
    Err(format!(
        "expected \"no\", \"on-failure\", \"on-failure:N\", \"always\" or \"unless-stopped\", found {}",
        quoted(s)
    ))
}

/// The keys a definition may leave out and what berth then does: a value
/// is what leaving the key out means (a unit test checks that writing it
/// parses to the same definition); null means "none" or "unlimited".
const DEFAULTS: &str = r#"{"address": null, "autostart": true, "cap-add": [],
    "cap-drop": [], "cpus": null, "depends-on": [], "devices": [], "env": [],
    "env-file": [], "etc-files": true, "healthcheck": null, "init": false,
    "memory": null, "mounts": [], "network": "none", "on-unhealthy": "none",
    "oom-score-adj": 0, "pids": null, "ports": [], "readonly-rootfs": false,
    "restart": "no", "rlimits": {}, "seccomp": "default", "stop-signal": "SIGTERM",
    "stop-timeout": 10, "sysctl": {}, "user": null, "workdir": "/"}"#;

/// The definition as it runs: its canonical text with every key it
/// leaves out at its default, `hostname` as chosen, and `env` with the
/// env files' variables merged in (what `inspect` shows as `config`).
pub fn effective(spec: &ContainerSpec) -> String {
    let Ok(Node {
        value: Value::Object(members),
        ..
    }) = json::parse(&spec.canonical)
    else {
        return spec.canonical.clone();
    };
    // (key, canonical text of the value), then sorted by key as
    // `json::to_canonical` sorts.
    let mut shown: Vec<(&str, String)> = members
        .iter()
        .filter(|(k, _)| k != "hostname" && k != "env")
        .map(|(k, n)| (k.as_str(), json::to_canonical(n)))
        .collect();
    for (key, text) in default_members() {
        if key != "env" && !members.iter().any(|(k, _)| k == key) {
            shown.push((key, text.clone()));
        }
    }
    let mut hostname = String::new();
    json::escape_into(&mut hostname, &spec.hostname);
    shown.push(("hostname", hostname));
    let mut env = String::from("[");
    for (i, v) in spec.env.iter().enumerate() {
        if i > 0 {
            env.push(',');
        }
        json::escape_into(&mut env, v);
    }
    env.push(']');
    shown.push(("env", env));
    shown.sort_by(|a, b| a.0.cmp(b.0));
    let mut out = String::with_capacity(shown.iter().map(|(k, v)| k.len() + v.len() + 4).sum());
    out.push('{');
    for (i, (key, text)) in shown.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        json::escape_into(&mut out, key);
        out.push(':');
        out.push_str(text);
    }
    out.push('}');
    out
}

/// DEFAULTS' members with the canonical text of each value, parsed once.
fn default_members() -> &'static [(String, String)] {
    static MEMBERS: std::sync::OnceLock<Vec<(String, String)>> = std::sync::OnceLock::new();
    MEMBERS.get_or_init(|| match json::parse(DEFAULTS) {
        Ok(Node {
            value: Value::Object(members),
            ..
        }) => members
            .into_iter()
            .map(|(k, n)| (k, json::to_canonical(&n)))
            .collect(),
        _ => Vec::new(),
    })
}

/// FNV-1a, 64 bits: the hash of a definition's canonical text.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Thousandths of a CPU: more than 0 and at most 1024 CPUs, at least 1.
fn get_cpus(node: &Node) -> Result<u32, String> {
    let Value::Number(n) = &node.value else {
        return Err(wrong_type("a number", node));
    };
    let cpus = n.as_f64();
    // The kernel takes a CFS quota of 1 ms at the least, 1% of the 100 ms
    // period berth uses.
    if !(0.01..=1024.0).contains(&cpus) {
        return Err(format!(
            "must be at least 0.01 and at most 1024, found {}",
            number_text(n)
        ));
    }
    Ok((cpus * 1000.0).round() as u32)
}

fn get_signal(node: &Node) -> Result<i32, String> {
    match &node.value {
        Value::String(_) => {
            let s = get_str(node)?;
            parse_signal(s).ok_or_else(|| format!("unknown signal {}", quoted(s)))
        }
        Value::Number(n) => match n.as_u64() {
            Some(v) if (1..=MAX_SIGNAL as u64).contains(&v) => Ok(v as i32),
            _ => Err(format!(
                "signal numbers are 1 to {MAX_SIGNAL}, found {}",
                number_text(n)
            )),
        },
        _ => Err(wrong_type("a signal name or number", node)),
    }
}

fn get_command(node: &Node, file: &Path) -> Result<Vec<String>, ConfigError> {
    let items = get_array(node, MAX_LIST_LEN).map_err(|r| field_error(file, "command", r))?;
    if items.is_empty() {
        return Err(field_error(file, "command", "must not be empty"));
    }
    let mut command = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let s = get_str(item).map_err(|r| field_error(file, format!("command[{i}]"), r))?;
        if i == 0 && s.is_empty() {
            return Err(field_error(file, "command[0]", "must not be empty"));
        }
        command.push(s.to_string());
    }
    Ok(command)
}

fn get_env(node: &Node, file: &Path) -> Result<Vec<String>, ConfigError> {
    let items = get_array(node, MAX_LIST_LEN).map_err(|r| field_error(file, "env", r))?;
    let mut env = Vec::with_capacity(items.len());
    let mut keys = HashSet::new();
    for (i, item) in items.iter().enumerate() {
        let err = |reason: String| field_error(file, format!("env[{i}]"), reason);
        let s = get_str(item).map_err(err)?;
        let Some((key, _)) = s.split_once('=') else {
            return Err(err(format!("expected KEY=value, found {}", quoted(s))));
        };
        if key.is_empty() {
            return Err(err(format!(
                "variable name before '=' must not be empty, found {}",
                quoted(s)
            )));
        }
        if !keys.insert(key) {
            return Err(err(format!("duplicate variable {}", quoted(key))));
        }
        env.push(s.to_string());
    }
    Ok(env)
}

/// "user" or "user:group", each a name or a number (below 4294967295);
/// a uid alone means gid = uid, a name alone its group in /etc/passwd.
pub fn parse_user(s: &str) -> Result<User, String> {
    let id = |part: &str| -> Option<Id> {
        if !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()) {
            return part
                .parse::<u32>()
                .ok()
                .filter(|&v| v != u32::MAX)
                .map(Id::Number);
        }
        let name_ok = (1..=256).contains(&part.len())
            && !part.starts_with('-')
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-');
        name_ok.then(|| Id::Name(part.to_string()))
    };
    let parsed = match s.split_once(':') {
        Some((u, g)) => id(u).zip(id(g)).map(|(user, group)| User {
            user,
            group: Some(group),
        }),
        None => id(s).map(|user| User { user, group: None }),
    };
    parsed.ok_or_else(|| {
        format!(
            "expected \"user\" or \"user:group\", each a name (letters, digits, '_', '.', '-') or a number below 4294967295, found {}",
            quoted(s)
        )
    })
}

/// Letters, digits, '-' and '.', 1 to 64 bytes (the kernel's limit).
fn is_hostname(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// An absolute path other than "/" without empty, "." or ".." components.
fn check_target(s: &str) -> Result<(), String> {
    let Some(rest) = s.strip_prefix('/') else {
        return Err(format!("must be an absolute path, found {}", quoted(s)));
    };
    if rest.is_empty() {
        return Err("must not be \"/\"".to_string());
    }
    if rest
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(format!(
            "must be a normalised path (no empty, \".\" or \"..\" components), found {}",
            quoted(s)
        ));
    }
    Ok(())
}

fn get_mounts(node: &Node, file: &Path) -> Result<Vec<Mount>, ConfigError> {
    let items = get_array(node, MAX_MOUNTS).map_err(|r| field_error(file, "mounts", r))?;
    let mut mounts = Vec::with_capacity(items.len());
    let mut targets = HashSet::new();
    for (i, item) in items.iter().enumerate() {
        let base = format!("mounts[{i}]");
        let err = |key: &str, reason: String| field_error(file, format!("{base}.{key}"), reason);
        let Value::Object(fields) = &item.value else {
            return Err(field_error(file, &base, wrong_type("an object", item)));
        };
        let mut tmpfs = false;
        let mut source = None;
        let mut target = None;
        let mut readonly = false;
        let mut size = None;
        for (key, value) in fields {
            let key_err = |reason: String| err(key, reason);
            match key.as_str() {
                "type" => {
                    tmpfs = match get_str(value).map_err(key_err)? {
                        "bind" => false,
                        "tmpfs" => true,
                        s => {
                            return Err(key_err(format!(
                                "expected \"bind\" or \"tmpfs\", found {}",
                                quoted(s)
                            )));
                        }
                    }
                }
                "source" => source = Some(get_str(value).map_err(key_err)?),
                "target" => target = Some(get_str(value).map_err(key_err)?),
                "readonly" => readonly = get_bool(value).map_err(key_err)?,
                "size" => size = Some(get_size(value, 4 * KIB, u64::MAX).map_err(key_err)?),
                _ => return Err(unknown_key(file, &format!("{base}."), key)),
            }
        }
        let kind = if tmpfs {
            if source.is_some() {
                return Err(err("source", "not allowed for tmpfs mounts".to_string()));
            }
            MountKind::Tmpfs { size }
        } else {
            if size.is_some() {
                return Err(err("size", "only allowed for tmpfs mounts".to_string()));
            }
            let source =
                source.ok_or_else(|| err("source", "required key is missing".to_string()))?;
            if !source.starts_with('/') {
                return Err(err(
                    "source",
                    format!("must be an absolute path, found {}", quoted(source)),
                ));
            }
            MountKind::Bind {
                source: PathBuf::from(source),
            }
        };
        let target = target.ok_or_else(|| err("target", "required key is missing".to_string()))?;
        check_target(target).map_err(|r| err("target", r))?;
        if !targets.insert(target) {
            return Err(err(
                "target",
                format!("duplicate target {}", quoted(target)),
            ));
        }
        mounts.push(Mount {
            kind,
            target: target.to_string(),
            readonly,
        });
    }
    Ok(mounts)
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::fields::printable;
    use crate::config::testing::field;

    const CONTAINER_FILE: &str = "/etc/berth/containers/app.json";

    fn spec(text: &str) -> ContainerSpec {
        parse_container("app", text, Path::new(CONTAINER_FILE)).unwrap()
    }

    fn spec_err(text: &str) -> (Option<String>, String) {
        let e = parse_container("app", text, Path::new(CONTAINER_FILE)).expect_err(text);
        assert_eq!(e.file, Path::new(CONTAINER_FILE));
        (e.field, e.reason)
    }

    /// A container file with `extra` members added to the required ones.
    fn with(extra: &str) -> String {
        format!("{{\"rootfs\": \"/srv/app\", \"command\": [\"/bin/app\"]{extra}}}")
    }

    #[test]
    fn name_is_checked_first() {
        let e = parse_container("../x", "not json", Path::new(CONTAINER_FILE)).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("name"));
        assert_eq!(e.reason, "name \"../x\" may only contain A-Z a-z 0-9 _ . -");
    }

    #[test]
    fn restart_policies() {
        for (text, policy) in [
            ("no", RestartPolicy::No),
            ("on-failure", RestartPolicy::OnFailure { max: None }),
            ("on-failure:1", RestartPolicy::OnFailure { max: Some(1) }),
            ("on-failure:5", RestartPolicy::OnFailure { max: Some(5) }),
            (
                "on-failure:1000000",
                RestartPolicy::OnFailure {
                    max: Some(1_000_000),
                },
            ),
            ("always", RestartPolicy::Always),
            ("unless-stopped", RestartPolicy::UnlessStopped),
        ] {
            assert_eq!(parse_restart(text), Ok(policy), "{text}");
            assert_eq!(policy.to_string(), text);
        }
        for bad in [
            "on-failure:0",
            "on-failure:",
            "on-failure:1000001",
            "on-failure:+5",
        ] {
            assert_eq!(
                parse_restart(bad),
                Err(format!(
                    "the retry count in \"{bad}\" must be a number from 1 to 1000000"
                ))
            );
        }
        for bad in ["", "yes", "Always", "on-failure5"] {
            assert!(
                parse_restart(bad)
                    .unwrap_err()
                    .starts_with("expected \"no\""),
                "{bad}"
            );
        }
    }

    #[test]
    fn container_defaults() {
        let s = spec(r#"{"rootfs": "/srv/app", "command": ["/bin/app"]}"#);
        assert_eq!(s.name, "app");
        assert_eq!(s.rootfs, Path::new("/srv/app"));
        assert_eq!(s.command, ["/bin/app"]);
        assert!(s.env.is_empty());
        assert_eq!(s.workdir, "/");
        assert_eq!(s.hostname, "app");
        assert_eq!(s.user, None);
        assert!(s.autostart);
        assert_eq!(s.restart, RestartPolicy::No);
        assert!(!s.readonly_rootfs);
        assert!(s.mounts.is_empty());
        assert_eq!(s.network, Network::None);
        assert_eq!(s.memory, None);
        assert_eq!(s.pids, None);
        assert_eq!(s.cpus_milli, None);
        assert_eq!(s.stop_signal, libc::SIGTERM);
        assert_eq!(s.stop_timeout, 10);
        assert_eq!(
            s.canonical,
            r#"{"command":["/bin/app"],"rootfs":"/srv/app"}"#
        );
        assert_eq!(s.hash, fnv1a64(s.canonical.as_bytes()));
        // The hostname falls back when the name is not a valid hostname.
        let text = with("");
        let s = parse_container("my_app", &text, Path::new(CONTAINER_FILE)).unwrap();
        assert_eq!(s.hostname, "berth");
        let s = parse_container("web-1.eu", &text, Path::new(CONTAINER_FILE)).unwrap();
        assert_eq!(s.hostname, "web-1.eu");
    }

    #[test]
    fn container_every_key() {
        let s = spec(
            r#"{
              "rootfs": "/var/lib/images/app",
              "command": ["/bin/app", "--serve", ""],
              "env": ["KEY=value", "EMPTY=", "EQ=a=b"],
              "workdir": "/srv",
              "hostname": "app-host",
              "user": "1000:2000",
              "autostart": false,
              "restart": "on-failure:5",
              "readonly-rootfs": true,
              "mounts": [{"source": "/data/app", "target": "/data", "readonly": false},
                         {"type": "tmpfs", "target": "/tmp"},
                         {"type": "bind", "source": "/etc/hosts", "target": "/etc/hosts",
                          "readonly": true},
                         {"type": "tmpfs", "target": "/run/x", "size": "16m", "readonly": true}],
              "network": "host",
              "memory": "64m", "pids": 128, "cpus": 0.5,
              "stop-signal": "SIGINT", "stop-timeout": 30
            }"#,
        );
        assert_eq!(s.rootfs, Path::new("/var/lib/images/app"));
        assert_eq!(s.command, ["/bin/app", "--serve", ""]);
        assert_eq!(s.env, ["KEY=value", "EMPTY=", "EQ=a=b"]);
        assert_eq!(s.workdir, "/srv");
        assert_eq!(s.hostname, "app-host");
        assert_eq!(s.user.as_ref().and_then(User::numeric), Some((1000, 2000)));
        assert!(!s.autostart);
        assert_eq!(s.restart, RestartPolicy::OnFailure { max: Some(5) });
        assert!(s.readonly_rootfs);
        assert_eq!(
            s.mounts,
            [
                Mount {
                    kind: MountKind::Bind {
                        source: "/data/app".into()
                    },
                    target: "/data".into(),
                    readonly: false,
                },
                Mount {
                    kind: MountKind::Tmpfs { size: None },
                    target: "/tmp".into(),
                    readonly: false,
                },
                Mount {
                    kind: MountKind::Bind {
                        source: "/etc/hosts".into()
                    },
                    target: "/etc/hosts".into(),
                    readonly: true,
                },
                Mount {
                    kind: MountKind::Tmpfs {
                        size: Some(16 * MIB)
                    },
                    target: "/run/x".into(),
                    readonly: true,
                },
            ]
        );
        assert_eq!(s.network, Network::Host);
        assert_eq!(s.memory, Some(64 * MIB));
        assert_eq!(s.pids, Some(128));
        assert_eq!(s.cpus_milli, Some(500));
        assert_eq!(s.stop_signal, libc::SIGINT);
        assert_eq!(s.stop_timeout, 30);

        let numeric = |extra: &str| spec(&with(extra)).user.as_ref().and_then(User::numeric);
        assert_eq!(numeric(r#","user": "7""#), Some((7, 7)));
        assert_eq!(numeric(r#","user": "0:0""#), Some((0, 0)));
        let name = |s: &str| Id::Name(s.to_string());
        for (text, user, group) in [
            ("app", name("app"), None),
            ("app:video", name("app"), Some(name("video"))),
            ("1000:video", Id::Number(1000), Some(name("video"))),
            ("app:27", name("app"), Some(Id::Number(27))),
            ("www-data.x_1", name("www-data.x_1"), None),
        ] {
            let got = spec(&with(&format!(r#","user": "{text}""#))).user;
            assert_eq!(got, Some(User { user, group }), "{text}");
        }
        assert_eq!(spec(&with(r#","memory": 1048576"#)).memory, Some(MIB));
        assert_eq!(spec(&with(r#","pids": 4194304"#)).pids, Some(4_194_304));
        assert_eq!(spec(&with(r#","cpus": 2"#)).cpus_milli, Some(2000));
        assert_eq!(spec(&with(r#","cpus": 1024"#)).cpus_milli, Some(1_024_000));
        assert_eq!(spec(&with(r#","cpus": 0.01"#)).cpus_milli, Some(10));
        assert_eq!(spec(&with(r#","cpus": 1.2345"#)).cpus_milli, Some(1235));
        assert_eq!(
            spec(&with(r#","stop-signal": 9"#)).stop_signal,
            libc::SIGKILL
        );
        assert_eq!(
            spec(&with(r#","stop-signal": "usr1""#)).stop_signal,
            libc::SIGUSR1
        );
        assert_eq!(spec(&with(r#","stop-timeout": 0"#)).stop_timeout, 0);
        assert_eq!(spec(&with(r#","network": "none""#)).network, Network::None);
        assert_eq!(
            spec(&with(r#","restart": "always""#)).restart,
            RestartPolicy::Always
        );
        // Relative rootfs: from the file's directory, and written resolved.
        let s = spec(r#"{"rootfs": "images/app", "command": ["x"]}"#);
        assert_eq!(s.rootfs, Path::new("/etc/berth/containers/images/app"));
        assert_eq!(
            s.canonical,
            r#"{"command":["x"],"rootfs":"/etc/berth/containers/images/app"}"#
        );
    }

    #[test]
    fn container_bad_values() {
        let cases: &[(&str, &str, &str)] = &[
            (r#","bogus": 1"#, "bogus", "unknown key"),
            (r#","Memory": "1m""#, "Memory", "unknown key"),
            (r#","rootfs2": "x""#, "rootfs2", "unknown key"),
            (
                r#","autostart": 1"#,
                "autostart",
                "expected a boolean, found a number",
            ),
            (
                r#","readonly-rootfs": "true""#,
                "readonly-rootfs",
                "expected a boolean, found a string",
            ),
            (
                r#","env": "A=b""#,
                "env",
                "expected an array, found a string",
            ),
            (
                r#","env": ["A=b", 3]"#,
                "env[1]",
                "expected a string, found a number",
            ),
            (
                r#","env": ["A=b", "B"]"#,
                "env[1]",
                "expected KEY=value, found \"B\"",
            ),
            (
                r#","env": ["=b"]"#,
                "env[0]",
                "variable name before '=' must not be empty, found \"=b\"",
            ),
            (
                r#","env": ["A=1", "B=2", "A=3"]"#,
                "env[2]",
                "duplicate variable \"A\"",
            ),
            (
                r#","workdir": "srv""#,
                "workdir",
                "must be an absolute path",
            ),
            (
                r#","hostname": "a_b""#,
                "hostname",
                "expected 1 to 64 letters, digits, '-' and '.', found \"a_b\"",
            ),
            (
                r#","hostname": """#,
                "hostname",
                "expected 1 to 64 letters, digits, '-' and '.', found \"\"",
            ),
            (
                r#","user": "a b""#,
                "user",
                "expected \"user\" or \"user:group\", each a name (letters, digits, '_', '.', '-') or a number below 4294967295, found \"a b\"",
            ),
            (
                r#","user": "1:""#,
                "user",
                "expected \"user\" or \"user:group\", each a name (letters, digits, '_', '.', '-') or a number below 4294967295, found \"1:\"",
            ),
            (
                r#","user": "4294967295""#,
                "user",
                "expected \"user\" or \"user:group\", each a name (letters, digits, '_', '.', '-') or a number below 4294967295, found \"4294967295\"",
            ),
            (
                r#","user": "-x""#,
                "user",
                "expected \"user\" or \"user:group\", each a name (letters, digits, '_', '.', '-') or a number below 4294967295, found \"-x\"",
            ),
            (
                r#","user": 1000"#,
                "user",
                "expected a string, found a number",
            ),
            (
                r#","restart": "sometimes""#,
                "restart",
                "expected \"no\", \"on-failure\", \"on-failure:N\", \"always\" or \"unless-stopped\", found \"sometimes\"",
            ),
            (
                r#","restart": "on-failure:0""#,
                "restart",
                "the retry count in \"on-failure:0\" must be a number from 1 to 1000000",
            ),
            (
                r#","network": "bridge:x""#,
                "network",
                "expected \"none\", \"host\", \"container:NAME\" or the name of a network, found \"bridge:x\"",
            ),
            (
                r#","memory": "1023k""#,
                "memory",
                "must be at least 1048576 bytes, found 1047552",
            ),
            (
                r#","memory": "lots""#,
                "memory",
                "invalid size \"lots\": expected digits and an optional k, m or g suffix",
            ),
            (
                r#","memory": "99999999999999g""#,
                "memory",
                "size \"99999999999999g\" is too large",
            ),
            (
                r#","pids": 0"#,
                "pids",
                "must be from 1 to 4194304, found 0",
            ),
            (
                r#","pids": 4194305"#,
                "pids",
                "must be from 1 to 4194304, found 4194305",
            ),
            (
                r#","cpus": 0"#,
                "cpus",
                "must be at least 0.01 and at most 1024, found 0",
            ),
            (
                r#","cpus": -1"#,
                "cpus",
                "must be at least 0.01 and at most 1024, found -1",
            ),
            (
                r#","cpus": 0.005"#,
                "cpus",
                "must be at least 0.01 and at most 1024, found 0.005",
            ),
            (
                r#","cpus": 1024.5"#,
                "cpus",
                "must be at least 0.01 and at most 1024, found 1024.5",
            ),
            (
                r#","cpus": "0.5""#,
                "cpus",
                "expected a number, found a string",
            ),
            (
                r#","stop-signal": "SIGFOO""#,
                "stop-signal",
                "unknown signal \"SIGFOO\"",
            ),
            (
                r#","stop-signal": 0"#,
                "stop-signal",
                "signal numbers are 1 to 64, found 0",
            ),
            (
                r#","stop-signal": []"#,
                "stop-signal",
                "expected a signal name or number, found an array",
            ),
            (
                r#","stop-timeout": 3601"#,
                "stop-timeout",
                "must be from 0 to 3600, found 3601",
            ),
            (
                r#","stop-timeout": "10s""#,
                "stop-timeout",
                "expected an integer, found a string",
            ),
        ];
        for &(extra, f, reason) in cases {
            assert_eq!(spec_err(&with(extra)), field(f, reason), "{extra}");
        }
        assert_eq!(
            spec_err(r#"{"command": ["/bin/app"]}"#),
            field(
                "rootfs",
                "required key is missing (give \"rootfs\" or \"image\")"
            )
        );
        assert_eq!(
            spec_err(r#"{"rootfs": "/r"}"#),
            field("command", "required key is missing")
        );
        assert_eq!(
            spec_err(r#"{"rootfs": "", "command": ["x"]}"#),
            field("rootfs", "must not be empty")
        );
        assert_eq!(
            spec_err(r#"{"rootfs": ["/r"], "command": ["x"]}"#),
            field("rootfs", "expected a string, found an array")
        );
        assert_eq!(
            spec_err(r#"{"rootfs": "/r", "command": []}"#),
            field("command", "must not be empty")
        );
        assert_eq!(
            spec_err(r#"{"rootfs": "/r", "command": "/bin/app"}"#),
            field("command", "expected an array, found a string")
        );
        assert_eq!(
            spec_err(r#"{"rootfs": "/r", "command": ["", "x"]}"#),
            field("command[0]", "must not be empty")
        );
        assert_eq!(
            spec_err(r#"{"rootfs": "/r", "command": ["x", null]}"#),
            field("command[1]", "expected a string, found null")
        );
        assert_eq!(
            spec_err(r#"{"rootfs": "/r\u0000", "command": ["x"]}"#),
            field("rootfs", "string contains a NUL byte")
        );
        let long = format!(r#"{{"rootfs": "/{}", "command": ["x"]}}"#, "r".repeat(4096));
        assert_eq!(
            spec_err(&long),
            field("rootfs", "string is longer than 4096 bytes")
        );
        let many = vec!["\"x\""; 1025].join(",");
        assert_eq!(
            spec_err(&format!(r#"{{"rootfs": "/r", "command": [{many}]}}"#)),
            field("command", "has more than 1024 entries")
        );
        // A hostile key is shortened and escaped before it reaches a message.
        let key = format!("a\n{}", "k".repeat(100));
        let (f, reason) = spec_err(&with(&format!(r#","a\n{}": 1"#, "k".repeat(100))));
        assert_eq!(reason, "unknown key");
        assert_eq!(f.unwrap(), format!("{}...", printable(&key[..64])));
        assert_eq!(
            spec_err("[1]"),
            (
                None,
                "expected an object at the top level, found an array".to_string()
            )
        );
        assert_eq!(spec_err(""), (None, "empty file".to_string()));
    }

    #[test]
    fn container_privileges() {
        use crate::config::types::{CapList, Rlimit};
        let s = spec(&with(
            r#","cap-add": ["NET_ADMIN", "cap_sys_ptrace"], "cap-drop": ["ALL"],
               "rlimits": {"nofile": [1024, 4096], "core": [0, "unlimited"]},
               "oom-score-adj": -500"#,
        ));
        assert_eq!(
            s.cap_add,
            CapList {
                set: (1 << 12) | (1 << 19),
                all: false
            }
        );
        assert_eq!(s.cap_drop, CapList { set: 0, all: true });
        assert_eq!(
            s.rlimits,
            [
                Rlimit {
                    name: "core",
                    resource: 4, // RLIMIT_CORE
                    soft: 0,
                    hard: u64::MAX
                },
                Rlimit {
                    name: "nofile",
                    resource: 7, // RLIMIT_NOFILE
                    soft: 1024,
                    hard: 4096
                },
            ]
        );
        assert_eq!(s.oom_score_adj, -500);
        // The canonical text parses back to the same definition.
        let again = parse_container("app", &s.canonical, Path::new(CONTAINER_FILE));
        assert_eq!(again.as_ref(), Ok(&s));
        let defaults = spec(&with(""));
        assert_eq!(
            (defaults.cap_add, defaults.cap_drop),
            (CapList::default(), CapList::default())
        );
        assert_eq!((defaults.rlimits.len(), defaults.oom_score_adj), (0, 0));

        let cases: &[(&str, &str, &str)] = &[
            (
                r#","cap-add": ["NET_ADMN"]"#,
                "cap-add[0]",
                "unknown capability \"NET_ADMN\": expected a name like \"NET_ADMIN\" or \"CAP_NET_ADMIN\", or \"ALL\"",
            ),
            (
                r#","cap-drop": "ALL""#,
                "cap-drop",
                "expected an array, found a string",
            ),
            (
                r#","cap-add": ["KILL"], "cap-drop": ["CAP_KILL"]"#,
                "cap-drop",
                "CAP_KILL is also in cap-add",
            ),
            (
                r#","rlimits": {"nofiles": [1, 2]}"#,
                "rlimits.nofiles",
                "unknown resource limit: expected one of cpu, fsize, data, stack, core, rss, nproc, nofile, memlock, as, locks, sigpending, msgqueue, nice, rtprio, rttime",
            ),
            (
                r#","rlimits": {"NOFILE": [1, 2]}"#,
                "rlimits.NOFILE",
                "unknown resource limit: expected one of cpu, fsize, data, stack, core, rss, nproc, nofile, memlock, as, locks, sigpending, msgqueue, nice, rtprio, rttime",
            ),
            (
                r#","rlimits": {"nofile": 1024}"#,
                "rlimits.nofile",
                "expected [soft, hard], found a number",
            ),
            (
                r#","rlimits": {"nofile": [1024]}"#,
                "rlimits.nofile",
                "expected [soft, hard], found an array",
            ),
            (
                r#","rlimits": {"nofile": [-1, 5]}"#,
                "rlimits.nofile[0]",
                "expected a whole number from 0 to 18446744073709551614 or \"unlimited\", found -1",
            ),
            (
                r#","rlimits": {"nofile": [1, "lots"]}"#,
                "rlimits.nofile[1]",
                "expected a number or \"unlimited\", found \"lots\"",
            ),
            (
                r#","rlimits": {"core": ["unlimited", 5]}"#,
                "rlimits.core",
                "the soft limit unlimited is above the hard limit 5",
            ),
            (
                r#","rlimits": [["nofile", 1, 2]]"#,
                "rlimits",
                "expected an object, found an array",
            ),
            (
                r#","oom-score-adj": -1001"#,
                "oom-score-adj",
                "must be from -1000 to 1000, found -1001",
            ),
            (
                r#","oom-score-adj": 1001"#,
                "oom-score-adj",
                "must be from -1000 to 1000, found 1001",
            ),
            (
                r#","oom-score-adj": 1.5"#,
                "oom-score-adj",
                "expected an integer, found 1.5",
            ),
            (
                r#","oom-score-adj": "0""#,
                "oom-score-adj",
                "expected an integer, found a string",
            ),
        ];
        for &(extra, f, reason) in cases {
            assert_eq!(spec_err(&with(extra)), field(f, reason), "{extra}");
        }
    }

    #[test]
    fn container_mounts() {
        let m = |mounts: &str| spec_err(&with(&format!(r#","mounts": {mounts}"#)));
        assert_eq!(
            m(r#"[{"target": "/a", "source": "/b"}, {"sourc": "/x", "target": "/y"}]"#),
            field("mounts[1].sourc", "unknown key")
        );
        assert_eq!(
            m(r#"[{"type": "tmpfs", "target": "/t", "mode": "0755"}]"#),
            field("mounts[0].mode", "unknown key")
        );
        assert_eq!(
            m(r#"{}"#),
            field("mounts", "expected an array, found an object")
        );
        assert_eq!(
            m(r#"["/a:/b"]"#),
            field("mounts[0]", "expected an object, found a string")
        );
        assert_eq!(
            m(r#"[{"type": "overlay", "target": "/t"}]"#),
            field(
                "mounts[0].type",
                "expected \"bind\" or \"tmpfs\", found \"overlay\""
            )
        );
        assert_eq!(
            m(r#"[{"target": "/t"}]"#),
            field("mounts[0].source", "required key is missing")
        );
        assert_eq!(
            m(r#"[{"source": "/s"}]"#),
            field("mounts[0].target", "required key is missing")
        );
        assert_eq!(
            m(r#"[{"source": "data", "target": "/t"}]"#),
            field(
                "mounts[0].source",
                "must be an absolute path, found \"data\""
            )
        );
        assert_eq!(
            m(r#"[{"source": "/s", "target": "/t", "size": "1m"}]"#),
            field("mounts[0].size", "only allowed for tmpfs mounts")
        );
        assert_eq!(
            m(r#"[{"target": "/t", "source": "/s", "type": "tmpfs"}]"#),
            field("mounts[0].source", "not allowed for tmpfs mounts")
        );
        assert_eq!(
            m(r#"[{"type": "tmpfs", "target": "/t", "size": 0}]"#),
            field("mounts[0].size", "must be at least 4096 bytes, found 0")
        );
        assert_eq!(
            m(r#"[{"source": "/s", "target": "/t", "readonly": "yes"}]"#),
            field("mounts[0].readonly", "expected a boolean, found a string")
        );
        assert_eq!(
            m(r#"[{"type": "tmpfs", "target": "/"}]"#),
            field("mounts[0].target", "must not be \"/\"")
        );
        for bad in ["t", "", "/a/../b", "/a/./b", "/a//b", "/a/", "/..", "/."] {
            let (f, _) = m(&format!(r#"[{{"type": "tmpfs", "target": "{bad}"}}]"#));
            assert_eq!(f.as_deref(), Some("mounts[0].target"), "{bad}");
        }
        assert_eq!(
            m(r#"[{"type": "tmpfs", "target": "/t"}, {"source": "/s", "target": "/t"}]"#),
            field("mounts[1].target", "duplicate target \"/t\"")
        );
    }

    #[test]
    fn the_defaults_inspect_shows_are_what_leaving_keys_out_means() {
        let file = Path::new(CONTAINER_FILE);
        let minimal = r#"{"rootfs": "/srv/app", "command": ["/bin/app"]}"#;
        let spec = parse_container("app", minimal, file).unwrap();
        let shown = effective(&spec);
        // Every default key is shown; the null ones ("none", "unlimited")
        // cannot be written, the others must mean what leaving them out
        // means.
        let Value::Object(members) = json::parse(&shown).unwrap().value else {
            panic!("not an object: {shown}");
        };
        let Value::Object(defaults) = json::parse(DEFAULTS).unwrap().value else {
            panic!("DEFAULTS is not an object");
        };
        for (key, _) in &defaults {
            assert!(members.iter().any(|(k, _)| k == key), "{key} not shown");
        }
        let written: Vec<String> = members
            .iter()
            .filter(|(_, n)| n.value != Value::Null)
            .map(|(k, n)| {
                format!(
                    "{}: {}",
                    json::to_canonical(&string_node(k)),
                    json::to_canonical(n)
                )
            })
            .collect();
        let again = parse_container("app", &format!("{{{}}}", written.join(", ")), file).unwrap();
        let bare = |s: ContainerSpec| ContainerSpec {
            canonical: String::new(),
            hash: 0,
            net_mix: 0,
            ..s
        };
        assert_eq!(bare(again), bare(spec));
        // What the file says wins, and the chosen hostname and the merged
        // env are shown.
        let mut spec = parse_container(
            "app",
            r#"{"rootfs": "/srv/app", "command": ["/bin/app"], "restart": "always", "memory": "64m"}"#,
            file,
        )
        .unwrap();
        spec.env.push("FROM_FILE=1".into());
        let shown = effective(&spec);
        assert!(shown.contains(r#""restart":"always""#), "{shown}");
        assert!(shown.contains(r#""memory":"64m""#), "{shown}");
        assert!(shown.contains(r#""hostname":"app""#), "{shown}");
        assert!(shown.contains(r#""env":["FROM_FILE=1"]"#), "{shown}");
    }

    #[test]
    fn the_effective_definition_is_the_canonical_text_of_the_merged_tree() {
        let file = Path::new(CONTAINER_FILE);
        // The whole definition and its defaults merged as a tree, then
        // written canonically: what `effective` must give.
        let merged = |spec: &ContainerSpec| {
            let mut root = json::parse(&spec.canonical).unwrap();
            let Value::Object(defaults) = json::parse(DEFAULTS).unwrap().value else {
                panic!("DEFAULTS is not an object");
            };
            let Value::Object(members) = &mut root.value else {
                panic!("not an object");
            };
            for (key, value) in defaults {
                if !members.iter().any(|(k, _)| *k == key) {
                    members.push((key, value));
                }
            }
            members.retain(|(k, _)| k != "hostname" && k != "env");
            members.push(("hostname".into(), string_node(&spec.hostname)));
            let env = spec.env.iter().map(|v| string_node(v)).collect();
            members.push((
                "env".into(),
                Node {
                    value: Value::Array(env),
                    line: 0,
                    col: 0,
                },
            ));
            json::to_canonical(&root)
        };
        for text in [
            r#"{"rootfs": "/srv/app", "command": ["/bin/app"]}"#,
            r#"{"rootfs": "/srv/app", "command": ["/bin/app", "a \"b\"\n\u00e9"], "hostname": "web-1",
                "env": ["A=1", "B=\t"], "restart": "always", "memory": "64m", "cpus": 1.5,
                "mounts": [{"type": "tmpfs", "target": "/tmp"}], "sysctl": {"net.core.somaxconn": "512"},
                "healthcheck": {"command": ["/bin/true"], "interval": 5}, "stop-timeout": 3}"#,
        ] {
            let mut spec = parse_container("app", text, file).unwrap();
            assert_eq!(effective(&spec), merged(&spec), "{text}");
            spec.env.push("FROM_FILE=\u{1}x".into());
            assert_eq!(effective(&spec), merged(&spec), "{text}");
        }
    }

    fn string_node(s: &str) -> Node {
        Node {
            value: Value::String(s.to_string()),
            line: 0,
            col: 0,
        }
    }

    #[test]
    fn canonical_and_hash() {
        let a = spec(
            r#"{"rootfs": "/srv/app", "command": ["/bin/app", "-v"],
                "env": ["A=1"], "cpus": 0.5, "memory": "64m",
                "mounts": [{"source": "/d", "target": "/d", "readonly": true}]}"#,
        );
        let b = spec(
            "{\n\t\"mounts\" : [ { \"readonly\" : true , \"target\" : \"/d\" , \"source\" : \"/d\" } ] ,\n\
             \"memory\":\"64m\",\"cpus\":0.50,\"env\":[\"A=1\"],\n\
             \"command\":[\"/bin/app\",\"-v\"],\"rootfs\":\"/srv/app\"\n}\n",
        );
        assert_eq!(a.canonical, b.canonical);
        assert_eq!(a.hash, b.hash);
        assert_eq!(a, b);
        assert_eq!(
            a.canonical,
            r#"{"command":["/bin/app","-v"],"cpus":0.5,"env":["A=1"],"memory":"64m","mounts":[{"readonly":true,"source":"/d","target":"/d"}],"rootfs":"/srv/app"}"#
        );
        // Any change of value changes the hash, even one to the default.
        for changed in [
            a.canonical.replace("-v", "-w"),
            a.canonical.replace("0.5", "0.25"),
            a.canonical
                .replace("\"readonly\":true", "\"readonly\":false"),
            format!(
                "{},\"autostart\":true}}",
                &a.canonical[..a.canonical.len() - 1]
            ),
        ] {
            assert_ne!(spec(&changed).hash, a.hash, "{changed}");
        }
        // The canonical text parses back to the same definition, anywhere.
        for s in [
            &a,
            &spec(r#"{"rootfs": "rel", "command": ["x"], "stop-signal": 2.0}"#),
        ] {
            let elsewhere = Path::new("/elsewhere/app.json");
            let again = parse_container("app", &s.canonical, elsewhere).unwrap();
            assert_eq!(again.file, elsewhere);
            assert_eq!(
                again,
                ContainerSpec {
                    file: elsewhere.into(),
                    ..s.clone()
                }
            );
        }
        // Hash and canonical are over the file, not the filled-in defaults.
        let bare = spec(&with(""));
        let explicit = spec(&with(r#","autostart": true"#));
        assert_eq!(bare.autostart, explicit.autostart);
        assert_ne!(bare.hash, explicit.hash);
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
