//! /etc/hostname, /etc/hosts and /etc/resolv.conf as berth provides them
//! to a container (unless its definition says `"etc-files": false`):
//! written by the monitor at each start into the container's run
//! directory, then bound read-only onto the rootfs's files by the child
//! (see `spawn`). A `mounts` entry onto one of them wins over berth's.
//!
//! hostname is the container's; hosts maps localhost to loopback, then
//! either the hostname to loopback too (no address of its own: its network
//! is "none" or the host's) or, on bridge networks, the lines the daemon
//! gives: the container's address and those of its network peers (which
//! the daemon rewrites in place as peers come and go); resolv.conf is the
//! host's, read at each start, as Docker gives it.

use std::ffi::CString;
use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::config::ContainerSpec;
use crate::sys::{fd, mount, resolve};

/// The files, by name in the container's /etc.
pub const FILES: &[&str] = &["hostname", "hosts", "resolv.conf"];
/// Where the host's resolver configuration is read.
const HOST_RESOLV_CONF: &str = "/etc/resolv.conf";
/// Largest host resolv.conf copied.
const MAX_RESOLV_CONF: u64 = 64 * 1024;

/// /etc/hostname's text.
pub fn hostname(spec: &ContainerSpec) -> String {
    format!("{}\n", spec.hostname)
}

/// /etc/hosts's text; `network` the lines naming the container's network
/// peers (itself first), empty when it has no address of its own.
pub fn hosts(spec: &ContainerSpec, network: &str) -> String {
    let mut text = "127.0.0.1\tlocalhost\n\
         ::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\n\
         ff00::0\tip6-mcastprefix\n\
         ff02::1\tip6-allnodes\n\
         ff02::2\tip6-allrouters\n"
        .to_string();
    if network.is_empty() {
        text.push_str(&format!("127.0.0.1\t{}\n", spec.hostname));
    } else {
        text.push_str(network);
    }
    text
}

/// The host's resolv.conf (empty when it has none), up to a cap.
fn host_resolv_conf() -> io::Result<Vec<u8>> {
    let file = match fs::File::open(HOST_RESOLV_CONF) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut bytes = Vec::new();
    file.take(MAX_RESOLV_CONF).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Why a file could not be written.
#[derive(Debug)]
pub struct WriteError {
    pub path: PathBuf,
    pub err: io::Error,
}

/// Writes the three files into `dir` (created if missing) for `spec`;
/// `network` as for `hosts`. With `keep_hosts` a hosts file already there
/// is left as it is (the daemon keeps it current while the container
/// runs: a restart by the monitor must not bring back older lines).
pub fn write(
    dir: &Path,
    spec: &ContainerSpec,
    network: &str,
    keep_hosts: bool,
) -> Result<(), WriteError> {
    let error = |path: PathBuf| move |err| WriteError { path, err };
    fs::create_dir_all(dir).map_err(error(dir.to_path_buf()))?;
    let resolv = host_resolv_conf().map_err(error(PathBuf::from(HOST_RESOLV_CONF)))?;
    for (name, text) in [
        ("hostname", hostname(spec).into_bytes()),
        ("hosts", hosts(spec, network).into_bytes()),
        ("resolv.conf", resolv),
    ] {
        let path = dir.join(name);
        if keep_hosts && name == "hosts" && path.exists() {
            continue;
        }
        // 0644 whatever the daemon's umask: a container's non-root user
        // reads them.
        fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&path)
            .and_then(|mut f| {
                f.write_all(&text)?;
                f.set_permissions(fs::Permissions::from_mode(0o644))
            })
            .map_err(error(path))?;
    }
    Ok(())
}

/// Whether `root` is the host's own root directory (as with `"rootfs":
/// "/"): berth then creates no file in it, so a host missing one of these
/// files never gets an empty one.
pub fn is_host_root(root: &Path) -> bool {
    match (fs::metadata(root), fs::metadata("/")) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

/// The files the child will leave out of the rootfs at `root` (as the
/// monitor sees it, about to be entered): those the rootfs does not have
/// (or has as a symlink to nothing) where no mount point may be made
/// (`create` false) or can be made, on a read-only file system (a
/// `readonly-rootfs` turns read-only only after the mount points are
/// made). A file a `mounts` entry targets is not berth's. Best effort:
/// what cannot be looked at is not named.
pub fn left_out(root: &Path, spec: &ContainerSpec, create: bool) -> Vec<&'static str> {
    let Ok(path) = CString::new(root.as_os_str().as_bytes()) else {
        return Vec::new();
    };
    let Ok(dir) = fd::open(&path, libc::O_PATH | libc::O_DIRECTORY, 0) else {
        return Vec::new();
    };
    let read_only = mount::is_read_only(&path).unwrap_or(false);
    FILES
        .iter()
        .copied()
        .filter(|name| {
            !spec
                .mounts
                .iter()
                .any(|m| m.target == format!("/etc/{name}"))
        })
        .filter(|name| {
            let Ok(at) = CString::new(format!("etc/{name}")) else {
                return false;
            };
            let open = |flags| resolve::open_in_root(dir.as_fd(), &at, flags);
            let missing = |r: io::Result<_>| r.is_err_and(|e| e.kind() == io::ErrorKind::NotFound);
            missing(open(libc::O_PATH))
                && (!create || read_only || !missing(open(libc::O_PATH | libc::O_NOFOLLOW)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use crate::testing::TempDir;

    #[test]
    fn only_the_hosts_own_root_is_the_host_root() {
        assert!(is_host_root(Path::new("/")));
        assert!(is_host_root(Path::new("/.")));
        let dir = TempDir::new("etc-host-root");
        assert!(!is_host_root(dir.path()));
    }

    #[test]
    fn the_files_name_the_container() {
        let spec = config::parse_container(
            "web",
            r#"{"rootfs": "/srv/web", "command": ["x"], "hostname": "web-1"}"#,
            Path::new("web.json"),
        )
        .unwrap();
        assert_eq!(hostname(&spec), "web-1\n");
        let hosts = hosts(&spec, "");
        assert!(
            hosts.starts_with("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
        );
        assert!(hosts.ends_with("127.0.0.1\tweb-1\n"));
        let t = TempDir::new("etc-files");
        let dir = t.path().join("etc");
        write(&dir, &spec, "", false).unwrap();
        assert_eq!(fs::read_to_string(dir.join("hostname")).unwrap(), "web-1\n");
        assert_eq!(fs::read_to_string(dir.join("hosts")).unwrap(), hosts);
        assert_eq!(
            fs::read(dir.join("resolv.conf")).unwrap(),
            fs::read(HOST_RESOLV_CONF).unwrap_or_default()
        );
    }

    #[test]
    fn on_a_network_the_hostname_is_the_address_the_daemon_gives() {
        let spec = config::parse_container(
            "web",
            r#"{"rootfs": "/srv/web", "command": ["x"]}"#,
            Path::new("web.json"),
        )
        .unwrap();
        let peers = "10.88.0.2\tweb\n10.88.0.3\tdb\n";
        let text = hosts(&spec, peers);
        assert!(text.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(
            text.ends_with(&format!("ff02::2\tip6-allrouters\n{peers}")),
            "{text}"
        );
        assert!(!text.contains("127.0.0.1\tweb"));
        // Kept as the daemon last wrote it when asked to.
        let t = TempDir::new("etc-files-kept");
        let dir = t.path().join("etc");
        write(&dir, &spec, peers, false).unwrap();
        fs::write(dir.join("hosts"), "rewritten\n").unwrap();
        write(&dir, &spec, peers, true).unwrap();
        assert_eq!(
            fs::read_to_string(dir.join("hosts")).unwrap(),
            "rewritten\n"
        );
        write(&dir, &spec, peers, false).unwrap();
        assert_eq!(fs::read_to_string(dir.join("hosts")).unwrap(), text);
    }
}
