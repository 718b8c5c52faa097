//! Verity images on a kernel with device-mapper, through the real binary.
//! The machine's own kernel has none (see tests/verity.rs), so this test
//! boots Debian's cloud kernel (dm-verity as a module) in qemu, KVM when
//! /dev/kvm opens and TCG otherwise, from an initramfs it builds: static
//! busybox, the berth binary under test with its shared libraries, the
//! modules for device-mapper, verity, loop, squashfs and overlay, two
//! verity images (the tree after the data; the tree in a file of its own)
//! and tests/fixtures/verity-vm-init.sh as /init. The guest runs a
//! container from each image that reads /data/blob; holds two running and
//! lists their devices; kills a monitor with SIGKILL; changes one byte of
//! the blob in each image file and runs them again. After each step it
//! reports what berth said and whether a device-mapper or loop device was
//! left; the asserts are here, on its result lines (ttyS1).

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::images::VerityImages;
use common::vm::{self, Cpio, VmRun};
use common::{BERTH, Inspect, json, rootfs};

const INIT: &str = include_str!("fixtures/verity-vm-init.sh");
/// A line that occurs only in /data/blob, stored as is (no compression).
const BLOB_LINE: &str = "verity-blob-pattern-0123456789abcdef\n";
const BLOB_LINES: usize = 2048;
/// Modules the guest loads (with what they depend on).
const MODULES: &[&str] = &["dm-verity", "loop", "squashfs", "overlay"];
/// Where the images are in the guest.
const APP_IMAGE: &str = "/vm/images/app.sqfs";
const DATA_IMAGE: &str = "/vm/images/data.sqfs";
const HASH_FILE: &str = "/vm/images/data.verity";

/// A directory under /tmp removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = PathBuf::from(format!(
            "/tmp/berth-verity-vm-{}-{nanos}",
            std::process::id()
        ));
        fs::create_dir(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The byte to change in an image file, and what to change it to: one in
/// the middle of the blob. (Its first 4 KiB block also holds the end of
/// the file before it, busybox: a change there kills the shell with SIGBUS
/// before the blob is read.)
fn blob_byte(image: &Path) -> (u64, u8) {
    let bytes = fs::read(image).unwrap();
    let start = bytes
        .windows(BLOB_LINE.len())
        .position(|w| w == BLOB_LINE.as_bytes())
        .expect("the blob is stored uncompressed");
    let at = start + BLOB_LINE.len() * BLOB_LINES / 2;
    assert!(at % 4096 > 0 && at - start > 8192, "{start} {at}");
    (at as u64, bytes[at] ^ 0x20)
}

/// Reads the blob, then shows what the root is mounted from.
const READ_BLOB: &[&str] = &[
    "/bin/sh",
    "-c",
    "wc -c < /data/blob && cat /proc/self/mountinfo",
];
/// Reads the blob, then runs until stopped.
const HOLD: &[&str] = &[
    "/bin/sh",
    "-c",
    "wc -c < /data/blob; trap 'exit 0' TERM; while :; do sleep 0.05; done",
];

fn container(image: &str, command: &[&str], verity: &str) -> String {
    format!(
        r#"{{"image": {}, "command": {}, "autostart": false, "restart": "no", "verity": {verity}}}"#,
        json::string(image),
        json::string_array(command)
    )
}

/// Builds the initramfs in `dir` and returns its path.
fn build_initramfs(dir: &Path, kernel: &vm::Kernel) -> PathBuf {
    let busybox = rootfs::static_busybox()
        .unwrap_or_else(|e| panic!("{e}; run tests/run, which installs busybox-static"));
    // The container's image: a busybox rootfs with the blob.
    let tree = dir.join("rootfs");
    rootfs::build(&tree, &busybox).unwrap();
    fs::write(tree.join("data/blob"), BLOB_LINE.repeat(BLOB_LINES)).unwrap();
    let VerityImages {
        image: app,
        offset,
        root_hash: app_root,
        data,
        hash_file,
        hash_file_root: data_root,
        ..
    } = VerityImages::build(&tree, dir);
    let ((app_at, flipped), (data_at, same)) = (blob_byte(&app), blob_byte(&data));
    assert!(app_at < offset);
    assert_eq!(flipped, same);

    let mut c = Cpio::default();
    c.char_device("dev/console", 5, 1);
    for d in ["proc", "sys", "dev", "run", "tmp"] {
        c.dir(d);
    }
    c.copy("bin/busybox", &busybox, 0o755);
    c.symlink("bin/sh", "busybox");
    c.copy("bin/berth", Path::new(BERTH), 0o755);
    for lib in vm::shared_libraries(Path::new(BERTH)) {
        c.copy(lib.to_str().unwrap(), &lib, 0o755);
    }
    c.file("init", 0o755, INIT.as_bytes());
    let mut names = String::new();
    for module in kernel.modules_with_deps(MODULES) {
        let name = module.file_name().unwrap().to_str().unwrap().to_string();
        c.copy(&format!("vm/modules.d/{name}"), &module, 0o644);
        names.push_str(&name);
        names.push('\n');
    }
    c.file("vm/modules", 0o644, names.as_bytes());
    c.file(
        "vm/env",
        0o644,
        format!("FLIP='\\{flipped:03o}'\nAPP_AT={app_at}\nDATA_AT={data_at}\n").as_bytes(),
    );
    c.file(
        "vm/etc/daemon.json",
        0o644,
        br#"{"containers-dir": "/vm/etc/containers", "state-dir": "/vm/state", "run-dir": "/run/berth", "socket": "/run/berth/berth.sock", "log-dir": "/vm/log", "cgroup-parent": "berth-vm", "live-restore": false, "log-level": "debug", "shutdown-timeout": 5}"#,
    );
    let after = format!(
        r#"{{"root-hash": {}, "hash-offset": {offset}}}"#,
        json::string(&app_root)
    );
    let apart = format!(
        r#"{{"root-hash": {}, "hash-file": {}}}"#,
        json::string(&data_root),
        json::string(HASH_FILE)
    );
    for (name, image, command, verity) in [
        ("app", APP_IMAGE, READ_BLOB, &after),
        ("apart", DATA_IMAGE, READ_BLOB, &apart),
        ("held", APP_IMAGE, HOLD, &after),
        ("held-apart", DATA_IMAGE, HOLD, &apart),
    ] {
        let json = container(image, command, verity);
        c.file(
            &format!("vm/etc/containers/{name}.json"),
            0o644,
            json.as_bytes(),
        );
    }
    c.copy(APP_IMAGE, &app, 0o644);
    c.copy(DATA_IMAGE, &data, 0o644);
    c.copy(HASH_FILE, &hash_file, 0o644);
    let initrd = dir.join("initrd.cpio");
    fs::write(&initrd, c.finish()).unwrap();
    initrd
}

/// The guest's result lines ("VM " stripped).
fn results(run: &VmRun) -> Vec<String> {
    run.results
        .lines()
        .filter_map(|l| l.trim_end_matches('\r').strip_prefix("VM "))
        .map(str::to_string)
        .collect()
}

/// The rest of the first line starting with `prefix`.
fn value<'a>(lines: &'a [String], prefix: &str) -> Option<&'a str> {
    lines.iter().find_map(|l| l.strip_prefix(prefix))
}

/// The lines after `prefix`, each with it stripped.
fn values<'a>(lines: &'a [String], prefix: &str) -> Vec<&'a str> {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix(prefix))
        .collect()
}

fn inspect(lines: &[String], tag: &str, name: &str, run: &VmRun) -> Inspect {
    let text = values(lines, &format!("inspect {tag} {name} ")).join("\n");
    Inspect::parse(&text)
        .unwrap_or_else(|e| panic!("inspect {tag} {name}: {e}: {text}\n{}", run.describe()))
}

#[test]
fn a_verity_image_is_read_through_device_mapper_and_a_changed_block_fails() {
    let started = Instant::now();
    let kernel = vm::debian_cloud_kernel();
    let dir = TempDir::new();
    let initrd = build_initramfs(&dir.0, &kernel);
    let built = started.elapsed();
    let deadline = if vm::kvm_usable() {
        Duration::from_secs(60)
    } else {
        Duration::from_secs(120)
    };
    let run = vm::boot(&kernel, &initrd, &dir.0, deadline);
    let lines = results(&run);
    let ctx = || run.describe();
    eprintln!(
        "verity_vm: kernel {}, {} ({} s to fetch/build, VM {:?}, guest booted at {} s, finished at {} s)\n{}",
        kernel.release,
        match (run.kvm, &run.kvm_failed) {
            (true, _) => "KVM",
            (false, None) => "TCG",
            (false, Some(_)) => "TCG (KVM failed)",
        },
        built.as_secs_f32(),
        run.elapsed,
        value(&lines, "boot ").unwrap_or("?"),
        value(&lines, "uptime ").unwrap_or("?"),
        lines.join("\n")
    );
    assert!(run.finished, "the VM did not power off\n{}", ctx());
    assert!(
        lines.iter().any(|l| l == "done"),
        "the guest's init did not finish\n{}",
        ctx()
    );
    assert_eq!(
        value(&lines, "kernel "),
        Some(kernel.release.as_str()),
        "{}",
        ctx()
    );
    assert!(values(&lines, "insmod-failed ").is_empty(), "{}", ctx());
    assert_eq!(value(&lines, "dm-control "), Some("yes"), "{}", ctx());
    assert_eq!(value(&lines, "daemon "), Some("up"), "{}", ctx());

    let size = (BLOB_LINE.len() * BLOB_LINES).to_string();
    for name in ["app", "apart"] {
        assert_eq!(
            value(&lines, &format!("run ok {name} ")),
            Some("exit=0"),
            "{}",
            ctx()
        );
        let out = values(&lines, &format!("stdout ok {name} "));
        assert_eq!(out.first(), Some(&size.as_str()), "{name}\n{}", ctx());
        // The root is the image's squashfs, mounted from a dm device.
        assert!(
            out.iter()
                .any(|l| l.contains(" / / ") && l.contains(" - squashfs /dev/dm-")),
            "{name}: root not mounted from a dm device\n{}",
            ctx()
        );
        let i = inspect(&lines, "ok", name, &run);
        assert_eq!(
            (i.status.as_str(), i.exit_code),
            ("exited", Some(0)),
            "{i:?}"
        );
        assert_eq!(i.error, None, "{i:?}");
    }
    assert_eq!(
        value(&lines, "left ok "),
        Some("dm=[] loop=[]"),
        "{}",
        ctx()
    );

    // Two running containers: a device each, named for the container and
    // its run, read-only, resumed, over one loop device or two.
    let held = values(&lines, "held-device berth-");
    assert_eq!(held.len(), 2, "{}", ctx());
    for line in &held {
        // "held-apart-RUNID ..." or "held-RUNID ...".
        let (name, loops) = if line.starts_with("held-apart-") {
            ("held-apart", 2)
        } else {
            ("held", 1)
        };
        let run_id = line
            .strip_prefix(&format!("{name}-"))
            .and_then(|l| l.split_once(' '))
            .map(|(id, _)| id)
            .unwrap_or_else(|| panic!("{line}\n{}", ctx()));
        assert!(!run_id.is_empty() && !run_id.contains('-'), "{line}");
        assert!(
            line.ends_with(&format!(" ro=1 suspended=0 slaves={loops}")),
            "{line}\n{}",
            ctx()
        );
    }
    assert_eq!(
        value(&lines, "left held "),
        Some("dm=[] loop=[]"),
        "{}",
        ctx()
    );
    let crash = value(&lines, "crash monitor=").unwrap_or("");
    assert!(
        crash.ends_with(" devices=1") && !crash.starts_with(' '),
        "{}",
        ctx()
    );
    assert_eq!(
        value(&lines, "left crash "),
        Some("dm=[] loop=[]"),
        "{}",
        ctx()
    );

    for (name, image) in [("app", APP_IMAGE), ("apart", DATA_IMAGE)] {
        let exit = value(&lines, &format!("run bad {name} exit="));
        assert!(
            exit.is_some_and(|e| e != "0"),
            "{name}: a changed block did not fail the run\n{}",
            ctx()
        );
        let err = values(&lines, &format!("stderr bad {name} ")).join("\n");
        assert!(
            err.contains("I/O error") || err.contains("Input/output error"),
            "{name}: {err}\n{}",
            ctx()
        );
        let i = inspect(&lines, "bad", name, &run);
        let want = format!("image {image} failed verification");
        assert!(
            i.error.as_deref().unwrap_or("").contains(&want),
            "{name}: want {want:?} in {i:?}\n{}",
            ctx()
        );
    }
    assert_eq!(
        value(&lines, "left bad "),
        Some("dm=[] loop=[]"),
        "{}",
        ctx()
    );
    // The kernel itself says which block failed.
    assert!(
        values(&lines, "dmesg ")
            .iter()
            .any(|l| l.contains("verity") && l.contains("is corrupted")),
        "{}",
        ctx()
    );
    // The status was read at each run's end and every removal deferred.
    let log = values(&lines, "daemon-log ");
    assert!(!log.is_empty(), "{}", ctx());
    for bad in ["read its status", "deferred removal refused", "ERROR"] {
        assert!(!log.iter().any(|l| l.contains(bad)), "{bad}\n{}", ctx());
    }
    eprintln!("verity_vm: whole test {:?}", started.elapsed());
}
