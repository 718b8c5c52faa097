//! App directories through the real binary: `containers-dir/shop.app` is a
//! symlink to one generation of an app (`apps/shop/N`: a squashfs image
//! and definitions naming it by a relative path). Switching the link
//! atomically and reloading moves the app's containers to the new
//! generation (recreated, removed, added) and back; a container restarted
//! by its policy after the switch but before the reload still runs the
//! generation it was defined from; and a name defined twice refuses the
//! reload, naming both files, with nothing changed.

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::PathBuf;

use common::images::{LoopGuard, mksquashfs};
use common::*;

/// What these tests read of `inspect` beyond the common keys.
mod facts {
    // nanoserde's derived code trips this lint; it is not ours to rewrite.
    #![allow(clippy::question_mark)]

    use nanoserde::DeJson;

    #[derive(DeJson, Debug)]
    pub struct Facts {
        pub image: Option<String>,
        #[nserde(rename = "config-hash")]
        pub config_hash: String,
    }
}

/// The app `shop` of one world: its generations under `apps/shop`, and
/// its link in the containers directory. Dropped, it detaches the loop
/// devices its images left.
struct Shop {
    generations: PathBuf,
    link: PathBuf,
    _loops: LoopGuard,
}

impl Shop {
    fn new(w: &World) -> Shop {
        Shop {
            generations: w.root.join("apps").join("shop"),
            link: w.containers_dir().join("shop.app"),
            _loops: LoopGuard {
                dir: w.root.join("apps"),
            },
        }
    }

    /// Generation `n`: an image of the busybox rootfs whose
    /// /etc/generation says `n`, and one definition per name in
    /// `containers` running it (with the members of `extra`), naming the
    /// image by its relative path.
    fn build(&self, w: &World, n: u32, containers: &[&str], extra: &str) {
        let dir = self.generations.join(n.to_string());
        fs::create_dir_all(&dir).unwrap();
        let tree = w.root.join(format!("tree-{n}"));
        let busybox = rootfs::static_busybox().unwrap();
        rootfs::build(&tree, &busybox).unwrap();
        fs::write(tree.join("etc/generation"), format!("{n}\n")).unwrap();
        mksquashfs(&tree, &dir.join("app.sqfs"));
        let base = format!(
            "{{\"image\": \"app.sqfs\", \"command\": {}}}",
            json::string_array(POLITE)
        );
        for name in containers {
            fs::write(dir.join(format!("{name}.json")), json::merge(&base, extra)).unwrap();
        }
    }

    /// Generation `n`'s real directory.
    fn real(&self, n: u32) -> PathBuf {
        fs::canonicalize(self.generations.join(n.to_string())).unwrap()
    }

    /// Points the link at generation `n` as an update does: a new link
    /// (relative, hidden) beside the old one, renamed over it.
    fn switch(&self, n: u32) {
        let new = self.link.with_file_name(".shop.app.new");
        symlink(format!("../../apps/shop/{n}"), &new).unwrap();
        fs::rename(&new, &self.link).unwrap();
    }

    /// The image file generation `n`'s definitions name.
    fn image(&self, n: u32) -> String {
        self.real(n).join("app.sqfs").display().to_string()
    }
}

/// The image and config hash `inspect` shows for NAME.
fn facts(w: &World, name: &str) -> facts::Facts {
    let out = w.berth_ok(&["inspect", name]);
    nanoserde::DeJson::deserialize_json(out.trim())
        .unwrap_or_else(|e| panic!("inspect {name}: {e}: {out}"))
}

/// The generation the running container NAME's root comes from, as its
/// own /etc/generation says (read through its init's root).
fn generation_of(w: &World, name: &str) -> String {
    let pid = w.wait_running(name).pid;
    let text = fs::read_to_string(format!("/proc/{pid}/root/etc/generation"))
        .unwrap_or_else(|e| panic!("{name}'s /etc/generation: {e}"));
    text.trim().to_string()
}

/// Waits until NAME runs with a pid other than `old`; returns the pid.
fn wait_recreated(w: &World, name: &str, old: u32) -> u32 {
    let what = format!("to run again with a pid other than {old}");
    w.wait_inspect(name, &what, SHORT, |i| i.is_running() && i.pid != old)
        .pid
}

fn wait_gone(w: &World, name: &str) {
    wait_for(SHORT, &format!("{name} to be forgotten"), || {
        !w.berth(&["inspect", name]).status.success()
    });
}

fn assert_lines(out: &str, expected: &[&str]) {
    for line in expected {
        assert!(out.contains(line), "reload output lacks {line:?}: {out}");
    }
}

#[test]
fn a_switched_link_and_a_reload_move_the_app_to_the_other_generation_and_back() {
    let mut w = World::new();
    let shop = Shop::new(&w);
    shop.build(&w, 1, &["web", "db", "old"], "{}");
    shop.build(&w, 2, &["web", "db", "new"], "{}");
    shop.switch(1);
    let _daemon = w.start_daemon(&[]);
    let mut pids = Vec::new();
    for name in ["web", "db", "old"] {
        pids.push(w.wait_running(name).pid);
        assert_eq!(generation_of(&w, name), "1", "{name}");
        assert_eq!(facts(&w, name).image, Some(shop.image(1)), "{name}");
    }

    switch_and_reload(&w, &shop, 2, &pids, ("old", "new"));
    // And back, as a rollback does.
    let pids: Vec<u32> = ["web", "db"].iter().map(|n| w.inspect(n).pid).collect();
    switch_and_reload(&w, &shop, 1, &pids, ("new", "old"));
    w.cleanup().unwrap();
}

/// Switches the shop to generation `n` and reloads: web and db (at
/// `pids`) are recreated from it, `gone` is removed and `added` runs
/// from it.
fn switch_and_reload(w: &World, shop: &Shop, n: u32, pids: &[u32], (gone, added): (&str, &str)) {
    shop.switch(n);
    let out = w.berth_ok(&["reload"]);
    assert_lines(
        &out,
        &[
            "web: changed, recreating",
            "db: changed, recreating",
            &format!("{gone}: removed"),
            &format!("{added}: added and started"),
        ],
    );
    for (name, old) in [("web", pids[0]), ("db", pids[1])] {
        wait_recreated(w, name, old);
        assert_eq!(generation_of(w, name), n.to_string(), "{name}");
        assert_eq!(facts(w, name).image, Some(shop.image(n)), "{name}");
    }
    assert_eq!(generation_of(w, added), n.to_string());
    wait_gone(w, gone);
}

#[test]
fn a_restart_after_the_switch_runs_the_old_generation_until_the_reload() {
    let mut w = World::new();
    let shop = Shop::new(&w);
    let always = r#"{"restart": "always"}"#;
    shop.build(&w, 1, &["web"], always);
    shop.build(&w, 2, &["web"], always);
    shop.switch(1);
    let _daemon = w.start_daemon(&[]);
    let before = w.wait_running("web");
    let hash = facts(&w, "web").config_hash;
    assert_eq!(generation_of(&w, "web"), "1");

    // The link moves on; no reload yet. The container dies and its
    // policy starts it again: from the definition the daemon holds,
    // which names generation 1's real directory, not the link.
    shop.switch(2);
    let (_, start) = proc_stat(before.pid as i32).unwrap();
    let pidfd = common::sys::pidfd_open(before.pid as i32).unwrap();
    assert!(!is_gone(before.pid as i32, start), "web's init is gone");
    common::sys::pidfd_send_signal(&pidfd, libc::SIGKILL).unwrap();
    let again = w.wait_inspect("web", "to be restarted by its policy", LONG, |i| {
        i.is_running() && i.pid != before.pid && i.restart_count >= 1
    });
    assert_eq!(generation_of(&w, "web"), "1");
    let now = facts(&w, "web");
    assert_eq!(now.image, Some(shop.image(1)));
    assert_eq!(now.config_hash, hash);

    // The reload takes the new generation.
    let out = w.berth_ok(&["reload"]);
    assert_lines(&out, &["web: changed, recreating"]);
    wait_recreated(&w, "web", again.pid);
    assert_eq!(generation_of(&w, "web"), "2");
    let now = facts(&w, "web");
    assert_eq!(now.image, Some(shop.image(2)));
    assert_ne!(now.config_hash, hash);
    w.cleanup().unwrap();
}

#[test]
fn a_name_defined_twice_refuses_the_reload_naming_both_files() {
    let mut w = World::new();
    let shop = Shop::new(&w);
    shop.build(&w, 1, &["web", "db"], "{}");
    shop.switch(1);
    let mut daemon = w.start_daemon(&[]);
    let web = w.wait_running("web").pid;
    let db = w.wait_running("db").pid;

    // A top-level web.json comes first: the app's web.json is the
    // duplicate. A good new definition beside it is not applied either.
    w.add_container("web", POLITE, "{}");
    w.add_container("extra", POLITE, "{}");
    let out = w.berth(&["reload"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    let top = w.containers_dir().join("web.json");
    let in_app = shop.real(1).join("web.json");
    let expected = format!(
        "{}: container web is already defined in {}",
        in_app.display(),
        top.display()
    );
    assert!(err.contains(&expected), "{err}");
    daemon.wait_for_log_line(&["reload refused", &expected]);
    // SIGHUP: the same.
    daemon.signal(libc::SIGHUP);
    wait_for(SHORT, "a second refusal in the log", || {
        daemon.stderr().matches("reload refused").count() >= 2
    });
    assert_eq!(w.inspect("web").pid, web);
    assert_eq!(w.inspect("db").pid, db);
    assert_eq!(facts(&w, "web").image, Some(shop.image(1)));
    assert!(!w.berth(&["inspect", "extra"]).status.success());

    // Without the duplicate the reload goes through, and the app's
    // containers are left alone.
    fs::remove_file(&top).unwrap();
    let out = w.berth_ok(&["reload"]);
    assert_lines(&out, &["extra: added and started"]);
    assert!(!out.contains("web") && !out.contains("db"), "{out}");
    w.wait_running("extra");
    assert_eq!(w.inspect("web").pid, web);
    assert_eq!(w.inspect("db").pid, db);
    w.cleanup().unwrap();
}

/// A dangling app link refuses the reload and leaves the app running.
#[test]
fn an_app_link_to_nowhere_refuses_the_reload() {
    let mut w = World::new();
    let shop = Shop::new(&w);
    shop.build(&w, 1, &["web"], "{}");
    shop.switch(1);
    let _daemon = w.start_daemon(&[]);
    let web = w.wait_running("web").pid;
    shop.switch(3);
    let out = w.berth(&["reload"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    let expected = format!(
        "{}: link to ../../apps/shop/3: no such file or directory",
        shop.link.display()
    );
    assert!(err.contains(&expected), "{err}");
    assert_eq!(w.inspect("web").pid, web);
    w.cleanup().unwrap();
}

#[test]
fn a_daemon_starting_with_a_name_defined_twice_runs_the_first_and_rm_names_the_app_file() {
    let mut w = World::new();
    let shop = Shop::new(&w);
    shop.build(&w, 1, &["web", "db"], "{}");
    shop.switch(1);
    // The top-level web.json comes first; the app's db is the only db.
    w.add_container("web", POLITE, "{}");
    let daemon = w.start_daemon(&[]);
    let top = w.containers_dir().join("web.json");
    let in_app = shop.real(1).join("web.json");
    daemon.wait_for_log_line(&[&format!(
        "{}: container web is already defined in {}",
        in_app.display(),
        top.display()
    )]);
    w.wait_running("web");
    w.wait_running("db");
    assert_eq!(
        facts(&w, "web").image,
        None,
        "the top-level file's web runs"
    );
    assert_eq!(facts(&w, "db").image, Some(shop.image(1)));
    // `berth rm` is refused for a name an app file defines, naming it.
    let out = w.berth(&["rm", "db"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "db is defined in {}",
            shop.real(1).join("db.json").display()
        )),
        "{err}"
    );
    w.cleanup().unwrap();
}
