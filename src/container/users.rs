//! Who a container's process is, from the rootfs's own /etc/passwd and
//! /etc/group: a user or group given by name resolved to its number, the
//! user's home directory, and its supplementary groups (every group that
//! lists the user's name as a member). The files are opened inside the
//! rootfs (a symlink in it never leads to the host's), must be regular
//! files, and are read up to a cap.

use std::ffi::CString;
use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::config::{Id, User};
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

/// Who the process is: ids, supplementary groups, home directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    /// The user's home directory in /etc/passwd, if it has an entry.
    pub home: Option<String>,
}

/// Why the user could not be resolved.
#[derive(Debug)]
pub enum IdentityError {
    Read(LookupError),
    /// A user or group name the rootfs's file does not hold.
    NotFound {
        rootfs: PathBuf,
        /// "/etc/passwd" or "/etc/group".
        file: &'static str,
        name: String,
    },
}

impl fmt::Display for IdentityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdentityError::Read(e) => write!(f, "{e}"),
            IdentityError::NotFound { rootfs, file, name } => {
                let what = if *file == "/etc/group" {
                    "group"
                } else {
                    "user"
                };
                write!(
                    f,
                    "{what} \"{name}\" is not in {file} of rootfs {}",
                    rootfs.display()
                )
            }
        }
    }
}

/// Resolves `user` (root when `None`) in the rootfs at `rootfs`. Names
/// must be found; a number needs no entry (then it has no home and no
/// supplementary groups). A uid alone has gid = uid; a name alone its
/// group in /etc/passwd.
pub fn identity(rootfs: &Path, user: Option<&User>) -> Result<Identity, IdentityError> {
    let error = |file, err| {
        IdentityError::Read(LookupError {
            rootfs: rootfs.to_path_buf(),
            file,
            err,
        })
    };
    let not_found = |file, name: &str| IdentityError::NotFound {
        rootfs: rootfs.to_path_buf(),
        file,
        name: name.to_string(),
    };
    let path = CString::new(rootfs.as_os_str().as_bytes())
        .map_err(|_| error("/", io::Error::from_raw_os_error(libc::EINVAL)))?;
    let root = fd::open(&path, libc::O_PATH | libc::O_DIRECTORY, 0).map_err(|e| error("/", e))?;
    let read =
        |file: &'static str| read_in_root(root.as_fd(), &file[1..]).map_err(|e| error(file, e));
    let passwd = read("/etc/passwd")?.unwrap_or_default();
    let (uid, primary) = match user.map(|u| &u.user) {
        None => (0, Some(0)),
        Some(Id::Number(uid)) => (*uid, Some(*uid)),
        Some(Id::Name(name)) => match passwd_entry(&passwd, |n, _| n == name) {
            Some(entry) => (entry.uid, Some(entry.gid)),
            None => return Err(not_found("/etc/passwd", name)),
        },
    };
    let entry = passwd_entry(&passwd, |_, id| id == uid);
    let mut group_text = None;
    let gid = match user.and_then(|u| u.group.as_ref()) {
        Some(Id::Number(gid)) => *gid,
        Some(Id::Name(name)) => {
            let text = group_text.insert(read("/etc/group")?.unwrap_or_default());
            group_id(text, name).ok_or_else(|| not_found("/etc/group", name))?
        }
        None => primary.unwrap_or(0),
    };
    let groups = match &entry {
        Some(e) => {
            let text = match group_text {
                Some(text) => text,
                None => read("/etc/group")?.unwrap_or_default(),
            };
            groups_listing(&text, e.name)
        }
        None => Vec::new(),
    };
    Ok(Identity {
        uid,
        gid,
        groups,
        home: entry.map(|e| e.home.to_string()).filter(|h| !h.is_empty()),
    })
}

/// One line of passwd(5): name, uid, gid, home.
struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

/// The first entry of passwd(5) text for which `matches(name, uid)`.
fn passwd_entry(passwd: &str, matches: impl Fn(&str, u32) -> bool) -> Option<PasswdEntry<'_>> {
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        let [name, _, uid, gid, _, home, ..] = fields[..] else {
            return None;
        };
        let (uid, gid) = (uid.parse().ok()?, gid.parse().ok()?);
        (!name.is_empty() && matches(name, uid)).then_some(PasswdEntry {
            name,
            uid,
            gid,
            home,
        })
    })
}

/// The gid of group `name` in group(5) text.
fn group_id(group: &str, name: &str) -> Option<u32> {
    group.lines().find_map(|line| {
        let mut fields = line.split(':');
        let n = fields.next()?;
        let gid = fields.nth(1)?;
        (n == name).then(|| gid.parse().ok()).flatten()
    })
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
        let name = |uid| passwd_entry(PASSWD, |_, id| id == uid).map(|e| e.name);
        assert_eq!(name(0), Some("root"));
        assert_eq!(name(1000), Some("app"));
        assert_eq!(name(2000), None, "an empty name is no name");
        assert_eq!(name(5), None);
        assert_eq!(group_id(GROUP, "video"), Some(27));
        assert_eq!(group_id(GROUP, "bad"), None);
        assert_eq!(groups_listing(GROUP, "app"), [4, 27]);
        assert_eq!(groups_listing(GROUP, "daemon"), [4, 27]);
        assert_eq!(groups_listing(GROUP, "root"), Vec::<u32>::new());
        assert_eq!(groups_listing("", "app"), Vec::<u32>::new());
    }

    #[test]
    fn users_and_groups_by_name_or_number() {
        let t = TempDir::new("identity");
        let rootfs = t.path().join("rootfs");
        fs::create_dir_all(rootfs.join("etc")).unwrap();
        fs::write(rootfs.join("etc/passwd"), PASSWD).unwrap();
        fs::write(rootfs.join("etc/group"), GROUP).unwrap();
        let user = |u: Id, g: Option<Id>| User { user: u, group: g };
        let name = |s: &str| Id::Name(s.to_string());
        let id = |u: Option<User>| identity(&rootfs, u.as_ref());

        let root = id(None).unwrap();
        assert_eq!(
            (root.uid, root.gid, root.home.as_deref()),
            (0, 0, Some("/root"))
        );
        let app = id(Some(user(name("app"), None))).unwrap();
        assert_eq!(
            app,
            Identity {
                uid: 1000,
                gid: 1000,
                groups: vec![4, 27],
                home: Some("/home/app".to_string())
            }
        );
        let app = id(Some(user(name("app"), Some(name("video"))))).unwrap();
        assert_eq!((app.uid, app.gid), (1000, 27));
        let app = id(Some(user(Id::Number(1000), Some(name("adm"))))).unwrap();
        assert_eq!(
            (app.uid, app.gid, app.groups.clone()),
            (1000, 4, vec![4, 27])
        );
        let app = id(Some(user(name("daemon"), Some(Id::Number(99))))).unwrap();
        assert_eq!((app.uid, app.gid), (1, 99));
        // A number without an entry: no home, no groups, gid = uid.
        let odd = id(Some(user(Id::Number(4242), None))).unwrap();
        assert_eq!(
            (odd.uid, odd.gid, odd.home, odd.groups),
            (4242, 4242, None, vec![])
        );

        let e = id(Some(user(name("nobody"), None))).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "user \"nobody\" is not in /etc/passwd of rootfs {}",
                rootfs.display()
            )
        );
        let e = id(Some(user(name("app"), Some(name("wheel"))))).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "group \"wheel\" is not in /etc/group of rootfs {}",
                rootfs.display()
            )
        );
        fs::remove_file(rootfs.join("etc/passwd")).unwrap();
        assert!(matches!(
            id(Some(user(name("app"), None))),
            Err(IdentityError::NotFound { .. })
        ));
        assert_eq!(id(None).unwrap().home, None);
    }

    fn supplementary_groups(rootfs: &Path, uid: u32) -> Result<Vec<u32>, IdentityError> {
        let user = User {
            user: Id::Number(uid),
            group: None,
        };
        identity(rootfs, Some(&user)).map(|i| i.groups)
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
