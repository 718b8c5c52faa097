//! A small virtual machine for tests that need a kernel feature the
//! machine's own kernel lacks (device-mapper): Debian's cloud kernel,
//! booted by qemu-system-x86_64 (KVM when /dev/kvm opens, TCG otherwise)
//! from an initramfs the test builds.
//!
//! The kernel package is fetched with `apt-get download` (never installed)
//! and unpacked with `dpkg-deb -x` under target/vm-kernel, once: later runs
//! reuse it. Its module files come with their dependencies, read from each
//! module's own `depends=` (the package ships no modules.dep; depmod makes
//! it at install time). The VM has two serial ports: ttyS0 is the kernel's
//! console, ttyS1 is for the result lines the guest writes, so kernel
//! messages never cut into them.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The package that depends on the current cloud kernel image.
const KERNEL_META_PACKAGE: &str = "linux-image-cloud-amd64";

/// An unpacked kernel package: the kernel image and its modules.
pub struct Kernel {
    /// uname -r, e.g. 6.1.0-48-cloud-amd64.
    pub release: String,
    pub vmlinuz: PathBuf,
    /// lib/modules/RELEASE in the unpacked package.
    pub modules: PathBuf,
}

/// Runs `cmd` to its end and returns its stdout; a failure panics naming
/// `what`, with everything it printed.
pub(super) fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Debian's cloud kernel for this machine's architecture, downloaded and
/// unpacked under target/vm-kernel on the first call and reused after.
pub fn debian_cloud_kernel() -> Kernel {
    let cache = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/vm-kernel");
    let tree = cache.join("tree");
    let done = tree.join("UNPACKED");
    if !done.is_file() {
        fs::create_dir_all(&cache).expect("create target/vm-kernel");
        let depends = run(
            Command::new("apt-cache").args(["depends", KERNEL_META_PACKAGE]),
            &format!(
                "apt-cache depends {KERNEL_META_PACKAGE} (run apt-get update if it is unknown)"
            ),
        );
        let package = depends
            .lines()
            .filter_map(|l| l.trim().strip_prefix("Depends: "))
            .find(|p| p.starts_with("linux-image-"))
            .unwrap_or_else(|| {
                panic!("no kernel image among the dependencies of {KERNEL_META_PACKAGE}: {depends}")
            })
            .to_string();
        let partial = cache.join("tree.partial");
        let _ = fs::remove_dir_all(&partial);
        let _ = fs::remove_dir_all(&tree);
        unpack_deb(&cache, &package, &partial);
        let release = fs::read_dir(partial.join("lib/modules"))
            .expect("the kernel package has lib/modules")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .next()
            .expect("a release directory in lib/modules");
        fs::write(partial.join("UNPACKED"), &release).unwrap();
        fs::rename(&partial, &tree).expect("move the unpacked kernel in place");
    }
    let release = fs::read_to_string(&done).unwrap().trim().to_string();
    let kernel = Kernel {
        vmlinuz: tree.join(format!("boot/vmlinuz-{release}")),
        modules: tree.join(format!("lib/modules/{release}")),
        release,
    };
    assert!(
        kernel.vmlinuz.is_file(),
        "{} missing",
        kernel.vmlinuz.display()
    );
    kernel
}

/// Unpacks Debian package `package` into `into`: its .deb from `cache`,
/// downloaded there first when it is not (the package lists must know it).
pub(super) fn unpack_deb(cache: &Path, package: &str, into: &Path) {
    let deb = match find_deb(cache, package) {
        Some(deb) => deb,
        None => {
            // The sandbox user cannot write here; download as root.
            run(
                Command::new("apt-get")
                    .args(["download", "-q", "-o", "APT::Sandbox::User=root"])
                    .arg(package)
                    .current_dir(cache),
                &format!("apt-get download {package} (run apt-get update if it is unknown)"),
            );
            find_deb(cache, package).unwrap_or_else(|| {
                panic!(
                    "apt-get download {package} left no .deb in {}",
                    cache.display()
                )
            })
        }
    };
    run(
        Command::new("dpkg-deb").arg("-x").arg(&deb).arg(into),
        &format!("dpkg-deb -x {}", deb.display()),
    );
}

fn find_deb(dir: &Path, package: &str) -> Option<PathBuf> {
    fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            name.starts_with(&format!("{package}_")) && name.ends_with(".deb")
        })
}

/// Module names as the kernel compares them: '-' and '_' are the same.
fn module_key(name: &str) -> String {
    name.replace('-', "_")
}

impl Kernel {
    /// The module files `names` need, dependencies before the modules that
    /// use them; a module built into the kernel is left out. Panics naming a
    /// module that is neither.
    pub fn modules_with_deps(&self, names: &[&str]) -> Vec<PathBuf> {
        let mut files = BTreeMap::new();
        index_modules(&self.modules.join("kernel"), &mut files);
        let builtin: HashSet<String> = fs::read_to_string(self.modules.join("modules.builtin"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.rsplit('/').next())
            .map(|f| module_key(f.trim_end_matches(".ko")))
            .collect();
        let mut order = Vec::new();
        let mut seen = HashSet::new();
        for name in names {
            self.visit(&module_key(name), &files, &builtin, &mut seen, &mut order);
        }
        order
    }

    fn visit(
        &self,
        key: &str,
        files: &BTreeMap<String, PathBuf>,
        builtin: &HashSet<String>,
        seen: &mut HashSet<String>,
        order: &mut Vec<PathBuf>,
    ) {
        if !seen.insert(key.to_string()) || builtin.contains(key) {
            return;
        }
        let file = files.get(key).unwrap_or_else(|| {
            panic!(
                "module {key} is neither a file under {} nor built in",
                self.modules.display()
            )
        });
        for dep in module_depends(file) {
            self.visit(&module_key(&dep), files, builtin, seen, order);
        }
        order.push(file.clone());
    }
}

fn index_modules(dir: &Path, files: &mut BTreeMap<String, PathBuf>) {
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            index_modules(&path, files);
        } else if let Some(name) = path.file_name().and_then(|n| n.to_str()) {
            if let Some(stem) = name.strip_suffix(".ko") {
                files.insert(module_key(stem), path.clone());
            }
        }
    }
}

/// The `depends=` entry of a module's .modinfo strings.
fn module_depends(file: &Path) -> Vec<String> {
    let bytes = fs::read(file).unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
    let key = b"\0depends=";
    let Some(at) = bytes.windows(key.len()).position(|w| w == key) else {
        return Vec::new();
    };
    let value = &bytes[at + key.len()..];
    let end = value.iter().position(|&b| b == 0).unwrap_or(value.len());
    String::from_utf8_lossy(&value[..end])
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// The shared libraries `ldd` names for a dynamically linked executable
/// (the loader included), as absolute paths on this machine.
pub fn shared_libraries(exe: &Path) -> Vec<PathBuf> {
    let out = run(
        Command::new("ldd").arg(exe),
        &format!("ldd {}", exe.display()),
    );
    out.lines()
        .filter_map(|l| {
            let l = l.trim();
            let path = match l.split_once("=>") {
                Some((_, rest)) => rest.split_whitespace().next()?,
                None => l.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

/// An initramfs in the kernel's "newc" cpio format, uncompressed.
#[derive(Default)]
pub struct Cpio {
    out: Vec<u8>,
    inode: u32,
    dirs: HashSet<String>,
}

impl Cpio {
    fn entry(&mut self, path: &str, mode: u32, rdev: (u32, u32), data: &[u8]) {
        let name = path.trim_start_matches('/');
        if let Some((parent, _)) = name.rsplit_once('/') {
            self.dir(parent);
        }
        self.inode += 1;
        let fields = [
            self.inode,
            mode,
            0,
            0,
            1,
            0,
            data.len() as u32,
            0,
            0,
            rdev.0,
            rdev.1,
            name.len() as u32 + 1,
            0,
        ];
        self.out.extend_from_slice(b"070701");
        for f in fields {
            self.out.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while self.out.len() % 4 != 0 {
            self.out.push(0);
        }
    }

    /// A directory (and its parents), once.
    pub fn dir(&mut self, path: &str) {
        let name = path.trim_start_matches('/').trim_end_matches('/');
        if name.is_empty() || self.dirs.contains(name) {
            return;
        }
        self.dirs.insert(name.to_string());
        self.entry(name, 0o040755, (0, 0), &[]);
    }

    pub fn file(&mut self, path: &str, mode: u32, data: &[u8]) {
        self.entry(path, 0o100000 | mode, (0, 0), data);
    }

    /// A copy of the host file `from` (symlinks followed).
    pub fn copy(&mut self, path: &str, from: &Path, mode: u32) {
        let data = fs::read(from).unwrap_or_else(|e| panic!("read {}: {e}", from.display()));
        self.file(path, mode, &data);
    }

    pub fn symlink(&mut self, path: &str, target: &str) {
        self.entry(path, 0o120777, (0, 0), target.as_bytes());
    }

    pub fn char_device(&mut self, path: &str, major: u32, minor: u32) {
        self.entry(path, 0o020600, (major, minor), &[]);
    }

    /// The archive with its trailer.
    pub fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, (0, 0), &[]);
        self.out
    }
}

/// How long a KVM guest may take to write its first result line before
/// KVM is taken as unable to run it (a stock kernel hangs in its early
/// boot on some nested setups) and the VM is booted again with TCG.
const KVM_FIRST_LINE: Duration = Duration::from_secs(20);

/// What a VM run left: the two serial ports' output and how it ended.
pub struct VmRun {
    /// ttyS0: the kernel's console (and whatever the guest printed there).
    pub console: String,
    /// ttyS1: the guest's result lines.
    pub results: String,
    pub kvm: bool,
    /// Why KVM was tried and given up for TCG, if it was.
    pub kvm_failed: Option<String>,
    pub elapsed: Duration,
    /// False when the deadline passed and qemu was killed.
    pub finished: bool,
}

impl VmRun {
    /// Both outputs, for failure messages.
    pub fn describe(&self) -> String {
        format!(
            "qemu {} after {:?} ({}{})\n---- results (ttyS1) ----\n{}\n---- console (ttyS0) ----\n{}",
            if self.finished {
                "exited"
            } else {
                "KILLED at its deadline"
            },
            self.elapsed,
            if self.kvm { "KVM" } else { "TCG" },
            self.kvm_failed
                .as_deref()
                .map(|why| format!(", after KVM failed: {why}"))
                .unwrap_or_default(),
            self.results,
            self.console
        )
    }
}

/// Whether qemu can run a stock kernel with KVM: /dev/kvm opens and it is
/// backed by hardware virtualisation (kvm_intel or kvm_amd). A /dev/kvm
/// served by kvm_pvm (pagetable-based, for nested machines) runs only
/// guests built for PVM: a stock kernel hangs in its early boot there, so
/// such a machine gets TCG. BERTH_TEST_VM_ACCEL=kvm or tcg overrides this.
pub fn kvm_usable() -> bool {
    match std::env::var("BERTH_TEST_VM_ACCEL").as_deref() {
        Ok("kvm") => return true,
        Ok("tcg") => return false,
        _ => {}
    }
    let hardware = ["kvm_intel", "kvm_amd"]
        .iter()
        .any(|m| Path::new("/sys/module").join(m).exists());
    hardware
        && fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/kvm")
            .is_ok()
}

/// A qemu process, killed and reaped when dropped (a deadline passed or
/// the test panicked).
struct Qemu(Child);

impl Drop for Qemu {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// Boots `kernel` with `initrd` (a file in `dir`, where the serial
/// outputs go too) and waits for the VM to power off, killing qemu when
/// `deadline` passes first. With KVM (see `kvm_usable`), a guest that
/// writes no result line in its first `KVM_FIRST_LINE` (or whose qemu
/// ends without one) is booted again with TCG.
pub fn boot(kernel: &Kernel, initrd: &Path, dir: &Path, deadline: Duration) -> VmRun {
    if !kvm_usable() {
        return boot_with(kernel, initrd, dir, deadline, false);
    }
    let run = boot_with(kernel, initrd, dir, deadline, true);
    if !run.results.is_empty() {
        return run;
    }
    let console_end: String = {
        let lines: Vec<&str> = run.console.lines().collect();
        lines[lines.len().saturating_sub(5)..].join("\n")
    };
    let why = format!(
        "no result line after {:?}; the console ended with:\n{console_end}",
        run.elapsed
    );
    eprintln!("vm: KVM failed, booting again with TCG: {why}");
    let mut tcg = boot_with(kernel, initrd, dir, deadline, false);
    tcg.kvm_failed = Some(why);
    tcg
}

fn boot_with(kernel: &Kernel, initrd: &Path, dir: &Path, deadline: Duration, kvm: bool) -> VmRun {
    let console = dir.join("console.log");
    let results = dir.join("results.log");
    let mut cmd = Command::new("qemu-system-x86_64");
    if kvm {
        cmd.args(["-enable-kvm", "-cpu", "host"]);
    } else {
        cmd.args(["-accel", "tcg"]);
    }
    cmd.args(["-m", "512M", "-smp", "1", "-nodefaults", "-no-reboot"])
        .args(["-display", "none", "-monitor", "none"])
        .arg("-kernel")
        .arg(&kernel.vmlinuz)
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", "console=ttyS0 panic=-1 quiet"])
        .arg("-serial")
        .arg(format!("file:{}", console.display()))
        .arg("-serial")
        .arg(format!("file:{}", results.display()))
        .stdin(Stdio::null())
        .stdout(File::create(dir.join("qemu.stdout")).unwrap())
        .stderr(File::create(dir.join("qemu.stderr")).unwrap());
    let started = Instant::now();
    let mut qemu = Qemu(cmd.spawn().unwrap_or_else(|e| {
        panic!("run qemu-system-x86_64 (package qemu-system-x86; tests/run installs it): {e}")
    }));
    let mut finished = false;
    while started.elapsed() < deadline {
        if qemu.0.try_wait().expect("wait for qemu").is_some() {
            finished = true;
            break;
        }
        let silent = || fs::metadata(&results).map_or(true, |m| m.len() == 0);
        if kvm && started.elapsed() > KVM_FIRST_LINE && silent() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Killed (by its pid, our unreaped child) if still running.
    drop(qemu);
    let elapsed = started.elapsed();
    let read = |p: &Path| String::from_utf8_lossy(&fs::read(p).unwrap_or_default()).into_owned();
    let mut console = read(&console);
    let qemu_err = read(&dir.join("qemu.stderr"));
    if !qemu_err.is_empty() {
        console.push_str("\n---- qemu stderr ----\n");
        console.push_str(&qemu_err);
    }
    VmRun {
        console,
        results: read(&results),
        kvm,
        kvm_failed: None,
        elapsed,
        finished,
    }
}
