//! Networking through the real binary, each test inside a lab of its own
//! (tests/common/netlab.rs): the daemon runs in a "device" network
//! namespace whose uplink 192.0.2.2 faces an "outside" namespace at
//! 192.0.2.1.

mod common;

use std::net::{Ipv4Addr, SocketAddr};

use common::netlab::{self, Echo, Lab, OUTSIDE, UPLINK};
use common::*;

#[test]
fn lab_works() {
    let lab = Lab::new();
    let ours = std::fs::read_link("/proc/self/ns/net").unwrap();
    for ns in [lab.device(), lab.outside()] {
        assert_ne!(std::fs::read_link(ns).unwrap(), ours);
    }
    assert!(lab.device_links().contains(&netlab::DEVICE_LINK.to_string()));
    let route = netlab::ip(lab.device(), &["route", "show", "default"]);
    assert!(
        route.contains(&format!("default via {OUTSIDE} dev {}", netlab::DEVICE_LINK)),
        "{route}"
    );
    let ping = netlab::ok_in(
        lab.device(),
        "busybox",
        &["ping", "-c", "1", "-W", "2", &OUTSIDE.to_string()],
    );
    assert!(ping.contains("1 packets received"), "{ping}");

    let tcp = Echo::tcp(lab.outside(), SocketAddr::from((OUTSIDE, 0)));
    let udp = Echo::udp(lab.outside(), SocketAddr::from((OUTSIDE, 0)));
    let answer = netlab::tcp_ask(lab.device(), tcp.addr(), "hello\n").unwrap();
    let (peer, text) = answer.split_once(' ').unwrap();
    let peer: SocketAddr = peer.parse().unwrap();
    assert_eq!((peer.ip(), text), (UPLINK.into(), "hello\n"));
    assert_eq!(tcp.peers(), [peer]);
    let answer = netlab::udp_ask(lab.device(), udp.addr(), "datagram").unwrap();
    let (peer, text) = answer.split_once(' ').unwrap();
    let peer: SocketAddr = peer.parse().unwrap();
    assert_eq!((peer.ip(), text), (UPLINK.into(), "datagram"));
    assert_eq!(udp.peers(), [peer]);
    // Neither namespace's server is reachable from where the test runs.
    assert!(std::net::TcpStream::connect_timeout(&tcp.addr(), std::time::Duration::from_millis(300)).is_err());
    let _ = Ipv4Addr::LOCALHOST;
}
