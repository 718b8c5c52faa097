//! The `devices` key of a container file: host device nodes passed into
//! the container, each at a target under /dev with the access the
//! container's device cgroup grants it. Text only: whether the host path
//! is a device is checked when the container starts (a USB adapter may be
//! plugged in later).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::fields::{field_error, get_array, get_str, quoted, unknown_key, wrong_type};
use super::types::{ConfigError, Device, DeviceAccess};
use crate::json::{Node, Value};

/// Most entries in `devices`.
pub const MAX_DEVICES: usize = 256;

pub(super) fn get_devices(node: &Node, file: &Path) -> Result<Vec<Device>, ConfigError> {
    let items = get_array(node, MAX_DEVICES).map_err(|r| field_error(file, "devices", r))?;
    let mut devices = Vec::with_capacity(items.len());
    let mut targets = HashSet::new();
    for (i, item) in items.iter().enumerate() {
        let base = format!("devices[{i}]");
        let err = |key: &str, reason: String| field_error(file, format!("{base}.{key}"), reason);
        let Value::Object(fields) = &item.value else {
            return Err(field_error(file, &base, wrong_type("an object", item)));
        };
        let mut path = None;
        let mut target = None;
        let mut access = DeviceAccess::ALL;
        for (key, value) in fields {
            let key_err = |reason: String| err(key, reason);
            match key.as_str() {
                "path" => path = Some(get_str(value).map_err(key_err)?),
                "target" => target = Some(get_str(value).map_err(key_err)?),
                "permissions" => {
                    access = parse_access(get_str(value).map_err(key_err)?).map_err(key_err)?
                }
                _ => return Err(unknown_key(file, &format!("{base}."), key)),
            }
        }
        let path = path.ok_or_else(|| err("path", "required key is missing".to_string()))?;
        if !path.starts_with('/') {
            return Err(err(
                "path",
                format!("must be an absolute path, found {}", quoted(path)),
            ));
        }
        let (key, target) = match target {
            Some(t) => ("target", t),
            None => ("path", path),
        };
        check_dev_target(target).map_err(|r| err(key, r))?;
        if !targets.insert(target) {
            return Err(err(key, format!("duplicate target {}", quoted(target))));
        }
        devices.push(Device {
            path: PathBuf::from(path),
            target: target.to_string(),
            access,
        });
    }
    Ok(devices)
}

/// "r", "w", "m" or any combination, each at most once.
fn parse_access(s: &str) -> Result<DeviceAccess, String> {
    let bad = || {
        format!(
            "expected one or more of r, w and m (each once), found {}",
            quoted(s)
        )
    };
    let mut access = DeviceAccess::default();
    for c in s.chars() {
        let flag = match c {
            'r' => &mut access.read,
            'w' => &mut access.write,
            'm' => &mut access.mknod,
            _ => return Err(bad()),
        };
        if *flag {
            return Err(bad());
        }
        *flag = true;
    }
    if access == DeviceAccess::default() {
        return Err(bad());
    }
    Ok(access)
}

/// A normalised absolute path below /dev, not /dev itself, and not one of
/// the mounts berth makes there itself.
fn check_dev_target(s: &str) -> Result<(), String> {
    let Some(rest) = s.strip_prefix("/dev/") else {
        return Err(format!("must be a path under /dev, found {}", quoted(s)));
    };
    if rest
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(format!(
            "must be a normalised path (no empty, \".\" or \"..\" components), found {}",
            quoted(s)
        ));
    }
    let first = rest.split('/').next().unwrap_or(rest);
    if ["pts", "shm", "mqueue", "fd"].contains(&first) {
        return Err(format!(
            "must not be in /dev/{first}, which berth mounts itself, found {}",
            quoted(s)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_container;
    use crate::config::testing::field;

    const FILE: &str = "/etc/berth/containers/app.json";

    fn devices(list: &str) -> Result<Vec<Device>, (Option<String>, String)> {
        let text =
            format!(r#"{{"rootfs": "/srv/app", "command": ["/bin/app"], "devices": {list}}}"#);
        parse_container("app", &text, Path::new(FILE))
            .map(|s| s.devices)
            .map_err(|e| {
                assert_eq!(e.file, Path::new(FILE));
                (e.field, e.reason)
            })
    }

    #[test]
    fn targets_default_to_the_path_and_access_to_rwm() {
        let got = devices(
            r#"[{"path": "/dev/ttyUSB0"},
                {"path": "/dev/serial/by-id/usb-x", "target": "/dev/gps/0", "permissions": "rw"},
                {"path": "/dev/net/tun", "permissions": "m"}]"#,
        )
        .unwrap();
        let access = |read, write, mknod| DeviceAccess { read, write, mknod };
        assert_eq!(
            got,
            [
                Device {
                    path: PathBuf::from("/dev/ttyUSB0"),
                    target: "/dev/ttyUSB0".into(),
                    access: access(true, true, true),
                },
                Device {
                    path: PathBuf::from("/dev/serial/by-id/usb-x"),
                    target: "/dev/gps/0".into(),
                    access: access(true, true, false),
                },
                Device {
                    path: PathBuf::from("/dev/net/tun"),
                    target: "/dev/net/tun".into(),
                    access: access(false, false, true),
                },
            ]
        );
        assert_eq!(got[1].access.text(), "rw");
        assert!(devices("[]").unwrap().is_empty());
    }

    #[test]
    fn bad_entries_name_their_field() {
        let cases = [
            (r#"{}"#, "devices", "expected an array, found an object"),
            (
                r#"["/dev/x"]"#,
                "devices[0]",
                "expected an object, found a string",
            ),
            (
                r#"[{"target": "/dev/x"}]"#,
                "devices[0].path",
                "required key is missing",
            ),
            (
                r#"[{"path": "/dev/null"}, {"path": "dev/ttyS0"}]"#,
                "devices[1].path",
                "must be an absolute path, found \"dev/ttyS0\"",
            ),
            (
                r#"[{"path": "/dev/ttyS0", "target": "/etc/ttyS0"}]"#,
                "devices[0].target",
                "must be a path under /dev, found \"/etc/ttyS0\"",
            ),
            (
                r#"[{"path": "/srv/node"}]"#,
                "devices[0].path",
                "must be a path under /dev, found \"/srv/node\"",
            ),
            (
                r#"[{"path": "/dev/x", "target": "/dev/../etc/x"}]"#,
                "devices[0].target",
                "must be a normalised path (no empty, \".\" or \"..\" components), found \"/dev/../etc/x\"",
            ),
            (
                r#"[{"path": "/dev/x", "target": "/dev/"}]"#,
                "devices[0].target",
                "must be a normalised path (no empty, \".\" or \"..\" components), found \"/dev/\"",
            ),
            (
                r#"[{"path": "/dev/x", "target": "/dev/pts/0"}]"#,
                "devices[0].target",
                "must not be in /dev/pts, which berth mounts itself, found \"/dev/pts/0\"",
            ),
            (
                r#"[{"path": "/dev/x"}, {"path": "/dev/y", "target": "/dev/x"}]"#,
                "devices[1].target",
                "duplicate target \"/dev/x\"",
            ),
            (
                r#"[{"path": "/dev/x", "permissions": ""}]"#,
                "devices[0].permissions",
                "expected one or more of r, w and m (each once), found \"\"",
            ),
            (
                r#"[{"path": "/dev/x", "permissions": "rwx"}]"#,
                "devices[0].permissions",
                "expected one or more of r, w and m (each once), found \"rwx\"",
            ),
            (
                r#"[{"path": "/dev/x", "permissions": "rr"}]"#,
                "devices[0].permissions",
                "expected one or more of r, w and m (each once), found \"rr\"",
            ),
            (
                r#"[{"path": "/dev/x", "permissions": 7}]"#,
                "devices[0].permissions",
                "expected a string, found a number",
            ),
            (
                r#"[{"path": "/dev/x", "mode": "rw"}]"#,
                "devices[0].mode",
                "unknown key",
            ),
        ];
        for (list, f, reason) in cases {
            assert_eq!(devices(list).unwrap_err(), field(f, reason), "{list}");
        }
    }
}
