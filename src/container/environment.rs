//! What a container's process is given besides its mounts, worked out
//! before clone: uid and gid, supplementary groups, the five capability
//! sets, every resource limit and oom_score_adj. Each comes from the
//! definition or a documented default, never from what the daemon
//! happened to inherit: the defaults depend only on the kernel (fs/nr_open,
//! kernel/threads-max) and the rootfs (its /etc/passwd and /etc/group).

use std::fmt;
use std::fs;
use std::io;
use std::path::Path;

use super::users::{self, Identity, IdentityError};
use crate::config::{self, ContainerSpec, UNLIMITED};
use crate::errors;
use crate::sys::cap;

/// Default `nofile`, soft and hard (Docker's), at most fs/nr_open.
pub const NOFILE: u64 = 1024 * 1024;
/// Linux's initial `stack` soft limit (_STK_LIM).
const STACK: u64 = 8 * 1024 * 1024;
/// Linux's initial `memlock` (MLOCK_LIMIT since 5.16).
const MEMLOCK: u64 = 8 * 1024 * 1024;
/// Linux's initial `msgqueue` (MQ_BYTES_MAX).
const MSGQUEUE: u64 = 819_200;

/// One resource limit the process gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub name: &'static str,
    pub resource: u32,
    pub soft: u64,
    pub hard: u64,
    /// Set by `rlimits` (else a default, lowered to the daemon's own hard
    /// limit if the daemon may not raise it).
    pub from_file: bool,
}

/// What the process gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Environment {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    /// The capabilities it may ever have: the bounding set, and root's
    /// effective and permitted sets.
    pub capabilities: u64,
    /// Effective and permitted sets before execve: `capabilities` for
    /// root, only those added by `cap-add` for another user.
    pub permitted: u64,
    /// Inheritable and ambient sets: what a non-root user keeps across
    /// execve (its `cap-add` capabilities); empty for root, whose
    /// capabilities come from the bounding set.
    pub ambient: u64,
    /// Every limit, in RLIMIT_* order.
    pub rlimits: Vec<Limit>,
    pub oom_score_adj: i32,
    /// The user's home directory from the rootfs's /etc/passwd: HOME when
    /// the definition's env sets none.
    pub home: Option<String>,
    /// The directory holding the hostname, hosts and resolv.conf files
    /// bound onto the rootfs's /etc (see `etc_files`), once written.
    pub etc_dir: Option<std::path::PathBuf>,
    /// Whether a missing /etc file may be created in the root as a mount
    /// point: not in the host's own root directory.
    pub etc_create: bool,
}

/// What the host contributes: its limits and what the monitor holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Host {
    /// /proc/sys/fs/nr_open: the highest `nofile` the kernel allows.
    pub nr_open: u64,
    /// /proc/sys/kernel/threads-max; Linux starts init with half of it as
    /// its `nproc` and `sigpending` limits.
    pub threads_max: u64,
    /// The capabilities this process holds (permitted and bounding).
    pub held: u64,
}

/// Why the environment could not be worked out.
#[derive(Debug)]
pub enum EnvError {
    ReadHost {
        path: &'static str,
        err: io::Error,
    },
    /// Reading this process's capabilities.
    OwnCaps(io::Error),
    /// Resolving `user` in the rootfs.
    User(IdentityError),
    /// `cap-add` names a capability the daemon does not hold.
    NotHeld(u32),
}

impl fmt::Display for EnvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnvError::ReadHost { path, err } => {
                write!(f, "read {path}: {}", errors::io_text(err))
            }
            EnvError::OwnCaps(e) => {
                write!(f, "read the monitor's capabilities: {}", errors::io_text(e))
            }
            EnvError::User(e) => write!(f, "field \"user\": {e}"),
            EnvError::NotHeld(cap) => write!(
                f,
                "field \"cap-add\": {}: the daemon does not hold it, so it cannot give it",
                config::cap_name(*cap)
            ),
        }
    }
}

/// Reads what the host and the container's root (`root`: the rootfs as
/// the monitor sees it, ready to be entered) contribute, then works the
/// environment out.
pub fn gather(spec: &ContainerSpec, root: &Path) -> Result<Environment, EnvError> {
    let host = Host::read()?;
    let identity = match users::identity(root, spec.user.as_ref()) {
        Ok(identity) => identity,
        // Root, when no `user` is set, needs nothing from the rootfs's
        // files: one that cannot be read gives no home and no groups.
        Err(_) if spec.user.is_none() => users::Identity {
            uid: 0,
            gid: 0,
            groups: Vec::new(),
            home: None,
        },
        Err(e) => return Err(EnvError::User(e)),
    };
    work_out(spec, &host, identity)
}

impl Host {
    fn read() -> Result<Host, EnvError> {
        let number = |path: &'static str| -> Result<u64, EnvError> {
            let text = fs::read_to_string(path).map_err(|err| EnvError::ReadHost { path, err })?;
            text.trim().parse().map_err(|_| EnvError::ReadHost {
                path,
                err: io::Error::other(format!("not a number: {:?}", text.trim())),
            })
        };
        let (_, permitted, _) = cap::own_sets().map_err(EnvError::OwnCaps)?;
        Ok(Host {
            nr_open: number("/proc/sys/fs/nr_open")?,
            threads_max: number("/proc/sys/kernel/threads-max")?,
            held: permitted & cap::own_bounding(),
        })
    }
}

/// The limits a container gets when its file sets none: Linux's initial
/// limits (those of init), but `nofile` at Docker's 1048576 (at most
/// fs/nr_open). (soft, hard) by name.
pub fn default_limit(name: &str, host: &Host) -> (u64, u64) {
    let tasks = (host.threads_max / 2).max(1);
    match name {
        "stack" => (STACK, UNLIMITED),
        "core" => (0, UNLIMITED),
        "nproc" | "sigpending" => (tasks, tasks),
        "nofile" => {
            let n = NOFILE.min(host.nr_open);
            (n, n)
        }
        "memlock" => (MEMLOCK, MEMLOCK),
        "msgqueue" => (MSGQUEUE, MSGQUEUE),
        "nice" | "rtprio" => (0, 0),
        _ => (UNLIMITED, UNLIMITED),
    }
}

/// The environment from the definition, the host, and who the user is.
pub fn work_out(
    spec: &ContainerSpec,
    host: &Host,
    identity: Identity,
) -> Result<Environment, EnvError> {
    // Capabilities named in cap-add must be there; "ALL" means all held.
    let not_held = spec.cap_add.set & !host.held;
    if not_held != 0 {
        return Err(EnvError::NotHeld(not_held.trailing_zeros()));
    }
    let (set, added) = config::capabilities(spec.cap_add, spec.cap_drop);
    let capabilities = set & host.held;
    let Identity {
        uid,
        gid,
        groups,
        home,
    } = identity;
    let (permitted, ambient) = if uid == 0 {
        (capabilities, 0)
    } else {
        (added & capabilities, added & capabilities)
    };
    let rlimits = config::RLIMITS
        .iter()
        .map(
            |&(name, resource)| match spec.rlimits.iter().find(|r| r.resource == resource) {
                Some(r) => Limit {
                    name,
                    resource,
                    soft: r.soft,
                    hard: r.hard,
                    from_file: true,
                },
                None => {
                    let (soft, hard) = default_limit(name, host);
                    Limit {
                        name,
                        resource,
                        soft,
                        hard,
                        from_file: false,
                    }
                }
            },
        )
        .collect();
    Ok(Environment {
        uid,
        gid,
        groups,
        capabilities,
        permitted,
        ambient,
        rlimits,
        oom_score_adj: spec.oom_score_adj,
        home,
        etc_dir: None,
        etc_create: false,
    })
}

/// Who a definition's numeric user is, without a rootfs to look in: for
/// tests.
#[cfg(test)]
pub fn numeric_identity(spec: &ContainerSpec, groups: Vec<u32>) -> Identity {
    let (uid, gid) = spec
        .user
        .as_ref()
        .and_then(crate::config::User::numeric)
        .unwrap_or((0, 0));
    Identity {
        uid,
        gid,
        groups,
        home: None,
    }
}

/// A host like the development machine, for tests.
#[cfg(test)]
pub const TEST_HOST: Host = Host {
    nr_open: 1 << 20,
    threads_max: 192_729,
    // The 41 capabilities of Linux 5.9 and later but SYS_RESOURCE.
    held: ((1 << 41) - 1) & !(1 << 24),
};

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const HOST: Host = TEST_HOST;

    fn spec(extra: &str) -> ContainerSpec {
        let text = format!(r#"{{"rootfs": "/srv/app", "command": ["/bin/app"]{extra}}}"#);
        config::parse_container("app", &text, Path::new("app.json")).unwrap()
    }

    fn limit(env: &Environment, name: &str) -> (u64, u64, bool) {
        let l = env.rlimits.iter().find(|l| l.name == name).unwrap();
        (l.soft, l.hard, l.from_file)
    }

    #[test]
    fn root_gets_the_set_in_effective_and_permitted_and_nothing_inheritable() {
        let env = {
            let sp = spec("");
            work_out(&sp, &HOST, numeric_identity(&sp, Vec::new()))
        }
        .unwrap();
        assert_eq!((env.uid, env.gid), (0, 0));
        assert_eq!(env.capabilities, 0xa004_25fb, "the default set");
        assert_eq!(env.permitted, env.capabilities);
        assert_eq!(env.ambient, 0);
        assert!(env.groups.is_empty());
        assert_eq!(env.oom_score_adj, 0);

        let env = {
            let sp = spec(r#","cap-add": ["NET_ADMIN"], "cap-drop": ["KILL"]"#);
            work_out(&sp, &HOST, numeric_identity(&sp, Vec::new()))
        }
        .unwrap();
        assert_eq!(env.capabilities, (0xa004_25fb | (1 << 12)) & !(1 << 5));
        assert_eq!(env.ambient, 0);
    }

    #[test]
    fn another_user_gets_only_what_was_added_and_keeps_it_as_ambient() {
        let env = {
            let sp = spec(r#","user": "1000:1000""#);
            work_out(&sp, &HOST, numeric_identity(&sp, vec![4, 27]))
        }
        .unwrap();
        assert_eq!(
            (env.uid, env.gid, env.groups.clone()),
            (1000, 1000, vec![4, 27])
        );
        assert_eq!(env.capabilities, 0xa004_25fb, "the bounding set as root's");
        assert_eq!((env.permitted, env.ambient), (0, 0));

        let env = {
            let sp = spec(r#","user": "1000", "cap-add": ["CAP_NET_BIND_SERVICE", "NET_ADMIN"]"#);
            work_out(&sp, &HOST, numeric_identity(&sp, Vec::new()))
        }
        .unwrap();
        let added = (1 << 10) | (1 << 12);
        assert_eq!((env.permitted, env.ambient), (added, added));
    }

    #[test]
    fn a_capability_the_daemon_lacks_fails_when_asked_for_and_is_left_out_otherwise() {
        let e = {
            let sp = spec(r#","cap-add": ["SYS_RESOURCE"]"#);
            work_out(&sp, &HOST, numeric_identity(&sp, Vec::new()))
        }
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "field \"cap-add\": CAP_SYS_RESOURCE: the daemon does not hold it, so it cannot give it"
        );
        let env = {
            let sp = spec(r#","cap-add": ["ALL"]"#);
            work_out(&sp, &HOST, numeric_identity(&sp, Vec::new()))
        }
        .unwrap();
        assert_eq!(env.capabilities, HOST.held);
    }

    #[test]
    fn limits_are_the_files_or_the_documented_defaults() {
        let env = {
            let sp =
                spec(r#","rlimits": {"nofile": [100, 200], "core": ["unlimited", "unlimited"]}"#);
            work_out(&sp, &HOST, numeric_identity(&sp, Vec::new()))
        }
        .unwrap();
        assert_eq!(env.rlimits.len(), 16);
        assert_eq!(limit(&env, "nofile"), (100, 200, true));
        assert_eq!(limit(&env, "core"), (UNLIMITED, UNLIMITED, true));
        assert_eq!(limit(&env, "stack"), (8 << 20, UNLIMITED, false));
        assert_eq!(limit(&env, "nproc"), (96_364, 96_364, false));
        assert_eq!(limit(&env, "sigpending"), (96_364, 96_364, false));
        assert_eq!(limit(&env, "memlock"), (8 << 20, 8 << 20, false));
        assert_eq!(limit(&env, "msgqueue"), (819_200, 819_200, false));
        assert_eq!(limit(&env, "rtprio"), (0, 0, false));
        assert_eq!(limit(&env, "cpu"), (UNLIMITED, UNLIMITED, false));

        let env = {
            let sp = spec("");
            work_out(&sp, &HOST, numeric_identity(&sp, Vec::new()))
        }
        .unwrap();
        assert_eq!(limit(&env, "nofile"), (1 << 20, 1 << 20, false));
        assert_eq!(limit(&env, "core"), (0, UNLIMITED, false));
        let small = Host {
            nr_open: 65_536,
            ..HOST
        };
        let env = {
            let sp = spec("");
            work_out(&sp, &small, numeric_identity(&sp, Vec::new()))
        }
        .unwrap();
        assert_eq!(limit(&env, "nofile"), (65_536, 65_536, false));
    }
}
