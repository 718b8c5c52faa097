//! berth apps as Mender payloads, end to end: Debian's mender client in
//! standalone mode (its config, modules and data on tmpfs in a private
//! mount namespace, see tests/common/mender.rs) installs artifacts made by
//! config/mender/berth-app-gen through the berth-app module into the real
//! berth daemon. Checked: the client never touches the machine's own
//! Mender files; the generator's artifact (type, provides, clears, device
//! types, meta-data); a good artifact recreates the container from the new
//! image before the install returns, and the commit keeps only that
//! generation, in the client's provides and the inventory; an artifact that
//! never gets healthy is rolled back by the client to the old image (and a
//! first install to no app at all); an app of two containers updates
//! together or not at all; a kill -9 of berth during the health wait, with
//! berth started again, ends on one whole generation that the provides
//! name; a kill -9 of the client during the download changes nothing, and
//! during the health wait has the module roll back by itself, with no
//! module process left; another device type's artifact is refused; `mender
//! rollback` before the commit brings the old app back; the module killed
//! at points spread over ArtifactInstall's steps is rolled back by the
//! client to the old app; a crash of client, module and daemon at once at
//! such points leaves the link on one whole generation that berth runs
//! after its restart, and the next install goes through. (A kill loses no
//! page cache: what the fsyncs add for a power cut is argued in the
//! module, not tested here.)

mod common;

use std::fs;
use std::path::Path;

use common::mender::*;
use common::*;

/// A module that only records the states it is called in (and the
/// module config it was given) in a file beside that config.
const RECORDING_MODULE: &str = r#"#!/bin/sh
echo "$1 $BERTH_APP_CONF" >> "$(dirname "$BERTH_APP_CONF")/states"
case "$1" in
    SupportsRollback) echo Yes ;;
    NeedsArtifactReboot) echo No ;;
esac
"#;

#[test]
fn the_client_runs_in_a_mount_namespace_of_its_own() {
    let machine_modules = listing(Path::new(MODULES_DIR));
    let machine_config = listing(Path::new(CONFIG_DIR));
    let machine_data = listing(Path::new("/var/lib/mender"));
    let w = World::new();
    let module = w.root.join("recording-module");
    fs::write(&module, RECORDING_MODULE).unwrap();
    let m = Mender::with_module(&w, &module, "berth-test-recording");
    let build = AppBuild::new(&w, "recording").file("payload", "bytes\n");
    let artifact = build.dir.join("recording.mender");
    let out = std::process::Command::new("mender-artifact")
        .args(["write", "module-image", "-T", "berth-test-recording"])
        .args(["-n", "recorded-1", "-t", DEVICE_TYPE, "-o"])
        .arg(&artifact)
        .arg("-f")
        .arg(&build.files()[0])
        .output()
        .expect("run mender-artifact (Debian's mender-artifact; tests/run installs it)");
    assert!(out.status.success(), "mender-artifact: {}", describe(&out));

    assert_eq!(m.artifact_name(&w), "factory");
    let (rc, out) = m.install(&w, &artifact);
    assert_eq!(rc, 0, "{out}");
    let (rc, out) = m.commit(&w);
    assert_eq!(rc, 0, "{out}");
    let states = fs::read_to_string(m.conf().with_file_name("states")).unwrap();
    let conf = m.conf().to_str().unwrap();
    let called: Vec<&str> = states
        .lines()
        .map(|l| {
            let (state, given) = l.split_once(' ').unwrap();
            assert_eq!(given, conf, "BERTH_APP_CONF reaches the module");
            state
        })
        .collect();
    assert_eq!(
        called,
        [
            "Download",
            "SupportsRollback",
            "ArtifactInstall",
            "NeedsArtifactReboot",
            "ArtifactCommit",
            "Cleanup"
        ]
    );
    assert_eq!(m.artifact_name(&w), "recorded-1");
    assert_eq!(
        m.provides(&w).get("artifact_name").map(String::as_str),
        Some("recorded-1")
    );
    // The client's files are in the namespace only.
    assert!(
        m.in_ns(&m.data_dir().join("mender-store")).is_file(),
        "the client's database is in its data dir"
    );
    assert!(
        fs::read_dir(m.data_dir()).unwrap().next().is_none(),
        "outside the namespace the data dir is an empty dir"
    );
    assert_eq!(listing(Path::new(MODULES_DIR)), machine_modules);
    assert_eq!(listing(Path::new(CONFIG_DIR)), machine_config);
    assert_eq!(listing(Path::new("/var/lib/mender")), machine_data);
    assert!(!Path::new(MODULES_DIR).join("berth-test-recording").exists());
}

// ---- the berth-app module through the real client and daemon ----

/// The app every test deploys.
const APP: &str = "shop";
/// Its containers (definitions shop-web.json, shop-db.json).
const WEB: &str = "shop-web";
const DB: &str = "shop-db";
/// The image file name in every artifact.
const IMAGE: &str = "app.sqfs";
/// A health timeout no good install comes near.
const AMPLE: u32 = 60;
/// The health timeout of artifacts meant to fail.
const SHORT_HEALTH: u32 = 5;
/// A healthcheck that first passes two seconds after the start, leaving
/// a test time to act while the module waits for it.
const SLOW_HEALTHY: &str =
    r#"{"command": ["/bin/sh", "-c", "test -f /version"], "interval": 2, "retries": 1}"#;

/// A world whose daemon keeps containers running while it is down (as a
/// device's would), that daemon, and a client for it.
fn device() -> (World, Daemon, Mender) {
    let w = World::new();
    w.write_daemon_json(r#"{"live-restore": true}"#);
    let d = w.start_daemon(&[]);
    let m = Mender::new(&w);
    (w, d, m)
}

/// The artifact VERSION of the app (its artifact name): one image whose
/// /version is VERSION, and a definition per (container, healthcheck).
fn artifact(
    w: &World,
    version: &str,
    containers: &[(&str, &str)],
    device_type: &str,
    health_timeout: u32,
) -> std::path::PathBuf {
    let mut build = AppBuild::new(w, version).image(IMAGE, version);
    for (name, healthcheck) in containers {
        build = build.container(name, IMAGE, healthcheck);
    }
    build.artifact(APP, version, device_type, health_timeout)
}

/// The good artifact VERSION of the one-container app.
fn good(w: &World, version: &str) -> std::path::PathBuf {
    artifact(w, version, &[(WEB, HEALTHY)], DEVICE_TYPE, AMPLE)
}

/// What the client says is installed of the app.
fn provided(w: &World, m: &Mender) -> Option<String> {
    m.provides(w).remove(&format!("berth-app.{APP}.version"))
}

/// Asserts the device is settled on generation `n` holding `version`:
/// the link names it, nothing else is kept, no install is pending, every
/// one of `containers` runs healthy from its image, and the client
/// provides `version`.
fn assert_settled(w: &World, m: &Mender, n: u32, version: &str, containers: &[&str]) {
    let app = m.app(APP);
    assert_eq!(app.current(), Some(n), "{}", app.describe());
    for name in containers {
        wait_settled(w, &app, n, name, version);
    }
    assert_eq!(app.generations(), [n], "{}", app.describe());
    assert_eq!(app.previous(), None, "{}", app.describe());
    assert!(!app.incoming(), "{}", app.describe());
    assert_eq!(app.artifact_name(n).as_deref(), Some(version));
    assert_eq!(provided(w, m).as_deref(), Some(version));
    assert_eq!(m.artifact_name(w), version);
}

/// The artifact VERSION of the two-container app whose checks pass only
/// after a while (so an install has a health wait to interrupt).
fn slow_two(w: &World, version: &str) -> std::path::PathBuf {
    artifact(
        w,
        version,
        &[(WEB, SLOW_HEALTHY), (DB, SLOW_HEALTHY)],
        DEVICE_TYPE,
        AMPLE,
    )
}

/// A device with the good v1 installed and committed.
fn device_on_v1(containers: &[(&str, &str)]) -> (World, Daemon, Mender) {
    let (w, d, m) = device();
    let v1 = artifact(&w, "v1", containers, DEVICE_TYPE, AMPLE);
    m.install_and_commit(&w, &v1);
    let names: Vec<&str> = containers.iter().map(|(n, _)| *n).collect();
    assert_settled(&w, &m, 1, "v1", &names);
    (w, d, m)
}

#[test]
fn the_generator_packs_an_app_for_its_device_types() {
    let w = World::new();
    let build = AppBuild::new(&w, "packed")
        .image(IMAGE, "v1")
        .container(WEB, IMAGE, HEALTHY);
    let output = build.dir.join("packed.mender");
    let (rc, out) = build.generate(&[
        "--app",
        APP,
        "--artifact-name",
        "packed-1",
        "--device-type",
        DEVICE_TYPE,
        "--device-type",
        "berth-test-other",
        "--health-timeout",
        "42",
        "--output-path",
        output.to_str().unwrap(),
    ]);
    assert_eq!(rc, 0, "{out}");
    let read = std::process::Command::new("mender-artifact")
        .arg("read")
        .arg(&output)
        .output()
        .unwrap();
    assert!(read.status.success(), "{}", describe(&read));
    let text = String::from_utf8_lossy(&read.stdout);
    for needle in [
        "Name: packed-1",
        "[berth-test berth-test-other]",
        "Type:   berth-app",
        "berth-app.shop.version: packed-1",
        "berth-app.shop.*",
        "\"health-timeout\": 42",
        "\"app\": \"shop\"",
        "name:     app.sqfs",
        "name:     shop-web.json",
    ] {
        assert!(text.contains(needle), "{needle:?} not in:\n{text}");
    }
}

#[test]
fn a_good_artifact_is_installed_from_its_image_and_committed() {
    let machine_modules = listing(Path::new(MODULES_DIR));
    let (w, _d, m) = device();
    let app = m.app(APP);

    // The first install: nothing to return to.
    let (rc, out) = m.install(&w, &good(&w, "v1"));
    assert_eq!(rc, 0, "{out}");
    assert_eq!(app.current(), Some(1), "{}", app.describe());
    assert_eq!(app.previous(), Some(None), "{}", app.describe());
    let (rc, out) = m.commit(&w);
    assert_eq!(rc, 0, "{out}");
    assert_settled(&w, &m, 1, "v1", &[WEB]);
    let v1 = deployed(&w, WEB).unwrap();

    // The second: v2 runs healthy, from its own generation, when the
    // install returns.
    let (rc, out) = m.install(&w, &good(&w, "v2"));
    assert_eq!(rc, 0, "{out}");
    assert_eq!(app.current(), Some(2), "{}", app.describe());
    assert_eq!(app.previous(), Some(Some(1)), "{}", app.describe());
    assert_eq!(app.generations(), [1, 2]);
    let v2 = deployed(&w, WEB).unwrap();
    assert!(
        v2.is_healthy() && v2.is_current() && v2.image_in(&app.generation_dir(2)),
        "{v2:?}"
    );
    assert_ne!(v2.pid, v1.pid, "the container is recreated");
    assert_eq!(version_in(&w, WEB), "v2");
    let (rc, out) = m.commit(&w);
    assert_eq!(rc, 0, "{out}");
    assert_settled(&w, &m, 2, "v2", &[WEB]);
    assert_eq!(
        deployed(&w, WEB).unwrap().pid,
        v2.pid,
        "commit leaves it be"
    );

    let (rc, out) = m.inventory(&w);
    assert_eq!(rc, 0, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.contains(&"berth-app.shop.artifact=v2"), "{out}");
    assert!(
        lines.contains(&"berth-app.shop.containers=shop-web"),
        "{out}"
    );

    // The machine's client files were never touched.
    assert_eq!(listing(Path::new(MODULES_DIR)), machine_modules);
    assert!(!Path::new(MODULES_DIR).join("berth-app").exists());
}

#[test]
fn a_never_healthy_artifact_is_rolled_back_by_the_client() {
    let (w, _d, m) = device_on_v1(&[(WEB, HEALTHY)]);
    let app = m.app(APP);
    let old = deployed(&w, WEB).unwrap();
    let bad = artifact(&w, "v2", &[(WEB, NEVER_HEALTHY)], DEVICE_TYPE, SHORT_HEALTH);
    let (rc, out) = m.install(&w, &bad);
    assert_ne!(rc, 0, "{out}");
    assert_settled(&w, &m, 1, "v1", &[WEB]);
    let now = deployed(&w, WEB).unwrap();
    assert_eq!(now.image, old.image, "the old image runs again");
    let (rc, out) = m.commit(&w);
    assert_eq!(rc, 2, "nothing to commit: {out}");
    assert_eq!(app.generations(), [1]);
}

#[test]
fn a_first_install_that_never_gets_healthy_leaves_no_app() {
    let (w, _d, m) = device();
    let app = m.app(APP);
    let bad = artifact(&w, "v1", &[(WEB, NEVER_HEALTHY)], DEVICE_TYPE, SHORT_HEALTH);
    let (rc, out) = m.install(&w, &bad);
    assert_ne!(rc, 0, "{out}");
    assert_eq!(app.current(), None, "{}", app.describe());
    assert!(
        fs::symlink_metadata(&app.link).is_err(),
        "{}",
        app.describe()
    );
    assert_eq!(app.generations(), [] as [u32; 0], "{}", app.describe());
    assert_eq!(app.previous(), None, "{}", app.describe());
    wait_for(SETTLE, "shop-web to be gone", || {
        deployed(&w, WEB).is_none()
    });
    assert_eq!(provided(&w, &m), None);
    assert_eq!(m.artifact_name(&w), "factory");
}

#[test]
fn an_app_of_two_updates_together_or_not_at_all() {
    let (w, _d, m) = device_on_v1(&[(WEB, HEALTHY), (DB, HEALTHY)]);
    let app = m.app(APP);
    let half = artifact(
        &w,
        "v2",
        &[(WEB, HEALTHY), (DB, NEVER_HEALTHY)],
        DEVICE_TYPE,
        SHORT_HEALTH,
    );
    let install = m.spawn_install(&w, &half);
    // The new web container gets healthy; the db never does.
    wait_deployed(&w, WEB, "to run healthy from generation 2", SETTLE, |d| {
        d.is_healthy() && d.image_in(&app.generation_dir(2))
    });
    let out = install.finish(CLIENT);
    assert!(!out.status.success(), "{}", describe(&out));
    assert_settled(&w, &m, 1, "v1", &[WEB, DB]);
}

/// Waits until the client `client` has switched the app to generation
/// `n` and its module waits for the app's health.
fn wait_health_wait(m: &Mender, client: &Spawned, n: u32) {
    let app = m.app(APP);
    wait_for(
        SETTLE,
        "the module to switch the app and wait for health",
        || app.current() == Some(n) && health_wait_below(client.child.id()),
    );
}

/// Asserts the device is on one generation, whole: the link names it,
/// only it is kept, every container runs healthy from it, and the client
/// provides its artifact. Returns its version.
fn assert_consistent(w: &World, m: &Mender, containers: &[&str]) -> String {
    let app = m.app(APP);
    let n = app
        .current()
        .unwrap_or_else(|| panic!("no app: {}", app.describe()));
    let version = app
        .artifact_name(n)
        .expect("the generation's artifact name");
    assert_settled(w, m, n, &version, containers);
    version
}

/// Asserts that no berth-app module process is left (one whose client was
/// killed ends by itself).
fn assert_no_module_left(w: &World) {
    let end = std::time::Instant::now() + SHORT;
    loop {
        let left = modules_in(w);
        if left.is_empty() {
            return;
        }
        if std::time::Instant::now() > end {
            let described: Vec<String> = left
                .iter()
                .map(|(pid, argv)| {
                    let wchan =
                        fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
                    format!("{pid} {argv:?} (in {wchan})")
                })
                .collect();
            panic!("module processes left after {SHORT:?}: {described:#?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn a_kill_9_of_berth_during_the_health_wait_ends_on_one_app() {
    let (w, mut d, m) = device_on_v1(&[(WEB, HEALTHY), (DB, HEALTHY)]);
    let v2 = slow_two(&w, "v2");
    let install = m.spawn_install(&w, &v2);
    wait_health_wait(&m, &install, 2);
    d.kill_9();
    // Restarted as init would.
    let _d = w.start_daemon(&[]);
    let out = install.finish(CLIENT);
    if out.status.success() {
        let (rc, text) = m.commit(&w);
        assert_eq!(rc, 0, "{text}");
    }
    let version = assert_consistent(&w, &m, &[WEB, DB]);
    eprintln!(
        "install {} after the daemon's kill -9: the device is on {version}",
        out.status
    );
    if out.status.success() {
        assert_eq!(version, "v2");
    } else {
        assert_eq!(version, "v1", "{}", describe(&out));
    }
}

/// After an install that did not happen: the same artifact installs and
/// commits, and no module process is left behind.
fn reinstall_v2(w: &World, m: &Mender, v2: &Path) {
    m.install_and_commit(w, v2);
    assert_consistent(w, m, &[WEB]);
    assert_eq!(provided(w, m).as_deref(), Some("v2"));
    assert_no_module_left(w);
}

#[test]
fn a_kill_9_of_the_client_during_download_changes_nothing() {
    let (w, _d, m) = device_on_v1(&[(WEB, HEALTHY)]);
    let app = m.app(APP);
    let old = deployed(&w, WEB).unwrap();
    // Random bytes in the image make it big, so the download lasts.
    let noise = |tree: &Path| {
        let mut bytes = vec![0u8; 32 << 20];
        fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
            .unwrap();
        fs::write(tree.join("noise"), bytes).unwrap();
    };
    let build = AppBuild::new(&w, "v2")
        .image_with(IMAGE, "v2", noise)
        .container(WEB, IMAGE, HEALTHY);
    let v2 = build.artifact(APP, "v2", DEVICE_TYPE, AMPLE);

    let mut install = m.spawn_install(&w, &v2);
    let client = install.child.id();
    wait_for(SETTLE, "the module's Download", || {
        module_in_state(client, "Download")
    });
    // Stopped, the client can start no other state; then it dies.
    sys::kill_child(client, libc::SIGSTOP).unwrap();
    sys::kill_child(client, libc::SIGKILL).unwrap();
    let _ = install.child.wait();
    holds_for(SHORT / 5, "the app untouched", || {
        app.current() == Some(1) && app.previous().is_none()
    });
    assert_eq!(
        deployed(&w, WEB).unwrap().pid,
        old.pid,
        "the old container runs on"
    );
    assert_eq!(app.generations(), [1], "{}", app.describe());
    assert_eq!(provided(&w, &m).as_deref(), Some("v1"));

    reinstall_v2(&w, &m, &v2);
}

#[test]
fn a_kill_9_of_the_client_during_the_health_wait_is_rolled_back_by_the_module() {
    let (w, _d, m) = device_on_v1(&[(WEB, HEALTHY)]);
    let app = m.app(APP);
    let old = deployed(&w, WEB).unwrap();
    let v2 = artifact(&w, "v2", &[(WEB, SLOW_HEALTHY)], DEVICE_TYPE, AMPLE);
    let mut install = m.spawn_install(&w, &v2);
    wait_health_wait(&m, &install, 2);
    install.child.kill().unwrap();
    let _ = install.child.wait();
    wait_for(SETTLE, "the module to return to generation 1", || {
        app.current() == Some(1) && app.previous().is_none() && app.generations() == [1]
    });
    assert_settled(&w, &m, 1, "v1", &[WEB]);
    assert_eq!(deployed(&w, WEB).unwrap().image, old.image);
    let (rc, out) = m.commit(&w);
    assert_eq!(rc, 2, "nothing to commit: {out}");

    reinstall_v2(&w, &m, &v2);
}

#[test]
fn an_artifact_for_another_device_type_is_refused() {
    let (w, _d, m) = device_on_v1(&[(WEB, HEALTHY)]);
    let app = m.app(APP);
    let old = deployed(&w, WEB).unwrap();
    let other = artifact(&w, "v2", &[(WEB, HEALTHY)], "berth-test-other", AMPLE);
    let (rc, out) = m.install(&w, &other);
    assert_ne!(rc, 0, "{out}");
    assert!(out.contains("not compatible"), "{out}");
    assert_eq!(deployed(&w, WEB).unwrap().pid, old.pid);
    assert_settled(&w, &m, 1, "v1", &[WEB]);
    assert_eq!(app.generations(), [1]);
}

#[test]
fn a_rollback_after_an_install_brings_the_old_app_back() {
    let (w, _d, m) = device_on_v1(&[(WEB, HEALTHY)]);
    let (rc, out) = m.install(&w, &good(&w, "v2"));
    assert_eq!(rc, 0, "{out}");
    wait_settled(&w, &m.app(APP), 2, WEB, "v2");
    let (rc, out) = m.rollback(&w);
    assert_eq!(rc, 0, "{out}");
    assert_settled(&w, &m, 1, "v1", &[WEB]);
    let (rc, out) = m.commit(&w);
    assert_eq!(rc, 2, "nothing to commit: {out}");
}

/// Stops, then kills with SIGKILL, the processes below `root` (and `root`
/// itself when `with_root`): stopped first, so none of them acts on
/// another's death; the state the kill leaves is that of one instant, as
/// a power cut's would be.
fn kill_tree(root: u32, with_root: bool) {
    if with_root {
        let _ = sys::kill_child(root, libc::SIGSTOP);
    }
    let mut stopped = Vec::new();
    // Children may be forked while the tree is walked: walk until none is
    // new.
    loop {
        let fresh: Vec<u32> = descendants_of(root)
            .into_iter()
            .map(|(pid, _)| pid)
            .filter(|pid| !stopped.contains(pid))
            .collect();
        if fresh.is_empty() {
            break;
        }
        for pid in fresh {
            let _ = sys::kill_child(pid, libc::SIGSTOP);
            stopped.push(pid);
        }
    }
    for pid in &stopped {
        let _ = sys::kill_child(*pid, libc::SIGKILL);
    }
    if with_root {
        let _ = sys::kill_child(root, libc::SIGKILL);
    }
}

/// The module the client `client` runs in `state`, if any.
fn module_pid(client: u32, state: &str) -> Option<u32> {
    children_of(client)
        .into_iter()
        .find(|(_, argv)| {
            argv.iter().any(|a| a.ends_with("/berth-app")) && argv.iter().any(|a| a == state)
        })
        .map(|(pid, _)| pid)
}

/// Delays after the module enters ArtifactInstall at which a test kills
/// it: spread over its steps (checks, the generation's rename and fsync,
/// `previous`, the link's switch, the reload, the health wait), which take
/// from a few to a few tens of milliseconds each here.
const KILL_POINTS_MS: &[u64] = &[0, 3, 8, 15, 30, 60, 120, 400];

#[test]
fn a_module_killed_at_any_step_of_the_install_is_rolled_back_by_the_client() {
    let (w, _d, m) = device_on_v1(&[(WEB, HEALTHY), (DB, HEALTHY)]);
    let app = m.app(APP);
    let v2 = slow_two(&w, "v2");
    for &ms in KILL_POINTS_MS {
        let install = m.spawn_install(&w, &v2);
        let client = install.child.id();
        let mut module = None;
        wait_for(SETTLE, "the module's ArtifactInstall", || {
            module = module_pid(client, "ArtifactInstall");
            module.is_some()
        });
        // A fixed delay picks the point of the kill; nothing waits on it.
        std::thread::sleep(std::time::Duration::from_millis(ms));
        let seen = app.describe();
        kill_tree(module.unwrap(), true);
        let out = install.finish(CLIENT);
        assert!(
            !out.status.success(),
            "killed at {ms} ms: {}",
            describe(&out)
        );
        let version = assert_consistent(&w, &m, &[WEB, DB]);
        eprintln!("module killed {ms} ms into ArtifactInstall ({seen}): back on {version}");
        assert_eq!(version, "v1", "killed at {ms} ms");
    }
    assert_no_module_left(&w);
}

#[test]
fn a_crash_of_client_module_and_daemon_at_any_step_of_the_install_leaves_one_whole_app() {
    let (w, mut d, m) = device_on_v1(&[(WEB, HEALTHY), (DB, HEALTHY)]);
    let app = m.app(APP);
    for (i, &ms) in [0u64, 8, 30, 120].iter().enumerate() {
        let version = format!("v{}", i + 2);
        let before = app.current().expect("an app");
        let next = slow_two(&w, &version);
        let mut install = m.spawn_install(&w, &next);
        let client = install.child.id();
        wait_for(SETTLE, "the module's ArtifactInstall", || {
            module_pid(client, "ArtifactInstall").is_some()
        });
        std::thread::sleep(std::time::Duration::from_millis(ms));
        // The client, its module and what the module runs die at once;
        // then the daemon, as the device goes down.
        kill_tree(client, true);
        let _ = install.child.wait();
        d.kill_9();
        // "Boot": berth starts again and runs what the link names, a
        // whole generation: every container from it, healthy.
        d = w.start_daemon(&[]);
        let on = app.current().expect("the link names a generation");
        assert!(
            on == before || app.generation_dir(on).join(".artifact-name").exists(),
            "cut at {ms} ms: the link names {on}, not a whole generation: {}",
            app.describe()
        );
        let running = app.artifact_name(on).expect("its artifact name");
        for name in [WEB, DB] {
            wait_settled(&w, &app, on, name, &running);
        }
        eprintln!("cut {ms} ms into ArtifactInstall: berth runs generation {on} ({running})");
        // The next install of the artifact first rolls back what no
        // client remembers, then goes through.
        m.install_and_commit(&w, &next);
        assert_eq!(assert_consistent(&w, &m, &[WEB, DB]), version);
    }
    assert_no_module_left(&w);
}
