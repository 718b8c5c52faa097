//! berth's nf_tables table `ip berth`: outbound NAT for its bridges,
//! published ports, and forwarding to and from its bridges. berth never
//! touches another table; it replaces its own in one transaction whenever
//! the rule set changes, so a packet meets either the old rules or the new
//! ones, never a mix.
//!
//! The table, for a bridge `berth0` on 10.88.0.0/24 with NAT and the
//! port 8080/tcp published to 10.88.0.2:80:
//!
//! ```text
//! table ip berth {
//!     chain raw { type filter hook prerouting priority -300
//!         iifname "berth0" ip daddr 127.0.0.0/8 drop
//!     }
//!     chain postrouting { type nat hook postrouting priority 100
//!         ip saddr 10.88.0.0/24 oifname != "berth0" masquerade
//!         ip saddr 127.0.0.0/8 oifname "berth0" masquerade
//!         ct status dnat ip saddr 10.88.0.0/24 oifname "berth0" masquerade
//!     }
//!     chain prerouting { type nat hook prerouting priority -100
//!         fib daddr type local meta l4proto tcp th dport 8080 dnat to 10.88.0.2:80
//!     }
//!     chain output { type nat hook output priority -100
//!         fib daddr type local meta l4proto tcp th dport 8080 dnat to 10.88.0.2:80
//!     }
//!     chain forward { type filter hook forward priority 0; policy accept
//!         iifname "berth0" accept
//!         oifname "berth0" ct state established,related accept
//!         ct status dnat accept
//!     }
//! }
//! ```
//!
//! The raw chain keeps a container from reaching the host's services on
//! 127.0.0.1: with route_localnet (below) the kernel would take a packet
//! for 127.0.0.0/8 arriving on a bridge as one for itself. It drops them
//! before conntrack and NAT see them, on every bridge. Nothing legitimate
//! comes that way: the answers to the host's own connections to a
//! published port on 127.0.0.1 are addressed to the bridge's address (the
//! loopback masquerade), and are translated back only after this hook.
//!
//! A port published on one host address matches `ip daddr ADDR` instead
//! of `fib daddr type local`. The output chain lets the host itself reach
//! its published ports (on 127.0.0.1 and on its own addresses); the
//! loopback masquerade gives such a connection an address the container
//! can answer; the last postrouting rule (hairpin) does the same for a
//! container reaching a published port of its own bridge through a host
//! address.
//!
//! Two things outside the table are needed, set by the daemon: IP
//! forwarding (net.ipv4.ip_forward), and route_localnet on each bridge
//! with published ports, without which the kernel drops a packet from
//! 127.0.0.1 leaving through the bridge ([`localhost_sysctls`]).
//!
//! The forward chain's accepts are final only within this table: a drop
//! in another table's forward chain (an iptables FORWARD policy DROP, a
//! firewall's own nftables table) still drops bridge traffic, and such a
//! host needs its own rule to let it through.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::OwnedFd;

use super::nft::{self, Chain, Hook, NFPROTO_IPV4, Rule};
use crate::sys::netlink::{Reply, Socket};

pub const TABLE: &str = "berth";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    fn number(self) -> u8 {
        match self {
            Proto::Tcp => libc::IPPROTO_TCP as u8,
            Proto::Udp => libc::IPPROTO_UDP as u8,
        }
    }

    fn word(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// A bridge network: its interface, its subnet, whether what leaves it for
/// elsewhere is masqueraded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bridge {
    pub name: String,
    pub subnet: Ipv4Addr,
    pub prefix: u8,
    pub nat: bool,
}

/// A published port: `host_ip:host_port/proto` (every local address when
/// `host_ip` is None) to `address:port` of a container on `bridge`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub proto: Proto,
    pub address: Ipv4Addr,
    pub port: u16,
    pub bridge: String,
}

/// Everything the table says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    pub bridges: Vec<Bridge>,
    pub ports: Vec<Published>,
}

const RAW: &str = "raw";
const POSTROUTING: &str = "postrouting";
const PREROUTING: &str = "prerouting";
const OUTPUT: &str = "output";
const FORWARD: &str = "forward";

/// The table's base chains.
fn chains() -> Vec<Chain> {
    let chain = |name: &str, kind: &str, hook: Hook, priority| Chain {
        name: name.to_string(),
        kind: kind.to_string(),
        hook: hook as u32,
        priority,
        policy: nft::NF_ACCEPT,
    };
    vec![
        chain(RAW, "filter", Hook::Prerouting, -300),
        chain(POSTROUTING, "nat", Hook::Postrouting, 100),
        chain(PREROUTING, "nat", Hook::Prerouting, -100),
        chain(OUTPUT, "nat", Hook::Output, -100),
        chain(FORWARD, "filter", Hook::Forward, 0),
    ]
}

fn invalid(text: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, text)
}

/// The names of the bridges that have published ports, in the order of
/// `rules.bridges`.
fn bridges_with_ports(rules: &Rules) -> Vec<&Bridge> {
    let named: BTreeSet<&str> = rules.ports.iter().map(|p| p.bridge.as_str()).collect();
    rules
        .bridges
        .iter()
        .filter(|b| named.contains(b.name.as_str()))
        .collect()
}

fn check(rules: &Rules) -> io::Result<()> {
    for b in &rules.bridges {
        if b.name.is_empty() || b.name.len() >= libc::IFNAMSIZ || b.name.contains('\0') {
            return Err(invalid(format!("bridge name {:?}: 1 to 15 bytes", b.name)));
        }
        if b.prefix > 32 {
            return Err(invalid(format!(
                "bridge {}: prefix /{} is over 32",
                b.name, b.prefix
            )));
        }
    }
    for p in &rules.ports {
        let what = format!("published port {}/{}", p.host_port, p.proto.word());
        if !rules.bridges.iter().any(|b| b.name == p.bridge) {
            return Err(invalid(format!("{what}: unknown bridge {}", p.bridge)));
        }
        if p.host_port == 0 || p.port == 0 {
            return Err(invalid(format!("{what}: port 0")));
        }
    }
    Ok(())
}

/// The rules of the table, in order (pure).
pub fn ruleset(rules: &Rules) -> io::Result<Vec<Rule>> {
    check(rules)?;
    let mut out = Vec::new();
    for b in &rules.bridges {
        out.push(
            Rule::new(RAW)
                .iifname(&b.name)
                .daddr_in(Ipv4Addr::LOCALHOST, 8)
                .drop(),
        );
    }
    for b in rules.bridges.iter().filter(|b| b.nat) {
        out.push(
            Rule::new(POSTROUTING)
                .saddr(b.subnet, b.prefix)
                .oifname(&b.name, false)
                .masquerade(),
        );
    }
    let published = bridges_with_ports(rules);
    for b in &published {
        out.push(
            Rule::new(POSTROUTING)
                .saddr(Ipv4Addr::LOCALHOST, 8)
                .oifname(&b.name, true)
                .masquerade(),
        );
    }
    for b in &published {
        out.push(
            Rule::new(POSTROUTING)
                .dnatted()
                .saddr(b.subnet, b.prefix)
                .oifname(&b.name, true)
                .masquerade(),
        );
    }
    for chain in [PREROUTING, OUTPUT] {
        for p in &rules.ports {
            let r = Rule::new(chain);
            let r = match p.host_ip {
                Some(ip) if !ip.is_unspecified() => r.daddr(ip),
                _ => r.daddr_local(),
            };
            out.push(
                r.l4_dport(p.proto.number(), p.proto.word(), p.host_port)
                    .dnat(p.address, p.port),
            );
        }
    }
    for b in &rules.bridges {
        out.push(Rule::new(FORWARD).iifname(&b.name).accept());
    }
    for b in &rules.bridges {
        out.push(
            Rule::new(FORWARD)
                .oifname(&b.name, true)
                .established()
                .accept(),
        );
    }
    out.push(Rule::new(FORWARD).dnatted().accept());
    Ok(out)
}

/// Replaces table ip berth, in the calling thread's network namespace,
/// with exactly what `rules` says, in one transaction.
pub fn apply(rules: &Rules) -> io::Result<()> {
    let set = ruleset(rules)?;
    nft::replace_table(NFPROTO_IPV4, TABLE, &chains(), &set)
}

/// Whether table ip berth, in the calling thread's network namespace, is
/// exactly what `rules` says: its chains and, chain by chain, its rules.
/// A missing table is no match.
pub fn matches(rules: &Rules) -> io::Result<bool> {
    let set = ruleset(rules)?;
    let mut have = nft::chains(NFPROTO_IPV4, TABLE)?;
    let mut want = chains();
    have.sort_by(|a, b| a.name.cmp(&b.name));
    want.sort_by(|a, b| a.name.cmp(&b.name));
    if have != want {
        return Ok(false);
    }
    let by_chain = |rules: Vec<(String, Vec<nft::Expr>)>| {
        let mut map: BTreeMap<String, Vec<Vec<nft::Expr>>> = BTreeMap::new();
        for (chain, exprs) in rules {
            map.entry(chain).or_default().push(exprs);
        }
        map
    };
    let have = by_chain(
        nft::rules(NFPROTO_IPV4, TABLE)?
            .into_iter()
            .map(|r| (r.chain, r.exprs))
            .collect(),
    );
    let want = by_chain(set.into_iter().map(|r| (r.chain, r.exprs)).collect());
    Ok(have == want)
}

/// Whether table ip berth exists.
pub fn present() -> io::Result<bool> {
    Ok(nft::tables(NFPROTO_IPV4)?.iter().any(|t| t == TABLE))
}

#[cfg(test)]
/// Deletes table ip berth if it exists.
pub fn remove() -> io::Result<()> {
    nft::delete_table(NFPROTO_IPV4, TABLE)
}

/// The sysctls (paths under /proc/sys, values) that must be set for the
/// published ports of `rules` to answer on 127.0.0.1: route_localnet on
/// each bridge with published ports.
pub fn localhost_sysctls(rules: &Rules) -> Vec<(String, String)> {
    bridges_with_ports(rules)
        .iter()
        .map(|b| {
            (
                format!("net/ipv4/conf/{}/route_localnet", b.name),
                "1".to_string(),
            )
        })
        .collect()
}

/// Tells when table ip berth was deleted or emptied (its chains or rules
/// deleted) by someone else: a listener to nf_tables' notifications, in
/// the network namespace of the thread that made it. Each committed
/// transaction's notifications end with a new-generation message naming
/// the task that committed it. A transaction that deleted anything of the
/// table is a loss when another task made it (even if it created the
/// table anew: that is not berth's rule set), or when this thread made it
/// and did not create the table anew after: `apply` (silent) always does,
/// `remove` (reported) does not. Make it in the thread that calls `apply`.
pub struct TableWatch {
    socket: Socket,
    /// The thread that made the watch, the one that applies the rules: its
    /// id and its name. The kernel names a task by its id in the initial
    /// pid namespace, /proc by its id in the namespace /proc belongs to:
    /// where the two differ, the name alone says.
    me: Option<u32>,
    my_name: Option<String>,
    /// What the transaction read so far did to the table.
    damaged: bool,
    rebuilt: bool,
}

/// The calling thread's id, from /proc/thread-self (PID/task/TID).
fn thread_id() -> Option<u32> {
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    link.file_name()?.to_str()?.parse().ok()
}

/// The calling thread's name (comm).
fn thread_name() -> Option<String> {
    let name = std::fs::read_to_string("/proc/thread-self/comm").ok()?;
    Some(name.trim_end_matches('\n').to_string())
}

/// What a read of a [`TableWatch`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Nothing that damaged the table.
    None,
    /// Someone else deleted or emptied the table, or some of it.
    Touched,
    /// Notifications were lost (the socket's buffer overran, as a burst
    /// of another program's changes can make it): the table may or may
    /// not have been touched; [`matches`] tells.
    Lost,
}

/// The watch's receive buffer: room for the notifications of some
/// thousands of rules (a burst from iptables-nft or a firewall daemon).
const WATCH_BUFFER: usize = 1 << 20;

impl TableWatch {
    pub fn new() -> io::Result<TableWatch> {
        let socket = Socket::listen(libc::NETLINK_NETFILTER, &[nft::NFNLGRP_NFTABLES])?;
        // Up to net.core.rmem_max where it cannot be forced: fine.
        let _ = socket.set_receive_buffer(WATCH_BUFFER);
        Ok(TableWatch {
            socket,
            me: thread_id(),
            my_name: thread_name(),
            damaged: false,
            rebuilt: false,
        })
    }

    /// Readable when notifications wait (non-blocking).
    pub fn fd(&self) -> &OwnedFd {
        self.socket.fd()
    }

    /// Reads every waiting notification: `Touched` when a transaction
    /// among them deleted or emptied the table (whether or not some were
    /// lost too), else `Lost` when notifications were lost.
    pub fn read_change(&mut self) -> Change {
        let mut touched = false;
        let mut lost = false;
        loop {
            let replies = match self.socket.receive() {
                Ok(r) if r.is_empty() => break,
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // ENOBUFS: some notifications were dropped, maybe the
                    // end of the transaction being read. Reporting it
                    // clears it: what is queued comes next.
                    self.damaged = false;
                    self.rebuilt = false;
                    lost = true;
                    if e.raw_os_error() == Some(libc::ENOBUFS) {
                        continue;
                    }
                    break;
                }
            };
            for reply in &replies {
                touched |= self.note(reply);
            }
        }
        if touched {
            Change::Touched
        } else if lost {
            Change::Lost
        } else {
            Change::None
        }
    }

    /// Takes one notification; true when it ends a transaction that
    /// damaged the table.
    fn note(&mut self, reply: &Reply) -> bool {
        let Some((msg, family)) = nft::kind_of(reply) else {
            return false;
        };
        if msg == nft::NFT_MSG_NEWGEN {
            let (id, name) = nft::committer(reply);
            let mine = (self.me.is_some() && id == self.me)
                || (self.my_name.is_some() && name == self.my_name);
            let rebuilt = std::mem::take(&mut self.rebuilt);
            return std::mem::take(&mut self.damaged) && !(mine && rebuilt);
        }
        if family != NFPROTO_IPV4 || nft::table_of(reply).as_deref() != Some(TABLE) {
            return false;
        }
        match msg {
            nft::NFT_MSG_DELTABLE
            | nft::NFT_MSG_DELCHAIN
            | nft::NFT_MSG_DELRULE
            | nft::NFT_MSG_DESTROYTABLE
            | nft::NFT_MSG_DESTROYCHAIN
            | nft::NFT_MSG_DESTROYRULE => {
                self.damaged = true;
                self.rebuilt = false;
            }
            nft::NFT_MSG_NEWTABLE => self.rebuilt = true,
            _ => {}
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::link::Route;
    use crate::sys::netlink::{self, Message};
    use crate::sys::ns;
    use std::fs::File;
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
    use std::os::fd::{AsFd, BorrowedFd};
    use std::time::Duration;

    /// Runs `f` in a fresh thread inside a network namespace of its own.
    fn in_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::spawn(move || {
            ns::unshare(libc::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
            f()
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
    }

    fn lan(name: &str, third: u8, nat: bool) -> Bridge {
        Bridge {
            name: name.to_string(),
            subnet: Ipv4Addr::new(10, 88, third, 0),
            prefix: 24,
            nat,
        }
    }

    fn port(
        host_ip: Option<Ipv4Addr>,
        host_port: u16,
        proto: Proto,
        to: (Ipv4Addr, u16),
    ) -> Published {
        Published {
            host_ip,
            host_port,
            proto,
            address: to.0,
            port: to.1,
            bridge: "berth0".to_string(),
        }
    }

    fn sample() -> Rules {
        Rules {
            bridges: vec![lan("berth0", 0, true), lan("berth1", 1, false)],
            ports: vec![
                port(None, 8080, Proto::Tcp, (Ipv4Addr::new(10, 88, 0, 2), 80)),
                port(
                    Some(Ipv4Addr::LOCALHOST),
                    5353,
                    Proto::Udp,
                    (Ipv4Addr::new(10, 88, 0, 3), 53),
                ),
            ],
        }
    }

    fn texts(rules: &Rules) -> Vec<String> {
        ruleset(rules)
            .unwrap()
            .into_iter()
            .map(|r| format!("{}: {}", r.chain, r.text))
            .collect()
    }

    #[test]
    fn firewall_rules_in_nft_words() {
        assert_eq!(
            texts(&sample()),
            [
                "raw: iifname \"berth0\" ip daddr 127.0.0.0/8 drop",
                "raw: iifname \"berth1\" ip daddr 127.0.0.0/8 drop",
                "postrouting: ip saddr 10.88.0.0/24 oifname != \"berth0\" masquerade",
                "postrouting: ip saddr 127.0.0.0/8 oifname \"berth0\" masquerade",
                "postrouting: ct status dnat ip saddr 10.88.0.0/24 oifname \"berth0\" masquerade",
                "prerouting: fib daddr type local meta l4proto tcp th dport 8080 dnat to 10.88.0.2:80",
                "prerouting: ip daddr 127.0.0.1 meta l4proto udp th dport 5353 dnat to 10.88.0.3:53",
                "output: fib daddr type local meta l4proto tcp th dport 8080 dnat to 10.88.0.2:80",
                "output: ip daddr 127.0.0.1 meta l4proto udp th dport 5353 dnat to 10.88.0.3:53",
                "forward: iifname \"berth0\" accept",
                "forward: iifname \"berth1\" accept",
                "forward: oifname \"berth0\" ct state established,related accept",
                "forward: oifname \"berth1\" ct state established,related accept",
                "forward: ct status dnat accept",
            ]
        );
        assert_eq!(
            localhost_sysctls(&sample()),
            [(
                "net/ipv4/conf/berth0/route_localnet".to_string(),
                "1".to_string()
            )]
        );
        let nothing = Rules::default();
        assert_eq!(texts(&nothing), ["forward: ct status dnat accept"]);
        assert!(localhost_sysctls(&nothing).is_empty());
        // 0.0.0.0 is every local address.
        let mut any = sample();
        any.ports[1].host_ip = Some(Ipv4Addr::UNSPECIFIED);
        assert!(texts(&any)[6].starts_with("prerouting: fib daddr type local meta l4proto udp"));
    }

    #[test]
    fn firewall_refuses_what_it_cannot_say() {
        let mut r = sample();
        r.ports[0].bridge = "nope".to_string();
        let e = ruleset(&r).unwrap_err();
        assert_eq!(
            e.to_string(),
            "published port 8080/tcp: unknown bridge nope"
        );
        let mut r = sample();
        r.bridges[0].name = "a-name-too-long0".to_string();
        assert!(
            ruleset(&r)
                .unwrap_err()
                .to_string()
                .contains("1 to 15 bytes")
        );
        let mut r = sample();
        r.bridges[1].prefix = 33;
        assert!(ruleset(&r).unwrap_err().to_string().contains("/33"));
        let mut r = sample();
        r.ports[1].port = 0;
        assert!(ruleset(&r).unwrap_err().to_string().contains("port 0"));
        // Nothing reached the kernel: checked before any socket.
        assert_eq!(apply(&r).unwrap_err().kind(), io::ErrorKind::InvalidInput);
    }

    /// The table as the kernel has it: its chains, and per chain its
    /// rules' expressions, compared with what `rules` says.
    fn assert_table_is(rules: &Rules) {
        let mut have = nft::chains(NFPROTO_IPV4, TABLE).unwrap();
        let mut want = chains();
        have.sort_by(|a, b| a.name.cmp(&b.name));
        want.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(have, want);
        let have: Vec<(String, Vec<nft::Expr>)> = nft::rules(NFPROTO_IPV4, TABLE)
            .unwrap()
            .into_iter()
            .map(|r| (r.chain, r.exprs))
            .collect();
        let set = ruleset(rules).unwrap();
        for chain in [RAW, POSTROUTING, PREROUTING, OUTPUT, FORWARD] {
            let got: Vec<_> = have.iter().filter(|r| r.0 == chain).map(|r| &r.1).collect();
            let expected: Vec<_> = set
                .iter()
                .filter(|r| r.chain == chain)
                .map(|r| &r.exprs)
                .collect();
            assert_eq!(got.len(), expected.len(), "rules of chain {chain}");
            for (g, w) in got.iter().zip(&expected) {
                assert_eq!(g, w, "chain {chain}:\n{}\n{}", nft::debug(g), nft::debug(w));
            }
        }
    }

    #[test]
    fn firewall_apply_replace_and_remove() {
        in_netns(|| {
            assert!(!present().unwrap());
            remove().unwrap();
            let first = sample();
            apply(&first).unwrap();
            assert!(present().unwrap());
            assert_table_is(&first);
            apply(&first).unwrap();
            assert_table_is(&first);
            let second = Rules {
                bridges: vec![lan("berth0", 0, false), lan("berth2", 2, true)],
                ports: vec![port(
                    Some(Ipv4Addr::new(192, 0, 2, 1)),
                    443,
                    Proto::Tcp,
                    (Ipv4Addr::new(10, 88, 0, 9), 8443),
                )],
            };
            apply(&second).unwrap();
            assert_table_is(&second);
            remove().unwrap();
            assert!(!present().unwrap());
            remove().unwrap();
        });
    }

    #[test]
    fn firewall_other_tables_are_left_alone() {
        in_netns(|| {
            nft::replace_table(NFPROTO_IPV4, "other", &chains()[4..], &[]).unwrap();
            apply(&sample()).unwrap();
            remove().unwrap();
            assert_eq!(nft::tables(NFPROTO_IPV4).unwrap(), ["other"]);
        });
    }

    #[test]
    fn firewall_refused_rule_leaves_the_table_as_it_was() {
        in_netns(|| {
            let rules = sample();
            apply(&rules).unwrap();
            let mut set = ruleset(&Rules::default()).unwrap();
            // Masquerade belongs in a nat chain.
            set.push(Rule::new(FORWARD).masquerade());
            let e = nft::replace_table(NFPROTO_IPV4, TABLE, &chains(), &set).unwrap_err();
            let text = e.to_string();
            assert!(
                text.starts_with("nf_tables refused the rule `masquerade` of chain forward: "),
                "{text}"
            );
            assert_eq!(e.raw_os_error(), None);
            assert_eq!(e.kind(), io::ErrorKind::Unsupported, "{text}");
            assert_table_is(&rules);
        });
    }

    #[test]
    fn firewall_watch_sees_the_table_deleted_or_emptied() {
        in_netns(|| {
            let rules = sample();
            let mut watch = TableWatch::new().unwrap();
            assert!(!(watch.read_change() != Change::None));
            apply(&rules).unwrap();
            apply(&rules).unwrap();
            assert!(
                !(watch.read_change() != Change::None),
                "berth's own replacement is no loss"
            );
            nft::flush_table(NFPROTO_IPV4, TABLE).unwrap();
            assert!(nft::rules(NFPROTO_IPV4, TABLE).unwrap().is_empty());
            assert!((watch.read_change() != Change::None), "rules flushed");
            assert!(!(watch.read_change() != Change::None));
            apply(&rules).unwrap();
            assert!(!(watch.read_change() != Change::None));
            nft::delete_table(NFPROTO_IPV4, TABLE).unwrap();
            assert!((watch.read_change() != Change::None), "table deleted");
            // Another table's coming and going is not berth's business.
            nft::replace_table(NFPROTO_IPV4, "other", &chains(), &[]).unwrap();
            nft::delete_table(NFPROTO_IPV4, "other").unwrap();
            assert!(!(watch.read_change() != Change::None));
            apply(&rules).unwrap();
            remove().unwrap();
            assert!(
                (watch.read_change() != Change::None),
                "remove deletes it too"
            );
            // Another task replacing the table with its own is a loss too.
            // A watch that knows this thread by its name only (another pid
            // namespace's /proc) tells the same.
            let mut by_name = TableWatch::new().unwrap();
            by_name.me = Some(u32::MAX);
            apply(&rules).unwrap();
            assert!(!(watch.read_change() != Change::None));
            assert!(!(by_name.read_change() != Change::None));
            let here = this_netns();
            let intruder = std::thread::Builder::new().name("intruder".to_string());
            intruder
                .spawn(move || {
                    enter(&here);
                    nft::replace_table(NFPROTO_IPV4, TABLE, &chains()[..1], &[]).unwrap();
                })
                .unwrap()
                .join()
                .unwrap();
            assert!(
                (watch.read_change() != Change::None),
                "replaced by someone else"
            );
            assert!((by_name.read_change() != Change::None));
        });
    }

    #[test]
    fn firewall_matches_tells_the_table_from_another() {
        in_netns(|| {
            let rules = sample();
            assert!(!matches(&rules).unwrap(), "missing");
            apply(&rules).unwrap();
            assert!(matches(&rules).unwrap());
            assert!(!matches(&Rules::default()).unwrap());
            let mut fewer = sample();
            fewer.ports.pop();
            assert!(!matches(&fewer).unwrap());
            let mut moved = sample();
            moved.ports[0].port = 81;
            assert!(!matches(&moved).unwrap());
            // A rule added by someone else, or a chain.
            let mut set = ruleset(&rules).unwrap();
            set.push(Rule::new(FORWARD).iifname("eth9").accept());
            nft::replace_table(NFPROTO_IPV4, TABLE, &chains(), &set).unwrap();
            assert!(!matches(&rules).unwrap());
            let mut more = chains();
            more[0].name = "extra".to_string();
            more.extend(chains());
            nft::replace_table(NFPROTO_IPV4, TABLE, &more, &ruleset(&rules).unwrap()).unwrap();
            assert!(!matches(&rules).unwrap());
            apply(&rules).unwrap();
            nft::flush_table(NFPROTO_IPV4, TABLE).unwrap();
            assert!(!matches(&rules).unwrap(), "emptied");
            assert!(matches(&Rules::default()).is_ok_and(|m| !m));
            apply(&Rules::default()).unwrap();
            assert!(matches(&Rules::default()).unwrap());
        });
    }

    #[test]
    fn firewall_watch_tells_lost_notices_from_a_touched_table() {
        in_netns(|| {
            let rules = sample();
            // A watch whose buffer overruns: notices lost, the table as
            // berth wrote it.
            let mut small = TableWatch::new().unwrap();
            small.socket.set_receive_buffer(0).unwrap();
            let mut watch = TableWatch::new().unwrap();
            assert!(watch.socket.receive_buffer().unwrap() >= WATCH_BUFFER);
            for _ in 0..50 {
                apply(&rules).unwrap();
            }
            assert_eq!(small.read_change(), Change::Lost);
            assert!(matches(&rules).unwrap());
            assert_eq!(small.read_change(), Change::None, "drained");
            assert_eq!(watch.read_change(), Change::None, "no loss in 1 MiB");
            // Touched; a loss that hid it is told by `matches`.
            nft::flush_table(NFPROTO_IPV4, TABLE).unwrap();
            assert_eq!(watch.read_change(), Change::Touched);
            assert_ne!(small.read_change(), Change::None);
            assert!(!matches(&rules).unwrap());
            apply(&rules).unwrap();
            for _ in 0..50 {
                apply(&rules).unwrap();
            }
            nft::flush_table(NFPROTO_IPV4, TABLE).unwrap();
            assert_eq!(watch.read_change(), Change::Touched, "after a burst");
            assert_eq!(small.read_change(), Change::Lost);
            assert!(!matches(&rules).unwrap());
        });
    }

    /// A rule set larger than a socket's default buffers, in one
    /// transaction.
    #[test]
    fn firewall_applies_a_thousand_published_ports() {
        in_netns(|| {
            let ports = (0..1000)
                .map(|i| {
                    let proto = if i % 2 == 0 { Proto::Tcp } else { Proto::Udp };
                    port(None, 10000 + i, proto, (Ipv4Addr::new(10, 88, 0, 2), 80))
                })
                .collect();
            let rules = Rules {
                bridges: vec![lan("berth0", 0, true)],
                ports,
            };
            apply(&rules).unwrap();
            assert!(matches(&rules).unwrap());
            assert_eq!(
                nft::rules(NFPROTO_IPV4, TABLE).unwrap().len(),
                ruleset(&rules).unwrap().len()
            );
            apply(&rules).unwrap();
            let mut fewer = rules.clone();
            fewer.ports.truncate(999);
            apply(&fewer).unwrap();
            assert!(matches(&fewer).unwrap());
        });
    }

    /// nft's own reading of the table, when nft is installed: the rules
    /// in each chain are the words `ruleset` gives them.
    #[test]
    fn firewall_nft_reads_the_rules_as_written() {
        let Ok(version) = std::process::Command::new("nft").arg("--version").output() else {
            eprintln!("nft is not installed: skipped");
            return;
        };
        assert!(version.status.success());
        let listing = in_netns(|| {
            apply(&sample()).unwrap();
            let out = std::process::Command::new("nft")
                .args(["list", "table", "ip", TABLE])
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
            String::from_utf8(out.stdout).unwrap()
        });
        let mut chain = String::new();
        let mut have = Vec::new();
        for line in listing.lines().map(str::trim) {
            if let Some(name) = line.strip_prefix("chain ") {
                chain = name.trim_end_matches(" {").to_string();
            } else if !(line.is_empty()
                || line.starts_with("table ")
                || line.starts_with("type ")
                || line == "}")
            {
                have.push(format!("{chain}: {line}"));
            }
        }
        // nft says `meta l4proto tcp th dport` shorter.
        let want: Vec<String> = texts(&sample())
            .iter()
            .map(|t| {
                t.replace("meta l4proto tcp th", "tcp")
                    .replace("meta l4proto udp th", "udp")
            })
            .collect();
        assert_eq!(have, want, "{listing}");
    }

    // Links and addresses for the traffic test, by rtnetlink.

    fn rtnl(m: Message) {
        let mut s = Socket::open(libc::NETLINK_ROUTE).unwrap();
        s.request(m).unwrap();
    }

    fn ifinfo(index: i32, flags: u32) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[4..8].copy_from_slice(&index.to_ne_bytes());
        b[8..12].copy_from_slice(&flags.to_ne_bytes());
        b[12..16].copy_from_slice(&flags.to_ne_bytes());
        b
    }

    const IFLA_IFNAME: u16 = 3;
    const IFLA_LINKINFO: u16 = 18;
    const IFLA_INFO_KIND: u16 = 1;
    const IFLA_INFO_DATA: u16 = 2;
    const VETH_INFO_PEER: u16 = 1;
    const IFLA_NET_NS_FD: u16 = 28;
    const IFA_ADDRESS: u16 = 1;
    const IFA_LOCAL: u16 = 2;

    fn index(name: &str) -> i32 {
        let mut s = Socket::open(libc::NETLINK_ROUTE).unwrap();
        let mut m = Message::new(libc::RTM_GETLINK, 0);
        m.bytes(&[0u8; 16]);
        s.dump(m)
            .unwrap()
            .iter()
            .find(|r| {
                netlink::find(&r.payload[16..], IFLA_IFNAME)
                    .map(netlink::str_of)
                    .as_deref()
                    == Some(name)
            })
            .map(|r| i32::from_ne_bytes(r.payload[4..8].try_into().unwrap()))
            .unwrap_or_else(|| panic!("no link {name}"))
    }

    fn up(name: &str) {
        let mut m = Message::new(libc::RTM_NEWLINK, 0);
        m.bytes(&ifinfo(index(name), libc::IFF_UP as u32));
        rtnl(m);
    }

    fn veth(name: &str, peer: &str, peer_ns: BorrowedFd<'_>) {
        use std::os::fd::AsRawFd;
        let mut m = Message::new(
            libc::RTM_NEWLINK,
            netlink::NLM_F_CREATE | netlink::NLM_F_EXCL,
        );
        m.bytes(&ifinfo(0, 0)).attr_str(IFLA_IFNAME, name);
        let info = m.nest(IFLA_LINKINFO);
        m.attr_str(IFLA_INFO_KIND, "veth");
        let data = m.nest(IFLA_INFO_DATA);
        let p = m.nest(VETH_INFO_PEER);
        m.bytes(&ifinfo(0, 0))
            .attr_str(IFLA_IFNAME, peer)
            .attr_u32(IFLA_NET_NS_FD, peer_ns.as_raw_fd() as u32);
        m.end(p);
        m.end(data);
        m.end(info);
        rtnl(m);
    }

    fn address(name: &str, addr: Ipv4Addr, prefix: u8) {
        let mut m = Message::new(
            libc::RTM_NEWADDR,
            netlink::NLM_F_CREATE | netlink::NLM_F_EXCL,
        );
        let mut ifa = [0u8; 8];
        ifa[0] = libc::AF_INET as u8;
        ifa[1] = prefix;
        ifa[4..8].copy_from_slice(&(index(name) as u32).to_ne_bytes());
        m.bytes(&ifa)
            .attr(IFA_LOCAL, &addr.octets())
            .attr(IFA_ADDRESS, &addr.octets());
        rtnl(m);
    }

    fn this_netns() -> File {
        File::open("/proc/thread-self/ns/net").unwrap()
    }

    fn enter(netns: &File) {
        ns::setns(netns.as_fd(), libc::CLONE_NEWNET).unwrap();
    }

    const WAIT: Duration = Duration::from_secs(5);

    /// Connects to `to` and returns what the server answered: the address
    /// it saw the connection come from.
    fn tcp_peer(to: SocketAddr) -> io::Result<String> {
        let mut s = TcpStream::connect_timeout(&to, WAIT)?;
        s.set_read_timeout(Some(WAIT))?;
        s.write_all(b"who\n")?;
        let mut answer = String::new();
        s.read_to_string(&mut answer)?;
        Ok(answer)
    }

    fn udp_peer(to: SocketAddr) -> io::Result<String> {
        let s = UdpSocket::bind("0.0.0.0:0")?;
        s.set_read_timeout(Some(WAIT))?;
        s.send_to(b"who", to)?;
        let mut buf = [0u8; 64];
        let n = s.recv(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    /// Servers answering with the address a request came from, until a
    /// request says "stop"; stopped however the test ends.
    struct Servers {
        host: File,
        threads: Vec<std::thread::JoinHandle<()>>,
        tcp: Vec<SocketAddr>,
        udp: Vec<SocketAddr>,
    }

    impl Servers {
        fn tcp(&mut self, listener: TcpListener, at: SocketAddr) {
            self.tcp.push(at);
            self.threads.push(std::thread::spawn(move || {
                for conn in listener.incoming() {
                    let Ok(mut conn) = conn else { continue };
                    let mut line = [0u8; 4];
                    let _ = conn.read_exact(&mut line);
                    if &line == b"stop" {
                        return;
                    }
                    let peer = conn.peer_addr().map(|a| a.ip().to_string());
                    let _ = conn.write_all(peer.unwrap_or_default().as_bytes());
                }
            }));
        }

        fn udp(&mut self, socket: UdpSocket, at: SocketAddr) {
            self.udp.push(at);
            self.threads.push(std::thread::spawn(move || {
                let mut buf = [0u8; 64];
                while let Ok((n, from)) = socket.recv_from(&mut buf) {
                    if &buf[..n] == b"stop" {
                        return;
                    }
                    let _ = socket.send_to(from.ip().to_string().as_bytes(), from);
                }
            }));
        }
    }

    impl Drop for Servers {
        fn drop(&mut self) {
            // Every server is reached directly from the host.
            let _ = ns::setns(self.host.as_fd(), libc::CLONE_NEWNET);
            for at in &self.tcp {
                if let Ok(mut s) = TcpStream::connect_timeout(at, WAIT) {
                    let _ = s.write_all(b"stop");
                }
            }
            for at in &self.udp {
                if let Ok(s) = UdpSocket::bind("0.0.0.0:0") {
                    let _ = s.send_to(b"stop", at);
                }
            }
            for t in self.threads.drain(..) {
                let _ = t.join();
            }
        }
    }

    /// Runs `f` in namespace `ns`, then comes back to `back`; what `f`
    /// makes (sockets) stays in `ns`.
    fn within<T>(ns: &File, back: &File, f: impl FnOnce() -> T) -> T {
        enter(ns);
        let out = f();
        enter(back);
        out
    }

    /// What a server answered over a connection made already.
    fn answer(mut s: TcpStream) -> String {
        s.set_read_timeout(Some(WAIT)).unwrap();
        s.write_all(b"who\n").unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        answer
    }

    const HOST: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
    const CONTAINER: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 2);
    const UPLINK: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const OUTSIDE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

    fn default_route(via: Ipv4Addr) {
        route(Ipv4Addr::UNSPECIFIED, 0, via);
    }

    fn route(to: Ipv4Addr, prefix: u8, via: Ipv4Addr) {
        const RTA_DST: u16 = 1;
        const RTA_GATEWAY: u16 = 5;
        let mut m = Message::new(
            libc::RTM_NEWROUTE,
            netlink::NLM_F_CREATE | netlink::NLM_F_EXCL,
        );
        // rtmsg: AF_INET, the prefix, main table, boot protocol, universe
        // scope, unicast.
        m.bytes(&[libc::AF_INET as u8, prefix, 0, 0, 254, 3, 0, 1, 0, 0, 0, 0]);
        if prefix > 0 {
            m.attr(RTA_DST, &to.octets());
        }
        m.attr(RTA_GATEWAY, &via.octets());
        rtnl(m);
    }

    #[test]
    fn firewall_traffic_nat_out_and_published_ports_in() {
        in_netns(|| {
            // This namespace is the host. The container is a second one on
            // the far end of a veth pair whose host end ("vh") stands in
            // for the bridge; the outside world a third, behind the host's
            // uplink ("up0").
            let host = this_netns();
            let mut servers = Servers {
                host: this_netns(),
                threads: Vec::new(),
                tcp: Vec::new(),
                udp: Vec::new(),
            };
            ns::unshare(libc::CLONE_NEWNET).unwrap();
            let container = this_netns();
            up("lo");
            servers.tcp(
                TcpListener::bind("0.0.0.0:80").unwrap(),
                (CONTAINER, 80).into(),
            );
            servers.udp(
                UdpSocket::bind("0.0.0.0:53").unwrap(),
                (CONTAINER, 53).into(),
            );
            ns::unshare(libc::CLONE_NEWNET).unwrap();
            let outside = this_netns();
            up("lo");
            servers.tcp(
                TcpListener::bind("0.0.0.0:80").unwrap(),
                (OUTSIDE, 80).into(),
            );
            enter(&host);
            up("lo");
            veth("vh", "eth0", container.as_fd());
            address("vh", HOST, 24);
            up("vh");
            veth("up0", "eth0", outside.as_fd());
            address("up0", UPLINK, 24);
            up("up0");
            within(&container, &host, || {
                address("eth0", CONTAINER, 24);
                up("eth0");
                default_route(HOST);
            });
            within(&outside, &host, || {
                address("eth0", OUTSIDE, 24);
                up("eth0");
            });

            let bridge = Bridge {
                name: "vh".to_string(),
                subnet: Ipv4Addr::new(10, 99, 0, 0),
                prefix: 24,
                nat: true,
            };
            let published = |host_port, proto, port| Published {
                host_ip: None,
                host_port,
                proto,
                address: CONTAINER,
                port,
                bridge: "vh".to_string(),
            };
            let rules = Rules {
                bridges: vec![bridge.clone()],
                ports: vec![
                    published(8080, Proto::Tcp, 80),
                    published(5353, Proto::Udp, 53),
                ],
            };
            apply(&rules).unwrap();
            std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").unwrap();
            for (path, value) in localhost_sysctls(&rules) {
                std::fs::write(format!("/proc/sys/{path}"), value).unwrap();
            }

            // Out: the outside world sees the host's uplink address.
            let out = within(&container, &host, || {
                TcpStream::connect_timeout(&(OUTSIDE, 80).into(), WAIT)
            });
            assert_eq!(answer(out.unwrap()), UPLINK.to_string());
            // In from outside: the container sees who called.
            let incoming = within(&outside, &host, || {
                TcpStream::connect_timeout(&(UPLINK, 8080).into(), WAIT)
            });
            assert_eq!(answer(incoming.unwrap()), OUTSIDE.to_string());
            // From the host itself, on its own addresses (the one it
            // connects to is the source), and on loopback, masqueraded to
            // the bridge's address.
            let bridge_side = HOST.to_string();
            let loopback = Ipv4Addr::LOCALHOST;
            assert_eq!(tcp_peer((HOST, 8080).into()).unwrap(), bridge_side);
            assert_eq!(tcp_peer((UPLINK, 8080).into()).unwrap(), UPLINK.to_string());
            assert_eq!(tcp_peer((loopback, 8080).into()).unwrap(), bridge_side);
            assert_eq!(udp_peer((loopback, 5353).into()).unwrap(), bridge_side);
            // From the container to a host address: back into the
            // container itself (hairpin), masqueraded so its answer
            // returns the same way.
            let hairpin = within(&container, &host, || {
                TcpStream::connect_timeout(&(UPLINK, 8080).into(), WAIT)
            });
            assert_eq!(answer(hairpin.unwrap()), bridge_side);

            // From the container to the host's loopback: the container
            // routes 127.0.0.1 to the host (its own loopback address
            // gone), and the host would take it as its own (route_localnet
            // on the bridge) but for the raw chain.
            let local = UdpSocket::bind((loopback, 0)).unwrap();
            let at = local.local_addr().unwrap();
            let sender = within(&container, &host, || {
                let mut r = Route::open().unwrap();
                let lo = r.link("lo").unwrap().unwrap();
                r.delete_address(lo.index, loopback, 8).unwrap();
                route(loopback, 32, HOST);
                UdpSocket::bind("0.0.0.0:0").unwrap()
            });
            // Sends until a datagram arrives or `patience` ran out.
            let reached = |patience: Duration| {
                local
                    .set_read_timeout(Some(Duration::from_millis(200)))
                    .unwrap();
                let deadline = std::time::Instant::now() + patience;
                let mut buf = [0u8; 16];
                loop {
                    sender.send_to(b"in", at).unwrap();
                    match local.recv_from(&mut buf) {
                        Ok((_, from)) => return Some(from.ip()),
                        Err(_) if std::time::Instant::now() < deadline => {}
                        Err(_) => return None,
                    }
                }
            };
            // The way is open without the raw chain's rules...
            let unguarded: Vec<Rule> = ruleset(&rules)
                .unwrap()
                .into_iter()
                .filter(|r| r.chain != RAW)
                .collect();
            nft::replace_table(NFPROTO_IPV4, TABLE, &chains(), &unguarded).unwrap();
            let from = reached(WAIT);
            assert_eq!(from, Some(std::net::IpAddr::V4(CONTAINER)));
            // ...and closed with them; the published ports still answer
            // on 127.0.0.1.
            apply(&rules).unwrap();
            let mut buf = [0u8; 16];
            while local.recv(&mut buf).is_ok() {}
            assert_eq!(reached(Duration::from_secs(1)), None);
            assert_eq!(tcp_peer((loopback, 8080).into()).unwrap(), bridge_side);
            assert_eq!(udp_peer((loopback, 5353).into()).unwrap(), bridge_side);

            // Without the ports, nothing answers there.
            apply(&Rules {
                bridges: vec![bridge],
                ports: Vec::new(),
            })
            .unwrap();
            let e = tcp_peer((loopback, 8080).into()).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{e}");
            let e = within(&outside, &host, || {
                TcpStream::connect_timeout(&(UPLINK, 8080).into(), WAIT)
            });
            assert_eq!(e.unwrap_err().kind(), io::ErrorKind::ConnectionRefused);
        });
    }
}
