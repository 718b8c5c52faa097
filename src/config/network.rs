//! Bridge networks: daemon.json's `networks` (name, bridge, IPv4 subnet,
//! gateway, NAT) and a container file's `network`, `address` and `ports`,
//! each checked alone when read (`network_check` then checks the
//! containers directory against the networks and itself).

use std::fmt;
use std::net::Ipv4Addr;
use std::path::Path;

use super::fields::{
    field_error, get_array, get_bool, get_str, members, printable, quoted, unknown_key,
    validate_name, wrong_type,
};
use super::types::{ConfigError, MAX_LIST_LEN};
use crate::json::{Node, Value};

/// Most networks daemon.json may define.
pub const MAX_NETWORKS: usize = 64;

/// Most networks one container may join (eth0 to eth15).
pub const MAX_CONTAINER_NETWORKS: usize = 16;

/// Longest Linux interface name (IFNAMSIZ less its NUL).
pub const MAX_IFNAME: usize = 15;

/// Shortest and longest prefix of a subnet: at least two host addresses
/// (one of them the gateway), at most a /8.
const MIN_PREFIX: u8 = 8;
const MAX_PREFIX: u8 = 30;

/// One entry of daemon.json's `networks`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkDef {
    pub name: String,
    /// The Linux bridge the containers' veth ends are enslaved to.
    pub bridge: String,
    /// The network address (host bits zero).
    pub subnet: Ipv4Addr,
    pub prefix: u8,
    /// A host address of the subnet; by default the first.
    pub gateway: Ipv4Addr,
    /// Masquerade traffic from the subnet leaving through the host.
    pub nat: bool,
}

impl NetworkDef {
    /// The netmask as a number (`/24` -> 0xffffff00).
    pub fn mask(&self) -> u32 {
        mask(self.prefix)
    }

    /// The last address of the subnet.
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.subnet) | !self.mask())
    }

    /// Whether `addr` is in the subnet (network and broadcast included).
    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        u32::from(addr) & self.mask() == u32::from(self.subnet)
    }

    /// Whether `addr` may be given to a container: in the subnet, and not
    /// the network, broadcast or gateway address.
    pub fn is_assignable(&self, addr: Ipv4Addr) -> bool {
        self.check_assignable(addr).is_ok()
    }

    /// Why `addr` may not be given to a container on this network.
    pub fn check_assignable(&self, addr: Ipv4Addr) -> Result<(), String> {
        if !self.contains(addr) {
            Err(format!(
                "{addr} is outside network {}'s subnet {}",
                self.name,
                self.cidr()
            ))
        } else if addr == self.subnet {
            Err(format!(
                "{addr} is the network address of {} (network {})",
                self.cidr(),
                self.name
            ))
        } else if addr == self.broadcast() {
            Err(format!(
                "{addr} is the broadcast address of {} (network {})",
                self.cidr(),
                self.name
            ))
        } else if addr == self.gateway {
            Err(format!("{addr} is the gateway of network {}", self.name))
        } else {
            Ok(())
        }
    }

    /// "10.88.0.0/24".
    pub fn cidr(&self) -> String {
        format!("{}/{}", self.subnet, self.prefix)
    }
}

fn mask(prefix: u8) -> u32 {
    match prefix {
        0 => 0,
        p => u32::MAX << (32 - u32::from(p.min(32))),
    }
}

/// A container's `network`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Network {
    /// New network namespace with only loopback, up.
    None,
    /// The host's network namespace.
    Host,
    /// A namespace of its own on these networks of daemon.json, in order
    /// (the first is eth0 and has the default route).
    Bridge(Vec<String>),
    /// The namespace of the named container.
    Container(String),
}

impl fmt::Display for Network {
    /// As a container file spells it; a list as `lan, db`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Network::None => f.write_str("none"),
            Network::Host => f.write_str("host"),
            Network::Bridge(names) => f.write_str(&names.join(", ")),
            Network::Container(name) => write!(f, "container:{name}"),
        }
    }
}

/// A published port's protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// One entry of `ports`: `[HOST-IP:]HOST-PORT:PORT[/PROTO]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortMap {
    /// `None`: every address of the host ("0.0.0.0" is read as `None`).
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    /// The port inside the container.
    pub port: u16,
    pub proto: Proto,
}

impl PortMap {
    /// Whether this and `other` claim the same host port: same protocol
    /// and port, and host addresses that overlap (`None` is all of them).
    pub fn clashes_with(&self, other: &PortMap) -> bool {
        self.proto == other.proto
            && self.host_port == other.host_port
            && match (self.host_ip, other.host_ip) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }

    /// "8080/tcp" or "127.0.0.1:5353/udp": the host side.
    pub fn host_side(&self) -> String {
        match self.host_ip {
            Some(ip) => format!("{ip}:{}/{}", self.host_port, self.proto.as_str()),
            None => format!("{}/{}", self.host_port, self.proto.as_str()),
        }
    }
}

/// A dotted-quad IPv4 address, strictly (four decimal parts, no leading
/// zeros).
pub fn parse_ipv4(s: &str) -> Option<Ipv4Addr> {
    s.parse().ok()
}

/// "10.88.0.0/24" -> (network address, prefix). Host bits must be zero,
/// and the prefix from 8 to 30.
pub fn parse_subnet(s: &str) -> Result<(Ipv4Addr, u8), String> {
    let bad = || {
        format!(
            "expected an IPv4 subnet like \"10.88.0.0/24\", found {}",
            quoted(s)
        )
    };
    let (addr, prefix) = s.split_once('/').ok_or_else(bad)?;
    let addr = parse_ipv4(addr).ok_or_else(bad)?;
    if prefix.is_empty() || prefix.len() > 2 || !prefix.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let prefix: u8 = prefix.parse().map_err(|_| bad())?;
    if !(MIN_PREFIX..=MAX_PREFIX).contains(&prefix) {
        return Err(format!(
            "the prefix length must be from {MIN_PREFIX} to {MAX_PREFIX}, found /{prefix}"
        ));
    }
    let network = Ipv4Addr::from(u32::from(addr) & mask(prefix));
    if network != addr {
        return Err(format!(
            "{s} has host bits set: the network address would be {network}/{prefix}"
        ));
    }
    Ok((network, prefix))
}

/// Ranges no bridge subnet may overlap: "this network", loopback,
/// link-local, multicast and the reserved block above it.
const FORBIDDEN: [(Ipv4Addr, u8, &str); 4] = [
    (
        Ipv4Addr::new(0, 0, 0, 0),
        8,
        "\"this network\" block 0.0.0.0/8",
    ),
    (Ipv4Addr::new(127, 0, 0, 0), 8, "loopback block 127.0.0.0/8"),
    (
        Ipv4Addr::new(169, 254, 0, 0),
        16,
        "link-local block 169.254.0.0/16",
    ),
    (
        Ipv4Addr::new(224, 0, 0, 0),
        3,
        "multicast and reserved block 224.0.0.0/3",
    ),
];

/// Whether two subnets share an address.
fn overlap(a: Ipv4Addr, a_prefix: u8, b: Ipv4Addr, b_prefix: u8) -> bool {
    let m = mask(a_prefix.min(b_prefix));
    u32::from(a) & m == u32::from(b) & m
}

/// Linux interface names: 1 to 15 bytes, no '/', ':', white space or
/// control character, not "." or "..".
pub fn check_ifname(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > MAX_IFNAME {
        return Err(format!(
            "an interface name is 1 to {MAX_IFNAME} bytes, found {}",
            quoted(s)
        ));
    }
    let bad = |c: char| c == '/' || c == ':' || c.is_whitespace() || c.is_control();
    if s.contains(bad) || s == "." || s == ".." {
        return Err(format!(
            "{} is not a valid interface name (no '/', ':' or white space)",
            quoted(s)
        ));
    }
    if is_veth_name(s) {
        return Err(format!(
            "{} has the form of berth's own veth ends (bth and 8 hex digits)",
            quoted(s)
        ));
    }
    Ok(())
}

/// "bth" and 8 lowercase hex digits: the host end of a container's veth.
fn is_veth_name(s: &str) -> bool {
    s.len() == 11
        && s.starts_with("bth")
        && s[3..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A network name: a valid container-style name, and not one the
/// `network` key gives a meaning of its own.
pub fn check_network_name(name: &str) -> Result<(), String> {
    if name == "none" || name == "host" || name.starts_with("container:") {
        return Err(format!(
            "network name {} is reserved (\"none\", \"host\" and \"container:NAME\" mean something else)",
            quoted(name)
        ));
    }
    validate_name(name).map_err(|r| format!("network {r}"))
}

/// daemon.json's `networks`: an object of name to definition.
pub(super) fn get_networks(node: &Node, file: &Path) -> Result<Vec<NetworkDef>, ConfigError> {
    const FIELD: &str = "networks";
    let Value::Object(entries) = &node.value else {
        return Err(field_error(
            file,
            FIELD,
            wrong_type("an object of network name to definition", node),
        ));
    };
    if entries.len() > MAX_NETWORKS {
        return Err(field_error(
            file,
            FIELD,
            format!("has more than {MAX_NETWORKS} entries"),
        ));
    }
    let mut defs: Vec<NetworkDef> = Vec::with_capacity(entries.len());
    for (name, value) in entries {
        let base = format!("{FIELD}.{}", printable(name));
        check_network_name(name).map_err(|r| field_error(file, &base, r))?;
        let def = get_network(name, value, file, &base)?;
        let err = |key: &str, reason: String| field_error(file, format!("{base}.{key}"), reason);
        if let Some(other) = defs.iter().find(|d| d.bridge == def.bridge) {
            return Err(err(
                "bridge",
                format!(
                    "bridge {} is also network {}'s",
                    quoted(&def.bridge),
                    other.name
                ),
            ));
        }
        if let Some(other) = defs
            .iter()
            .find(|d| overlap(d.subnet, d.prefix, def.subnet, def.prefix))
        {
            return Err(err(
                "subnet",
                format!(
                    "{} overlaps {} of network {}",
                    def.cidr(),
                    other.cidr(),
                    other.name
                ),
            ));
        }
        defs.push(def);
    }
    Ok(defs)
}

/// One network's definition; `base` is its field ("networks.lan").
fn get_network(
    name: &str,
    node: &Node,
    file: &Path,
    base: &str,
) -> Result<NetworkDef, ConfigError> {
    let Value::Object(_) = &node.value else {
        return Err(field_error(file, base, wrong_type("an object", node)));
    };
    let err = |key: &str, reason: String| field_error(file, format!("{base}.{key}"), reason);
    let mut bridge = None;
    let mut subnet = None;
    let mut gateway = None;
    let mut nat = true;
    for (key, value) in members(node) {
        let key_err = |reason: String| err(key, reason);
        match key.as_str() {
            "bridge" => {
                let s = get_str(value).map_err(key_err)?;
                check_ifname(s).map_err(key_err)?;
                bridge = Some(s.to_string());
            }
            "subnet" => {
                subnet = Some(parse_subnet(get_str(value).map_err(key_err)?).map_err(key_err)?)
            }
            "gateway" => {
                let s = get_str(value).map_err(key_err)?;
                let addr = parse_ipv4(s).ok_or_else(|| {
                    key_err(format!("expected an IPv4 address, found {}", quoted(s)))
                })?;
                gateway = Some(addr);
            }
            "nat" => nat = get_bool(value).map_err(key_err)?,
            "ipv6" => {
                return Err(key_err(
                    "IPv6 is not supported: networks are IPv4 only for now".to_string(),
                ));
            }
            _ => return Err(unknown_key(file, &format!("{base}."), key)),
        }
    }
    let bridge = bridge.ok_or_else(|| err("bridge", "required key is missing".to_string()))?;
    let (subnet, prefix) =
        subnet.ok_or_else(|| err("subnet", "required key is missing".to_string()))?;
    let cidr = format!("{subnet}/{prefix}");
    if let Some((_, _, what)) = FORBIDDEN
        .iter()
        .find(|(start, len, _)| overlap(*start, *len, subnet, prefix))
    {
        return Err(err("subnet", format!("{cidr} overlaps the {what}")));
    }
    let mut def = NetworkDef {
        name: name.to_string(),
        bridge,
        subnet,
        prefix,
        gateway: Ipv4Addr::from(u32::from(subnet) + 1),
        nat,
    };
    if let Some(gateway) = gateway {
        let why = if !def.contains(gateway) {
            Some("outside")
        } else if gateway == def.subnet {
            Some("the network address of")
        } else if gateway == def.broadcast() {
            Some("the broadcast address of")
        } else {
            None
        };
        if let Some(why) = why {
            return Err(err("gateway", format!("{gateway} is {why} {cidr}")));
        }
        def.gateway = gateway;
    }
    Ok(def)
}

/// A container file's `network`: "none", "host", "container:NAME", a
/// network name, or a non-empty list of distinct network names.
pub(super) fn get_network_key(node: &Node, file: &Path, own: &str) -> Result<Network, ConfigError> {
    const FIELD: &str = "network";
    let err = |reason: String| field_error(file, FIELD, reason);
    match &node.value {
        Value::String(_) => {
            let s = get_str(node).map_err(err)?;
            match s {
                "none" => Ok(Network::None),
                "host" => Ok(Network::Host),
                _ => {
                    if let Some(owner) = s.strip_prefix("container:") {
                        validate_name(owner)
                            .map_err(|r| err(format!("container:NAME needs a container {r}")))?;
                        if owner == own {
                            return Err(err(format!(
                                "{own} cannot share its own network namespace"
                            )));
                        }
                        return Ok(Network::Container(owner.to_string()));
                    }
                    check_network_name(s).map_err(|_| {
                        err(format!(
                            "expected \"none\", \"host\", \"container:NAME\" or the name of a network, found {}",
                            quoted(s)
                        ))
                    })?;
                    Ok(Network::Bridge(vec![s.to_string()]))
                }
            }
        }
        Value::Array(_) => {
            let items = get_array(node, MAX_CONTAINER_NETWORKS).map_err(err)?;
            if items.is_empty() {
                return Err(err(
                    "a list of networks must not be empty (use \"none\" for no network)"
                        .to_string(),
                ));
            }
            let mut names: Vec<String> = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let item_err = |reason: String| field_error(file, format!("{FIELD}[{i}]"), reason);
                let s = get_str(item).map_err(item_err)?;
                check_network_name(s).map_err(|_| {
                    item_err(format!(
                        "expected the name of a network, found {} (\"none\", \"host\" and \"container:NAME\" stand alone)",
                        quoted(s)
                    ))
                })?;
                if names.iter().any(|n| n == s) {
                    return Err(item_err(format!("network {} is named twice", quoted(s))));
                }
                names.push(s.to_string());
            }
            Ok(Network::Bridge(names))
        }
        _ => Err(err(wrong_type(
            "a network name, a list of them, \"none\", \"host\" or \"container:NAME\"",
            node,
        ))),
    }
}

/// A container file's `address`: an IPv4 address.
pub(super) fn get_address(node: &Node) -> Result<Ipv4Addr, String> {
    let s = get_str(node)?;
    let addr = parse_ipv4(s).ok_or_else(|| {
        format!(
            "expected an IPv4 address like \"10.88.0.7\", found {}",
            quoted(s)
        )
    })?;
    Ok(addr)
}

/// A container file's `ports`: a list of "[HOST-IP:]HOST-PORT:PORT[/PROTO]",
/// no host port published twice.
pub(super) fn get_ports(node: &Node, file: &Path) -> Result<Vec<PortMap>, ConfigError> {
    let items = get_array(node, MAX_LIST_LEN).map_err(|r| field_error(file, "ports", r))?;
    let mut ports: Vec<PortMap> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let err = |reason: String| field_error(file, format!("ports[{i}]"), reason);
        let port = parse_port_map(get_str(item).map_err(err)?).map_err(err)?;
        if let Some(j) = ports.iter().position(|p| p.clashes_with(&port)) {
            return Err(err(format!(
                "host port {} is already published by ports[{j}]",
                port.host_side()
            )));
        }
        ports.push(port);
    }
    Ok(ports)
}

/// "8080:80", "127.0.0.1:5353:53/udp", "9000:9000/tcp".
pub fn parse_port_map(s: &str) -> Result<PortMap, String> {
    let bad = || {
        format!(
            "expected \"[HOST-IP:]HOST-PORT:PORT[/tcp|/udp]\" like \"8080:80\", found {}",
            quoted(s)
        )
    };
    let (spec, proto) = match s.split_once('/') {
        Some((spec, "tcp")) => (spec, Proto::Tcp),
        Some((spec, "udp")) => (spec, Proto::Udp),
        Some((_, p)) => {
            return Err(format!(
                "the protocol must be tcp or udp, found {} in {}",
                quoted(p),
                quoted(s)
            ));
        }
        None => (s, Proto::Tcp),
    };
    let parts: Vec<&str> = spec.split(':').collect();
    let (host_ip, host_port, port) = match parts[..] {
        [host_port, port] => (None, host_port, port),
        [ip, host_port, port] => {
            let addr = parse_ipv4(ip).ok_or_else(|| {
                format!("{} is not an IPv4 address (in {})", quoted(ip), quoted(s))
            })?;
            if addr.is_multicast() || addr.is_broadcast() {
                return Err(format!(
                    "the host address {addr} is not a unicast address (in {})",
                    quoted(s)
                ));
            }
            (Some(addr).filter(|a| !a.is_unspecified()), host_port, port)
        }
        _ => return Err(bad()),
    };
    let number = |p: &str| -> Result<u16, String> {
        if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        match p.parse::<u32>() {
            Ok(n) if (1..=65535).contains(&n) => Ok(n as u16),
            _ => Err(format!(
                "ports must be from 1 to 65535, found {p} in {}",
                quoted(s)
            )),
        }
    };
    Ok(PortMap {
        host_ip,
        host_port: number(host_port)?,
        port: number(port)?,
        proto,
    })
}

/// The checks of `network`, `address` and `ports` against each other in
/// one file (the keys alone are checked as they are read).
pub(super) fn check_keys(
    network: &Network,
    address: Option<Ipv4Addr>,
    ports: &[PortMap],
    file: &Path,
) -> Result<(), ConfigError> {
    if address.is_some() && !matches!(network, Network::Bridge(names) if names.len() == 1) {
        return Err(field_error(
            file,
            "address",
            format!(
                "needs exactly one bridge network in \"network\", found {}",
                quoted(&network.to_string())
            ),
        ));
    }
    if !ports.is_empty() && !matches!(network, Network::Bridge(_)) {
        return Err(field_error(
            file,
            "ports",
            format!(
                "publishing ports needs a bridge network in \"network\", found {}",
                quoted(&network.to_string())
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::container_file::parse_container;
    use crate::config::daemon_file::parse_daemon;
    use crate::config::testing::{APP_FILE, field, parse_app};

    const DAEMON_FILE: &str = "/etc/berth/daemon.json";

    fn nets(networks: &str) -> Vec<NetworkDef> {
        let text = format!(r#"{{"networks": {networks}}}"#);
        parse_daemon(&text, Path::new(DAEMON_FILE))
            .unwrap()
            .networks
    }

    fn nets_err(networks: &str) -> (Option<String>, String) {
        let text = format!(r#"{{"networks": {networks}}}"#);
        let e = parse_daemon(&text, Path::new(DAEMON_FILE)).expect_err(networks);
        assert_eq!(e.file, Path::new(DAEMON_FILE));
        (e.field, e.reason)
    }

    use crate::config::testing::network_def as def;

    #[test]
    fn networks_parse_with_their_defaults() {
        assert!(nets("{}").is_empty());
        assert!(
            parse_daemon("{}", Path::new(DAEMON_FILE))
                .unwrap()
                .networks
                .is_empty()
        );
        let got = nets(
            r#"{"lan": {"bridge": "berth0", "subnet": "10.88.0.0/24"},
                "db": {"bridge": "br-db", "subnet": "172.20.0.0/16", "gateway": "172.20.255.254", "nat": false}}"#,
        );
        let mut db = def("db", "br-db", [172, 20, 0, 0], 16, [172, 20, 255, 254]);
        db.nat = false;
        assert_eq!(
            got,
            [def("lan", "berth0", [10, 88, 0, 0], 24, [10, 88, 0, 1]), db]
        );
        let lan = &got[0];
        assert_eq!(lan.broadcast(), Ipv4Addr::new(10, 88, 0, 255));
        assert_eq!(lan.cidr(), "10.88.0.0/24");
        assert_eq!(lan.mask(), 0xffff_ff00);
        assert!(lan.contains(Ipv4Addr::new(10, 88, 0, 255)));
        assert!(!lan.contains(Ipv4Addr::new(10, 88, 1, 0)));
        assert!(lan.is_assignable(Ipv4Addr::new(10, 88, 0, 2)));
        assert!(lan.is_assignable(Ipv4Addr::new(10, 88, 0, 254)));
        for bad in [
            [10, 88, 0, 0],
            [10, 88, 0, 1],
            [10, 88, 0, 255],
            [10, 89, 0, 2],
        ] {
            assert!(!lan.is_assignable(bad.into()), "{bad:?}");
        }
        // The smallest and largest subnets.
        let edge = nets(
            r#"{"p2p": {"bridge": "b30", "subnet": "192.168.7.4/30"},
                "big": {"bridge": "b8", "subnet": "10.0.0.0/8", "gateway": "10.255.255.254"}}"#,
        );
        assert_eq!(edge[0].gateway, Ipv4Addr::new(192, 168, 7, 5));
        assert_eq!(edge[0].broadcast(), Ipv4Addr::new(192, 168, 7, 7));
        assert_eq!(edge[1].broadcast(), Ipv4Addr::new(10, 255, 255, 255));
    }

    #[test]
    fn every_bad_network_names_the_file_and_field() {
        let ok = r#""bridge": "b0", "subnet": "10.88.0.0/24""#;
        let within = |body: &str| format!(r#"{{"lan": {{{body}}}}}"#);
        let one = |body: &str| nets_err(&within(body));
        let cases: Vec<(String, &str, &str)> = vec![
            (
                String::from("[]"),
                "networks",
                "expected an object of network name to definition, found an array",
            ),
            (
                String::from(r#"{"lan": "10.88.0.0/24"}"#),
                "networks.lan",
                "expected an object, found a string",
            ),
            (
                format!(r#"{{"none": {{{ok}}}}}"#),
                "networks.none",
                "network name \"none\" is reserved (\"none\", \"host\" and \"container:NAME\" mean something else)",
            ),
            (
                format!(r#"{{"host": {{{ok}}}}}"#),
                "networks.host",
                "network name \"host\" is reserved (\"none\", \"host\" and \"container:NAME\" mean something else)",
            ),
            (
                format!(r#"{{"container:x": {{{ok}}}}}"#),
                "networks.container:x",
                "network name \"container:x\" is reserved (\"none\", \"host\" and \"container:NAME\" mean something else)",
            ),
            (
                format!(r#"{{"my lan": {{{ok}}}}}"#),
                "networks.my lan",
                "network name \"my lan\" may only contain A-Z a-z 0-9 _ . -",
            ),
            (
                within(r#""subnet": "10.88.0.0/24""#),
                "networks.lan.bridge",
                "required key is missing",
            ),
            (
                within(r#""bridge": "b0""#),
                "networks.lan.subnet",
                "required key is missing",
            ),
            (
                within(&format!(r#"{ok}, "Subnet": "x""#)),
                "networks.lan.Subnet",
                "unknown key",
            ),
            (
                within(&format!(r#"{ok}, "ipv6": {{"subnet": "fd00::/64"}}"#)),
                "networks.lan.ipv6",
                "IPv6 is not supported: networks are IPv4 only for now",
            ),
            (
                within(&format!(r#"{ok}, "nat": "yes""#)),
                "networks.lan.nat",
                "expected a boolean, found a string",
            ),
            (
                within(r#""bridge": "", "subnet": "10.88.0.0/24""#),
                "networks.lan.bridge",
                "an interface name is 1 to 15 bytes, found \"\"",
            ),
            (
                within(r#""bridge": "a-very-long-name", "subnet": "10.88.0.0/24""#),
                "networks.lan.bridge",
                "an interface name is 1 to 15 bytes, found \"a-very-long-name\"",
            ),
            (
                within(r#""bridge": "bth0123abcd", "subnet": "10.88.0.0/24""#),
                "networks.lan.bridge",
                "\"bth0123abcd\" has the form of berth's own veth ends (bth and 8 hex digits)",
            ),
            (
                within(r#""bridge": 7, "subnet": "10.88.0.0/24""#),
                "networks.lan.bridge",
                "expected a string, found a number",
            ),
            (
                within(r#""bridge": "b0", "subnet": "10.88.0.0""#),
                "networks.lan.subnet",
                "expected an IPv4 subnet like \"10.88.0.0/24\", found \"10.88.0.0\"",
            ),
            (
                within(r#""bridge": "b0", "subnet": "10.88.0/24""#),
                "networks.lan.subnet",
                "expected an IPv4 subnet like \"10.88.0.0/24\", found \"10.88.0/24\"",
            ),
            (
                within(r#""bridge": "b0", "subnet": "010.88.0.0/24""#),
                "networks.lan.subnet",
                "expected an IPv4 subnet like \"10.88.0.0/24\", found \"010.88.0.0/24\"",
            ),
            (
                within(r#""bridge": "b0", "subnet": "10.88.0.0/+8""#),
                "networks.lan.subnet",
                "expected an IPv4 subnet like \"10.88.0.0/24\", found \"10.88.0.0/+8\"",
            ),
            (
                within(r#""bridge": "b0", "subnet": "10.88.0.0/31""#),
                "networks.lan.subnet",
                "the prefix length must be from 8 to 30, found /31",
            ),
            (
                within(r#""bridge": "b0", "subnet": "10.0.0.0/7""#),
                "networks.lan.subnet",
                "the prefix length must be from 8 to 30, found /7",
            ),
            (
                within(r#""bridge": "b0", "subnet": "10.88.0.1/24""#),
                "networks.lan.subnet",
                "10.88.0.1/24 has host bits set: the network address would be 10.88.0.0/24",
            ),
            (
                within(r#""bridge": "b0", "subnet": "127.1.0.0/16""#),
                "networks.lan.subnet",
                "127.1.0.0/16 overlaps the loopback block 127.0.0.0/8",
            ),
            (
                within(r#""bridge": "b0", "subnet": "169.254.0.0/24""#),
                "networks.lan.subnet",
                "169.254.0.0/24 overlaps the link-local block 169.254.0.0/16",
            ),
            (
                within(r#""bridge": "b0", "subnet": "239.0.0.0/8""#),
                "networks.lan.subnet",
                "239.0.0.0/8 overlaps the multicast and reserved block 224.0.0.0/3",
            ),
            (
                within(r#""bridge": "b0", "subnet": "0.0.0.0/8""#),
                "networks.lan.subnet",
                "0.0.0.0/8 overlaps the \"this network\" block 0.0.0.0/8",
            ),
            (
                within(&format!(r#"{ok}, "gateway": "10.88.1.1""#)),
                "networks.lan.gateway",
                "10.88.1.1 is outside 10.88.0.0/24",
            ),
            (
                within(&format!(r#"{ok}, "gateway": "10.88.0.0""#)),
                "networks.lan.gateway",
                "10.88.0.0 is the network address of 10.88.0.0/24",
            ),
            (
                within(&format!(r#"{ok}, "gateway": "10.88.0.255""#)),
                "networks.lan.gateway",
                "10.88.0.255 is the broadcast address of 10.88.0.0/24",
            ),
            (
                within(&format!(r#"{ok}, "gateway": "10.88.0.1/24""#)),
                "networks.lan.gateway",
                "expected an IPv4 address, found \"10.88.0.1/24\"",
            ),
            (
                String::from(
                    r#"{"lan": {"bridge": "b0", "subnet": "10.88.0.0/24"},
                        "db": {"bridge": "b0", "subnet": "10.89.0.0/24"}}"#,
                ),
                "networks.db.bridge",
                "bridge \"b0\" is also network lan's",
            ),
            (
                String::from(
                    r#"{"lan": {"bridge": "b0", "subnet": "10.88.4.0/24"},
                        "wide": {"bridge": "b1", "subnet": "10.88.0.0/16"}}"#,
                ),
                "networks.wide.subnet",
                "10.88.0.0/16 overlaps 10.88.4.0/24 of network lan",
            ),
        ];
        for (networks, f, reason) in cases {
            assert_eq!(nets_err(&networks), field(f, reason), "{networks}");
        }
        for bad in ["a/b", "a b", "a:b", "a\\tb", ".", ".."] {
            let (f, reason) = one(&format!(r#""bridge": "{bad}", "subnet": "10.88.0.0/24""#));
            assert_eq!(f.as_deref(), Some("networks.lan.bridge"), "{bad}");
            assert!(reason.contains("not a valid interface name"), "{reason}");
        }
        let many: Vec<String> = (0..=MAX_NETWORKS)
            .map(|i| format!(r#""n{i}": {{"bridge": "b{i}", "subnet": "10.{i}.0.0/16"}}"#))
            .collect();
        assert_eq!(
            nets_err(&format!("{{{}}}", many.join(","))),
            field("networks", "has more than 64 entries")
        );
        let e = parse_daemon(
            r#"{"networks": {"lan": {"bridge": "b0", "subnet": "10.88.0.0/33"}}}"#,
            Path::new(DAEMON_FILE),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "/etc/berth/daemon.json: field \"networks.lan.subnet\": the prefix length must be from 8 to 30, found /33"
        );
    }

    fn app(extra: &str) -> crate::config::ContainerSpec {
        parse_app(extra).unwrap()
    }

    fn app_err(extra: &str) -> (Option<String>, String) {
        let e = parse_app(extra).expect_err(extra);
        assert_eq!(e.file, Path::new(APP_FILE));
        (e.field, e.reason)
    }

    #[test]
    fn a_container_joins_networks_with_an_address_and_ports() {
        let s = |v: &str| app(&format!(r#","network": {v}"#)).network;
        assert_eq!(s(r#""none""#), Network::None);
        assert_eq!(s(r#""host""#), Network::Host);
        assert_eq!(s(r#""lan""#), Network::Bridge(vec!["lan".into()]));
        assert_eq!(
            s(r#"["lan", "db"]"#),
            Network::Bridge(vec!["lan".into(), "db".into()])
        );
        assert_eq!(s(r#""container:db""#), Network::Container("db".into()));
        assert_eq!(app("").network, Network::None);
        assert_eq!(app("").address, None);
        assert!(app("").ports.is_empty());
        assert_eq!(
            Network::Bridge(vec!["a".into(), "b".into()]).to_string(),
            "a, b"
        );
        assert_eq!(Network::Container("db".into()).to_string(), "container:db");

        let full = app(r#","network": "lan", "address": "10.88.0.7",
               "ports": ["8080:80", "127.0.0.1:5353:53/udp", "9000:9000/tcp", "0.0.0.0:53:53/udp", "127.0.0.1:53:53"]"#);
        assert_eq!(full.address, Some(Ipv4Addr::new(10, 88, 0, 7)));
        let pm = |host_ip: Option<[u8; 4]>, host_port, port, proto| PortMap {
            host_ip: host_ip.map(Ipv4Addr::from),
            host_port,
            port,
            proto,
        };
        assert_eq!(
            full.ports,
            [
                pm(None, 8080, 80, Proto::Tcp),
                pm(Some([127, 0, 0, 1]), 5353, 53, Proto::Udp),
                pm(None, 9000, 9000, Proto::Tcp),
                pm(None, 53, 53, Proto::Udp),
                pm(Some([127, 0, 0, 1]), 53, 53, Proto::Tcp),
            ]
        );
        assert_eq!(Proto::Udp.as_str(), "udp");
        assert_eq!(full.ports[1].host_side(), "127.0.0.1:5353/udp");
        // The canonical text parses back to the same definition.
        let again = parse_container("app", &full.canonical, Path::new(APP_FILE));
        assert_eq!(again.as_ref(), Ok(&full));
        // Several networks may publish ports; net.* sysctls are fine off
        // the host's network.
        let multi = app(
            r#","network": ["lan", "db"], "ports": ["1:1", "65535:65535"],
               "sysctl": {"net.ipv4.ip_unprivileged_port_start": "0"}"#,
        );
        assert_eq!(multi.ports.len(), 2);
    }

    #[test]
    fn every_bad_container_network_key_names_the_field() {
        let cases: &[(&str, &str, &str)] = &[
            (
                r#","network": 1"#,
                "network",
                "expected a network name, a list of them, \"none\", \"host\" or \"container:NAME\", found a number",
            ),
            (
                r#","network": "my lan""#,
                "network",
                "expected \"none\", \"host\", \"container:NAME\" or the name of a network, found \"my lan\"",
            ),
            (
                r#","network": []"#,
                "network",
                "a list of networks must not be empty (use \"none\" for no network)",
            ),
            (
                r#","network": ["lan", "lan"]"#,
                "network[1]",
                "network \"lan\" is named twice",
            ),
            (
                r#","network": ["lan", "host"]"#,
                "network[1]",
                "expected the name of a network, found \"host\" (\"none\", \"host\" and \"container:NAME\" stand alone)",
            ),
            (
                r#","network": ["container:db"]"#,
                "network[0]",
                "expected the name of a network, found \"container:db\" (\"none\", \"host\" and \"container:NAME\" stand alone)",
            ),
            (
                r#","network": ["lan", 2]"#,
                "network[1]",
                "expected a string, found a number",
            ),
            (
                r#","network": "container:""#,
                "network",
                "container:NAME needs a container name must not be empty",
            ),
            (
                r#","network": "container:../x""#,
                "network",
                "container:NAME needs a container name \"../x\" may only contain A-Z a-z 0-9 _ . -",
            ),
            (
                r#","network": "container:app""#,
                "network",
                "app cannot share its own network namespace",
            ),
            (
                r#","address": "10.88.0.7""#,
                "address",
                "needs exactly one bridge network in \"network\", found \"none\"",
            ),
            (
                r#","network": "host", "address": "10.88.0.7""#,
                "address",
                "needs exactly one bridge network in \"network\", found \"host\"",
            ),
            (
                r#","network": ["a", "b"], "address": "10.88.0.7""#,
                "address",
                "needs exactly one bridge network in \"network\", found \"a, b\"",
            ),
            (
                r#","network": "container:db", "address": "10.88.0.7""#,
                "address",
                "needs exactly one bridge network in \"network\", found \"container:db\"",
            ),
            (
                r#","network": "lan", "address": "10.88.0""#,
                "address",
                "expected an IPv4 address like \"10.88.0.7\", found \"10.88.0\"",
            ),
            (
                r#","network": "lan", "address": 7"#,
                "address",
                "expected a string, found a number",
            ),
            (
                r#","ports": ["8080:80"]"#,
                "ports",
                "publishing ports needs a bridge network in \"network\", found \"none\"",
            ),
            (
                r#","network": "host", "ports": ["8080:80"]"#,
                "ports",
                "publishing ports needs a bridge network in \"network\", found \"host\"",
            ),
            (
                r#","network": "container:db", "ports": ["8080:80"]"#,
                "ports",
                "publishing ports needs a bridge network in \"network\", found \"container:db\"",
            ),
            (
                r#","network": "lan", "ports": "8080:80""#,
                "ports",
                "expected an array, found a string",
            ),
            (
                r#","network": "lan", "ports": [8080]"#,
                "ports[0]",
                "expected a string, found a number",
            ),
            (
                r#","network": "lan", "ports": ["80"]"#,
                "ports[0]",
                "expected \"[HOST-IP:]HOST-PORT:PORT[/tcp|/udp]\" like \"8080:80\", found \"80\"",
            ),
            (
                r#","network": "lan", "ports": ["1:2:3:4"]"#,
                "ports[0]",
                "expected \"[HOST-IP:]HOST-PORT:PORT[/tcp|/udp]\" like \"8080:80\", found \"1:2:3:4\"",
            ),
            (
                r#","network": "lan", "ports": ["http:80"]"#,
                "ports[0]",
                "expected \"[HOST-IP:]HOST-PORT:PORT[/tcp|/udp]\" like \"8080:80\", found \"http:80\"",
            ),
            (
                r#","network": "lan", "ports": ["8080:-80"]"#,
                "ports[0]",
                "expected \"[HOST-IP:]HOST-PORT:PORT[/tcp|/udp]\" like \"8080:80\", found \"8080:-80\"",
            ),
            (
                r#","network": "lan", "ports": ["0:80"]"#,
                "ports[0]",
                "ports must be from 1 to 65535, found 0 in \"0:80\"",
            ),
            (
                r#","network": "lan", "ports": ["8080:65536"]"#,
                "ports[0]",
                "ports must be from 1 to 65535, found 65536 in \"8080:65536\"",
            ),
            (
                r#","network": "lan", "ports": ["8080:80/sctp"]"#,
                "ports[0]",
                "the protocol must be tcp or udp, found \"sctp\" in \"8080:80/sctp\"",
            ),
            (
                r#","network": "lan", "ports": ["8080:80/TCP"]"#,
                "ports[0]",
                "the protocol must be tcp or udp, found \"TCP\" in \"8080:80/TCP\"",
            ),
            (
                r#","network": "lan", "ports": ["localhost:8080:80"]"#,
                "ports[0]",
                "\"localhost\" is not an IPv4 address (in \"localhost:8080:80\")",
            ),
            (
                r#","network": "lan", "ports": ["224.0.0.1:8080:80"]"#,
                "ports[0]",
                "the host address 224.0.0.1 is not a unicast address (in \"224.0.0.1:8080:80\")",
            ),
            (
                r#","network": "lan", "ports": ["8080:80", "8080:81/tcp"]"#,
                "ports[1]",
                "host port 8080/tcp is already published by ports[0]",
            ),
            (
                r#","network": "lan", "ports": ["127.0.0.1:8080:80", "8080:81"]"#,
                "ports[1]",
                "host port 8080/tcp is already published by ports[0]",
            ),
            (
                r#","network": "lan", "ports": ["8080:80", "0.0.0.0:8080:81"]"#,
                "ports[1]",
                "host port 8080/tcp is already published by ports[0]",
            ),
            (
                r#","network": "lan", "ports": ["53:53/udp", "127.0.0.1:53:54/udp"]"#,
                "ports[1]",
                "host port 127.0.0.1:53/udp is already published by ports[0]",
            ),
        ];
        for &(extra, f, reason) in cases {
            assert_eq!(app_err(extra), field(f, reason), "{extra}");
        }
        // Different protocols or different host addresses do not clash.
        app(
            r#","network": "lan", "ports": ["53:53/udp", "53:53/tcp", "127.0.0.1:80:80", "127.0.0.2:80:80"]"#,
        );
    }

    #[test]
    fn sharing_a_namespace_is_a_dependency_not_written_into_depends_on() {
        let s = app(r#","network": "container:db""#);
        assert_eq!(s.depends_on.len(), 1);
        assert_eq!(s.depends_on[0].name, "db");
        assert_eq!(s.depends_on[0].condition, super::super::Condition::Running);
        assert!(!s.canonical.contains("depends-on"), "{}", s.canonical);
        let shown = crate::config::effective(&s);
        assert!(shown.contains(r#""depends-on":[]"#), "{shown}");
        // What the file says of it wins.
        let s = app(r#","network": "container:db", "depends-on": {"db": "healthy"}"#);
        assert_eq!(s.depends_on.len(), 1);
        assert_eq!(s.depends_on[0].condition, super::super::Condition::Healthy);
        let again = parse_container("app", &s.canonical, Path::new(APP_FILE)).unwrap();
        assert_eq!(again, s);
    }

    #[test]
    fn network_address_and_ports_change_the_hash() {
        let base = app(r#","network": "lan", "address": "10.88.0.7", "ports": ["8080:80"]"#);
        for other in [
            r#","network": "db", "address": "10.88.0.7", "ports": ["8080:80"]"#,
            r#","network": "lan", "address": "10.88.0.8", "ports": ["8080:80"]"#,
            r#","network": "lan", "ports": ["8080:80"]"#,
            r#","network": "lan", "address": "10.88.0.7", "ports": ["8081:80"]"#,
            r#","network": "lan", "address": "10.88.0.7", "ports": ["8080:80/udp"]"#,
            r#","network": "lan", "address": "10.88.0.7""#,
        ] {
            assert_ne!(app(other).hash, base.hash, "{other}");
        }
        let same = app(r#","ports": ["8080:80"], "address": "10.88.0.7", "network": "lan""#);
        assert_eq!(same.hash, base.hash);
    }
}
