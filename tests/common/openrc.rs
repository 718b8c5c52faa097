//! Debian's OpenRC, extracted and never installed, for tests of berth's
//! OpenRC service: the packages `openrc`, `librc1`, `libeinfo1` and
//! `insserv` (whose /etc/insserv.conf openrc's lsb2rcconf reads) are
//! fetched with `apt-get download` and unpacked with `dpkg-deb -x` under
//! target/openrc, once: later runs reuse them.
//!
//! openrc-run has its paths compiled in (/sbin/openrc-run, /lib/rc,
//! /etc/rc.conf, /etc/init.d, /run/openrc), so every command runs in a
//! mount namespace of its own (`unshare -m`, mounts private) in which
//! read-only overlays put the package's files over /usr/lib and /usr/sbin
//! (/lib and /sbin are symlinks to them on a merged-/usr Debian), a
//! directory of the world's is the only /etc/init.d (the package's scripts
//! and the service under test) and another is /run, holding the service
//! states in /run/openrc from one command to the next. Nothing of the
//! machine's is written: not its /etc, not its /run, not its cgroups
//! (rc_sys is set so that openrc-run leaves cgroups alone and the daemon
//! stays in the world's cgroup).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::vm::unpack_deb;

/// The packages unpacked into one tree.
const PACKAGES: &[&str] = &["openrc", "librc1", "libeinfo1", "insserv"];

/// The directories OpenRC keeps service states in (openrc makes them when
/// it boots a system; here nothing booted).
const STATE_DIRS: &[&str] = &[
    "started",
    "starting",
    "stopping",
    "inactive",
    "wasinactive",
    "failed",
    "hotplugged",
    "daemons",
    "options",
    "exclusive",
    "scheduled",
    "tmp",
];

/// The unpacked packages, downloaded and unpacked under target/openrc on
/// the first call and reused after.
pub fn debian_openrc() -> PathBuf {
    let cache = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/openrc");
    let tree = cache.join("tree");
    if tree.join("UNPACKED").is_file() {
        return tree;
    }
    fs::create_dir_all(&cache).expect("create target/openrc");
    let partial = cache.join("tree.partial");
    let _ = fs::remove_dir_all(&partial);
    let _ = fs::remove_dir_all(&tree);
    for package in PACKAGES {
        unpack_deb(&cache, package, &partial);
    }
    for path in ["sbin/openrc-run", "lib/rc/sh/openrc-run.sh", "etc/rc.conf"] {
        assert!(
            partial.join(path).exists(),
            "the openrc packages have no {path}"
        );
    }
    fs::write(partial.join("UNPACKED"), PACKAGES.join("\n")).unwrap();
    fs::rename(&partial, &tree).expect("move the unpacked openrc in place");
    tree
}

/// One OpenRC service installed in a private view of the machine, under
/// `dir`: `etc/` (rc.conf, conf.d), `init.d/` (the only /etc/init.d),
/// `run/` (the only /run) and the script that sets the view up.
pub struct Installed {
    pub dir: PathBuf,
    /// The service's name (its file name in /etc/init.d).
    pub name: String,
    setup: PathBuf,
}

impl Installed {
    /// Installs `script` as /etc/init.d/NAME with `conf` as
    /// /etc/conf.d/NAME, under `dir` (which must not exist yet).
    pub fn new(tree: &Path, dir: &Path, name: &str, script: &Path, conf: &str) -> Installed {
        let etc = dir.join("etc");
        let init_d = dir.join("init.d");
        let openrc_state = dir.join("run/openrc");
        fs::create_dir_all(etc.join("conf.d")).unwrap();
        fs::create_dir_all(&init_d).unwrap();
        for state in STATE_DIRS {
            fs::create_dir_all(openrc_state.join(state)).unwrap();
        }
        // openrc-run refuses to act on a system it did not boot unless
        // this exists.
        fs::write(openrc_state.join("softlevel"), "").unwrap();
        // The package's rc.conf, with rc_sys set to a container kind for
        // which openrc-run sources no rc-cgroup.sh: it would move the
        // service into /sys/fs/cgroup/unified/NAME and the roots of the
        // v1 hierarchies, out of the world's cgroups.
        let rc_conf = fs::read_to_string(tree.join("etc/rc.conf")).unwrap();
        fs::write(
            etc.join("rc.conf"),
            format!("{rc_conf}\n# berth's tests: leave cgroups alone\nrc_sys=\"systemd-nspawn\"\n"),
        )
        .unwrap();
        fs::write(etc.join("conf.d").join(name), conf).unwrap();
        for entry in fs::read_dir(tree.join("etc/init.d")).unwrap().flatten() {
            fs::copy(entry.path(), init_d.join(entry.file_name())).unwrap();
        }
        let installed = init_d.join(name);
        fs::copy(script, &installed).unwrap();
        fs::set_permissions(&installed, fs::Permissions::from_mode(0o755)).unwrap();

        let p = |p: &Path| p.to_str().expect("utf-8 path").to_string();
        for path in [tree, dir] {
            let s = p(path);
            assert!(
                !s.contains([':', ',', ' ', '\'']),
                "{s} cannot go into mount options"
            );
        }
        let setup = dir.join("enter.sh");
        let script = format!(
            "set -e\n\
             mount -t overlay overlay -o ro,lowerdir={tree}/lib:/usr/lib /usr/lib\n\
             mount -t overlay overlay -o ro,lowerdir={tree}/sbin:/usr/sbin /usr/sbin\n\
             mount -t overlay overlay -o ro,lowerdir={etc}:{tree}/etc:/etc /etc\n\
             mount --bind {init_d} /etc/init.d\n\
             mount --bind {run} /run\n\
             exec \"$@\"\n",
            tree = p(tree),
            etc = p(&etc),
            init_d = p(&init_d),
            run = p(&dir.join("run")),
        );
        fs::write(&setup, script).unwrap();
        Installed {
            dir: dir.to_path_buf(),
            name: name.to_string(),
            setup,
        }
    }

    /// `/etc/init.d/NAME ARGS` in a mount namespace of its own that shows
    /// the installed view, with no environment but a PATH, as an init
    /// system runs it (not yet spawned).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("unshare");
        cmd.args(["--mount", "--propagation", "private", "/bin/sh"])
            .arg(&self.setup)
            .arg(format!("/etc/init.d/{}", self.name))
            .args(args)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .current_dir("/");
        cmd
    }
}
