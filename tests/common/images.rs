//! Image files for tests: a squashfs or erofs image built from a directory
//! with Debian's squashfs-tools or erofs-utils (tests/run installs them),
//! and what the kernel still holds of an image: loop devices backed by it
//! (/sys/block/loop*/loop/backing_file) and mounts in a mountinfo.
//!
//! `LoopGuard` detaches, when dropped, every loop device still backed by a
//! file under its directory, so a failed test leaks no device even if the
//! processes holding them were already killed without autoclear working.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Builds a squashfs image of `dir` at `out` (gzip, mksquashfs's default).
pub fn mksquashfs(dir: &Path, out: &Path) {
    mksquashfs_with(dir, out, &[]);
}

/// Builds a squashfs image of `dir` at `out` with mksquashfs's options
/// `extra` (e.g. `-comp lz4`).
#[allow(dead_code)]
pub fn mksquashfs_with(dir: &Path, out: &Path, extra: &[&str]) {
    run(
        Command::new("mksquashfs")
            .arg(dir)
            .arg(out)
            .args(["-noappend", "-quiet", "-no-progress"])
            .args(extra),
        "mksquashfs (package squashfs-tools; tests/run installs it)",
    );
}

/// Builds a squashfs image of `dir` at `out` with nothing compressed, so
/// a file's bytes appear in it as they are.
#[allow(dead_code)]
pub fn mksquashfs_uncompressed(dir: &Path, out: &Path) {
    mksquashfs_with(dir, out, &["-noI", "-noD", "-noF", "-noX"]);
}

/// Builds an erofs image of `dir` at `out`.
pub fn mkfs_erofs(dir: &Path, out: &Path) {
    run(
        Command::new("mkfs.erofs").arg("--quiet").arg(out).arg(dir),
        "mkfs.erofs (package erofs-utils; tests/run installs it)",
    );
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The loop devices (/dev/loopN) whose backing file is `file` or lies
/// under it (a directory), deleted or not.
pub fn loops_backed_by(file: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/sys/block").into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("loop") {
            continue;
        }
        let Ok(backing) = fs::read_to_string(entry.path().join("loop/backing_file")) else {
            continue;
        };
        let backing = backing.trim_end_matches('\n');
        let backing = backing.strip_suffix(" (deleted)").unwrap_or(backing);
        if Path::new(backing).starts_with(file) {
            found.push(PathBuf::from("/dev").join(name));
        }
    }
    found
}

/// The lines of the mountinfo of `pid` ("self" for this process) that
/// mention `needle` (a path or a device).
pub fn mounts_mentioning(pid: &str, needle: &str) -> Vec<String> {
    fs::read_to_string(format!("/proc/{pid}/mountinfo"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_string)
        .collect()
}

/// Detaches, when dropped, the loop devices still backed by files under
/// `dir`.
pub struct LoopGuard {
    pub dir: PathBuf,
}

impl Drop for LoopGuard {
    fn drop(&mut self) {
        for dev in loops_backed_by(&self.dir) {
            let _ = Command::new("losetup").arg("-d").arg(&dev).status();
        }
    }
}

/// `veritysetup format ARGS` (Debian's cryptsetup-bin; tests/run installs
/// it) and the root hash it printed.
#[allow(dead_code)]
pub fn veritysetup_format(args: &[&str]) -> String {
    let out = Command::new("veritysetup")
        .arg("format")
        .args(args)
        .output()
        .expect("run veritysetup (Debian's cryptsetup-bin; tests/run installs it)");
    assert!(
        out.status.success(),
        "veritysetup format {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = text
        .lines()
        .find(|l| l.starts_with("Root hash:"))
        .unwrap_or_else(|| panic!("no root hash in: {text}"));
    line.split_whitespace().last().unwrap().to_string()
}

/// The same tree as two verity images in `dir`, with nothing compressed
/// (so a file's bytes can be found and changed): `app.sqfs` with its hash
/// tree appended at `offset`, and `data.sqfs` with its tree in
/// `data.verity`; each with the root hash veritysetup printed.
#[allow(dead_code)]
pub struct VerityImages {
    pub dir: PathBuf,
    pub image: PathBuf,
    pub offset: u64,
    pub root_hash: String,
    pub data: PathBuf,
    pub hash_file: PathBuf,
    pub hash_file_root: String,
}

#[allow(dead_code)]
impl VerityImages {
    pub fn build(tree: &Path, dir: &Path) -> VerityImages {
        let image = dir.join("app.sqfs");
        mksquashfs_uncompressed(tree, &image);
        let offset = fs::metadata(&image).unwrap().len();
        assert_eq!(offset % 4096, 0, "mksquashfs pads to 4 KiB");
        let data = dir.join("data.sqfs");
        fs::copy(&image, &data).unwrap();
        let s = image.to_str().unwrap();
        let root_hash = veritysetup_format(&[&format!("--hash-offset={offset}"), s, s]);
        let hash_file = dir.join("data.verity");
        let hash_file_root =
            veritysetup_format(&[data.to_str().unwrap(), hash_file.to_str().unwrap()]);
        VerityImages {
            dir: dir.to_path_buf(),
            image,
            offset,
            root_hash,
            data,
            hash_file,
            hash_file_root,
        }
    }
}
