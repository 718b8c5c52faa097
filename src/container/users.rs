//! A container user's supplementary groups, from the rootfs's own
//! /etc/passwd and /etc/group: the uid's name, then every group that lists
//! that name as a member. The files are opened inside the rootfs (a symlink
//! in it never leads to the host's), must be regular files, and are read
//! up to a cap.

use std::ffi::CString;
use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::errors;
use crate::sys::{fd, resolve};

/// Largest /etc/passwd or /etc/group read.
pub const MAX_FILE: u64 = 1024 * 1024;
/// Most supplementary groups a process may have (NGROUPS_MAX).
pub const MAX_GROUPS: usize = 65_536;

/// Why the groups could not be looked up.
#[derive(Debug)]
pub struct LookupError {
    pub rootfs: PathBuf,
    /// "/etc/passwd" or "/etc/group".
    pub file: &'static str,
    pub err: io::Error,
}

impl fmt::Display for LookupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "read {} in rootfs {}: {}",
            self.file,
            self.rootfs.display(),
            errors::io_text(&self.err)
        )
    }
}

/// The supplementary groups of `uid` in the rootfs at `rootfs`: none when
/// the uid has no name in its /etc/passwd or either file is missing.
pub fn supplementary_groups(rootfs: &Path, uid: u32) -> Result<Vec<u32>, LookupError> {
    let error = |file, err| LookupError {
        rootfs: rootfs.to_path_buf(),
        file,
        err,
    };
    let path = CString::new(rootfs.as_os_str().as_bytes())
        .map_err(|_| error("/", io::Error::from_raw_os_error(libc::EINVAL)))?;
    let root = fd::open(&path, libc::O_PATH | libc::O_DIRECTORY, 0).map_err(|e| error("/", e))?;
    let read =
        |file: &'static str| read_in_root(root.as_fd(), &file[1..]).map_err(|e| error(file, e));
    let Some(passwd) = read("/etc/passwd")? else {
        return Ok(Vec::new());
    };
    let Some(name) = user_name(&passwd, uid) else {
        return Ok(Vec::new());
    };
    let Some(group) = read("/etc/group")? else {
        return Ok(Vec::new());
    };
    Ok(groups_listing(&group, name))
}

/// The whole of a regular file at `path` inside `root`, None if missing.
/// It is looked at (O_PATH) before it is opened: a device node or FIFO in
/// the rootfs is never opened.
fn read_in_root(root: std::os::fd::BorrowedFd<'_>, path: &str) -> io::Result<Option<String>> {
    let c_path = CString::new(path).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let found = match resolve::open_in_root(root, &c_path, libc::O_PATH) {
        Ok(fd) => File::from(fd),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if !found.metadata()?.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    // The same file, now opened for reading.
    let file = File::open(format!("/proc/self/fd/{}", found.as_raw_fd()))?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_FILE {
        return Err(io::Error::other(format!(
            "file is larger than {MAX_FILE} bytes"
        )));
    }
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}

/// The name of `uid` in passwd(5) text: the first line `name:x:UID:...`.
pub fn user_name(passwd: &str, uid: u32) -> Option<&str> {
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let id = fields.nth(1)?;
        (!name.is_empty() && id.parse::<u32>().ok() == Some(uid)).then_some(name)
    })
}

/// The gids of every group in group(5) text whose member list holds
/// `name`, in file order, each once, at most [`MAX_GROUPS`].
pub fn groups_listing(group: &str, name: &str) -> Vec<u32> {
    let mut gids = Vec::new();
    for line in group.lines() {
        let fields: Vec<&str> = line.split(':').collect();
        let [_, _, gid, members] = fields[..] else {
            continue;
        };
        let Ok(gid) = gid.parse::<u32>() else {
            continue;
        };
        if members.split(',').any(|m| m == name) && !gids.contains(&gid) {
            gids.push(gid);
            if gids.len() == MAX_GROUPS {
                break;
            }
        }
    }
    gids
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TempDir;
    use std::fs;
    use std::os::unix::fs::symlink;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
                          daemon:x:1:1::/:/bin/false\n\
                          app:x:1000:1000::/home/app:/bin/sh\n\
                          broken line\n\
                          :x:2000:2000::/:\n";
    const GROUP: &str = "root:x:0:\n\
                         adm:x:4:app,daemon\n\
                         video:x:27:daemon,app\n\
                         bad:x:notanumber:app\n\
                         short:x:9\n\
                         apps:x:1000:\n\
                         adm-again:x:4:app\n\
                         appx:x:50:application\n";

    #[test]
    fn names_and_groups_from_the_files() {
        assert_eq!(user_name(PASSWD, 0), Some("root"));
        assert_eq!(user_name(PASSWD, 1000), Some("app"));
        assert_eq!(user_name(PASSWD, 2000), None, "an empty name is no name");
        assert_eq!(user_name(PASSWD, 5), None);
        assert_eq!(groups_listing(GROUP, "app"), [4, 27]);
        assert_eq!(groups_listing(GROUP, "daemon"), [4, 27]);
        assert_eq!(groups_listing(GROUP, "root"), Vec::<u32>::new());
        assert_eq!(groups_listing("", "app"), Vec::<u32>::new());
    }

    #[test]
    fn the_files_are_read_inside_the_rootfs_only() {
        let t = TempDir::new("users");
        let rootfs = t.path().join("rootfs");
        fs::create_dir_all(rootfs.join("etc")).unwrap();
        assert_eq!(
            supplementary_groups(&rootfs, 1000).unwrap(),
            Vec::<u32>::new()
        );
        fs::write(rootfs.join("etc/passwd"), PASSWD).unwrap();
        assert_eq!(
            supplementary_groups(&rootfs, 1000).unwrap(),
            Vec::<u32>::new()
        );
        // /etc/group a symlink to a host path: resolved in the rootfs,
        // where there is none.
        let host = t.path().join("host-group");
        fs::write(&host, GROUP).unwrap();
        symlink(&host, rootfs.join("etc/group")).unwrap();
        assert_eq!(
            supplementary_groups(&rootfs, 1000).unwrap(),
            Vec::<u32>::new()
        );
        fs::remove_file(rootfs.join("etc/group")).unwrap();
        fs::write(rootfs.join("etc/group"), GROUP).unwrap();
        assert_eq!(supplementary_groups(&rootfs, 1000).unwrap(), [4, 27]);
        assert_eq!(supplementary_groups(&rootfs, 7).unwrap(), Vec::<u32>::new());

        fs::write(rootfs.join("etc/group"), "x".repeat(MAX_FILE as usize + 1)).unwrap();
        let e = supplementary_groups(&rootfs, 1000).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "read /etc/group in rootfs {}: file is larger than 1048576 bytes",
                rootfs.display()
            )
        );
        fs::remove_file(rootfs.join("etc/group")).unwrap();
        fs::create_dir(rootfs.join("etc/group")).unwrap();
        let e = supplementary_groups(&rootfs, 1000).unwrap_err();
        assert!(e.to_string().ends_with("not a regular file"), "{e}");
        // A FIFO is looked at, never opened (which would block).
        fs::remove_dir(rootfs.join("etc/group")).unwrap();
        let made = std::process::Command::new("mkfifo")
            .arg(rootfs.join("etc/group"))
            .status()
            .unwrap();
        assert!(made.success());
        let e = supplementary_groups(&rootfs, 1000).unwrap_err();
        assert!(e.to_string().ends_with("not a regular file"), "{e}");
    }
}
