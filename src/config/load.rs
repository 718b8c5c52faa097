//! What looks at the host: every definition in the containers directory
//! and its app directories, each file read whole but capped in size, the
//! checks made on the host before a container starts, and an io::Error
//! turned into the lowercase reason the messages carry.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::container_file::parse_container;
use super::fields::{field_error, file_error, parse_top, validate_name};
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

/// One definition found by `read_definitions`: the name (the file's stem)
/// and the parsed, host-checked spec or what is wrong with it.
pub type ContainerEntry = (String, Result<ContainerSpec, ConfigError>);

/// Everything the containers directory defines.
#[derive(Debug)]
pub struct Definitions {
    /// One entry per container name, in name order: the name is what the
    /// daemon knows a container by, so it is never listed twice.
    pub entries: Vec<ContainerEntry>,
    /// Each file that defines a name an earlier file defines already (see
    /// `read_definitions` for the order), as an error of that later file
    /// naming the earlier one. The name's entry is the earlier file's: a
    /// daemon starting up runs it and logs these; a reload refuses.
    pub duplicates: Vec<ConfigError>,
}

/// The suffix of an app directory's name in the containers directory.
const APP_SUFFIX: &[u8] = b".app";

/// Every definition in `dir`, parsed and checked against the host:
/// - each regular (or symlinked) `NAME.json` in `dir`;
/// - each `NAME.json` of the same kinds in each app directory, an entry
///   `APP.app` of `dir` that is a directory or a symlink to one (one level:
///   its subdirectories, and any `.app` in it, are not looked into). It is
///   read through its canonical path, resolved once here, so relative paths
///   in its definitions (`image`, `rootfs`, `env-file`, ...) are taken from
///   the directory the link points to now, and the definition (and its
///   hash) names that real directory: a container keeps the files it was
///   defined with when the link is switched, until the next reload.
///
/// Hidden files, backups and anything else are skipped. Files are taken in
/// order, `dir`'s by name, then the app directories' (by the directory's
/// name, then the file's), and a name defined again is a duplicate of the
/// later file. A directory that cannot be listed is an error of its own,
/// and so is an `APP.app` whose name is not a valid name or that is not a
/// readable directory (a dangling link): what it defines is unknown, and a
/// reload must not take that as its containers being removed. A bad file
/// is an entry with its error.
pub fn read_definitions(dir: &Path) -> Result<Definitions, ConfigError> {
    let (mut files, apps) = list_dir(dir, true).map_err(|reason| file_error(dir, reason))?;
    for app in apps {
        let stem = app.file_name().unwrap_or_default().as_encoded_bytes();
        let stem = String::from_utf8_lossy(&stem[..stem.len() - APP_SUFFIX.len()]);
        validate_name(&stem).map_err(|reason| file_error(&app, format!("app {reason}")))?;
        let real = real_app_dir(&app)?;
        files.extend(
            list_dir(&real, false)
                .map_err(|reason| app_error(&app, reason))?
                .0,
        );
    }
    let mut first_file: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut entries = Vec::new();
    let mut duplicates = Vec::new();
    for Found {
        name,
        path,
        checked,
    } in files
    {
        if let Some(first) = first_file.get(&name) {
            let reason = format!("container {name} is already defined in {}", first.display());
            duplicates.push(file_error(&path, reason));
            continue;
        }
        first_file.insert(name.clone(), path.clone());
        let spec = checked.and_then(|()| read_definition(&name, &path));
        entries.push((name, spec));
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    super::depends::check_all(&mut entries);
    Ok(Definitions {
        entries,
        duplicates,
    })
}

/// `read_definitions` as one list, for the tests that take nothing else: a
/// name defined twice fails the whole read with the first duplicate's
/// error.
#[cfg(test)]
pub fn read_containers_dir(dir: &Path) -> Result<Vec<ContainerEntry>, ConfigError> {
    let found = read_definitions(dir)?;
    match found.duplicates.into_iter().next() {
        Some(e) => Err(e),
        None => Ok(found.entries),
    }
}

/// The file that names container `name` in `dir` (top level first, then
/// its app directories), if any, whether or not it is a valid definition:
/// one that is there is not to be taken for removed.
pub fn defining_file(dir: &Path, name: &str) -> Option<PathBuf> {
    let file_name = format!("{name}.json");
    let top = dir.join(&file_name);
    if fs::symlink_metadata(&top).is_ok() {
        return Some(top);
    }
    let mut apps: Vec<PathBuf> = fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| {
            let n = e.file_name();
            let b = n.as_encoded_bytes();
            b.ends_with(APP_SUFFIX) && !b.starts_with(b".")
        })
        .map(|e| e.path())
        .collect();
    apps.sort();
    apps.into_iter()
        .map(|app| app.join(&file_name))
        .find(|file| fs::symlink_metadata(file).is_ok())
}

/// A `NAME.json` in a listing: its name, its path, and whether it is a
/// file that can be read (or what it is instead).
struct Found {
    name: String,
    path: PathBuf,
    checked: Result<(), ConfigError>,
}

/// The definitions in the directory `dir`, by file name, and (with
/// `apps`) its app directories `*.app`, by name; or why `dir` cannot be
/// listed.
fn list_dir(dir: &Path, apps: bool) -> Result<(Vec<Found>, Vec<PathBuf>), String> {
    let listing = match fs::read_dir(dir) {
        Ok(listing) => listing,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err("no such directory".to_string());
        }
        Err(e) if e.kind() == io::ErrorKind::NotADirectory => {
            return Err("not a directory".to_string());
        }
        Err(e) => return Err(io_reason(&e)),
    };
    let mut files = Vec::new();
    let mut app_dirs = Vec::new();
    for entry in listing {
        let entry = entry.map_err(|e| io_reason(&e))?;
        let file_name = entry.file_name();
        let bytes = file_name.as_encoded_bytes();
        if bytes.starts_with(b".") || bytes.ends_with(b"~") {
            continue;
        }
        if apps && bytes.ends_with(APP_SUFFIX) {
            app_dirs.push((file_name.clone(), entry.path()));
            continue;
        }
        let Some(stem) = bytes.strip_suffix(b".json") else {
            continue;
        };
        let name = String::from_utf8_lossy(stem).into_owned();
        let path = entry.path();
        let file_type = entry.file_type().map_err(|e| io_reason(&e))?;
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
        files.push((
            file_name,
            Found {
                name,
                path,
                checked,
            },
        ));
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    app_dirs.sort_by(|a, b| a.0.cmp(&b.0));
    Ok((
        files.into_iter().map(|(_, found)| found).collect(),
        app_dirs.into_iter().map(|(_, path)| path).collect(),
    ))
}

/// The canonical path of the app directory `app` (an entry of the
/// containers directory): every symlink resolved, once. An error when it
/// does not lead to a directory.
fn real_app_dir(app: &Path) -> Result<PathBuf, ConfigError> {
    let real = fs::canonicalize(app).map_err(|e| app_error(app, io_reason(&e)))?;
    match fs::metadata(&real) {
        Ok(meta) if meta.is_dir() => Ok(real),
        Ok(_) => Err(app_error(app, "not a directory".to_string())),
        Err(e) => Err(app_error(app, io_reason(&e))),
    }
}

/// An error of the app directory `app`; a link's names its target.
fn app_error(app: &Path, reason: String) -> ConfigError {
    match fs::read_link(app) {
        Ok(target) => file_error(app, format!("link to {}: {reason}", target.display())),
        Err(_) => file_error(app, reason),
    }
}

/// One definition file read whole, parsed, its seccomp profile and env
/// files read in, and checked against the host.
fn read_definition(name: &str, path: &Path) -> Result<ContainerSpec, ConfigError> {
    let text = read_capped(path)?;
    let spec = parse_container(name, &text, path)?;
    let spec = load_seccomp_profile(spec, path)?;
    let mut spec = load_env_files(spec, path)?;
    spec.hash = check_root_host(&spec, path)?;
    check_bind_sources(&spec, path)?;
    Ok(spec)
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
    let file =
        crate::sys::fd::open_read(path, libc::O_NONBLOCK).map_err(|e| error(io_reason(&e)))?;
    let meta = file.metadata().map_err(|e| error(io_reason(&e)))?;
    if !meta.is_file() {
        return Err(error("not a regular file".to_string()));
    }
    let too_large = || error(format!("file is larger than {MAX_FILE_SIZE} bytes"));
    if meta.len() > MAX_FILE_SIZE {
        return Err(too_large());
    }
    // Room for the whole file and the one byte that shows its end: two
    // reads, not a doubling series of them.
    let mut bytes = Vec::with_capacity(meta.len() as usize + 1);
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
    use crate::config::effective;
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
    /// A containers directory `containers` beside `apps/shop/1` and
    /// `apps/shop/2`, each generation with `app.sqfs` (a squashfs magic
    /// is all the host check reads) and `web.json` using it by its
    /// relative name; and a rootfs directory for other definitions.
    struct AppTree {
        tmp: TempDir,
        dir: PathBuf,
        rootfs: PathBuf,
    }

    impl AppTree {
        fn new(tag: &str) -> AppTree {
            let tmp = TempDir::new(tag);
            let dir = tmp.0.join("containers");
            let rootfs = tmp.0.join("rootfs");
            fs::create_dir_all(&dir).unwrap();
            fs::create_dir_all(&rootfs).unwrap();
            let tree = AppTree { tmp, dir, rootfs };
            for n in [1, 2] {
                let generation = tree.generation(n);
                fs::create_dir_all(&generation).unwrap();
                fs::write(generation.join("app.sqfs"), b"hsqs....").unwrap();
                fs::write(
                    generation.join("web.json"),
                    r#"{"image": "app.sqfs", "command": ["/bin/web"]}"#,
                )
                .unwrap();
            }
            tree
        }

        fn generation(&self, n: u32) -> PathBuf {
            self.tmp.0.join("apps/shop").join(n.to_string())
        }

        /// The generation's canonical path, as definitions name it.
        fn real(&self, n: u32) -> PathBuf {
            fs::canonicalize(self.generation(n)).unwrap()
        }

        /// A definition with the rootfs directory as its root.
        fn rootfs_json(&self, extra: &str) -> String {
            let r = self.rootfs.display();
            format!(r#"{{"rootfs": "{r}", "command": ["/bin/sh"]{extra}}}"#)
        }

        /// Points `containers/shop.app` at generation `n` (by a relative
        /// link), as an update does: a new link renamed over the old.
        fn switch(&self, n: u32) {
            let new = self.dir.join(".shop.app.new");
            std::os::unix::fs::symlink(format!("../apps/shop/{n}"), &new).unwrap();
            fs::rename(&new, self.dir.join("shop.app")).unwrap();
        }
    }

    fn get<'a>(found: &'a Definitions, name: &str) -> &'a Result<ContainerSpec, ConfigError> {
        &found.entries.iter().find(|(n, _)| n == name).unwrap().1
    }

    #[test]
    fn an_app_directory_is_read_through_its_real_path() {
        let t = AppTree::new("apps");
        t.switch(1);
        fs::write(t.dir.join("top.json"), t.rootfs_json("")).unwrap();
        // An app directory that is a directory, with what is not read.
        let tools = t.dir.join("tools.app");
        fs::create_dir_all(tools.join("sub")).unwrap();
        fs::create_dir_all(tools.join("nested.app")).unwrap();
        fs::write(tools.join("tool.json"), t.rootfs_json("")).unwrap();
        for skipped in [
            "sub/deep.json",
            "nested.app/deeper.json",
            ".hidden.json",
            "backup.json~",
            "notes.txt",
        ] {
            fs::write(tools.join(skipped), t.rootfs_json("")).unwrap();
        }
        // A definition in an app may be a symlink to a file.
        fs::write(t.tmp.0.join("kept.json"), t.rootfs_json("")).unwrap();
        std::os::unix::fs::symlink(t.tmp.0.join("kept.json"), tools.join("linked.json")).unwrap();
        // An update's hidden or backup links are not apps.
        for skipped in [".shop.app.tmp", "old.app~"] {
            std::os::unix::fs::symlink(t.generation(2), t.dir.join(skipped)).unwrap();
        }
        fs::write(
            t.generation(1).join("broken.json"),
            t.rootfs_json(r#", "depends-on": ["nope"]"#),
        )
        .unwrap();

        let found = read_definitions(&t.dir).unwrap();
        let names: Vec<&str> = found.entries.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["broken", "linked", "tool", "top", "web"]);
        assert!(found.duplicates.is_empty());
        let real1 = t.real(1);
        let web = get(&found, "web").as_ref().unwrap();
        assert_eq!(web.file, real1.join("web.json"));
        assert_eq!(web.image.as_deref(), Some(real1.join("app.sqfs").as_path()));
        let named = format!(r#""image":"{}""#, real1.join("app.sqfs").display());
        assert!(web.canonical.contains(&named), "{}", web.canonical);
        assert!(effective(web).contains(&named));
        assert_eq!(
            get(&found, "tool").as_ref().unwrap().file,
            tools.join("tool.json")
        );
        assert_eq!(
            get(&found, "linked").as_ref().unwrap().file,
            tools.join("linked.json")
        );
        // A check across files names the file in the app.
        let e = get(&found, "broken").as_ref().unwrap_err();
        assert_eq!(e.file, real1.join("broken.json"));
        assert_eq!(e.reason, "no container named nope is defined");

        // Switched: the definitions name the other generation, and the
        // same text is another definition.
        t.switch(2);
        let again = read_definitions(&t.dir).unwrap();
        let web2 = get(&again, "web").as_ref().unwrap();
        assert_eq!(web2.image, Some(t.real(2).join("app.sqfs")));
        assert_eq!(web2.file, t.real(2).join("web.json"));
        assert_ne!(web2.hash, web.hash);
        assert!(!again.entries.iter().any(|(n, _)| n == "broken"));
    }

    #[test]
    fn a_name_defined_twice_is_an_error_of_the_later_file() {
        let t = AppTree::new("twice");
        t.switch(1);
        fs::write(t.dir.join("web.json"), t.rootfs_json("")).unwrap();
        let other = t.dir.join("other.app");
        fs::create_dir(&other).unwrap();
        fs::write(other.join("db.json"), t.rootfs_json("")).unwrap();
        fs::write(t.generation(1).join("db.json"), "{").unwrap();

        let found = read_definitions(&t.dir).unwrap();
        let names: Vec<&str> = found.entries.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["db", "web"]);
        // The first file keeps the name, broken or not: top-level files
        // first, then the apps by name (other.app before shop.app).
        let web = get(&found, "web").as_ref().unwrap();
        assert_eq!(web.file, t.dir.join("web.json"));
        assert_eq!(web.rootfs, t.rootfs);
        assert_eq!(
            get(&found, "db").as_ref().unwrap().file,
            other.join("db.json")
        );
        let real1 = t.real(1);
        let shown: Vec<String> = found.duplicates.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            shown,
            [
                format!(
                    "{}: container db is already defined in {}",
                    real1.join("db.json").display(),
                    other.join("db.json").display()
                ),
                format!(
                    "{}: container web is already defined in {}",
                    real1.join("web.json").display(),
                    t.dir.join("web.json").display()
                ),
            ]
        );
        assert!(found.duplicates.iter().all(|e| e.field.is_none()));
        // As one list: the read fails with the first.
        assert_eq!(
            read_containers_dir(&t.dir).unwrap_err(),
            found.duplicates[0]
        );
        fs::remove_file(t.generation(1).join("db.json")).unwrap();
        fs::remove_file(t.dir.join("web.json")).unwrap();
        let found = read_containers_dir(&t.dir).unwrap();
        assert_eq!(found.len(), 2);
    }

    #[test]
    fn an_app_directory_that_cannot_be_read_fails_the_whole_read() {
        let t = AppTree::new("badapp");
        fs::write(t.dir.join("top.json"), t.rootfs_json("")).unwrap();
        let app = t.dir.join("shop.app");
        let error = || {
            let e = read_definitions(&t.dir).unwrap_err();
            assert_eq!(e.field, None);
            (e.file, e.reason)
        };
        std::os::unix::fs::symlink("../apps/shop/9", &app).unwrap();
        assert_eq!(
            error(),
            (
                app.clone(),
                "link to ../apps/shop/9: no such file or directory".into()
            )
        );
        fs::remove_file(&app).unwrap();
        std::os::unix::fs::symlink("../apps/shop/1/web.json", &app).unwrap();
        assert_eq!(
            error(),
            (
                app.clone(),
                "link to ../apps/shop/1/web.json: not a directory".into()
            )
        );
        fs::remove_file(&app).unwrap();
        fs::write(&app, "").unwrap();
        assert_eq!(error(), (app.clone(), "not a directory".into()));
        fs::remove_file(&app).unwrap();
        let odd = t.dir.join("my shop.app");
        fs::create_dir(&odd).unwrap();
        assert_eq!(
            error(),
            (
                odd.clone(),
                r#"app name "my shop" may only contain A-Z a-z 0-9 _ . -"#.into()
            )
        );
        fs::remove_dir(&odd).unwrap();
        t.switch(1);
        assert_eq!(read_containers_dir(&t.dir).unwrap().len(), 2);
    }
}
