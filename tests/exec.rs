//! `berth exec`, through the real binary.

mod common;

use std::fs;
use std::time::{Duration, Instant};

use common::*;

const ON_DEMAND: &str = r#"{"autostart": false, "restart": "no"}"#;

#[test]
fn smoke() {
    let w = World::new();
    w.add_container("web", POLITE, ON_DEMAND);
    let _daemon = w.start_daemon(&[]);
    w.berth_ok(&["start", "web"]);
    let out = w.berth(&["exec", "web", "--", "sh", "-c", "echo hi; id; pwd; ls /; cat /proc/self/status | grep -E 'Cap|NoNew|Secc'; cat /proc/self/cgroup; echo $$; exit 3"]);
    eprintln!("{}", describe(&out));
    panic!();
}
