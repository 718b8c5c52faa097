//! Links, IPv4 addresses and routes, programmed over rtnetlink: bridges,
//! veth pairs with one end created in another network namespace, masters,
//! addresses and the default route; sysctl writes; a watcher of link
//! changes for the daemon's event loop.
//!
//! Every error names what was being done and carries the kernel's words.
//! An interface that is not there (ENODEV) is `ErrorKind::NotFound`; one
//! that is there already is `ErrorKind::AlreadyExists`.

// Used by the daemon's network code once it is wired in.

use std::fmt;
use std::fs::{self, File};
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::Path;

use crate::sha256::Sha256;
use crate::sys::netlink::{self, Message, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE, Reply, Socket};
use crate::sys::ns;

// Attribute types of linux/if_link.h, veth.h, if_addr.h and rtnetlink.h.
const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MASTER: u16 = 10;
const IFLA_LINKINFO: u16 = 18;
const IFLA_NET_NS_FD: u16 = 28;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_BROADCAST: u16 = 4;
const RTA_GATEWAY: u16 = 5;
#[cfg(test)]
const RTA_TABLE: u16 = 15;
/// struct ifinfomsg and struct ifaddrmsg, struct rtmsg: their sizes.
const IFINFOMSG: usize = 16;
const IFADDRMSG: usize = 8;
const RTMSG: usize = 12;
/// Longest interface name, without its NUL.
const IFNAME_MAX: usize = 15;

/// One network interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// The bridge it is enslaved to.
    pub master: Option<u32>,
    /// Administratively up (IFF_UP).
    pub up: bool,
    /// "veth", "bridge", ... (IFLA_INFO_KIND; None for lo and physical
    /// devices).
    pub kind: Option<String>,
}

impl Link {
    /// A Linux bridge (not just a link of a bridge's name).
    pub fn is_bridge(&self) -> bool {
        self.kind.as_deref() == Some("bridge")
    }
}

/// A NETLINK_ROUTE socket in one network namespace (the one its thread
/// was in when it was opened).
pub struct Route {
    socket: Socket,
}

impl Route {
    /// A socket in this thread's network namespace.
    pub fn open() -> io::Result<Route> {
        let socket =
            Socket::open(libc::NETLINK_ROUTE).map_err(failed("open a rtnetlink socket"))?;
        Ok(Route { socket })
    }

    /// A socket in the network namespace `netns` is a handle of. The
    /// thread joins it for the time it takes to open the socket and goes
    /// back to its own namespace, failed or not; if it cannot go back,
    /// the process aborts (a panic): every later socket of the thread
    /// would be in the wrong namespace.
    pub fn open_in(netns: BorrowedFd<'_>) -> io::Result<Route> {
        let own = File::open("/proc/thread-self/ns/net")
            .map_err(failed("open /proc/thread-self/ns/net"))?;
        ns::setns(netns, libc::CLONE_NEWNET).map_err(failed("join a network namespace (setns)"))?;
        let opened = Route::open();
        came_back(ns::setns(own.as_fd(), libc::CLONE_NEWNET));
        opened
    }

    /// The link named `name`, if there is one.
    pub fn link(&mut self, name: &str) -> io::Result<Option<Link>> {
        check_name(name)?;
        let mut m = Message::new(libc::RTM_GETLINK, 0);
        m.bytes(&ifinfo(0, 0, 0)).attr_str(IFLA_IFNAME, name);
        match self.socket.get(m) {
            Ok(reply) => Ok(parse_link(&reply)),
            Err(e) if netlink::errno_of(&e) == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(failed(format_args!("look up link {name}"))(e)),
        }
    }

    pub fn links(&mut self) -> io::Result<Vec<Link>> {
        let mut m = Message::new(libc::RTM_GETLINK, 0);
        m.bytes(&ifinfo(0, 0, 0));
        let replies = self.socket.dump(m).map_err(failed("list links"))?;
        Ok(replies.iter().filter_map(parse_link).collect())
    }

    /// Creates the bridge `name` (down); its index. Its MAC address is
    /// one of its own, made from its name: a bridge without one set takes
    /// the lowest of its ports' and changes it as ports come and go,
    /// which leaves the others' ARP entries of the gateway stale.
    pub fn add_bridge(&mut self, name: &str) -> io::Result<u32> {
        check_name(name)?;
        let mut m = Message::new(libc::RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
        m.bytes(&ifinfo(0, 0, 0))
            .attr_str(IFLA_IFNAME, name)
            .attr(IFLA_ADDRESS, &bridge_mac(name));
        let info = m.nest(IFLA_LINKINFO);
        m.attr_str(IFLA_INFO_KIND, "bridge");
        m.end(info);
        self.socket
            .request(m)
            .map_err(failed(format_args!("create bridge {name}")))?;
        self.index_of(name)
    }

    /// Creates the veth pair `name` (here) and `peer`, the peer directly
    /// in the network namespace `peer_netns` is a handle of, under its
    /// final name; both down. The index of `name`.
    pub fn add_veth(
        &mut self,
        name: &str,
        peer: &str,
        peer_netns: BorrowedFd<'_>,
    ) -> io::Result<u32> {
        check_name(name)?;
        check_name(peer)?;
        let mut m = Message::new(libc::RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
        m.bytes(&ifinfo(0, 0, 0)).attr_str(IFLA_IFNAME, name);
        let info = m.nest(IFLA_LINKINFO);
        m.attr_str(IFLA_INFO_KIND, "veth");
        let data = m.nest(IFLA_INFO_DATA);
        // The peer: an ifinfomsg of its own, then its attributes.
        let peer_info = m.nest(VETH_INFO_PEER);
        m.bytes(&ifinfo(0, 0, 0))
            .attr_str(IFLA_IFNAME, peer)
            .attr_u32(IFLA_NET_NS_FD, peer_netns.as_raw_fd() as u32);
        m.end(peer_info);
        m.end(data);
        m.end(info);
        self.socket.request(m).map_err(failed(format_args!(
            "create veth pair {name} with peer {peer} in another network namespace"
        )))?;
        self.index_of(name)
    }

    /// Enslaves link `index` to the bridge `master`.
    pub fn set_master(&mut self, index: u32, master: u32) -> io::Result<()> {
        let mut m = Message::new(libc::RTM_NEWLINK, 0);
        m.bytes(&ifinfo(index, 0, 0)).attr_u32(IFLA_MASTER, master);
        self.socket.request(m).map_err(failed(format_args!(
            "attach link {index} to bridge {master}"
        )))
    }

    pub fn set_up(&mut self, index: u32) -> io::Result<()> {
        let up = libc::IFF_UP as u32;
        let mut m = Message::new(libc::RTM_NEWLINK, 0);
        m.bytes(&ifinfo(index, up, up));
        self.socket
            .request(m)
            .map_err(failed(format_args!("set link {index} up")))
    }

    /// Deletes link `index` (and a veth's peer with it, wherever it is).
    pub fn delete(&mut self, index: u32) -> io::Result<()> {
        let mut m = Message::new(libc::RTM_DELLINK, 0);
        m.bytes(&ifinfo(index, 0, 0));
        self.socket
            .request(m)
            .map_err(failed(format_args!("delete link {index}")))
    }

    /// Adds `addr/prefix` to link `index` (with the subnet's broadcast
    /// address); one that is there already is fine.
    pub fn add_address(&mut self, index: u32, addr: Ipv4Addr, prefix: u8) -> io::Result<()> {
        let what = format!("add address {addr}/{prefix} to link {index}");
        if prefix > 32 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{what}: the prefix is longer than 32 bits"),
            ));
        }
        let mut m = Message::new(libc::RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL);
        m.bytes(&ifaddr(index, prefix))
            .attr(IFA_LOCAL, &addr.octets())
            .attr(IFA_ADDRESS, &addr.octets());
        if prefix < 31 {
            let host_bits = u32::MAX >> prefix;
            m.attr(IFA_BROADCAST, &(u32::from(addr) | host_bits).to_be_bytes());
        }
        match self.socket.request(m) {
            Err(e) if netlink::errno_of(&e) == Some(libc::EEXIST) => Ok(()),
            other => other.map_err(failed(what)),
        }
    }

    #[cfg(test)]
    /// Removes `addr/prefix` from link `index`; one that is not there is
    /// fine (a link that is not there is `NotFound`).
    pub fn delete_address(&mut self, index: u32, addr: Ipv4Addr, prefix: u8) -> io::Result<()> {
        let what = format!("delete address {addr}/{prefix} from link {index}");
        if prefix > 32 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{what}: the prefix is longer than 32 bits"),
            ));
        }
        // With IFA_ADDRESS the kernel deletes only an address of this
        // prefix length.
        let mut m = Message::new(libc::RTM_DELADDR, 0);
        m.bytes(&ifaddr(index, prefix))
            .attr(IFA_LOCAL, &addr.octets())
            .attr(IFA_ADDRESS, &addr.octets());
        match self.socket.request(m) {
            Err(e) if netlink::errno_of(&e) == Some(libc::EADDRNOTAVAIL) => Ok(()),
            other => other.map_err(failed(what)),
        }
    }

    /// The IPv4 addresses of link `index`, with their prefix lengths.
    pub fn addresses(&mut self, index: u32) -> io::Result<Vec<(Ipv4Addr, u8)>> {
        let mut m = Message::new(libc::RTM_GETADDR, 0);
        m.bytes(&ifaddr(0, 0));
        let replies = self
            .socket
            .dump(m)
            .map_err(failed(format_args!("list the addresses of link {index}")))?;
        Ok(replies
            .iter()
            .filter(|r| r.kind == libc::RTM_NEWADDR)
            .filter_map(parse_address)
            .filter(|&(at, ..)| at == index)
            .map(|(_, addr, prefix)| (addr, prefix))
            .collect())
    }

    /// Sets the default route of the main table: via `gateway`, replacing
    /// the one there was. The gateway must be on a subnet of an address
    /// here.
    pub fn add_default_route(&mut self, gateway: Ipv4Addr) -> io::Result<()> {
        let mut m = Message::new(libc::RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE);
        m.bytes(&rtmsg()).attr(RTA_GATEWAY, &gateway.octets());
        self.socket
            .request(m)
            .map_err(failed(format_args!("set the default route via {gateway}")))
    }

    #[cfg(test)]
    /// The gateway of the main table's default route, if there is one.
    pub fn default_route(&mut self) -> io::Result<Option<Ipv4Addr>> {
        let mut m = Message::new(libc::RTM_GETROUTE, 0);
        m.bytes(&rtmsg());
        let replies = self.socket.dump(m).map_err(failed("list routes"))?;
        Ok(replies.iter().find_map(default_gateway))
    }

    fn index_of(&mut self, name: &str) -> io::Result<u32> {
        match self.link(name)? {
            Some(link) => Ok(link.index),
            None => Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("link {name} is gone right after it was created"),
            )),
        }
    }
}

/// Writes `value` to /proc/sys/`path` ("net/ipv4/ip_forward") in this
/// thread's namespaces; the value there was when this changed it, None
/// when it had that value already.
pub fn sysctl(path: &str, value: &str) -> io::Result<Option<String>> {
    if path.is_empty()
        || path
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == "..")
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("sysctl {path:?}: not a path under /proc/sys"),
        ));
    }
    let file = Path::new("/proc/sys").join(path);
    let before =
        fs::read_to_string(&file).map_err(failed(format_args!("read {}", file.display())))?;
    let before = before.trim();
    let words = |s: &str| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
    if words(before) == words(value) {
        return Ok(None);
    }
    fs::write(&file, value).map_err(failed(format_args!(
        "write {value:?} to {}",
        file.display()
    )))?;
    Ok(Some(before.to_owned()))
}

/// A link created, changed or deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkEvent {
    pub name: String,
    pub index: u32,
    /// RTM_DELLINK (else RTM_NEWLINK: created or changed).
    pub deleted: bool,
}

/// The link changes of this thread's network namespace, on a non-blocking
/// socket to register with the event loop.
pub struct LinkWatch {
    socket: Socket,
}

impl LinkWatch {
    pub fn open() -> io::Result<LinkWatch> {
        let socket = Socket::listen(libc::NETLINK_ROUTE, &[libc::RTNLGRP_LINK])
            .map_err(failed("listen to link changes"))?;
        Ok(LinkWatch { socket })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.socket.fd().as_fd()
    }

    /// Every event waiting, without blocking (empty when none is). An
    /// error whose `raw_os_error` is ENOBUFS says events were lost (the
    /// socket's buffer overran): look at every link again. Everything
    /// waiting is read away with it, so the next read starts afresh; the
    /// watch goes on working.
    pub fn read(&mut self) -> io::Result<Vec<LinkEvent>> {
        let mut events = Vec::new();
        let mut lost = None;
        loop {
            let replies = match self.socket.receive() {
                Ok(replies) if replies.is_empty() => break,
                Ok(replies) => replies,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // Reporting the overrun clears it: the next read returns
                // what is queued.
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    lost.get_or_insert(e);
                    continue;
                }
                Err(e) => return Err(e),
            };
            for reply in &replies {
                let deleted = match reply.kind {
                    libc::RTM_NEWLINK => false,
                    libc::RTM_DELLINK => true,
                    _ => continue,
                };
                if let Some(link) = parse_link(reply) {
                    events.push(LinkEvent {
                        name: link.name,
                        index: link.index,
                        deleted,
                    });
                }
            }
        }
        match lost {
            Some(e) => Err(e),
            None => Ok(events),
        }
    }
}

/// Aborts (a panic) when the thread could not return to its own network
/// namespace: nothing sensible can go on in another one.
fn came_back(setns: io::Result<()>) {
    if let Err(e) = setns {
        panic!("cannot return to the thread's own network namespace (setns): {e}");
    }
}

/// Wraps an error with what was being done; ENODEV becomes NotFound.
fn failed(what: impl fmt::Display) -> impl FnOnce(io::Error) -> io::Error {
    move |e| {
        let kind = match netlink::errno_of(&e) {
            Some(libc::ENODEV) => io::ErrorKind::NotFound,
            _ => e.kind(),
        };
        io::Error::new(kind, format!("{what}: {e}"))
    }
}

fn check_name(name: &str) -> io::Result<()> {
    let bad = name.is_empty()
        || name.len() > IFNAME_MAX
        || name == "."
        || name == ".."
        || name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b <= b' ' || b == 0x7f);
    if bad {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{name:?} is not an interface name (1-{IFNAME_MAX} bytes, no '/', ':' or whitespace)"
            ),
        ));
    }
    Ok(())
}

/// A locally administered unicast MAC address made from `name`.
fn bridge_mac(name: &str) -> [u8; 6] {
    let mut hash = Sha256::new();
    hash.update(b"berth bridge ");
    hash.update(name.as_bytes());
    let digest = hash.finish();
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&digest[..6]);
    mac[0] = (mac[0] & 0xfc) | 0x02;
    mac
}

/// struct ifinfomsg: family AF_UNSPEC, type 0, index, flags, change mask.
fn ifinfo(index: u32, flags: u32, change: u32) -> [u8; IFINFOMSG] {
    let mut b = [0u8; IFINFOMSG];
    b[4..8].copy_from_slice(&index.to_ne_bytes());
    b[8..12].copy_from_slice(&flags.to_ne_bytes());
    b[12..16].copy_from_slice(&change.to_ne_bytes());
    b
}

/// struct ifaddrmsg: AF_INET, prefix length, flags 0, universe scope,
/// index.
fn ifaddr(index: u32, prefix: u8) -> [u8; IFADDRMSG] {
    let mut b = [0u8; IFADDRMSG];
    b[0] = libc::AF_INET as u8;
    b[1] = prefix;
    b[3] = libc::RT_SCOPE_UNIVERSE;
    b[4..8].copy_from_slice(&index.to_ne_bytes());
    b
}

/// struct rtmsg of an IPv4 default route: destination 0/0, main table,
/// protocol boot (as `ip route add`), universe scope, unicast.
fn rtmsg() -> [u8; RTMSG] {
    let mut b = [0u8; RTMSG];
    b[0] = libc::AF_INET as u8;
    b[4] = libc::RT_TABLE_MAIN;
    b[5] = libc::RTPROT_BOOT;
    b[6] = libc::RT_SCOPE_UNIVERSE;
    b[7] = libc::RTN_UNICAST;
    b
}

fn parse_link(reply: &Reply) -> Option<Link> {
    let header = reply.payload.get(..IFINFOMSG)?;
    let index = netlink::u32_of(&header[4..8])?;
    let flags = netlink::u32_of(&header[8..12])?;
    let attrs = &reply.payload[IFINFOMSG..];
    Some(Link {
        index,
        name: netlink::find(attrs, IFLA_IFNAME).map(netlink::str_of)?,
        master: netlink::find(attrs, IFLA_MASTER)
            .and_then(netlink::u32_of)
            .filter(|&m| m != 0),
        up: flags & libc::IFF_UP as u32 != 0,
        kind: netlink::find(attrs, IFLA_LINKINFO)
            .and_then(|info| netlink::find(info, IFLA_INFO_KIND))
            .map(netlink::str_of),
    })
}

/// An RTM_NEWADDR message: (link index, address, prefix) of an IPv4 one.
fn parse_address(reply: &Reply) -> Option<(u32, Ipv4Addr, u8)> {
    let header = reply.payload.get(..IFADDRMSG)?;
    if header[0] != libc::AF_INET as u8 {
        return None;
    }
    let attrs = &reply.payload[IFADDRMSG..];
    let value = netlink::find(attrs, IFA_LOCAL).or_else(|| netlink::find(attrs, IFA_ADDRESS))?;
    let octets: [u8; 4] = value.get(..4)?.try_into().ok()?;
    Some((
        netlink::u32_of(&header[4..8])?,
        Ipv4Addr::from(octets),
        header[1],
    ))
}

#[cfg(test)]
/// The gateway of an RTM_NEWROUTE message if it is the main table's IPv4
/// default route.
fn default_gateway(reply: &Reply) -> Option<Ipv4Addr> {
    let header = reply.payload.get(..RTMSG)?;
    let attrs = &reply.payload[RTMSG..];
    let table = netlink::find(attrs, RTA_TABLE)
        .and_then(netlink::u32_of)
        .unwrap_or(u32::from(header[4]));
    let default = reply.kind == libc::RTM_NEWROUTE
        && header[0] == libc::AF_INET as u8
        && header[1] == 0
        && header[7] == libc::RTN_UNICAST
        && table == u32::from(libc::RT_TABLE_MAIN);
    if !default {
        return None;
    }
    let value = netlink::find(attrs, RTA_GATEWAY)?;
    let octets: [u8; 4] = value.get(..4)?.try_into().ok()?;
    Some(Ipv4Addr::from(octets))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::os::fd::OwnedFd;
    use std::os::unix::fs::MetadataExt;
    use std::time::{Duration, Instant};

    /// Runs `body` on a fresh thread in a new network namespace of its
    /// own (namespaces are per thread: the machine's is never touched).
    fn in_new_netns<T: Send>(body: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|s| {
            let thread = s.spawn(|| {
                ns::unshare(libc::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
                body()
            });
            thread
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// Runs `body` on a fresh thread that joined `netns`.
    fn inside<T: Send>(netns: BorrowedFd<'_>, body: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|s| {
            let thread = s.spawn(|| {
                ns::setns(netns, libc::CLONE_NEWNET).expect("setns(CLONE_NEWNET)");
                body()
            });
            thread
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// A handle of a new network namespace no thread stays in (the
    /// handle keeps it alive).
    fn new_netns() -> OwnedFd {
        in_new_netns(|| File::open("/proc/thread-self/ns/net").unwrap().into())
    }

    fn own_netns() -> u64 {
        fs::metadata("/proc/thread-self/ns/net").unwrap().ino()
    }

    /// The default route's gateway as /proc/net/route shows it to a
    /// thread in `netns`: (interface, gateway).
    fn proc_default_route(netns: BorrowedFd<'_>) -> Option<(String, Ipv4Addr)> {
        let table = inside(netns, || {
            fs::read_to_string("/proc/thread-self/net/route").unwrap()
        });
        table.lines().skip(1).find_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (dst, gw, mask) = (f.get(1)?, f.get(2)?, f.get(7)?);
            if *dst != "00000000" || *mask != "00000000" {
                return None;
            }
            let gw = u32::from_str_radix(gw, 16).ok()?;
            Some((f[0].to_owned(), Ipv4Addr::from(gw.to_ne_bytes())))
        })
    }

    fn mac_of(route: &mut Route, name: &str) -> [u8; 6] {
        let mut m = Message::new(libc::RTM_GETLINK, 0);
        m.bytes(&ifinfo(0, 0, 0)).attr_str(IFLA_IFNAME, name);
        let reply = route.socket.get(m).unwrap();
        let mac = netlink::find(&reply.payload[IFINFOMSG..], IFLA_ADDRESS).unwrap();
        mac.try_into().unwrap()
    }

    #[test]
    fn a_veth_peer_lands_in_the_other_namespace_on_the_bridge_with_address_and_route() {
        let container = new_netns();
        in_new_netns(|| {
            let mut host = Route::open().unwrap();
            let bridge = host.add_bridge("berth0").unwrap();
            host.set_up(bridge).unwrap();
            host.add_address(bridge, Ipv4Addr::new(10, 88, 0, 1), 24)
                .unwrap();
            let veth = host
                .add_veth("bth0a1b2c3d", "eth0", container.as_fd())
                .unwrap();
            let mac = mac_of(&mut host, "berth0");
            assert_eq!(mac, bridge_mac("berth0"));
            assert_eq!(mac[0] & 0x03, 0x02, "locally administered, unicast");
            host.set_master(veth, bridge).unwrap();
            assert_eq!(
                mac_of(&mut host, "berth0"),
                mac,
                "a port does not change it"
            );
            host.set_up(veth).unwrap();

            let links = host.links().unwrap();
            let names: Vec<&str> = links.iter().map(|l| l.name.as_str()).collect();
            assert!(!names.contains(&"eth0"), "the peer is not here: {names:?}");
            let b = host.link("berth0").unwrap().unwrap();
            assert_eq!(
                (b.index, b.kind.as_deref(), b.up),
                (bridge, Some("bridge"), true)
            );
            let v = host.link("bth0a1b2c3d").unwrap().unwrap();
            assert_eq!(v.kind.as_deref(), Some("veth"));
            assert_eq!((v.index, v.master, v.up), (veth, Some(bridge), true));
            assert_eq!(host.link("nosuchlink").unwrap(), None);

            // In the container's namespace: eth0 under its final name.
            let mut inner = Route::open_in(container.as_fd()).unwrap();
            let lo = inner.link("lo").unwrap().unwrap();
            let eth0 = inner.link("eth0").unwrap().unwrap();
            assert_eq!(eth0.kind.as_deref(), Some("veth"));
            assert!(!eth0.up);
            assert!(inner.link("berth0").unwrap().is_none());
            inner.set_up(lo.index).unwrap();
            inner.set_up(eth0.index).unwrap();
            assert!(inner.link("eth0").unwrap().unwrap().up);
            let address = Ipv4Addr::new(10, 88, 0, 2);
            inner.add_address(eth0.index, address, 24).unwrap();
            inner.add_address(eth0.index, address, 24).unwrap();
            assert_eq!(inner.addresses(eth0.index).unwrap(), vec![(address, 24)]);
            assert_eq!(
                inner.addresses(lo.index).unwrap(),
                vec![(Ipv4Addr::LOCALHOST, 8)]
            );

            // The default route, then another one in its place.
            assert_eq!(inner.default_route().unwrap(), None);
            inner
                .add_default_route(Ipv4Addr::new(10, 88, 0, 254))
                .unwrap();
            inner
                .add_default_route(Ipv4Addr::new(10, 88, 0, 1))
                .unwrap();
            assert_eq!(
                inner.default_route().unwrap(),
                Some(Ipv4Addr::new(10, 88, 0, 1))
            );
            assert_eq!(
                proc_default_route(container.as_fd()),
                Some(("eth0".to_owned(), Ipv4Addr::new(10, 88, 0, 1)))
            );
            assert_eq!(
                host.default_route().unwrap(),
                None,
                "the host's routes are its own"
            );

            // Traffic crosses: the host's side connects to a listener on
            // the container's address.
            let listener = inside(container.as_fd(), || {
                TcpListener::bind(SocketAddr::from((address, 0))).unwrap()
            });
            let to = listener.local_addr().unwrap();
            let deadline = Instant::now() + Duration::from_secs(10);
            let stream = loop {
                match TcpStream::connect_timeout(&to, Duration::from_millis(500)) {
                    Ok(s) => break s,
                    Err(e) if Instant::now() < deadline => drop(e),
                    Err(e) => panic!("connect to {to} across the bridge: {e}"),
                }
            };
            let (_, from) = listener.accept().unwrap();
            assert_eq!(from.ip(), std::net::IpAddr::V4(Ipv4Addr::new(10, 88, 0, 1)));
            drop(stream);

            // Deleting the host's end takes the peer with it.
            host.delete(veth).unwrap();
            assert!(host.link("bth0a1b2c3d").unwrap().is_none());
            assert!(inner.link("eth0").unwrap().is_none());
            assert_eq!(host.link("berth0").unwrap().unwrap().index, bridge);
        });
    }

    #[test]
    fn errors_say_what_was_done_and_keep_their_kind() {
        let other = new_netns();
        in_new_netns(|| {
            let mut r = Route::open().unwrap();
            let bridge = r.add_bridge("br-dup").unwrap();
            let e = r.add_bridge("br-dup").unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::AlreadyExists, "{e}");
            assert!(e.to_string().starts_with("create bridge br-dup: "), "{e}");

            // The peer's name taken in its namespace.
            r.add_veth("vA", "eth0", other.as_fd()).unwrap();
            let e = r.add_veth("vB", "eth0", other.as_fd()).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::AlreadyExists, "{e}");
            assert!(e.to_string().contains("vB with peer eth0"), "{e}");
            assert!(r.link("vB").unwrap().is_none());

            let gone = 0x7fff_fff0;
            for e in [
                r.set_master(gone, bridge).unwrap_err(),
                r.set_up(gone).unwrap_err(),
                r.delete(gone).unwrap_err(),
            ] {
                assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");
                assert!(e.to_string().contains(&format!("link {gone}")), "{e}");
            }
            let e = r
                .add_address(gone, Ipv4Addr::new(10, 1, 0, 1), 24)
                .unwrap_err();
            assert!(
                e.to_string()
                    .starts_with("add address 10.1.0.1/24 to link "),
                "{e}"
            );
            let e = r
                .add_address(bridge, Ipv4Addr::new(10, 1, 0, 1), 33)
                .unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
            // No address on a subnet of the gateway's: the kernel's words.
            let e = r.add_default_route(Ipv4Addr::new(10, 9, 9, 9)).unwrap_err();
            assert!(
                e.to_string()
                    .starts_with("set the default route via 10.9.9.9: "),
                "{e}"
            );
            for name in ["", "a-name-too-long-16", "a/b", "eth 0", ".."] {
                let e = r.add_bridge(name).unwrap_err();
                assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{name:?}: {e}");
            }
        });
    }

    #[test]
    fn open_in_comes_back_to_the_threads_own_namespace_even_on_error() {
        let other = new_netns();
        in_new_netns(|| {
            let own = own_netns();
            let mut here = Route::open().unwrap();
            here.add_bridge("br-here").unwrap();
            let mut there = Route::open_in(other.as_fd()).unwrap();
            assert_eq!(own_netns(), own);
            let names: Vec<String> = there.links().unwrap().into_iter().map(|l| l.name).collect();
            assert_eq!(names, vec!["lo"], "the socket stays in the other namespace");
            there.add_bridge("br-there").unwrap();
            assert!(here.link("br-there").unwrap().is_none());

            // Not a namespace: refused, and the thread is still at home.
            let not_a_netns = File::open("/dev/null").unwrap();
            let e = Route::open_in(not_a_netns.as_fd()).err().unwrap();
            assert!(e.to_string().starts_with("join a network namespace"), "{e}");
            assert_eq!(own_netns(), own);
            assert!(here.link("br-here").unwrap().is_some());
        });
    }

    #[test]
    fn the_watch_sees_a_bridge_come_and_go_without_blocking() {
        in_new_netns(|| {
            let mut watch = LinkWatch::open().unwrap();
            assert_eq!(watch.read().unwrap(), vec![], "nothing yet, and no wait");
            let mut poll = mio::Poll::new().unwrap();
            let raw = watch.fd().as_raw_fd();
            poll.registry()
                .register(
                    &mut mio::unix::SourceFd(&raw),
                    mio::Token(0),
                    mio::Interest::READABLE,
                )
                .unwrap();

            let mut r = Route::open().unwrap();
            let index = r.add_bridge("br-watched").unwrap();
            r.delete(index).unwrap();

            let mut events = Vec::new();
            let mut ready = mio::Events::with_capacity(4);
            let deadline = Instant::now() + Duration::from_secs(10);
            while !events.iter().any(|e: &LinkEvent| e.deleted) {
                let left = deadline.saturating_duration_since(Instant::now());
                assert!(!left.is_zero(), "no deletion seen: {events:?}");
                poll.poll(&mut ready, Some(left)).unwrap();
                events.extend(watch.read().unwrap());
            }
            let created = LinkEvent {
                name: "br-watched".to_owned(),
                index,
                deleted: false,
            };
            let deleted = LinkEvent {
                deleted: true,
                ..created.clone()
            };
            assert_eq!(events.first(), Some(&created), "{events:?}");
            assert_eq!(
                events.iter().filter(|e| e.deleted).collect::<Vec<_>>(),
                vec![&deleted]
            );
            assert_eq!(watch.read().unwrap(), vec![]);
        });
    }

    #[test]
    fn the_watch_reads_away_what_waits_after_an_overrun() {
        in_new_netns(|| {
            let mut watch = LinkWatch::open().unwrap();
            watch.socket.set_receive_buffer(0).unwrap();
            let mut r = Route::open().unwrap();
            for i in 0..40 {
                r.add_bridge(&format!("br-burst{i}")).unwrap();
            }
            let e = watch.read().unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::ENOBUFS), "{e}");
            assert_eq!(watch.read().unwrap(), vec![], "nothing stale left");
            // The kernel queues the notice before it answers the change.
            let index = r.add_bridge("br-after").unwrap();
            assert_eq!(
                watch.read().unwrap(),
                vec![LinkEvent {
                    name: "br-after".to_owned(),
                    index,
                    deleted: false
                }]
            );
        });
    }

    #[test]
    fn the_kind_tells_a_bridge_from_a_link_of_its_name() {
        let other = new_netns();
        in_new_netns(|| {
            let mut r = Route::open().unwrap();
            r.add_bridge("berth0").unwrap();
            r.add_veth("berth1", "eth0", other.as_fd()).unwrap();
            let one = |r: &mut Route, name| r.link(name).unwrap().unwrap();
            assert!(one(&mut r, "berth0").is_bridge());
            assert!(!one(&mut r, "berth1").is_bridge());
            assert_eq!(one(&mut r, "berth1").kind.as_deref(), Some("veth"));
            assert_eq!(one(&mut r, "lo").kind, None);
            let links = r.links().unwrap();
            let kinds: Vec<(&str, Option<&str>)> = links
                .iter()
                .map(|l| (l.name.as_str(), l.kind.as_deref()))
                .collect();
            assert_eq!(
                kinds,
                [
                    ("lo", None),
                    ("berth0", Some("bridge")),
                    ("berth1", Some("veth"))
                ]
            );
        });
    }

    #[test]
    fn delete_address_removes_that_one_and_minds_no_missing_one() {
        in_new_netns(|| {
            let mut r = Route::open().unwrap();
            let bridge = r.add_bridge("br-addr").unwrap();
            let gateway = Ipv4Addr::new(10, 88, 0, 1);
            let other = Ipv4Addr::new(10, 77, 0, 1);
            r.add_address(bridge, gateway, 24).unwrap();
            r.add_address(bridge, other, 16).unwrap();
            // Another prefix length is another address: left alone.
            r.delete_address(bridge, gateway, 16).unwrap();
            assert_eq!(r.addresses(bridge).unwrap().len(), 2);
            r.delete_address(bridge, gateway, 24).unwrap();
            assert_eq!(r.addresses(bridge).unwrap(), vec![(other, 16)]);
            r.delete_address(bridge, gateway, 24).unwrap();
            let e = r.delete_address(bridge, gateway, 33).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
            let e = r.delete_address(0x7fff_fff0, gateway, 24).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");
            assert!(
                e.to_string()
                    .starts_with("delete address 10.88.0.1/24 from link "),
                "{e}"
            );
        });
    }

    #[test]
    #[should_panic(expected = "cannot return to the thread's own network namespace")]
    fn a_thread_that_cannot_come_back_aborts() {
        came_back(Ok(()));
        came_back(Err(io::Error::from_raw_os_error(libc::EPERM)));
    }

    #[test]
    fn sysctl_says_what_it_changed_in_this_namespace_only() {
        let fresh = || fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
        let before = in_new_netns(fresh);
        let after = in_new_netns(|| {
            let other = if before.trim() == "1" { "0" } else { "1" };
            let was = sysctl("net/ipv4/ip_forward", other).unwrap();
            assert_eq!(was.as_deref(), Some(before.trim()));
            assert_eq!(sysctl("net/ipv4/ip_forward", other).unwrap(), None);
            assert_eq!(fresh().trim(), other);
            // A namespace made meanwhile starts as every new one does.
            in_new_netns(fresh)
        });
        assert_eq!(after, before);
        for path in ["", "/net/ipv4/ip_forward", "net/../kernel/x", "net//ipv4"] {
            let e = in_new_netns(|| sysctl(path, "1")).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{path:?}: {e}");
        }
        let e = in_new_netns(|| sysctl("net/ipv4/no_such_key", "1")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");
        assert!(
            e.to_string()
                .starts_with("read /proc/sys/net/ipv4/no_such_key: "),
            "{e}"
        );
    }
}
