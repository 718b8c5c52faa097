//! What looks at the host: every definition in the containers directory,
//! each file read whole but capped in size, the checks made on the host
//! before a container starts, and an io::Error turned into the lowercase
//! reason the messages carry.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::container_file::parse_container;
use super::fields::{field_error, file_error, parse_top};
use super::seccomp_profile::parse_profile;
use super::settings;
use super::types::{ConfigError, ContainerSpec, MAX_FILE_SIZE, MAX_LIST_LEN, MountKind};
use crate::json::{self, Node, Value};
use crate::sys::seccomp::Seccomp;

/// What the daemon checks on the host before it starts a container: the
/// rootfs is a directory (or the image an image file) and every bind
/// source exists.
pub fn check_container_host(spec: &ContainerSpec, file: &Path) -> Result<(), ConfigError> {
    check_root_host(spec, file)?;
    check_bind_sources(spec, file)
}

/// The root's side of `check_container_host`; returns the definition's
/// hash, with an image file's identity in it (see
/// `image::image_identity_hash`), so a reload recreates a container whose
/// image was replaced. One open and stat per image definition.
fn check_root_host(spec: &ContainerSpec, file: &Path) -> Result<u64, ConfigError> {
    if spec.image.is_some() {
        super::image::check_image_host(spec, file)
    } else {
        check_rootfs_dir(spec, file)?;
        Ok(spec.hash)
    }
}

fn check_bind_sources(spec: &ContainerSpec, file: &Path) -> Result<(), ConfigError> {
    for (i, mount) in spec.mounts.iter().enumerate() {
        if let MountKind::Bind { source } = &mount.kind
            && let Err(e) = fs::metadata(source)
        {
            let reason = format!("{}: {}", source.display(), io_reason(&e));
            return Err(field_error(file, format!("mounts[{i}].source"), reason));
        }
    }
    Ok(())
}

/// The rootfs is a directory.
fn check_rootfs_dir(spec: &ContainerSpec, file: &Path) -> Result<(), ConfigError> {
    match fs::metadata(&spec.rootfs) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            let reason = format!("{}: is not a directory", spec.rootfs.display());
            return Err(field_error(file, "rootfs", reason));
        }
        Err(e) => {
            let reason = format!("{}: {}", spec.rootfs.display(), io_reason(&e));
            return Err(field_error(file, "rootfs", reason));
        }
    }
    Ok(())
}

/// One definition found by `read_containers_dir`: the name (the file's stem)
/// and the parsed, host-checked spec or what is wrong with it.
pub type ContainerEntry = (String, Result<ContainerSpec, ConfigError>);

/// Every definition in `dir`: each regular (or symlinked) `NAME.json`, in
/// name order, parsed and checked against the host. Hidden files, backups
/// and anything else are skipped. Only a directory that cannot be listed is
/// an error of its own; a bad file is an entry with its error.
pub fn read_containers_dir(dir: &Path) -> Result<Vec<ContainerEntry>, ConfigError> {
    let dir_error = |reason: String| ConfigError {
        file: dir.to_path_buf(),
        field: None,
        position: None,
        reason,
    };
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(dir_error("no such directory".to_string()));
        }
        Err(e) if e.kind() == io::ErrorKind::NotADirectory => {
            return Err(dir_error("not a directory".to_string()));
        }
        Err(e) => return Err(dir_error(io_reason(&e))),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| dir_error(io_reason(&e)))?;
        let file_name = entry.file_name();
        let bytes = file_name.as_encoded_bytes();
        if bytes.starts_with(b".") || bytes.ends_with(b"~") {
            continue;
        }
        let Some(stem) = bytes.strip_suffix(b".json") else {
            continue;
        };
        let name = String::from_utf8_lossy(stem).into_owned();
        let path = entry.path();
        let file_type = entry.file_type().map_err(|e| dir_error(io_reason(&e)))?;
        // A definition may be a symlink to a file; anything else by that
        // name (a directory, a FIFO, a socket) is named, not read.
        let checked = if file_type.is_symlink() {
            match fs::metadata(&path) {
                Ok(meta) if meta.is_file() => Ok(()),
                Ok(meta) => Err(file_error(&path, not_a_file(meta.file_type()))),
                Err(e) => Err(file_error(&path, io_reason(&e))),
            }
        } else if file_type.is_file() {
            Ok(())
        } else if file_type.is_dir() {
            continue;
        } else {
            Err(file_error(&path, not_a_file(file_type)))
        };
        found.push((file_name, name, path, checked));
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    let mut entries: Vec<ContainerEntry> = found
        .into_iter()
        .map(|(_, name, path, checked)| {
            let spec = checked
                .and_then(|()| read_capped(&path))
                .and_then(|text| parse_container(&name, &text, &path))
                .and_then(|spec| load_seccomp_profile(spec, &path))
                .and_then(|spec| load_env_files(spec, &path))
                .and_then(|mut spec| {
                    spec.hash = check_root_host(&spec, &path)?;
                    check_bind_sources(&spec, &path)?;
                    Ok(spec)
                });
            (name, spec)
        })
        .collect();
    super::depends::check_all(dir, &mut entries);
    Ok(entries)
}

/// Reads the seccomp profile file `spec` names, if any, and returns the
/// definition with the profile written in inline: the canonical text (and
/// so the hash) covers the profile's content, a changed profile file makes
/// a changed definition, and the monitor gets the profile with the rest.
/// Errors name the container file's `seccomp` field and, in the reason,
/// the profile file and its field or position.
fn load_seccomp_profile(spec: ContainerSpec, file: &Path) -> Result<ContainerSpec, ConfigError> {
    let Seccomp::File(profile_file) = &spec.seccomp else {
        return Ok(spec);
    };
    let wrap = |e: ConfigError| field_error(file, "seccomp", e.to_string());
    let text = read_capped(profile_file).map_err(wrap)?;
    let profile = parse_top(&text, profile_file).map_err(wrap)?;
    parse_profile(&profile, profile_file, "").map_err(wrap)?;
    let mut root = json::parse(&spec.canonical)
        .map_err(|e| field_error(file, "seccomp", format!("canonical text: {}", e.reason)))?;
    if let Value::Object(members) = &mut root.value
        && let Some((_, value)) = members.iter_mut().find(|(key, _)| key == "seccomp")
    {
        *value = profile;
    }
    parse_container(&spec.name, &json::to_canonical(&root), file)
}

/// Reads the env files `spec` names, if any, and returns the definition
/// with their variables in `env`, under the definition's own (which win
/// over an env file's with the same key): the canonical text (and so the
/// hash) covers their content, so a changed env file makes a changed
/// definition, and the monitor gets the variables with the rest. Errors
/// name the container file's `env-file` field and, in the reason, the env
/// file and its line.
fn load_env_files(spec: ContainerSpec, file: &Path) -> Result<ContainerSpec, ConfigError> {
    if spec.env_files.is_empty() {
        return Ok(spec);
    }
    let wrap = |e: ConfigError| field_error(file, "env-file", e.to_string());
    let mut vars = Vec::new();
    for env_file in &spec.env_files {
        let text = read_capped(env_file).map_err(wrap)?;
        vars.extend(settings::parse_env_file(&text, env_file).map_err(wrap)?);
    }
    let env = settings::merge_env(vars, &spec.env);
    if env.len() > MAX_LIST_LEN {
        return Err(field_error(
            file,
            "env-file",
            format!("more than {MAX_LIST_LEN} variables with the definition's env"),
        ));
    }
    let mut root = json::parse(&spec.canonical)
        .map_err(|e| field_error(file, "env-file", format!("canonical text: {}", e.reason)))?;
    let list = Node {
        value: Value::Array(
            env.into_iter()
                .map(|e| Node {
                    value: Value::String(e),
                    line: 0,
                    col: 0,
                })
                .collect(),
        ),
        line: 0,
        col: 0,
    };
    if let Value::Object(members) = &mut root.value {
        match members.iter_mut().find(|(key, _)| key == "env") {
            Some((_, value)) => *value = list,
            None => members.push(("env".to_string(), list)),
        }
    }
    parse_container(&spec.name, &json::to_canonical(&root), file)
}

/// The whole of a regular file of at most `MAX_FILE_SIZE` bytes, as UTF-8.
/// Opened non-blocking so a FIFO in its place cannot hang the caller.
pub(super) fn read_capped(path: &Path) -> Result<String, ConfigError> {
    let error = |reason: String| file_error(path, reason);
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| error(io_reason(&e)))?;
    let meta = file.metadata().map_err(|e| error(io_reason(&e)))?;
    if !meta.is_file() {
        return Err(error("not a regular file".to_string()));
    }
    let too_large = || error(format!("file is larger than {MAX_FILE_SIZE} bytes"));
    if meta.len() > MAX_FILE_SIZE {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| error(io_reason(&e)))?;
    if bytes.len() as u64 > MAX_FILE_SIZE {
        return Err(too_large());
    }
    String::from_utf8(bytes).map_err(|_| error("file is not valid utf-8".to_string()))
}

/// Why a directory entry is not read as a definition.
fn not_a_file(t: fs::FileType) -> String {
    use std::os::unix::fs::FileTypeExt;
    let what = if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_block_device() || t.is_char_device() {
        "a device"
    } else {
        "not a regular file"
    };
    format!("not a regular file ({what})")
}

/// An io::Error as a lowercase reason without the "(os error N)" tail.
pub(super) fn io_reason(e: &io::Error) -> String {
    // Config errors are lowercase throughout: "no such file or directory".
    let text = crate::errors::io_text(e);
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => "i/o error".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::TempDir;

    #[test]
    fn host_checks_and_directory() {
        fn get_reason(found: &[ContainerEntry], name: &str) -> String {
            let entry = &found.iter().find(|(n, _)| n == name).unwrap().1;
            entry.as_ref().unwrap_err().reason.clone()
        }
        let tmp = TempDir::new("dir");
        let dir = tmp.0.join("containers");
        let rootfs = tmp.0.join("rootfs");
        fs::create_dir_all(&dir).unwrap();
        fs::create_dir_all(&rootfs).unwrap();
        fs::write(tmp.0.join("plain"), "x").unwrap();
        let write = |name: &str, text: &str| fs::write(dir.join(name), text).unwrap();
        let r = rootfs.display();
        write(
            "b-ok.json",
            &format!(r#"{{"rootfs": "{r}", "command": ["/bin/sh"]}}"#),
        );
        write(
            "a-rel.json",
            r#"{"rootfs": "../rootfs", "command": ["/bin/sh"]}"#,
        );
        write(
            "c-missing.json",
            r#"{"rootfs": "/nonexistent/berth", "command": ["x"]}"#,
        );
        write(
            "d-file.json",
            &format!(
                r#"{{"rootfs": "{}/plain", "command": ["x"]}}"#,
                tmp.0.display()
            ),
        );
        write(
            "e-bind.json",
            &format!(
                r#"{{"rootfs": "{r}", "command": ["x"], "mounts": [{{"type": "tmpfs", "target": "/t"}}, {{"source": "/nonexistent/b", "target": "/b"}}]}}"#
            ),
        );
        write("f-syntax.json", "{\"rootfs\": }");
        write("g-big.json", &" ".repeat(MAX_FILE_SIZE as usize + 1));
        fs::write(dir.join("h-latin1.json"), b"{\"rootfs\": \"\xe9\"}").unwrap();
        write(".hidden.json", "{}");
        write("backup.json~", "{}");
        write("notes.txt", "{}");
        write("i.bad.json", "{}");
        fs::create_dir(dir.join("sub.json")).unwrap();
        let fifo = std::process::Command::new("mkfifo")
            .arg(dir.join("l-fifo.json"))
            .status()
            .unwrap();
        assert!(fifo.success());
        std::os::unix::fs::symlink(dir.join("b-ok.json"), dir.join("j-link.json")).unwrap();
        std::os::unix::fs::symlink("/nonexistent/berth", dir.join("k-dangling.json")).unwrap();

        let found = read_containers_dir(&dir).unwrap();
        let names: Vec<&str> = found.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "a-rel",
                "b-ok",
                "c-missing",
                "d-file",
                "e-bind",
                "f-syntax",
                "g-big",
                "h-latin1",
                "i.bad",
                "j-link",
                "k-dangling",
                "l-fifo"
            ]
        );
        assert_eq!(get_reason(&found, "l-fifo"), "not a regular file (a FIFO)");
        let get = |name: &str| &found.iter().find(|(n, _)| n == name).unwrap().1;
        let reason = |name: &str| {
            let e = get(name).as_ref().unwrap_err();
            (e.field.clone(), e.position, e.reason.clone())
        };
        assert_eq!(get("a-rel").as_ref().unwrap().rootfs, dir.join("../rootfs"));
        assert_eq!(get("b-ok").as_ref().unwrap().rootfs, rootfs);
        assert_eq!(get("j-link").as_ref().unwrap().rootfs, rootfs);
        assert_eq!(
            reason("c-missing"),
            (
                Some("rootfs".into()),
                None,
                "/nonexistent/berth: no such file or directory".into()
            )
        );
        assert_eq!(
            reason("d-file"),
            (
                Some("rootfs".into()),
                None,
                format!("{}/plain: is not a directory", tmp.0.display())
            )
        );
        assert_eq!(
            reason("e-bind"),
            (
                Some("mounts[1].source".into()),
                None,
                "/nonexistent/b: no such file or directory".into()
            )
        );
        assert_eq!(
            reason("f-syntax"),
            (None, Some((1, 12)), "expected a value, found '}'".into())
        );
        assert_eq!(
            reason("g-big"),
            (None, None, "file is larger than 65536 bytes".into())
        );
        assert_eq!(
            reason("h-latin1"),
            (None, None, "file is not valid utf-8".into())
        );
        assert_eq!(reason("i.bad").0.as_deref(), Some("rootfs"));
        assert_eq!(
            reason("k-dangling"),
            (None, None, "no such file or directory".into())
        );
        let e = get("f-syntax").as_ref().unwrap_err();
        assert_eq!(e.file, dir.join("f-syntax.json"));

        let e = read_containers_dir(&tmp.0.join("nope")).unwrap_err();
        assert_eq!((e.field, e.reason.as_str()), (None, "no such directory"));
        let e = read_containers_dir(&tmp.0.join("plain")).unwrap_err();
        assert_eq!(e.reason, "not a directory");
        assert!(read_containers_dir(&rootfs).unwrap().is_empty());
    }

    #[test]
    fn a_seccomp_profile_file_is_read_into_the_definition() {
        let tmp = TempDir::new("seccomp");
        let dir = tmp.0.join("containers");
        let rootfs = tmp.0.join("rootfs");
        fs::create_dir_all(&dir).unwrap();
        fs::create_dir_all(&rootfs).unwrap();
        let profile = tmp.0.join("app-profile.json");
        let good = r#"{"default-action": "kill",
                       "allow": ["execve", "exit_group", "write", "read"]}"#;
        fs::write(&profile, good).unwrap();
        let r = rootfs.display();
        let container = |seccomp: &str| {
            format!(r#"{{"rootfs": "{r}", "command": ["/bin/sh"], "seccomp": "{seccomp}"}}"#)
        };
        fs::write(dir.join("app.json"), container("../app-profile.json")).unwrap();
        fs::write(dir.join("free.json"), container("unconfined")).unwrap();

        let load = || {
            let found = read_containers_dir(&dir).unwrap();
            let get = |name: &str| found.iter().find(|(n, _)| n == name).unwrap().1.clone();
            (get("app"), get("free"))
        };
        let (app, free) = load();
        let app = app.unwrap();
        assert_eq!(free.unwrap().seccomp, Seccomp::Unconfined);
        let Seccomp::Profile(p) = &app.seccomp else {
            panic!("not a profile: {:?}", app.seccomp);
        };
        assert_eq!(p.allow, ["execve", "exit_group", "write", "read"]);
        // The profile is inline in the canonical text, as the monitor gets it.
        assert!(
            app.canonical.contains(r#""seccomp":{"allow":["execve""#),
            "{}",
            app.canonical
        );
        let again = parse_container("app", &app.canonical, Path::new("app.json")).unwrap();
        assert_eq!(again.seccomp, app.seccomp);
        assert_eq!(again.hash, app.hash);

        // A changed profile file is a changed definition.
        fs::write(&profile, good.replace(r#", "read""#, "")).unwrap();
        let changed = load().0.unwrap();
        assert_ne!(changed.hash, app.hash);

        // Errors name the container file's field, then the profile's.
        let app_file = dir.join("app.json");
        let error = |text: &str| {
            fs::write(&profile, text).unwrap();
            let e = load().0.unwrap_err();
            assert_eq!(e.file, app_file);
            assert_eq!(e.field.as_deref(), Some("seccomp"));
            e.reason
        };
        let p = dir.join("../app-profile.json");
        let p = p.display();
        assert_eq!(
            error(r#"{"allow": ["execve", "exit_group", "write", "nosuchcall"]}"#),
            format!(r#"{p}: field "allow[3]": unknown system call "nosuchcall""#)
        );
        assert_eq!(
            error("{\"allow\": [\n  \"read\",]}"),
            format!("{p}: line 2 column 10: expected a value, found ']'")
        );
        assert_eq!(
            error(r#"{"allow": [], "deny": []}"#),
            format!(r#"{p}: field "deny": unknown key"#)
        );
        fs::remove_file(&profile).unwrap();
        let e = load().0.unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                r#"{}: field "seccomp": {p}: no such file or directory"#,
                app_file.display()
            )
        );
    }
}
