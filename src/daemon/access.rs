//! Who may use the API: root, and the members of one group. The socket is
//! created `root:GROUP` mode 0660 (GROUP is `socket-group`, else root's
//! group 0), whatever the umask the daemon was started with; and every
//! peer is checked again on accept by the credentials the kernel recorded
//! when it connected (SO_PEERCRED, SO_PEERGROUPS), so a process that can
//! reach the socket some other way (a capability that overrides file
//! modes, a socket passed in a bind mount) is refused all the same. A
//! refused peer gets one error line; the daemon logs its uid, at most
//! `ratelimit::BURST` lines a minute.

use std::fs;
use std::path::Path;
use std::time::Instant;

use log::warn;
use mio::net::{UnixListener, UnixStream};

use super::ratelimit::{RateLimit, Verdict};
use crate::config::SocketGroup;
use crate::errors;
use crate::sys::{process, socket};

/// Where group names are looked up.
pub const GROUP_FILE: &str = "/etc/group";

/// The socket's mode: owner and group read and write, nobody else.
pub const SOCKET_MODE: u32 = 0o660;

/// The gid of group `name` in the text of an /etc/group file.
pub fn find_group(etc_group: &str, name: &str) -> Option<u32> {
    etc_group.lines().find_map(|line| {
        let mut fields = line.split(':');
        let found = fields.next()?;
        let gid = fields.nth(1)?.trim().parse().ok()?;
        (found == name).then_some(gid)
    })
}

/// The policy: the group whose members may connect besides root.
#[derive(Debug)]
pub struct Access {
    gid: u32,
    /// Whether `socket-group` names it (else it is root's, which the
    /// socket has already).
    configured: bool,
    /// The group as messages name it: `socket-group "berth" (gid 1001)`.
    label: String,
    refusals: RateLimit,
}

impl Access {
    /// Resolves `socket-group` (a name through `group_file`); `config`
    /// names daemon.json in errors.
    pub fn new(
        group: Option<&SocketGroup>,
        group_file: &Path,
        config: &Path,
    ) -> Result<Access, String> {
        let (gid, label) = match group {
            None => (0, "root's group (gid 0)".to_string()),
            Some(SocketGroup::Id(gid)) => (*gid, format!("socket-group {gid}")),
            Some(SocketGroup::Name(name)) => {
                let text = fs::read_to_string(group_file).map_err(|e| {
                    format!(
                        "{}: field \"socket-group\": read {}: {err}",
                        config.display(),
                        group_file.display(),
                        err = errors::io_text(&e)
                    )
                })?;
                let gid = find_group(&text, name).ok_or_else(|| {
                    format!(
                        "{}: field \"socket-group\": no group {name:?} in {}",
                        config.display(),
                        group_file.display()
                    )
                })?;
                (gid, format!("socket-group {name:?} (gid {gid})"))
            }
        };
        Ok(Access {
            gid,
            configured: group.is_some(),
            label,
            refusals: RateLimit::new(),
        })
    }

    /// Creates the listening socket at `path`, mode 0660 from the start
    /// (bound under a umask that leaves nothing wider), owned root:GROUP.
    pub fn bind(&self, path: &Path) -> Result<UnixListener, String> {
        let umask = process::set_umask(0o777 & !SOCKET_MODE);
        let bound = UnixListener::bind(path);
        process::set_umask(umask);
        let listener = bound.map_err(|e| {
            format!(
                "listen on {}: {err}",
                path.display(),
                err = errors::io_text(&e)
            )
        })?;
        if !self.configured {
            return Ok(listener);
        }
        // Until this chown the group is the daemon's (root): no one else
        // could connect meanwhile.
        std::os::unix::fs::lchown(path, Some(0), Some(self.gid)).map_err(|e| {
            format!(
                "chown {} to root:{}: {err}",
                path.display(),
                self.gid,
                err = errors::io_text(&e)
            )
        })?;
        Ok(listener)
    }

    /// Whether a peer with these ids may use the API.
    fn allows(&self, uid: u32, gid: u32, groups: &[u32]) -> bool {
        uid == 0 || gid == self.gid || groups.contains(&self.gid)
    }

    /// Checks a new connection's peer: `Err` holds the line to answer a
    /// refused one with (and the refusal is logged, rate-limited).
    pub fn check(&mut self, stream: &UnixStream, now: Instant) -> Result<(), String> {
        let cred = socket::peer_cred(stream).map_err(|e| {
            format!(
                "permission denied: the peer's credentials cannot be read: {err}",
                err = errors::io_text(&e)
            )
        })?;
        let groups = if cred.uid == 0 || cred.gid == self.gid {
            Vec::new()
        } else {
            socket::peer_groups(stream).unwrap_or_default()
        };
        if self.allows(cred.uid, cred.gid, &groups) {
            return Ok(());
        }
        let why = format!("uid {} is neither root nor in {}", cred.uid, self.label);
        match self.refusals.check(now) {
            Verdict::Log => warn!("refused an API client (pid {}): {why}", cred.pid),
            Verdict::LogAfterDropped(n) => warn!(
                "refused an API client (pid {}): {why} ({n} refusals before it not logged)",
                cred.pid
            ),
            Verdict::Drop => {}
        }
        Err(format!("permission denied: {why}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TempDir;

    const GROUPS: &str = "root:x:0:\n\
                          daemon:x:1:\n\
                          # a comment line\n\
                          broken\n\
                          berth:x:1001:alice,bob\n\
                          berth2:x:1002:\n";

    #[test]
    fn group_names_are_found_whole() {
        assert_eq!(find_group(GROUPS, "berth"), Some(1001));
        assert_eq!(find_group(GROUPS, "berth2"), Some(1002));
        assert_eq!(find_group(GROUPS, "root"), Some(0));
        assert_eq!(find_group(GROUPS, "bert"), None);
        assert_eq!(find_group(GROUPS, "broken"), None);
        assert_eq!(find_group(GROUPS, "alice"), None);
    }

    #[test]
    fn a_group_resolves_by_name_or_number_and_an_unknown_name_is_an_error() {
        let tmp = TempDir::new("access");
        let file = tmp.0.join("group");
        fs::write(&file, GROUPS).unwrap();
        let config = Path::new("/etc/berth/daemon.json");
        let by_name = SocketGroup::Name("berth".into());
        let a = Access::new(Some(&by_name), &file, config).unwrap();
        assert_eq!(
            (a.gid, a.label.as_str()),
            (1001, "socket-group \"berth\" (gid 1001)")
        );
        let a = Access::new(Some(&SocketGroup::Id(4242)), &file, config).unwrap();
        assert_eq!(a.gid, 4242);
        let a = Access::new(None, &file, config).unwrap();
        assert_eq!(a.gid, 0);
        let e = Access::new(Some(&SocketGroup::Name("nope".into())), &file, config).unwrap_err();
        assert_eq!(
            e,
            format!(
                "/etc/berth/daemon.json: field \"socket-group\": no group \"nope\" in {}",
                file.display()
            )
        );
        let missing = tmp.0.join("missing");
        let e = Access::new(Some(&by_name), &missing, config).unwrap_err();
        assert!(e.contains("read") && e.contains("No such file"), "{e}");
    }

    #[test]
    fn root_and_the_group_are_allowed_by_primary_or_supplementary_gid() {
        let tmp = TempDir::new("access");
        let a = Access::new(
            Some(&SocketGroup::Id(1001)),
            &tmp.0.join("group"),
            Path::new("d"),
        )
        .unwrap();
        assert!(a.allows(0, 0, &[]));
        assert!(a.allows(0, 5, &[6]));
        assert!(a.allows(1000, 1001, &[]));
        assert!(a.allows(1000, 1000, &[7, 1001]));
        assert!(!a.allows(1000, 1000, &[]));
        assert!(!a.allows(1000, 0, &[0, 1002]));
    }
}
