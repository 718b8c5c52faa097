//! Bridge networks: daemon.json's `networks` (name, bridge, IPv4 subnet,
//! gateway, NAT) and a container file's `network`, `address` and `ports`,
//! each checked alone when read; [`check_networks`] then checks the
//! containers directory against the networks and itself (names defined,
//! fixed addresses inside their subnet and unique, published host ports
//! taken once, `container:NAME` naming a container with a namespace of its
//! own).

use std::collections::BTreeSet;
use std::fmt;
use std::net::Ipv4Addr;
use std::path::Path;

use super::fields::{
    field_error, get_array, get_bool, get_str, members, printable, quoted, unknown_key,
    validate_name, wrong_type,
};
use super::load::ContainerEntry;
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

/// Checks every definition's network keys against daemon.json's
/// `networks` and against the other definitions. A definition that fails
/// becomes an error of its own file:
/// - `network`: a network that is not defined; `container:NAME` where no
///   file NAME.json exists or NAME itself shares another's namespace or
///   the host's;
/// - `address`: outside its network's subnet, or its network, broadcast
///   or gateway address; the fixed address of another definition on the
///   same network;
/// - `ports`: a host port another definition publishes (same protocol and
///   port, overlapping host addresses).
///
/// Of two definitions that claim the same address or port, an incumbent
/// (a container the daemon runs already) keeps it; between equals the
/// first by name does.
pub fn check_networks(
    dir: &Path,
    networks: &[NetworkDef],
    entries: &mut [ContainerEntry],
    incumbents: &BTreeSet<String>,
) {
    let file_of = |name: &str| dir.join(format!("{name}.json"));
    let defined: BTreeSet<String> = entries.iter().map(|(n, _)| n.clone()).collect();
    let network_of: Vec<(String, Option<Network>)> = entries
        .iter()
        .map(|(n, r)| (n.clone(), r.as_ref().ok().map(|s| s.network.clone())))
        .collect();
    let known = if networks.is_empty() {
        "daemon.json defines no networks".to_string()
    } else {
        let names: Vec<&str> = networks.iter().map(|d| d.name.as_str()).collect();
        format!("defined: {}", names.join(", "))
    };
    // Each file alone against the networks and the names.
    for (name, result) in entries.iter_mut() {
        let Ok(spec) = result.as_ref() else {
            continue;
        };
        let file = file_of(name);
        let failure = match &spec.network {
            Network::Bridge(names) => names
                .iter()
                .find(|n| !networks.iter().any(|d| d.name == **n))
                .map(|n| {
                    (
                        "network",
                        format!("no network named {} is defined ({known})", quoted(n)),
                    )
                })
                .or_else(|| {
                    let addr = spec.address?;
                    let def = networks.iter().find(|d| d.name == names[0])?;
                    def.check_assignable(addr).err().map(|r| ("address", r))
                }),
            Network::Container(owner) if !defined.contains(owner) => {
                Some(("network", format!("no container named {owner} is defined")))
            }
            Network::Container(owner) => match network_of.iter().find(|(n, _)| n == owner) {
                Some((_, Some(Network::Container(theirs)))) => Some((
                    "network",
                    format!(
                        "{owner} itself shares the network namespace of {theirs}: name container:{theirs}"
                    ),
                )),
                Some((_, Some(Network::Host))) => Some((
                    "network",
                    format!("{owner} uses the host's network: use \"network\": \"host\""),
                )),
                _ => None,
            },
            Network::None | Network::Host => None,
        };
        if let Some((field, reason)) = failure {
            *result = Err(field_error(&file, field, reason));
        }
    }
    // Then the claims on shared things, incumbents first, then by name.
    let mut order: Vec<usize> = (0..entries.len()).collect();
    order.sort_by_key(|&i| (!incumbents.contains(&entries[i].0), entries[i].0.clone()));
    let mut addresses: Vec<(&str, Ipv4Addr, String)> = Vec::new();
    let mut published: Vec<(PortMap, String)> = Vec::new();
    let mut failures: Vec<(usize, ConfigError)> = Vec::new();
    for &i in &order {
        let (name, result) = &entries[i];
        let Ok(spec) = result.as_ref() else {
            continue;
        };
        let file = file_of(name);
        if let (Some(addr), Network::Bridge(names)) = (spec.address, &spec.network) {
            let net = names[0].as_str();
            if let Some((_, _, holder)) = addresses.iter().find(|(n, a, _)| *n == net && *a == addr)
            {
                let reason = format!(
                    "{addr} on network {net} in {} is already the address of {holder} ({})",
                    file.display(),
                    file_of(holder).display()
                );
                failures.push((i, field_error(&file, "address", reason)));
                continue;
            }
        }
        if let Some((port, holder)) = spec.ports.iter().find_map(|p| {
            published
                .iter()
                .find(|(q, _)| q.clashes_with(p))
                .map(|(_, holder)| (p, holder))
        }) {
            let reason = format!(
                "host port {} in {} is already published by {holder} ({})",
                port.host_side(),
                file.display(),
                file_of(holder).display()
            );
            failures.push((i, field_error(&file, "ports", reason)));
            continue;
        }
        if let (Some(addr), Network::Bridge(names)) = (spec.address, &spec.network) {
            addresses.push((names[0].as_str(), addr, name.clone()));
        }
        published.extend(spec.ports.iter().map(|p| (*p, name.clone())));
    }
    for (i, e) in failures {
        entries[i].1 = Err(e);
    }
}
