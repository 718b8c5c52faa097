//! Networking through the real binary, each test inside a lab of its own
//! (tests/common/netlab.rs): the daemon runs in a "device" network
//! namespace whose uplink 192.0.2.2 faces an "outside" namespace at
//! 192.0.2.1, and nothing else is touched.
//!
//! Bridge networks from daemon.json's `networks`: containers on one
//! network ping each other by name and find every member in /etc/hosts,
//! kept current by reload; a container reaches the outside through NAT
//! and the outside sees the uplink's address; published TCP and UDP ports
//! answer from the outside and from the device itself, also while no
//! daemon runs and after a kill -9 and a restart (same address, same
//! pid); removal leaves no interface, lease or rule behind; a table
//! flushed and a bridge deleted by an admin are recreated, and said so;
//! configuration errors name file and field; `container:NAME` shares a
//! namespace (also one whose owner has `network: none`) and follows its
//! owner's recreation. A reload that changes one network recreates only
//! the containers on it; a container on two networks has eth0 and eth1
//! and is found under the shared network's address; `nat: false` keeps a
//! network's traffic unmasqueraded; a port published on one host address
//! answers only there; fixed addresses are kept and reserved, and no
//! address is handed out twice; a restart by policy or `berth restart`
//! keeps the namespace, veth and address.
//!
//! The containers' TCP service is busybox `nc -ll -e /bin/cat` (an echo);
//! Debian's busybox nc has no UDP, so the UDP service is the lab's echo
//! server bound inside the container's own namespace.

// nanoserde's derived code trips this lint; it is not ours to rewrite.
#![allow(clippy::question_mark)]

mod common;

use std::collections::HashMap;
use std::fs;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use nanoserde::DeJson;

use common::netlab::{self, Echo, Lab, OUTSIDE, UPLINK, answered, ns_of, tcp_ask, udp_ask};
use common::*;

/// busybox applets these tests use beyond the harness's.
const MORE_APPLETS: &[&str] = &["ping", "nc", "grep"];

/// One bridge network, live restore on.
const LAN: &str = r#"{"live-restore": true, "networks": {"lan": {"bridge": "berth0", "subnet": "10.88.0.0/24"}}}"#;

/// A TCP echo service on port 80 that stops at once on SIGTERM.
const TCP_ECHO: &[&str] = &[
    "/bin/sh",
    "-c",
    "trap 'exit 0' TERM; nc -ll -p 80 -e /bin/cat & wait",
];

/// `web`'s definition: the TCP echo on lan, 8080 -> 80/tcp and
/// 5353 -> 53/udp published.
const WEB: &str = r#"{"network": "lan", "ports": ["8080:80", "5353:53/udp"]}"#;

/// What `inspect` says of a container's networking.
#[derive(DeJson, Debug, Clone, PartialEq)]
struct Net {
    pid: u32,
    networks: HashMap<String, Attachment>,
    ports: Vec<Published>,
}

#[derive(DeJson, Debug, Clone, PartialEq)]
struct Attachment {
    address: String,
    prefix: u8,
    gateway: String,
    bridge: String,
    interface: String,
}

#[derive(DeJson, Debug, Clone, PartialEq)]
struct Published {
    #[nserde(rename = "host-ip")]
    host_ip: String,
    #[nserde(rename = "host-port")]
    host_port: u16,
    port: u16,
    proto: String,
}

/// A world with the extra applets and daemon.json's members `daemon`.
fn world(daemon: &str) -> World {
    let w = World::new();
    for applet in MORE_APPLETS {
        symlink("busybox", w.rootfs().join("bin").join(applet)).expect("link applet");
    }
    w.write_daemon_json(daemon);
    w
}

fn net(w: &World, name: &str) -> Net {
    let out = w.berth_ok(&["inspect", name]);
    Net::deserialize_json(out.trim()).unwrap_or_else(|e| panic!("inspect {name}: {e}: {out}"))
}

/// lan's and db's gateways.
const LAN_GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 88, 0, 1);
const DB_GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 89, 0, 1);

/// lan as in `LAN` and db on bridge berth1, live restore on.
const LAN_AND_DB: &str = r#"{"live-restore": true, "networks": {
    "lan": {"bridge": "berth0", "subnet": "10.88.0.0/24"},
    "db": {"bridge": "berth1", "subnet": "10.89.0.0/24"}}}"#;

/// NAME's address on NETWORK, its entry checked: in the /24 of `gateway`
/// (neither its network, gateway nor broadcast address), that gateway,
/// on `bridge`, seen inside as `interface`.
fn address_on(
    w: &World,
    name: &str,
    network: &str,
    gateway: Ipv4Addr,
    bridge: &str,
    interface: &str,
) -> Ipv4Addr {
    let n = net(w, name);
    let entry = n
        .networks
        .get(network)
        .unwrap_or_else(|| panic!("{name} has no {network} entry: {n:?}"));
    let address: Ipv4Addr = entry
        .address
        .parse()
        .unwrap_or_else(|e| panic!("{name}'s address {:?}: {e}", entry.address));
    let gw = gateway.to_string();
    assert_eq!(
        (
            entry.prefix,
            entry.gateway.as_str(),
            entry.bridge.as_str(),
            entry.interface.as_str()
        ),
        (24, gw.as_str(), bridge, interface),
        "{name} on {network}: {n:?}"
    );
    assert_eq!(
        address.octets()[..3],
        gateway.octets()[..3],
        "{name} on {network}: {n:?}"
    );
    assert!(
        ![0, 1, 255].contains(&address.octets()[3]),
        "{name} got the network, gateway or broadcast address: {n:?}"
    );
    address
}

/// NAME's address on lan, checked against lan's contract entry; lan is
/// its only network.
fn lan_address(w: &World, name: &str) -> Ipv4Addr {
    let address = address_on(w, name, "lan", LAN_GATEWAY, "berth0", "eth0");
    let n = net(w, name);
    assert_eq!(n.networks.len(), 1, "{name}: {n:?}");
    address
}

/// The container's /etc/hosts, read through its init's root.
fn hosts(pid: u32) -> String {
    let path = format!("/proc/{pid}/root/etc/hosts");
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

fn lists(hosts: &str, address: Ipv4Addr, name: &str) -> bool {
    let line = format!("{address}\t{name}");
    hosts.lines().any(|l| l == line)
}

fn names_in(hosts: &str, name: &str) -> bool {
    hosts
        .lines()
        .any(|l| l.split_whitespace().skip(1).any(|n| n == name))
}

/// `berth exec NAME -- ARGS`.
fn exec(w: &World, name: &str, args: &[&str]) -> Output {
    let mut all = vec!["exec", name, "--"];
    all.extend_from_slice(args);
    w.berth(&all)
}

fn exec_ok(w: &World, name: &str, args: &[&str]) -> String {
    let out = exec(w, name, args);
    assert!(
        out.status.success(),
        "exec {name} {args:?}: {}",
        describe(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `args` in the network and mount namespaces of the container whose
/// init is `pid`, without berth (nsenter, as root); its stdout.
fn in_container(pid: u32, args: &[&str]) -> String {
    let mut cmd = Command::new("nsenter");
    cmd.args(["-t", &pid.to_string(), "-n", "-m", "--"])
        .args(args);
    let out = netlab::run(cmd);
    assert!(
        out.status.success(),
        "in {pid}: {args:?}: {}",
        describe(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// "PEER TEXT" from an echo server, split; panics on another shape.
fn peer_and_text(answer: &str) -> (SocketAddr, &str) {
    let (peer, text) = answer
        .split_once(' ')
        .unwrap_or_else(|| panic!("not an echo answer: {answer:?}"));
    let peer = peer
        .parse()
        .unwrap_or_else(|e| panic!("echo answer {answer:?}: {e}"));
    (peer, text)
}

/// NAME connects to the outside's TCP echo with busybox nc; asserts the
/// outside saw the uplink's address and returns the port it came from.
fn reaches_outside(w: &World, name: &str, echo: &Echo) -> u16 {
    let port = echo.addr().port().to_string();
    let script = format!("echo from-{name} | nc {OUTSIDE} {port}");
    let answer = exec_ok(w, name, &["/bin/sh", "-c", &script]);
    let (peer, text) = peer_and_text(&answer);
    assert_eq!(
        (peer.ip(), text),
        (IpAddr::V4(UPLINK), format!("from-{name}\n").as_str()),
        "what the outside saw of {name}"
    );
    assert!(
        echo.peers().contains(&peer),
        "{peer} not among {:?}",
        echo.peers()
    );
    peer.port()
}

/// web's published ports (8080/tcp to the TCP echo, 5353/udp to the UDP
/// echo in its namespace) answer from the outside namespace (to the
/// uplink address) and from the device namespace (to 127.0.0.1 and to
/// the uplink address).
fn ports_answer(lab: &Lab) {
    let places = [
        (lab.outside(), UPLINK, "the outside"),
        (lab.device(), Ipv4Addr::LOCALHOST, "the device"),
        (lab.device(), UPLINK, "the device"),
    ];
    for (ns, ip, from) in places {
        let tcp = SocketAddr::from((ip, 8080));
        let text = format!("tcp to {tcp} from {from}\n");
        answered(
            SHORT,
            &format!("an answer on {tcp}/tcp from {from}"),
            || tcp_ask(ns, tcp, &text),
            |a| a == text,
        );
        let udp = SocketAddr::from((ip, 5353));
        let text = format!("udp to {udp} from {from}");
        let answer = answered(
            SHORT,
            &format!("an answer on {udp}/udp from {from}"),
            || udp_ask(ns, udp, &text),
            |a| a.ends_with(&format!(" {text}")),
        );
        peer_and_text(&answer);
    }
}

/// The published ports web's inspect must show.
fn web_ports() -> Vec<Published> {
    let port = |host_port, port, proto: &str| Published {
        host_ip: "0.0.0.0".to_string(),
        host_port,
        port,
        proto: proto.to_string(),
    };
    vec![port(8080, 80, "tcp"), port(5353, 53, "udp")]
}

/// The host ends of veth pairs in the device namespace.
fn veths(lab: &Lab) -> Vec<String> {
    let mut found: Vec<String> = lab
        .device_links()
        .into_iter()
        .filter(|l| l.starts_with("bth"))
        .collect();
    for name in &found {
        assert!(
            name.len() == 11 && name[3..].bytes().all(|b| b.is_ascii_hexdigit()),
            "a veth named {name:?}: not bth + 8 hex digits"
        );
    }
    found.sort();
    found
}

fn leases(w: &World) -> String {
    fs::read_to_string(w.state_dir().join("networks.json")).unwrap_or_default()
}

fn file_of(w: &World, name: &str) -> String {
    w.containers_dir()
        .join(format!("{name}.json"))
        .display()
        .to_string()
}

#[test]
fn lab_works() {
    let lab = Lab::new();
    let ours = fs::read_link("/proc/self/ns/net").unwrap();
    for ns in [lab.device(), lab.outside()] {
        assert_ne!(fs::read_link(ns).unwrap(), ours, "{}", ns.display());
    }
    assert!(
        lab.device_links()
            .contains(&netlab::DEVICE_LINK.to_string()),
        "{:?}",
        lab.device_links()
    );
    let route = netlab::ip(lab.device(), &["route", "show", "default"]);
    assert!(
        route.contains(&format!(
            "default via {OUTSIDE} dev {}",
            netlab::DEVICE_LINK
        )),
        "{route}"
    );
    let ping = netlab::ok_in(
        lab.device(),
        "busybox",
        &["ping", "-c", "1", "-W", "2", &OUTSIDE.to_string()],
    );
    assert!(ping.contains("1 packets received"), "{ping}");
    assert_eq!(
        lab.berth_table(),
        None,
        "a fresh namespace has no berth table"
    );

    let tcp = Echo::tcp(lab.outside(), SocketAddr::from((OUTSIDE, 0)));
    let udp = Echo::udp(lab.outside(), SocketAddr::from((OUTSIDE, 0)));
    let answer = tcp_ask(lab.device(), tcp.addr(), "hello\n").unwrap();
    let (peer, text) = peer_and_text(&answer);
    assert_eq!((peer.ip(), text), (IpAddr::V4(UPLINK), "hello\n"));
    assert_eq!(tcp.peers(), [peer]);
    let answer = udp_ask(lab.device(), udp.addr(), "datagram").unwrap();
    let (peer, text) = peer_and_text(&answer);
    assert_eq!((peer.ip(), text), (IpAddr::V4(UPLINK), "datagram"));
    assert_eq!(udp.peers(), [peer]);
    // The lab's addresses do not exist where the test itself runs.
    let here = std::net::TcpStream::connect_timeout(&tcp.addr(), SHORT / 20);
    assert!(here.is_err(), "{here:?}");
}

#[test]
fn containers_on_one_network_ping_each_other_by_name_and_hosts_follow_members() {
    let lab = Lab::new();
    let w = world(LAN);
    w.add_container("a", POLITE, r#"{"network": "lan"}"#);
    w.add_container("b", POLITE, r#"{"network": "lan"}"#);
    let daemon = lab.start_daemon(&w, &[]);
    let a = w.wait_running("a");
    let b = w.wait_running("b");
    let (a_addr, b_addr) = (lan_address(&w, "a"), lan_address(&w, "b"));
    assert_ne!(a_addr, b_addr, "one address handed out twice");
    assert_eq!(net(&w, "a").ports, [], "nothing published");
    daemon.wait_for_log_line(&["IP forwarding enabled (net.ipv4.ip_forward was 0)"]);

    for pid in [a.pid, b.pid] {
        let h = hosts(pid);
        assert!(
            h.lines()
                .any(|l| l.starts_with("127.0.0.1") && names_in(l, "localhost")),
            "no loopback line:\n{h}"
        );
        wait_for(SHORT, &format!("a and b in {pid}'s /etc/hosts"), || {
            let h = hosts(pid);
            lists(&h, a_addr, "a") && lists(&h, b_addr, "b")
        });
    }
    for (from, to, to_addr) in [("a", "b", b_addr), ("b", "a", a_addr)] {
        let ping = exec_ok(&w, from, &["ping", "-c", "1", "-W", "2", to]);
        assert!(
            ping.contains(&format!("PING {to} ({to_addr})")) && ping.contains("1 packets received"),
            "{from} pinging {to}: {ping}"
        );
    }

    // A member added by reload appears in the others' /etc/hosts...
    w.add_container("c", POLITE, r#"{"network": "lan"}"#);
    let out = w.berth_ok(&["reload"]);
    assert!(out.contains("c: added and started"), "{out}");
    let c = w.wait_running("c");
    let c_addr = lan_address(&w, "c");
    assert!(
        c_addr != a_addr && c_addr != b_addr,
        "{c_addr} handed out twice"
    );
    for pid in [a.pid, b.pid, c.pid] {
        wait_for(SHORT, &format!("c's line in {pid}'s /etc/hosts"), || {
            lists(&hosts(pid), c_addr, "c")
        });
    }
    assert!(lists(&hosts(c.pid), a_addr, "a") && lists(&hosts(c.pid), b_addr, "b"));
    let ping = exec_ok(&w, "a", &["ping", "-c", "1", "-W", "2", "c"]);
    assert!(ping.contains(&format!("PING c ({c_addr})")), "{ping}");
    // ...and leaves them when it goes, the others untouched.
    fs::remove_file(w.containers_dir().join("c.json")).unwrap();
    let out = w.berth_ok(&["reload"]);
    assert!(out.contains("c: removed"), "{out}");
    for pid in [a.pid, b.pid] {
        wait_for(SHORT, &format!("c gone from {pid}'s /etc/hosts"), || {
            !names_in(&hosts(pid), "c")
        });
        assert!(lists(&hosts(pid), a_addr, "a") && lists(&hosts(pid), b_addr, "b"));
    }
    assert_eq!((w.inspect("a").pid, w.inspect("b").pid), (a.pid, b.pid));
}

#[test]
fn a_container_reaches_the_outside_through_nat_from_the_uplink_address() {
    let lab = Lab::new();
    let w = world(LAN);
    w.add_container("app", POLITE, r#"{"network": "lan"}"#);
    let echo = Echo::tcp(lab.outside(), SocketAddr::from((OUTSIDE, 7000)));
    let daemon = lab.start_daemon(&w, &[]);
    w.wait_running("app");
    let address = lan_address(&w, "app");
    daemon.wait_for_log_line(&["IP forwarding enabled (net.ipv4.ip_forward was 0)"]);
    let forwarding = netlab::ok_in(lab.device(), "cat", &["/proc/sys/net/ipv4/ip_forward"]);
    assert_eq!(forwarding.trim(), "1");

    let ping = exec_ok(
        &w,
        "app",
        &["ping", "-c", "1", "-W", "2", &OUTSIDE.to_string()],
    );
    assert!(ping.contains("1 packets received"), "{ping}");
    reaches_outside(&w, "app", &echo);
    assert!(
        echo.peers().iter().all(|p| p.ip() == IpAddr::V4(UPLINK)),
        "the outside saw another source than {UPLINK}: {:?} (app is {address})",
        echo.peers()
    );
    // The container's own view: eth0 with its address, the default route
    // via the gateway.
    let addr = exec_ok(&w, "app", &["ip", "-4", "addr", "show", "eth0"]);
    assert!(addr.contains(&format!("inet {address}/24")), "{addr}");
    let route = exec_ok(&w, "app", &["ip", "route"]);
    assert!(
        route
            .lines()
            .any(|l| l.starts_with("default via 10.88.0.1")),
        "{route}"
    );
}

#[test]
fn published_tcp_and_udp_ports_answer_from_the_outside_and_the_device() {
    let lab = Lab::new();
    let w = world(LAN);
    w.add_container("web", TCP_ECHO, WEB);
    let _daemon = lab.start_daemon(&w, &[]);
    let web = w.wait_running("web");
    lan_address(&w, "web");
    assert_eq!(net(&w, "web").ports, web_ports());
    let _udp = Echo::udp(
        &ns_of(web.pid),
        SocketAddr::from((Ipv4Addr::UNSPECIFIED, 53)),
    );
    ports_answer(&lab);
    let table = lab.berth_table().expect("berth's table exists");
    assert!(table.contains("8080") && table.contains("5353"), "{table}");
}

#[test]
fn ports_addresses_and_nat_survive_a_daemon_kill_9_and_work_without_it() {
    let lab = Lab::new();
    let w = world(LAN);
    w.add_container("web", TCP_ECHO, WEB);
    w.add_container("peer", POLITE, r#"{"network": "lan"}"#);
    let echo = Echo::tcp(lab.outside(), SocketAddr::from((OUTSIDE, 7000)));
    let mut daemon = lab.start_daemon(&w, &[]);
    let web = w.wait_running("web");
    let peer = w.wait_running("peer");
    let before = (net(&w, "web"), net(&w, "peer"));
    let (web_addr, peer_addr) = (lan_address(&w, "web"), lan_address(&w, "peer"));
    let _udp = Echo::udp(
        &ns_of(web.pid),
        SocketAddr::from((Ipv4Addr::UNSPECIFIED, 53)),
    );
    ports_answer(&lab);
    let leased = leases(&w);
    assert!(
        leased.contains(&web_addr.to_string()) && leased.contains("\"web\""),
        "state-dir/networks.json: {leased}"
    );
    let table = lab.berth_table().expect("berth's table exists");
    let links = veths(&lab);
    assert_eq!(links.len(), 2, "one veth per container: {links:?}");

    daemon.kill_9();
    // No daemon (so no `berth exec`: the test enters the containers
    // itself): everything still flows.
    ports_answer(&lab);
    let script = format!("echo from-web | nc {OUTSIDE} {}", echo.addr().port());
    let answer = in_container(web.pid, &["/bin/sh", "-c", &script]);
    let (seen, text) = peer_and_text(&answer);
    assert_eq!((seen.ip(), text), (IpAddr::V4(UPLINK), "from-web\n"));
    let ping = in_container(peer.pid, &["ping", "-c", "1", "-W", "2", "web"]);
    assert!(ping.contains(&format!("PING web ({web_addr})")), "{ping}");

    let daemon = lab.start_daemon(&w, &[]);
    assert_eq!(w.wait_running("web").pid, web.pid, "web was restarted");
    assert_eq!(w.wait_running("peer").pid, peer.pid, "peer was restarted");
    assert_eq!((net(&w, "web"), net(&w, "peer")), before);
    assert_eq!(
        (lan_address(&w, "web"), lan_address(&w, "peer")),
        (web_addr, peer_addr)
    );
    ports_answer(&lab);
    reaches_outside(&w, "web", &echo);
    assert_eq!(veths(&lab), links, "the veths were remade");
    assert_eq!(
        lab.berth_table().as_deref(),
        Some(table.as_str()),
        "the rules changed"
    );
    let log = daemon.stderr();
    assert!(
        !log.contains("was missing: recreated"),
        "nothing was missing:\n{log}"
    );
    assert!(leases(&w).contains(&web_addr.to_string()), "{}", leases(&w));
}

#[test]
fn removal_leaves_no_interface_lease_or_rule() {
    let lab = Lab::new();
    let w = world(LAN);
    w.add_container("web", TCP_ECHO, WEB);
    w.add_container("keep", POLITE, r#"{"network": "lan"}"#);
    let _daemon = lab.start_daemon(&w, &[]);
    w.wait_running("web");
    let keep = w.wait_running("keep");
    let web_addr = lan_address(&w, "web");
    let keep_addr = lan_address(&w, "keep");
    let all = veths(&lab);
    assert_eq!(all.len(), 2, "{all:?}");
    let table = lab.berth_table().expect("berth's table exists");
    assert!(
        table.contains(&web_addr.to_string()) && table.contains("8080"),
        "{table}"
    );
    assert!(leases(&w).contains(&web_addr.to_string()), "{}", leases(&w));
    wait_for(SHORT, "web in keep's /etc/hosts", || {
        lists(&hosts(keep.pid), web_addr, "web")
    });
    assert!(w.run_dir().join("netns/web").exists());

    fs::remove_file(w.containers_dir().join("web.json")).unwrap();
    let out = w.berth_ok(&["reload"]);
    assert!(out.contains("web: removed"), "{out}");
    wait_for(SHORT, "web to be gone", || {
        !w.berth(&["inspect", "web"]).status.success()
    });
    let gone = |why: &str| {
        wait_for(SHORT, &format!("web's veth to go ({why})"), || {
            veths(&lab).len() == 1
        });
        let left = veths(&lab);
        assert!(all.contains(&left[0]), "{left:?} is not one of {all:?}");
        let table = lab.berth_table().expect("keep still needs the table");
        assert!(
            !table.contains(&web_addr.to_string())
                && !table.contains("8080")
                && !table.contains("5353"),
            "a rule for web is left ({why}):\n{table}"
        );
        let leased = leases(&w);
        assert!(
            !leased.contains(&web_addr.to_string()) && !leased.contains("\"web\""),
            "web's lease is left ({why}): {leased}"
        );
        assert!(
            leased.contains(&keep_addr.to_string()),
            "keep's lease went too ({why}): {leased}"
        );
        assert!(
            !w.run_dir().join("netns/web").exists(),
            "web's netns file is left ({why})"
        );
        assert!(!names_in(&hosts(keep.pid), "web"), "{}", hosts(keep.pid));
        for (ns, from) in [(lab.outside(), UPLINK), (lab.device(), Ipv4Addr::LOCALHOST)] {
            let to = SocketAddr::from((from, 8080));
            let tried = tcp_ask(ns, to, "anyone?\n");
            assert!(tried.is_err(), "{to} still answers ({why}): {tried:?}");
        }
    };
    gone("removed by reload");
    assert!(
        netlab::ip(lab.device(), &["-4", "addr"]).contains("10.88.0.1/24"),
        "the bridge keeps its address while keep is on it"
    );
    let out = w.berth(&["rm", "web"]);
    assert!(out.status.success(), "rm web: {}", describe(&out));
    gone("after rm");
    assert_eq!(w.inspect("keep").pid, keep.pid);
}

#[test]
fn a_flushed_table_and_a_deleted_bridge_are_recreated_by_a_restart_and_at_once_by_a_running_daemon()
{
    let lab = Lab::new();
    let w = world(LAN);
    w.add_container("web", TCP_ECHO, WEB);
    w.add_container("peer", POLITE, r#"{"network": "lan"}"#);
    let echo = Echo::tcp(lab.outside(), SocketAddr::from((OUTSIDE, 7000)));
    let mut daemon = lab.start_daemon(&w, &[]);
    let web = w.wait_running("web");
    let peer = w.wait_running("peer");
    let web_addr = lan_address(&w, "web");
    let _udp = Echo::udp(
        &ns_of(web.pid),
        SocketAddr::from((Ipv4Addr::UNSPECIFIED, 53)),
    );
    ports_answer(&lab);
    let table = lab.berth_table().expect("berth's table exists");
    let table_lines = "nf_tables table ip berth was missing: recreated";
    let bridge_lines = "bridge berth0 was missing: recreated";

    let vandalise = || {
        netlab::ok_in(lab.device(), "nft", &["flush", "ruleset"]);
        netlab::ip(lab.device(), &["link", "del", "berth0"]);
    };
    let repaired = |why: &str| {
        wait_for(SHORT, &format!("berth0 back ({why})"), || {
            lab.device_links().contains(&"berth0".to_string())
        });
        let back = lab.berth_table().expect("the table is back");
        assert_eq!(back, table, "the table differs after {why}");
        ports_answer(&lab);
        reaches_outside(&w, "web", &echo);
        let ping = exec_ok(&w, "peer", &["ping", "-c", "1", "-W", "2", "web"]);
        assert!(
            ping.contains(&format!("PING web ({web_addr})")) && ping.contains("1 packets received"),
            "after {why}: {ping}"
        );
        assert_eq!(w.inspect("web").pid, web.pid, "web was restarted ({why})");
        assert_eq!(
            w.inspect("peer").pid,
            peer.pid,
            "peer was restarted ({why})"
        );
    };

    daemon.kill_9();
    vandalise();
    assert_eq!(lab.berth_table(), None);
    assert!(!lab.device_links().contains(&"berth0".to_string()));
    let daemon = lab.start_daemon(&w, &[]);
    daemon.wait_for_log_line(&[table_lines]);
    daemon.wait_for_log_line(&[bridge_lines]);
    repaired("a restart");

    // A running daemon hears of both (netlink notices) and makes them
    // again at once, without a reload.
    vandalise();
    wait_for(SHORT, "the daemon to say what it recreated", || {
        let log = daemon.stderr();
        log.matches(table_lines).count() == 2 && log.matches(bridge_lines).count() == 2
    });
    repaired("the daemon's own repair");
    // A reload then finds nothing to do for the containers.
    let out = w.berth_ok(&["reload"]);
    assert!(!out.contains("web") && !out.contains("peer"), "{out}");
    repaired("a reload");
}

#[test]
fn bad_networks_in_daemon_json_are_fatal_and_named() {
    let lab = Lab::new();
    let w = world("{}");
    let config = w.config_path().display().to_string();
    let overlap = r#"{"networks": {"lan": {"bridge": "berth0", "subnet": "10.88.0.0/24"},
                                  "db": {"bridge": "berth1", "subnet": "10.88.0.128/25"}}}"#;
    let ipv6 =
        r#"{"networks": {"lan": {"bridge": "berth0", "subnet": "10.88.0.0/24", "ipv6": true}}}"#;
    let cases: [(&str, &[&str]); 2] = [
        (
            overlap,
            &[&config, "field \"networks.", "lan", "db", "overlap"],
        ),
        (ipv6, &[&config, "field \"networks.lan", "ipv6"]),
    ];
    for (extra, needles) in cases {
        w.write_daemon_json(extra);
        let mut daemon = lab.spawn_daemon(&w, &[]);
        let status = daemon.wait_exit(SHORT);
        assert!(!status.success(), "daemon accepted {extra}");
        let log = daemon.stderr();
        assert!(
            log.lines().any(|l| needles.iter().all(|n| l.contains(n))),
            "no line with {needles:?}:\n{log}"
        );
        assert!(!lab.device_links().contains(&"berth0".to_string()));
    }

    // The same daemon.json brought by a reload is refused, naming it.
    w.write_daemon_json(LAN);
    w.add_container("app", POLITE, r#"{"network": "lan"}"#);
    let daemon = lab.start_daemon(&w, &[]);
    let app = w.wait_running("app");
    w.write_daemon_json(&json::merge(overlap, r#"{"live-restore": true}"#));
    let out = w.berth(&["reload"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&config) && err.contains("field \"networks.") && err.contains("overlap"),
        "{err}"
    );
    daemon.wait_for_log_line(&["reload refused", &config]);
    assert_eq!(w.inspect("app").pid, app.pid);
}

#[test]
fn bad_network_keys_in_container_files_are_named_by_file_and_field() {
    let lab = Lab::new();
    let w = world(LAN);
    w.add_container(
        "fine",
        POLITE,
        r#"{"network": "lan", "ports": ["8080:80/udp"]}"#,
    );
    w.add_container(
        "first",
        POLITE,
        r#"{"network": "lan", "ports": ["8080:80"]}"#,
    );
    w.add_container(
        "second",
        POLITE,
        r#"{"network": "lan", "ports": ["8080:81"]}"#,
    );
    w.add_container("lost", POLITE, r#"{"network": "nope"}"#);
    w.add_container(
        "outside",
        POLITE,
        r#"{"network": "lan", "address": "10.99.0.5"}"#,
    );
    w.add_container(
        "garbled",
        POLITE,
        r#"{"network": "lan", "address": "10.88.0.300"}"#,
    );
    w.add_container(
        "portless",
        POLITE,
        r#"{"network": "none", "ports": ["9000:9000"]}"#,
    );
    let daemon = lab.start_daemon(&w, &[]);
    w.wait_running("fine");
    for (name, field, what) in [
        ("lost", "network", "nope"),
        ("outside", "address", "10.99.0.5"),
        ("garbled", "address", "10.88.0.300"),
        ("portless", "ports", ""),
    ] {
        let i = w.wait_status(name, "failed", SHORT);
        let error = i.error.clone().unwrap_or_default();
        assert!(
            error.contains(&file_of(&w, name))
                && error.contains(&format!("field \"{field}\""))
                && error.contains(what),
            "{name}: {i:?}"
        );
        daemon.wait_for_log_line(&[&file_of(&w, name), &format!("field \"{field}\"")]);
    }
    // The port conflict: one of the two fails with an error naming both
    // files; they do not both run.
    let (first, second) = (file_of(&w, "first"), file_of(&w, "second"));
    let mut failed = Vec::new();
    wait_for(SHORT, "the port conflict to fail one of them", || {
        failed = ["first", "second"]
            .into_iter()
            .map(|n| w.inspect(n))
            .filter(|i| i.status == "failed")
            .collect();
        !failed.is_empty()
    });
    for i in &failed {
        let error = i.error.clone().unwrap_or_default();
        assert!(
            error.contains(&first)
                && error.contains(&second)
                && error.contains("field \"ports\"")
                && error.contains("8080"),
            "{i:?}"
        );
        daemon.wait_for_log_line(&[&first, &second, "field \"ports\""]);
    }
    assert!(
        w.inspect("fine").is_running(),
        "8080/udp does not conflict with 8080/tcp"
    );

    // A conflict brought by a reload is refused whole, naming both files.
    for name in ["first", "second", "lost", "outside", "garbled", "portless"] {
        fs::remove_file(w.containers_dir().join(format!("{name}.json"))).unwrap();
    }
    w.add_container("a", POLITE, r#"{"network": "lan", "ports": ["9090:80"]}"#);
    w.berth_ok(&["reload"]);
    let a = w.wait_running("a");
    w.add_container("b", POLITE, r#"{"network": "lan", "ports": ["9090:90"]}"#);
    let out = w.berth(&["reload"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&file_of(&w, "a"))
            && err.contains(&file_of(&w, "b"))
            && err.contains("field \"ports\"")
            && err.contains("9090"),
        "{err}"
    );
    assert_eq!(w.inspect("a").pid, a.pid);
    assert!(!w.berth(&["inspect", "b"]).status.success(), "b was added");
}

#[test]
fn a_sidecar_shares_its_owners_namespace_and_follows_its_recreation() {
    let lab = Lab::new();
    let w = world(LAN);
    // Named so that the daemon comes to the sidecar first.
    w.add_container("a-side", POLITE, r#"{"network": "container:web"}"#);
    w.add_container(
        "web",
        TCP_ECHO,
        r#"{"network": "lan", "ports": ["8080:80"]}"#,
    );
    let _daemon = lab.start_daemon(&w, &[]);
    let side = w.wait_running("a-side");
    let web = w.wait_running("web");
    assert!(
        web.started_at < side.started_at,
        "the sidecar started first: web {:?}, sidecar {:?}",
        web.started_at,
        side.started_at
    );
    let same_namespace = |side: u32, web: u32| {
        fs::read_link(ns_of(side)).unwrap() == fs::read_link(ns_of(web)).unwrap()
    };
    assert!(same_namespace(side.pid, web.pid));
    let web_net = net(&w, "web");
    lan_address(&w, "web");
    assert_eq!(
        net(&w, "a-side").networks,
        web_net.networks,
        "the owner's entries"
    );
    let via_lo = exec_ok(
        &w,
        "a-side",
        &["/bin/sh", "-c", "echo hi | nc 127.0.0.1 80"],
    );
    assert_eq!(via_lo, "hi\n");

    // web recreated: the sidecar is recreated with it, in the new namespace.
    w.add_container(
        "web",
        TCP_ECHO,
        r#"{"network": "lan", "ports": ["8080:80"], "env": ["V=2"]}"#,
    );
    let out = w.berth_ok(&["reload"]);
    assert!(out.contains("web: changed, recreating"), "{out}");
    let web2 = w.wait_inspect("web", "to run anew", SHORT, |i| {
        i.is_running() && i.pid != web.pid
    });
    let side2 = w.wait_inspect("a-side", "to run anew", SHORT, |i| {
        i.is_running() && i.pid != side.pid
    });
    assert!(
        web2.started_at < side2.started_at,
        "the sidecar started first: web {:?}, sidecar {:?}",
        web2.started_at,
        side2.started_at
    );
    assert!(same_namespace(side2.pid, web2.pid));
    assert_eq!(net(&w, "a-side").networks, net(&w, "web").networks);
    let via_lo = exec_ok(
        &w,
        "a-side",
        &["/bin/sh", "-c", "echo again | nc 127.0.0.1 80"],
    );
    assert_eq!(via_lo, "again\n");
    answered(
        SHORT,
        "web's port from the outside",
        || tcp_ask(lab.outside(), SocketAddr::from((UPLINK, 8080)), "out\n"),
        |a| a == "out\n",
    );
}

/// What a restart of a container must leave as it was: its namespace (the
/// file run-dir/netns/NAME holds), eth0 inside it, the host end of its
/// veth, the addresses on eth0 and inspect's `networks`.
#[derive(Debug, PartialEq)]
struct Wiring {
    namespace: PathBuf,
    eth0: netlab::Link,
    host_end: netlab::Link,
    addresses: Vec<String>,
    networks: HashMap<String, Attachment>,
}

fn wiring(lab: &Lab, w: &World, name: &str, pid: u32) -> Wiring {
    let ns = ns_of(pid);
    let namespace = fs::read_link(&ns).unwrap();
    let held = w.run_dir().join("netns").join(name);
    let inode = fs::metadata(&held)
        .unwrap_or_else(|e| panic!("{}: {e}", held.display()))
        .ino();
    assert_eq!(
        namespace,
        PathBuf::from(format!("net:[{inode}]")),
        "{name}'s init is not in the namespace {} holds",
        held.display()
    );
    let inside = netlab::link_table(&ns);
    let eth0 = inside
        .iter()
        .find(|l| l.name == "eth0")
        .unwrap_or_else(|| panic!("no eth0 in {name}: {inside:?}"))
        .clone();
    let device = netlab::link_table(lab.device());
    let host_end = device
        .iter()
        .find(|l| Some(l.index) == eth0.peer && l.peer == Some(eth0.index))
        .unwrap_or_else(|| panic!("no host end of {name}'s {eth0:?} among {device:?}"))
        .clone();
    assert!(
        veths(lab).contains(&host_end.name),
        "{host_end:?} is not a berth veth"
    );
    Wiring {
        namespace,
        eth0,
        host_end,
        addresses: netlab::inet_addresses(&ns, "eth0"),
        networks: net(w, name).networks,
    }
}

/// SIGKILLs the init of the running container NAME, whose pid is `pid`.
fn kill_init(w: &World, name: &str, pid: u32) {
    let init = sys::pidfd_open(pid as i32).expect("pidfd of the init");
    // Opened while inspect still names it: the fd is that init.
    let now = w.inspect(name);
    assert!(now.is_running() && now.pid == pid, "{now:?}");
    sys::pidfd_send_signal(&init, libc::SIGKILL).expect("kill -9 the init");
}

/// Pings `to` by name from NAME, once; asserts the name resolved to
/// `address` and the answer came.
fn pings(w: &World, from: &str, to: &str, address: Ipv4Addr) {
    let ping = exec_ok(w, from, &["ping", "-c", "1", "-W", "2", to]);
    assert!(
        ping.contains(&format!("PING {to} ({address})")) && ping.contains("1 packets received"),
        "{from} pinging {to}: {ping}"
    );
}

#[test]
fn a_reload_that_changes_one_network_recreates_only_the_containers_on_it() {
    let lab = Lab::new();
    let w = world(LAN_AND_DB);
    w.add_container("a", POLITE, r#"{"network": "lan"}"#);
    w.add_container("b", POLITE, r#"{"network": "db"}"#);
    let _daemon = lab.start_daemon(&w, &[]);
    let a = w.wait_running("a");
    let b = w.wait_running("b");
    let a_addr = lan_address(&w, "a");
    let b_old = address_on(&w, "b", "db", DB_GATEWAY, "berth1", "eth0");
    assert_eq!(
        netlab::inet_addresses(lab.device(), "berth1"),
        ["10.89.0.1/24"]
    );
    let a_wiring = wiring(&lab, &w, "a", a.pid);

    w.write_daemon_json(&LAN_AND_DB.replace("10.89.0.0/24", "10.90.0.0/24"));
    let out = w.berth_ok(&["reload"]);
    let names = |n: &str| out.lines().any(|l| l.starts_with(&format!("{n}: ")));
    assert!(names("b") && !names("a"), "{out}");
    let b2 = w.wait_inspect("b", "to run anew", SHORT, |i| {
        i.is_running() && i.pid != b.pid
    });
    let new_gateway = Ipv4Addr::new(10, 90, 0, 1);
    let b_new = address_on(&w, "b", "db", new_gateway, "berth1", "eth0");
    assert_eq!(net(&w, "b").networks.len(), 1);
    let b_ns = ns_of(b2.pid);
    assert_eq!(
        netlab::inet_addresses(&b_ns, "eth0"),
        [format!("{b_new}/24")]
    );
    assert_eq!(
        netlab::default_routes(&b_ns)
            .iter()
            .map(|r| r.starts_with("default via 10.90.0.1 dev eth0"))
            .collect::<Vec<_>>(),
        [true],
        "{:?}",
        netlab::default_routes(&b_ns)
    );
    assert_eq!(
        netlab::inet_addresses(lab.device(), "berth1"),
        ["10.90.0.1/24"],
        "berth1 after the reload"
    );
    let ping = exec_ok(&w, "b", &["ping", "-c", "1", "-W", "2", "10.90.0.1"]);
    assert!(ping.contains("1 packets received"), "{ping}");
    wait_for(SHORT, "b's new line in its /etc/hosts", || {
        lists(&hosts(b2.pid), b_new, "b")
    });
    assert!(
        !hosts(b2.pid).contains(&b_old.to_string()),
        "{}",
        hosts(b2.pid)
    );
    let leased = leases(&w);
    assert!(
        leased.contains(&b_new.to_string()) && !leased.contains(&b_old.to_string()),
        "{leased}"
    );

    // a: untouched.
    assert_eq!(w.inspect("a").pid, a.pid, "a was restarted");
    assert_eq!(lan_address(&w, "a"), a_addr);
    assert_eq!(wiring(&lab, &w, "a", a.pid), a_wiring);
    assert_eq!(
        netlab::inet_addresses(lab.device(), "berth0"),
        ["10.88.0.1/24"]
    );
}

#[test]
fn a_container_on_two_networks_has_eth0_and_eth1_and_is_found_by_name_on_each() {
    let lab = Lab::new();
    let w = world(LAN_AND_DB);
    w.add_container("both", POLITE, r#"{"network": ["lan", "db"]}"#);
    w.add_container("x", POLITE, r#"{"network": "lan"}"#);
    w.add_container("y", POLITE, r#"{"network": "db"}"#);
    let _daemon = lab.start_daemon(&w, &[]);
    let both = w.wait_running("both");
    let x = w.wait_running("x");
    let y = w.wait_running("y");
    let n = net(&w, "both");
    assert_eq!(n.networks.len(), 2, "{n:?}");
    let on_lan = address_on(&w, "both", "lan", LAN_GATEWAY, "berth0", "eth0");
    let on_db = address_on(&w, "both", "db", DB_GATEWAY, "berth1", "eth1");
    let x_addr = lan_address(&w, "x");
    let y_addr = address_on(&w, "y", "db", DB_GATEWAY, "berth1", "eth0");
    assert_ne!(on_lan, x_addr, "one address handed out twice");
    assert_ne!(on_db, y_addr, "one address handed out twice");
    assert_eq!(veths(&lab).len(), 4, "{:?}", veths(&lab));

    let ns = ns_of(both.pid);
    assert_eq!(
        netlab::inet_addresses(&ns, "eth0"),
        [format!("{on_lan}/24")]
    );
    assert_eq!(netlab::inet_addresses(&ns, "eth1"), [format!("{on_db}/24")]);
    let routes = netlab::default_routes(&ns);
    assert!(
        routes.len() == 1 && routes[0].starts_with("default via 10.88.0.1 dev eth0"),
        "{routes:?}"
    );

    // Each side finds `both` under the address of the network it shares.
    for (from, pid, shared, other) in [("x", x.pid, on_lan, on_db), ("y", y.pid, on_db, on_lan)] {
        wait_for(SHORT, &format!("both in {from}'s /etc/hosts"), || {
            lists(&hosts(pid), shared, "both")
        });
        let h = hosts(pid);
        assert!(!h.contains(&other.to_string()), "{from}:\n{h}");
        pings(&w, from, "both", shared);
    }
    // x and y share no network.
    assert!(!names_in(&hosts(x.pid), "y"), "{}", hosts(x.pid));
    assert!(!names_in(&hosts(y.pid), "x"), "{}", hosts(y.pid));
    // `both` finds each of them.
    wait_for(SHORT, "x and y in both's /etc/hosts", || {
        let h = hosts(both.pid);
        lists(&h, x_addr, "x") && lists(&h, y_addr, "y")
    });
    assert!(
        lists(&hosts(both.pid), on_lan, "both"),
        "{}",
        hosts(both.pid)
    );
    pings(&w, "both", "x", x_addr);
    pings(&w, "both", "y", y_addr);
}

#[test]
fn a_network_without_nat_does_not_reach_the_outside_and_one_with_nat_does() {
    let lab = Lab::new();
    let w = world(
        r#"{"live-restore": true, "networks": {
            "lan": {"bridge": "berth0", "subnet": "10.88.0.0/24"},
            "iso": {"bridge": "berth1", "subnet": "10.89.0.0/24", "nat": false}}}"#,
    );
    w.add_container("open", POLITE, r#"{"network": "lan"}"#);
    w.add_container("closed", POLITE, r#"{"network": "iso"}"#);
    let echo = Echo::tcp(lab.outside(), SocketAddr::from((OUTSIDE, 7000)));
    let _daemon = lab.start_daemon(&w, &[]);
    w.wait_running("open");
    let closed = w.wait_running("closed");
    lan_address(&w, "open");
    let closed_addr = address_on(&w, "closed", "iso", DB_GATEWAY, "berth1", "eth0");

    reaches_outside(&w, "open", &echo);
    let seen = echo.peers();
    // Not masqueraded, closed's packets reach the outside from 10.89.0.x,
    // to which the outside has no route: no answer ever comes back.
    let to = echo.addr();
    let closed_ns = ns_of(closed.pid);
    let tried = netlab::in_namespace(&closed_ns, || {
        std::net::TcpStream::connect_timeout(&to, Duration::from_secs(1))
    });
    assert!(tried.is_err(), "closed reached {to}: {tried:?}");
    assert_eq!(echo.peers(), seen, "the outside accepted closed");
    let table = lab.berth_table().expect("berth's table exists");
    let masquerading: Vec<&str> = table.lines().filter(|l| l.contains("masquerade")).collect();
    assert!(
        masquerading.iter().any(|l| l.contains("10.88.0.0/24"))
            && !masquerading.iter().any(|l| l.contains("10.89.0.")),
        "{table}"
    );

    // Given a route back, the outside sees closed's own address.
    netlab::ip(
        lab.outside(),
        &["route", "add", "10.89.0.0/24", "via", &UPLINK.to_string()],
    );
    let answer = answered(
        SHORT,
        "closed's connection with a route back",
        || tcp_ask(&closed_ns, to, "from-closed\n"),
        |a| a.ends_with(" from-closed\n"),
    );
    let (peer, _) = peer_and_text(&answer);
    assert_eq!(peer.ip(), IpAddr::V4(closed_addr), "{answer}");
}

#[test]
fn a_port_published_on_one_host_address_answers_only_there() {
    let lab = Lab::new();
    let w = world(LAN);
    w.add_container(
        "web",
        TCP_ECHO,
        r#"{"network": "lan", "ports": ["192.0.2.2:8081:80"]}"#,
    );
    let _daemon = lab.start_daemon(&w, &[]);
    w.wait_running("web");
    let web_addr = lan_address(&w, "web");
    assert_eq!(
        net(&w, "web").ports,
        [Published {
            host_ip: UPLINK.to_string(),
            host_port: 8081,
            port: 80,
            proto: "tcp".to_string(),
        }]
    );
    let there = SocketAddr::from((UPLINK, 8081));
    for (ns, from) in [(lab.outside(), "the outside"), (lab.device(), "the device")] {
        let text = format!("to {there} from {from}\n");
        answered(
            SHORT,
            &format!("an answer on {there} from {from}"),
            || tcp_ask(ns, there, &text),
            |a| a == text,
        );
    }
    for ip in [Ipv4Addr::LOCALHOST, LAN_GATEWAY] {
        let elsewhere = SocketAddr::from((ip, 8081));
        let tried = tcp_ask(lab.device(), elsewhere, "anyone?\n");
        assert!(tried.is_err(), "{elsewhere} answers: {tried:?}");
    }
    // The container's own port itself is there, on its address.
    let direct = SocketAddr::from((web_addr, 80));
    assert_eq!(
        tcp_ask(lab.device(), direct, "direct\n").unwrap(),
        "direct\n"
    );
}

#[test]
fn a_fixed_address_is_honoured_reserved_and_kept_and_no_address_is_given_twice() {
    const FIXED: Ipv4Addr = Ipv4Addr::new(10, 88, 0, 2);
    let lab = Lab::new();
    let w = world(LAN);
    let dynamic = r#"{"network": "lan"}"#;
    // Named so that the daemon comes to the dynamic one first; 10.88.0.2
    // is the first address a dynamic one would get.
    w.add_container("a-dyn", POLITE, dynamic);
    w.add_container(
        "z-fixed",
        POLITE,
        r#"{"network": "lan", "address": "10.88.0.2"}"#,
    );
    // Every container's address now, each checked against its eth0 and
    // the leases; no two the same, the fixed one's FIXED and no other's.
    let all = |names: &[&str]| -> HashMap<String, Ipv4Addr> {
        let mut seen: HashMap<String, Ipv4Addr> = HashMap::new();
        let leased = leases(&w);
        for name in names {
            let i = w.wait_running(name);
            let address = lan_address(&w, name);
            assert_eq!(
                netlab::inet_addresses(&ns_of(i.pid), "eth0"),
                [format!("{address}/24")],
                "{name}"
            );
            assert_eq!(
                leased.matches(&format!("\"{address}\"")).count(),
                1,
                "{name}'s {address} in networks.json: {leased}"
            );
            assert_eq!(*name == "z-fixed", address == FIXED, "{name}: {address}");
            if let Some((other, _)) = seen.iter().find(|(_, a)| **a == address) {
                panic!("{address} given to {other} and {name}");
            }
            seen.insert(name.to_string(), address);
        }
        seen
    };

    let mut daemon = lab.start_daemon(&w, &[]);
    let dyn1 = w.wait_running("a-dyn");
    let fixed = w.wait_running("z-fixed");
    assert!(
        dyn1.started_at < fixed.started_at,
        "the fixed one started first: {dyn1:?} {fixed:?}"
    );
    let first = all(&["a-dyn", "z-fixed"]);

    // kill -9 of the daemon, a second dynamic one added while none runs.
    daemon.kill_9();
    w.add_container("b-dyn", POLITE, dynamic);
    daemon = lab.start_daemon(&w, &[]);
    let second = all(&["a-dyn", "b-dyn", "z-fixed"]);
    assert_eq!(
        (second["a-dyn"], second["z-fixed"]),
        (first["a-dyn"], first["z-fixed"])
    );
    assert_eq!(w.inspect("z-fixed").pid, fixed.pid, "z-fixed was restarted");

    // The fixed one stopped, a-dyn removed and added back: 10.88.0.2 stays
    // reserved.
    w.berth_ok(&["stop", "z-fixed"]);
    w.wait_status("z-fixed", "stopped", SHORT);
    fs::remove_file(w.containers_dir().join("a-dyn.json")).unwrap();
    let out = w.berth_ok(&["reload"]);
    assert!(out.contains("a-dyn: removed"), "{out}");
    wait_for(SHORT, "a-dyn to be gone", || {
        w.try_inspect("a-dyn").is_none()
    });
    w.add_container("a-dyn", POLITE, dynamic);
    let out = w.berth_ok(&["reload"]);
    assert!(out.contains("a-dyn: added and started"), "{out}");
    let third = all(&["a-dyn", "b-dyn"]);
    assert_eq!(third["b-dyn"], second["b-dyn"]);

    // Another kill -9 and restart, then the fixed one started again.
    daemon.kill_9();
    let _daemon = lab.start_daemon(&w, &[]);
    assert_eq!(all(&["a-dyn", "b-dyn"]), third);
    w.berth_ok(&["start", "z-fixed"]);
    let fourth = all(&["a-dyn", "b-dyn", "z-fixed"]);
    assert_eq!(fourth["z-fixed"], FIXED);
    pings(&w, "a-dyn", "z-fixed", FIXED);
}

#[test]
fn a_restart_by_policy_or_by_berth_restart_keeps_address_veth_and_namespace() {
    let lab = Lab::new();
    let w = world(LAN);
    w.add_container(
        "flaky",
        POLITE,
        r#"{"network": "lan", "restart": "always"}"#,
    );
    w.add_container("peer", POLITE, r#"{"network": "lan"}"#);
    let _daemon = lab.start_daemon(&w, &[]);
    let flaky = w.wait_running("flaky");
    w.wait_running("peer");
    let address = lan_address(&w, "flaky");
    let before = wiring(&lab, &w, "flaky", flaky.pid);
    assert_eq!(before.addresses, [format!("{address}/24")]);
    let device = netlab::link_table(lab.device());
    let table = lab.berth_table().expect("berth's table exists");
    pings(&w, "peer", "flaky", address);

    // The init dies; `restart: always` starts it again.
    kill_init(&w, "flaky", flaky.pid);
    let again = w.wait_inspect("flaky", "to be restarted by its policy", SHORT, |i| {
        i.is_running() && i.pid != flaky.pid
    });
    assert_eq!(again.restart_count, 1, "{again:?}");
    assert_eq!(wiring(&lab, &w, "flaky", again.pid), before);
    assert_eq!(netlab::link_table(lab.device()), device);
    assert_eq!(lab.berth_table().as_deref(), Some(table.as_str()));
    pings(&w, "peer", "flaky", address);
    pings(&w, "flaky", "peer", lan_address(&w, "peer"));

    // `berth restart`.
    w.berth_ok(&["restart", "flaky"]);
    let third = w.wait_inspect("flaky", "to run after berth restart", SHORT, |i| {
        i.is_running() && i.pid != again.pid
    });
    assert_eq!(wiring(&lab, &w, "flaky", third.pid), before);
    assert_eq!(netlab::link_table(lab.device()), device);
    assert_eq!(lab.berth_table().as_deref(), Some(table.as_str()));
    pings(&w, "peer", "flaky", address);
}

#[test]
fn a_sidecar_of_an_owner_without_network_shares_its_namespace_and_lo() {
    let lab = Lab::new();
    let w = world(LAN);
    w.add_container("a-side", POLITE, r#"{"network": "container:owner"}"#);
    w.add_container("owner", TCP_ECHO, r#"{"network": "none"}"#);
    let _daemon = lab.start_daemon(&w, &[]);
    let side = w.wait_running("a-side");
    let owner = w.wait_running("owner");
    assert!(
        owner.started_at < side.started_at,
        "the sidecar started first: {owner:?} {side:?}"
    );
    let namespace = fs::read_link(ns_of(owner.pid)).unwrap();
    assert_eq!(fs::read_link(ns_of(side.pid)).unwrap(), namespace);
    assert_ne!(fs::read_link(lab.device()).unwrap(), namespace);
    let held = w.run_dir().join("netns/owner");
    let inode = fs::metadata(&held)
        .unwrap_or_else(|e| panic!("{}: {e}", held.display()))
        .ino();
    assert_eq!(namespace, PathBuf::from(format!("net:[{inode}]")));
    let links: Vec<String> = netlab::link_table(&ns_of(owner.pid))
        .into_iter()
        .map(|l| l.name)
        .collect();
    assert_eq!(links, ["lo"]);
    for name in ["owner", "a-side"] {
        let n = net(&w, name);
        assert!(n.networks.is_empty() && n.ports.is_empty(), "{name}: {n:?}");
    }
    assert_eq!(veths(&lab), Vec::<String>::new());

    let via_lo = answered(
        SHORT,
        "owner's echo on 127.0.0.1:80 from the sidecar",
        || {
            let out = exec(
                &w,
                "a-side",
                &["/bin/sh", "-c", "echo hi | nc 127.0.0.1 80"],
            );
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        },
        |a| a == "hi\n",
    );
    assert_eq!(via_lo, "hi\n");
}

#[test]
fn pairs_started_together_each_find_the_other_in_etc_hosts() {
    // One pair per network, both started by one daemon start or one
    // reload: the first is attached, then the second; the first's
    // /etc/hosts must come to list the second. Each round is a new chance
    // for the second to be attached before the first's start has written
    // its file.
    const PAIRS: u8 = 12;
    let lab = Lab::new();
    let networks: Vec<String> = (0..PAIRS)
        .map(|i| {
            format!(
                r#""n{i}": {{"bridge": "berth{i}", "subnet": "10.{}.0.0/24"}}"#,
                80 + i
            )
        })
        .collect();
    let w = world(&format!(
        r#"{{"live-restore": true, "networks": {{{}}}}}"#,
        networks.join(", ")
    ));
    let mut daemon = None;
    for i in 0..PAIRS {
        let pair = [format!("p{i}-a"), format!("p{i}-b")];
        for name in &pair {
            w.add_container(name, POLITE, &format!(r#"{{"network": "n{i}"}}"#));
        }
        if daemon.is_none() {
            daemon = Some(lab.start_daemon(&w, &[]));
        } else {
            let out = w.berth_ok(&["reload"]);
            for name in &pair {
                assert!(out.contains(&format!("{name}: added and started")), "{out}");
            }
        }
        let gateway = Ipv4Addr::new(10, 80 + i, 0, 1);
        let (network, bridge) = (format!("n{i}"), format!("berth{i}"));
        let [a, b] = pair.map(|name| {
            let pid = w.wait_running(&name).pid;
            let address = address_on(&w, &name, &network, gateway, &bridge, "eth0");
            (name, pid, address)
        });
        for (me, other) in [(&a, &b), (&b, &a)] {
            let end = Instant::now() + SHORT;
            let listed = || lists(&hosts(me.1), other.2, &other.0);
            while !listed() && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(20));
            }
            assert!(
                listed(),
                "{} lacks {} ({}) after {SHORT:?}:\n{}",
                me.0,
                other.0,
                other.2,
                hosts(me.1)
            );
        }
    }
}

/// A container whose root is an image file, and one with a writable layer,
/// on a bridge network, are re-attached by a daemon that comes back after
/// kill -9, not recreated: the hash their monitors record is the one the
/// daemon computes (the network folded in once, after the image's).
#[test]
fn image_and_layered_roots_on_a_network_are_reattached_not_recreated() {
    let lab = Lab::new();
    let w = world(LAN);
    use common::images::{LoopGuard, mksquashfs};
    let dir = w.root.join("images");
    fs::create_dir_all(&dir).unwrap();
    let image = dir.join("app.sqfs");
    mksquashfs(&w.rootfs(), &image);
    let _loops = LoopGuard { dir: dir.clone() };
    let img = format!(
        r#"{{"image": {}, "command": {}, "network": "lan"}}"#,
        json::string(image.to_str().expect("utf-8 path")),
        json::string_array(POLITE)
    );
    w.write_container("img", &img);
    w.add_container(
        "layered",
        POLITE,
        r#"{"network": "lan", "writable": "tmpfs"}"#,
    );
    let mut daemon = lab.start_daemon(&w, &[]);
    let img_pid = w.wait_running("img").pid;
    let layered_pid = w.wait_running("layered").pid;
    let addresses = (lan_address(&w, "img"), lan_address(&w, "layered"));
    daemon.kill_9();
    let daemon = lab.start_daemon(&w, &[]);
    daemon.wait_for_log_line(&["img: re-attached", &img_pid.to_string()]);
    daemon.wait_for_log_line(&["layered: re-attached", &layered_pid.to_string()]);
    assert_eq!(w.inspect("img").pid, img_pid);
    assert_eq!(w.inspect("layered").pid, layered_pid);
    assert_eq!(
        (lan_address(&w, "img"), lan_address(&w, "layered")),
        addresses
    );
    let log = daemon.stderr();
    assert!(!log.contains("recreating"), "{log}");
}

/// Address leases that cannot be read stop only the containers on bridge
/// networks, with the file named; once the file is fixed, a reload reads
/// it and they start.
#[test]
fn unreadable_leases_are_named_and_read_again_by_a_reload() {
    let lab = Lab::new();
    let w = world(LAN);
    w.add_container("web", POLITE, r#"{"network": "lan"}"#);
    w.add_container("plain", POLITE, "{}");
    let leases = w.state_dir().join("networks.json");
    fs::create_dir_all(w.state_dir()).unwrap();
    fs::write(&leases, "{\"leases\": ").unwrap();
    let daemon = lab.start_daemon(&w, &[]);
    w.wait_running("plain");
    let failed = w.wait_status("web", "failed", SHORT);
    let error = failed.error.unwrap_or_default();
    assert!(
        error.contains(leases.to_str().unwrap()),
        "the error names the file: {error}"
    );
    fs::remove_file(&leases).unwrap();
    let out = w.berth_ok(&["reload"]);
    assert!(out.contains("the address leases are read now"), "{out}");
    daemon.wait_for_log_line(&["the address leases are read now"]);
    w.berth_ok(&["start", "web"]);
    let web = w.wait_running("web");
    assert!(lan_address(&w, "web").octets()[..3] == [10, 88, 0]);
    assert!(leases.exists(), "the lease is recorded again");
    assert_eq!(w.inspect("web").pid, web.pid);
}

/// A container that leaves one of its two networks is made again without
/// it: no eth1, no veth on that bridge, no lease there; the address on the
/// network it stays on is kept.
#[test]
fn leaving_one_of_two_networks_takes_only_that_one_away() {
    let lab = Lab::new();
    let w = world(LAN_AND_DB);
    w.add_container("both", POLITE, r#"{"network": ["lan", "db"]}"#);
    let _daemon = lab.start_daemon(&w, &[]);
    let before = w.wait_running("both");
    let on_lan = address_on(&w, "both", "lan", LAN_GATEWAY, "berth0", "eth0");
    let on_db = address_on(&w, "both", "db", DB_GATEWAY, "berth1", "eth1");
    assert_eq!(veths(&lab).len(), 2, "{:?}", veths(&lab));

    w.add_container("both", POLITE, r#"{"network": "lan"}"#);
    let out = w.berth_ok(&["reload"]);
    assert!(out.contains("both"), "{out}");
    let after = w.wait_inspect("both", "a new run", SHORT, |i| {
        i.is_running() && i.pid != before.pid
    });
    let n = net(&w, "both");
    assert_eq!(n.networks.len(), 1, "{n:?}");
    assert_eq!(lan_address(&w, "both"), on_lan, "the lan address changed");
    let ns = ns_of(after.pid);
    let names: Vec<String> = netlab::link_table(&ns)
        .into_iter()
        .map(|l| l.name)
        .filter(|n| n != "lo")
        .collect();
    assert_eq!(names, ["eth0"], "interfaces left: {names:?}");
    assert_eq!(
        netlab::inet_addresses(&ns, "eth0"),
        [format!("{on_lan}/24")]
    );
    assert_eq!(veths(&lab).len(), 1, "{:?}", veths(&lab));
    let leased = leases(&w);
    assert!(
        !leased.contains(&on_db.to_string()),
        "the db lease is left: {leased}"
    );
    assert!(leased.contains(&on_lan.to_string()), "{leased}");
}
