//! Debian's Mender client (package mender-client; tests/run installs it and
//! mender-artifact) in standalone mode against one test's world, the
//! artifacts it installs (built with config/mender/berth-app-gen from
//! busybox images that carry a `/version` file), and what a test reads
//! back: an app's generations and link, its containers' images and
//! versions, the client's provides.
//!
//! The client reads its update modules from /usr/share/mender/modules/v3
//! and requires /etc/mender/artifact_info, whatever its configuration
//! says. So a `Mender` is a private mount namespace, held by a `sleep` the
//! test started, with a tmpfs over /etc/mender (its config files and
//! artifact_info), a tmpfs over the modules dir (the module under test
//! copied in) and a tmpfs over the client's data dir (a dir in the world,
//! mounted only in there). Every client command runs in that namespace
//! (`nsenter --mount`, which execs the client: the pid a test kills is the
//! client's), with BERTH_APP_CONF naming a module config in the world. The
//! test reads and writes the namespace's files through /proc/HOLDER/root.
//! The machine's /etc/mender, /var/lib/mender and modules dir are never
//! written.
//!
//! Dropping a `Mender` ends its holder (an unreaped child) by pid; the
//! namespace and its mounts go with the last process in it (the world's
//! cleanup kills any module a killed client left behind).

// nanoserde's derived code trips this lint; it is not ours to rewrite.
#![allow(clippy::question_mark)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nanoserde::DeJson;

use super::{BERTH, LONG, SHORT, Spawned, World, describe, images, json, rootfs, wait_for};

/// The device type the client of every test reports.
pub const DEVICE_TYPE: &str = "berth-test";
/// Where the client reads update modules (it ignores ModulesPath).
pub const MODULES_DIR: &str = "/usr/share/mender/modules/v3";
/// Where the client reads mender.conf and artifact_info.
pub const CONFIG_DIR: &str = "/etc/mender";
/// The client's configuration files, in the namespace's /etc/mender.
const CONFIG: &str = "/etc/mender/mender.conf";
const FALLBACK_CONFIG: &str = "/etc/mender/fallback.conf";
/// How long a client command may take: the longest health timeout a test
/// gives an artifact, and then some.
pub const CLIENT: Duration = Duration::from_secs(90);

/// The healthcheck of a container that turns healthy at its first check.
pub const HEALTHY: &str =
    r#"{"command": ["/bin/sh", "-c", "test -f /version"], "interval": 1, "retries": 1}"#;
/// The healthcheck of a container that never turns healthy.
pub const NEVER_HEALTHY: &str = r#"{"command": ["/bin/false"], "interval": 1, "retries": 1}"#;
/// A container command that prints the image's version, then runs until
/// stopped (exit 0 at once on SIGTERM).
pub const SERVE: &[&str] = &[
    "/bin/sh",
    "-c",
    "cat /version; trap 'exit 0' TERM; while :; do sleep 3600 & wait; done",
];

/// Mounts the tmpfs over /etc/mender, the modules dir ($3) and the data
/// dir ($1), copies the module ($2) in as $4, says so, and holds the
/// namespace.
const HOLDER_SCRIPT: &str = r#"set -eu
mount -t tmpfs -o mode=0755,size=1m berth-test-mender /etc/mender
mount -t tmpfs -o mode=0755,size=4m berth-test-mender "$3"
mount -t tmpfs -o mode=0700,size=256m berth-test-mender "$1"
cp "$2" "$3/$4"
chmod 0755 "$3/$4"
echo ready
exec sleep infinity
"#;

/// A file of this repository.
pub fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The update module under test.
pub fn module() -> PathBuf {
    repo_file("config/mender/berth-app")
}

/// The artifact generator.
pub fn generator() -> PathBuf {
    repo_file("config/mender/berth-app-gen")
}

/// The inventory script.
pub fn inventory_script() -> PathBuf {
    repo_file("config/mender/mender-inventory-berth-apps")
}

/// One test's Mender client; see the module comment.
pub struct Mender {
    holder: Spawned,
    /// World dir of the client's files: data (a tmpfs in the namespace),
    /// the module's config.
    dir: PathBuf,
    /// The module's APPS_DIR.
    apps_dir: PathBuf,
    /// The world's containers dir (the module's CONTAINERS_DIR).
    containers_dir: PathBuf,
    /// The module's config file (BERTH_APP_CONF).
    conf: PathBuf,
}

impl Mender {
    /// A client with the repository's berth-app module, set up for the
    /// world's daemon: artifact_info `artifact_name=factory`, device type
    /// `DEVICE_TYPE`.
    pub fn new(w: &World) -> Mender {
        Mender::with_module(w, &module(), "berth-app")
    }

    /// A client with `module` installed as the module `name`.
    pub fn with_module(w: &World, module: &Path, name: &str) -> Mender {
        let dir = w.root.join("mender");
        let apps_dir = w.root.join("apps");
        for d in [dir.join("data"), apps_dir.clone()] {
            fs::create_dir_all(&d).unwrap_or_else(|e| panic!("create {}: {e}", d.display()));
        }
        let conf = dir.join("berth-app.conf");
        let quoted = |p: &Path| format!("'{}'", p.to_str().expect("utf-8 path"));
        w.write_file(
            &conf,
            &format!(
                "BERTH={}\nBERTH_CONFIG={}\nCONTAINERS_DIR={}\nAPPS_DIR={}\n",
                quoted(Path::new(BERTH)),
                quoted(&w.config_path()),
                quoted(&w.containers_dir()),
                quoted(&apps_dir),
            ),
        );
        let mut cmd = Command::new("unshare");
        cmd.args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(HOLDER_SCRIPT)
            .arg("sh")
            .arg(dir.join("data"))
            .arg(module)
            .arg(MODULES_DIR)
            .arg(name)
            .current_dir("/");
        let mut holder = w.spawn_in_world(cmd, "the mount namespace holder");
        wait_for(SHORT, "the mount namespace holder to be ready", || {
            if let Some(status) = holder.try_status() {
                panic!(
                    "the mount namespace holder exited with {status}: {}",
                    fs::read_to_string(&holder.stderr_path).unwrap_or_default()
                );
            }
            fs::read_to_string(&holder.stdout_path).is_ok_and(|s| s.contains("ready"))
        });
        let ours = fs::read_link("/proc/self/ns/mnt").expect("readlink /proc/self/ns/mnt");
        let its = fs::read_link(format!("/proc/{}/ns/mnt", holder.child.id()))
            .expect("readlink the holder's mount namespace");
        assert_ne!(ours, its, "the holder has no mount namespace of its own");
        let mender = Mender {
            holder,
            dir,
            apps_dir,
            containers_dir: w.containers_dir(),
            conf,
        };
        let device_type = mender.data_dir().join("device_type");
        mender.write(
            Path::new(CONFIG),
            &format!(
                "{{\"DeviceTypeFile\": {}}}\n",
                json::string(device_type.to_str().expect("utf-8 path"))
            ),
        );
        mender.write(Path::new(FALLBACK_CONFIG), "{}\n");
        mender.set_artifact_info("factory");
        mender.set_device_type(DEVICE_TYPE);
        mender
    }

    /// The pid of the process holding the namespace.
    pub fn holder_pid(&self) -> u32 {
        self.holder.child.id()
    }

    /// The client's data dir (as the namespace sees it; empty outside).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The module's APPS_DIR.
    pub fn apps_dir(&self) -> &Path {
        &self.apps_dir
    }

    /// The module's config file, for BERTH_APP_CONF.
    pub fn conf(&self) -> &Path {
        &self.conf
    }

    /// `path` as seen from inside the namespace, reachable from outside.
    pub fn in_ns(&self, path: &Path) -> PathBuf {
        let relative = path.strip_prefix("/").expect("an absolute path");
        PathBuf::from(format!("/proc/{}/root", self.holder_pid())).join(relative)
    }

    /// Writes `text` to `path` inside the namespace.
    pub fn write(&self, path: &Path, text: &str) {
        let at = self.in_ns(path);
        fs::write(&at, text).unwrap_or_else(|e| panic!("write {}: {e}", at.display()));
    }

    /// Reads `path` inside the namespace.
    pub fn read(&self, path: &Path) -> std::io::Result<String> {
        fs::read_to_string(self.in_ns(path))
    }

    /// /etc/mender/artifact_info: `artifact_name=NAME`.
    pub fn set_artifact_info(&self, name: &str) {
        self.write(
            &Path::new(CONFIG_DIR).join("artifact_info"),
            &format!("artifact_name={name}\n"),
        );
    }

    /// DATA/device_type: `device_type=TYPE`.
    pub fn set_device_type(&self, device_type: &str) {
        self.write(
            &self.data_dir().join("device_type"),
            &format!("device_type={device_type}\n"),
        );
    }

    /// `mender GLOBAL-OPTIONS ARGS` in the namespace, not started yet.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--mount=/proc/{}/ns/mnt", self.holder_pid()))
            .arg("mender")
            .args(["--config", CONFIG, "--fallback-config", FALLBACK_CONFIG])
            .arg("--data")
            .arg(self.data_dir())
            .arg("--no-syslog")
            .args(args)
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("BERTH_APP_CONF", &self.conf)
            .current_dir("/");
        cmd
    }

    /// Starts `mender ARGS` in the world (its cgroup, its output files).
    pub fn spawn(&self, w: &World, args: &[&str]) -> Spawned {
        w.spawn_in_world(self.command(args), &format!("mender {}", args.join(" ")))
    }

    /// Runs `mender ARGS` to its end: (exit code, stdout then stderr).
    pub fn run(&self, w: &World, args: &[&str]) -> (i32, String) {
        let out = self.spawn(w, args).finish(CLIENT);
        let code = out
            .status
            .code()
            .unwrap_or_else(|| panic!("mender {args:?} killed: {}", describe(&out)));
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        (code, text)
    }

    /// `mender install ARTIFACT`.
    pub fn install(&self, w: &World, artifact: &Path) -> (i32, String) {
        self.run(w, &["install", artifact.to_str().expect("utf-8 path")])
    }

    /// `mender install ARTIFACT`, not waited for (to be killed).
    pub fn spawn_install(&self, w: &World, artifact: &Path) -> Spawned {
        self.spawn(w, &["install", artifact.to_str().expect("utf-8 path")])
    }

    /// `mender commit`.
    pub fn commit(&self, w: &World) -> (i32, String) {
        self.run(w, &["commit"])
    }

    /// `mender rollback`.
    pub fn rollback(&self, w: &World) -> (i32, String) {
        self.run(w, &["rollback"])
    }

    /// `mender show-provides`.
    pub fn show_provides(&self, w: &World) -> (i32, String) {
        self.run(w, &["show-provides"])
    }

    /// `mender show-provides`, asserted to succeed, as key -> value.
    pub fn provides(&self, w: &World) -> BTreeMap<String, String> {
        let out = self.spawn(w, &["show-provides"]).finish(CLIENT);
        assert!(out.status.success(), "show-provides: {}", describe(&out));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// `mender show-artifact`, asserted to succeed: the artifact name.
    pub fn artifact_name(&self, w: &World) -> String {
        let out = self.spawn(w, &["show-artifact"]).finish(CLIENT);
        assert!(out.status.success(), "show-artifact: {}", describe(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// `mender install`, asserted to succeed, then `mender commit`,
    /// asserted to succeed.
    pub fn install_and_commit(&self, w: &World, artifact: &Path) {
        let (rc, out) = self.install(w, artifact);
        assert_eq!(rc, 0, "install {}: {out}", artifact.display());
        let (rc, out) = self.commit(w);
        assert_eq!(rc, 0, "commit {}: {out}", artifact.display());
    }

    /// The app APP's generations and link.
    pub fn app(&self, name: &str) -> App {
        App {
            name: name.to_string(),
            dir: self.apps_dir.join(name),
            link: self.containers_dir.join(format!("{name}.app")),
        }
    }

    /// Runs the inventory script as the client would (outside the
    /// namespace: it only reads berth's files and asks berth):
    /// (exit code, stdout then stderr).
    pub fn inventory(&self, w: &World) -> (i32, String) {
        let mut cmd = Command::new(inventory_script());
        cmd.env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("BERTH_APP_CONF", &self.conf)
            .current_dir("/");
        let out = w.spawn_in_world(cmd, "the inventory script").finish(SHORT);
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        (out.status.code().unwrap_or(-1), text)
    }
}

impl Drop for Mender {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- berth-app module config ----");
            eprintln!("{}", fs::read_to_string(&self.conf).unwrap_or_default());
        }
        // `holder`'s own drop SIGKILLs and reaps it.
    }
}

/// The processes whose parent is `pid` (from /proc/*/stat), with their
/// command lines.
pub fn children_of(pid: u32) -> Vec<(u32, Vec<String>)> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|s| s.parse::<u32>().ok());
        if ppid != Some(pid) {
            continue;
        }
        let cmdline = fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let argv = cmdline
            .split(|&b| b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        found.push((child, argv));
    }
    found
}

/// The processes below `pid` (children, their children, ...), with their
/// command lines.
pub fn descendants_of(pid: u32) -> Vec<(u32, Vec<String>)> {
    let mut found = Vec::new();
    let mut parents = vec![pid];
    while let Some(parent) = parents.pop() {
        for (child, argv) in children_of(parent) {
            parents.push(child);
            found.push((child, argv));
        }
    }
    found
}

/// Whether a `berth wait` runs below the client `client` (its module
/// waiting for the app's health).
pub fn health_wait_below(client: u32) -> bool {
    descendants_of(client).iter().any(|(_, argv)| {
        argv.first().is_some_and(|a| a == BERTH) && argv.iter().any(|a| a == "wait")
    })
}

/// The berth-app module processes in the world's cgroups, and the `berth
/// wait` they start (what a killed client left behind among them), with
/// their command lines.
pub fn modules_in(w: &World) -> Vec<(u32, Vec<String>)> {
    w.procs()
        .into_iter()
        .filter_map(|pid| {
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let argv: Vec<String> = cmdline
                .split(|&b| b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            let module = argv.iter().any(|a| a.ends_with("/berth-app"));
            let health_wait =
                argv.first().is_some_and(|a| a == BERTH) && argv.iter().any(|a| a == "wait");
            (module || health_wait).then_some((pid as u32, argv))
        })
        .collect()
}

/// Whether the client `client` runs its module in `state` right now.
pub fn module_in_state(client: u32, state: &str) -> bool {
    children_of(client).iter().any(|(_, argv)| {
        argv.iter().any(|a| a.ends_with("/berth-app")) && argv.iter().any(|a| a == state)
    })
}

/// An app's files on the device: APPS_DIR/APP (generations N/,
/// `previous`, `.incoming`) and CONTAINERS_DIR/APP.app.
pub struct App {
    pub name: String,
    pub dir: PathBuf,
    pub link: PathBuf,
}

impl App {
    /// APPS_DIR/APP/N.
    pub fn generation_dir(&self, n: u32) -> PathBuf {
        self.dir.join(n.to_string())
    }

    /// The generation the link names, None without a link; panics when it
    /// names anything but a generation of this app.
    pub fn current(&self) -> Option<u32> {
        let target = fs::read_link(&self.link).ok()?;
        Some(self.generation_of(&target, "the app link"))
    }

    /// `previous`: None without one, Some(None) when it is `none`,
    /// Some(Some(N)) when it names generation N.
    pub fn previous(&self) -> Option<Option<u32>> {
        let target = fs::read_link(self.dir.join("previous")).ok()?;
        if target == Path::new("none") {
            return Some(None);
        }
        Some(Some(self.generation_of(&target, "previous")))
    }

    /// The generation directories there are, in order.
    pub fn generations(&self) -> Vec<u32> {
        let mut found: Vec<u32> = fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect();
        found.sort();
        found
    }

    /// Whether a download is staged.
    pub fn incoming(&self) -> bool {
        self.dir.join(".incoming").exists()
    }

    /// The artifact name generation N records.
    pub fn artifact_name(&self, n: u32) -> Option<String> {
        fs::read_to_string(self.generation_dir(n).join(".artifact-name"))
            .ok()
            .map(|s| s.trim().to_string())
    }

    /// What the link and `previous` say, for messages.
    pub fn describe(&self) -> String {
        format!(
            "{} -> {:?}, previous -> {:?}, generations {:?}, .incoming {}",
            self.link.display(),
            fs::read_link(&self.link).ok(),
            fs::read_link(self.dir.join("previous")).ok(),
            self.generations(),
            self.incoming()
        )
    }

    fn generation_of(&self, target: &Path, what: &str) -> u32 {
        let absolute = if target.is_absolute() {
            target.to_path_buf()
        } else {
            self.dir.join(target)
        };
        let parent_ok = absolute.parent() == Some(&self.dir);
        absolute
            .file_name()
            .and_then(|n| n.to_str()?.parse().ok())
            .filter(|_| parent_ok)
            .unwrap_or_else(|| {
                panic!(
                    "{what} of app {} names {}, no generation",
                    self.name,
                    target.display()
                )
            })
    }
}

/// What a test reads of a container of an app from `inspect`.
#[derive(DeJson, Debug, Clone)]
pub struct Deployed {
    pub name: String,
    pub status: String,
    pub pid: i32,
    /// The image file its root is mounted from.
    #[nserde(default)]
    pub image: Option<String>,
    #[nserde(rename = "config-hash")]
    pub config_hash: String,
    /// The hash of the definition the daemon holds (config-hash unless a
    /// recreate is pending).
    #[nserde(default, rename = "definition-hash")]
    pub definition_hash: Option<String>,
    #[nserde(default)]
    pub health: Option<super::inspect::HealthStatus>,
}

impl Deployed {
    pub fn is_running(&self) -> bool {
        self.status == "running" && self.pid > 0
    }

    pub fn is_healthy(&self) -> bool {
        self.is_running() && self.health.as_ref().is_some_and(|h| h.status == "healthy")
    }

    /// Whether it runs the definition the daemon holds.
    pub fn is_current(&self) -> bool {
        self.definition_hash
            .as_ref()
            .is_none_or(|h| *h == self.config_hash)
    }

    /// Whether its image lies in `dir`.
    pub fn image_in(&self, dir: &Path) -> bool {
        self.image
            .as_deref()
            .is_some_and(|i| Path::new(i).parent() == Some(dir))
    }
}

/// `berth inspect NAME`, or None when berth knows no such container (or
/// does not answer).
pub fn deployed(w: &World, name: &str) -> Option<Deployed> {
    let out = w.berth(&["inspect", name]);
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Some(
        Deployed::deserialize_json(text.trim())
            .unwrap_or_else(|e| panic!("inspect {name}: {e}: {text}")),
    )
}

/// Waits until NAME's inspect satisfies `cond`, and returns it; on
/// timeout panics naming `what`, with the last inspect seen.
pub fn wait_deployed(
    w: &World,
    name: &str,
    what: &str,
    deadline: Duration,
    mut cond: impl FnMut(&Deployed) -> bool,
) -> Deployed {
    let end = Instant::now() + deadline;
    loop {
        let last = deployed(w, name);
        match last {
            Some(d) if cond(&d) => return d,
            _ if Instant::now() > end => {
                panic!("timed out after {deadline:?} waiting for {name} {what}; last: {last:?}")
            }
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Waits until NAME runs, healthy, the definition the daemon holds, from
/// an image in generation `n` of `app`; asserts its /version is
/// `version`, and returns its inspect.
pub fn wait_settled(w: &World, app: &App, n: u32, name: &str, version: &str) -> Deployed {
    let dir = app.generation_dir(n);
    let what = format!("to run healthy from generation {n} ({})", app.describe());
    let d = wait_deployed(w, name, &what, SETTLE, |d| {
        d.is_healthy() && d.is_current() && d.image_in(&dir)
    });
    assert_eq!(version_in(w, name), version, "/version in {name}");
    d
}

/// The content of /version in NAME's root (`berth exec NAME cat /version`).
pub fn version_in(w: &World, name: &str) -> String {
    let out = w.berth(&["exec", name, "cat", "/version"]);
    assert!(
        out.status.success(),
        "berth exec {name} cat /version: {}",
        describe(&out)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A container definition of an app: its root the image file `image` (a
/// name relative to the definition), running `SERVE`, restarted always,
/// with `healthcheck` (`HEALTHY`, `NEVER_HEALTHY`, ...).
pub fn definition(image: &str, healthcheck: &str) -> String {
    format!(
        "{{\"image\": {}, \"command\": {}, \"restart\": \"always\", \"healthcheck\": {healthcheck}}}\n",
        json::string(image),
        json::string_array(SERVE),
    )
}

/// The inputs of one artifact, gathered in a directory of their own under
/// the world: image files, definitions, any other file.
pub struct AppBuild {
    pub dir: PathBuf,
    files: Vec<PathBuf>,
}

impl AppBuild {
    /// An empty build dir WORLD/build/LABEL.
    pub fn new(w: &World, label: &str) -> AppBuild {
        let dir = w.root.join("build").join(label);
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        AppBuild {
            dir,
            files: Vec::new(),
        }
    }

    /// Adds the squashfs image `name`: a busybox rootfs whose /version
    /// holds `version`.
    pub fn image(self, name: &str, version: &str) -> AppBuild {
        self.image_with(name, version, |_| {})
    }

    /// `image`, with `fill` adding to the tree (given its root) first.
    pub fn image_with(mut self, name: &str, version: &str, fill: impl FnOnce(&Path)) -> AppBuild {
        let busybox = rootfs::static_busybox().unwrap_or_else(|e| panic!("{e}"));
        let tree = self.dir.join(format!(".{name}.tree"));
        rootfs::build(&tree, &busybox).expect("build the busybox rootfs");
        fs::write(tree.join("version"), format!("{version}\n")).expect("write /version");
        fill(&tree);
        let image = self.dir.join(name);
        images::mksquashfs(&tree, &image);
        fs::remove_dir_all(&tree).expect("remove the image tree");
        self.files.push(image);
        self
    }

    /// Adds the file `name` holding `contents`.
    pub fn file(mut self, name: &str, contents: &str) -> AppBuild {
        let path = self.dir.join(name);
        fs::write(&path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        self.files.push(path);
        self
    }

    /// Adds the definition CONTAINER.json: `definition(image, healthcheck)`.
    pub fn container(self, container: &str, image: &str, healthcheck: &str) -> AppBuild {
        self.file(
            &format!("{container}.json"),
            &definition(image, healthcheck),
        )
    }

    /// The files added so far, in order.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// Runs berth-app-gen ARGS FILES... in the build dir: (exit code,
    /// stdout then stderr).
    pub fn generate(&self, args: &[&str]) -> (i32, String) {
        let out = Command::new(generator())
            .args(args)
            .args(&self.files)
            .current_dir(&self.dir)
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", generator().display()));
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        (out.status.code().unwrap_or(-1), text)
    }

    /// The artifact NAME of app APP for `device_type`, its install
    /// gated by `health_timeout` seconds: generated, asserted to work.
    pub fn artifact(
        &self,
        app: &str,
        name: &str,
        device_type: &str,
        health_timeout: u32,
    ) -> PathBuf {
        let output = self.dir.join(format!("{name}.mender"));
        let timeout = health_timeout.to_string();
        let (rc, out) = self.generate(&[
            "--app",
            app,
            "--artifact-name",
            name,
            "--device-type",
            device_type,
            "--health-timeout",
            &timeout,
            "--output-path",
            output.to_str().expect("utf-8 path"),
        ]);
        assert_eq!(rc, 0, "berth-app-gen {name}: {out}");
        assert!(
            output.is_file(),
            "berth-app-gen wrote no {}",
            output.display()
        );
        output
    }
}

/// The names in `dir`, sorted (empty when it cannot be read): to show a
/// machine directory did not change.
pub fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Default deadline for an app's containers to settle after an install.
pub const SETTLE: Duration = LONG;
