//! nf_tables spoken over NETLINK_NETFILTER: tables, base chains and rules
//! built from expressions (the kernel's own instructions: load a header
//! field into a register, compare, mask, translate addresses), sent as one
//! nfnetlink batch, and read back by dumps.
//!
//! Every message is an nfgenmsg (family, version, resource id) and
//! attributes. nf_tables' numbers (register numbers, offsets, lengths,
//! hook numbers, priorities, verdicts) are 32-bit big-endian; the data a
//! rule compares is in the byte order of what is compared: packet fields
//! in network order, the conntrack state and status words and the fib
//! address type in host order, interface names as 16 NUL-padded bytes.

use std::io;
use std::net::Ipv4Addr;

use crate::sys::netlink::{self, Message, NLM_F_APPEND, NLM_F_CREATE, Reply, Socket};

pub const NFPROTO_IPV4: u8 = 2;
/// The multicast group of nf_tables' change notifications.
pub const NFNLGRP_NFTABLES: u32 = 7;
const NFNL_SUBSYS_NFTABLES: u16 = 10;

pub const NFT_MSG_NEWTABLE: u8 = 0;
pub const NFT_MSG_GETTABLE: u8 = 1;
pub const NFT_MSG_DELTABLE: u8 = 2;
pub const NFT_MSG_NEWCHAIN: u8 = 3;
pub const NFT_MSG_GETCHAIN: u8 = 4;
pub const NFT_MSG_DELCHAIN: u8 = 5;
pub const NFT_MSG_NEWRULE: u8 = 6;
pub const NFT_MSG_GETRULE: u8 = 7;
pub const NFT_MSG_DELRULE: u8 = 8;
/// Ends the notifications of one committed transaction.
pub const NFT_MSG_NEWGEN: u8 = 15;
pub const NFT_MSG_DESTROYTABLE: u8 = 26;
pub const NFT_MSG_DESTROYCHAIN: u8 = 27;
pub const NFT_MSG_DESTROYRULE: u8 = 28;

// Attributes of a table, a chain and its hook, a rule, an expression.
const NFTA_TABLE_NAME: u16 = 1;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_HOOK: u16 = 4;
const NFTA_CHAIN_POLICY: u16 = 5;
const NFTA_CHAIN_TYPE: u16 = 7;
const NFTA_HOOK_HOOKNUM: u16 = 1;
const NFTA_HOOK_PRIORITY: u16 = 2;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;

/// The register verdicts are written to, and the first 16-byte data one
/// (what nft calls "reg 1").
pub const REG_VERDICT: u32 = 0;
pub const REG_1: u32 = 1;
pub const REG_2: u32 = 2;

pub const NF_DROP: i32 = 0;
pub const NF_ACCEPT: i32 = 1;

/// Where a payload expression reads (nft_payload_bases).
pub const BASE_NETWORK: u32 = 1;
pub const BASE_TRANSPORT: u32 = 2;

pub const CMP_EQ: u32 = 0;
pub const CMP_NEQ: u32 = 1;

/// Meta keys (nft_meta_keys).
pub const META_IIFNAME: u32 = 6;
pub const META_OIFNAME: u32 = 7;
pub const META_L4PROTO: u32 = 16;

/// Conntrack keys (nft_ct_keys).
pub const CT_STATE: u32 = 0;
pub const CT_STATUS: u32 = 2;
/// ct state bits: 1 << (ctinfo + 1) for IP_CT_ESTABLISHED and
/// IP_CT_RELATED.
pub const CT_STATE_ESTABLISHED: u32 = 1 << 1;
pub const CT_STATE_RELATED: u32 = 1 << 2;
/// ct status bit IPS_DST_NAT.
pub const CT_STATUS_DNAT: u32 = 1 << 5;

/// fib: the type of the route to the destination address.
pub const FIB_RESULT_ADDRTYPE: u32 = 3;
pub const FIB_F_DADDR: u32 = 2;
pub const RTN_LOCAL: u32 = 2;

pub const NAT_DNAT: u32 = 1;

/// Netfilter hooks of the ip family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    Prerouting = 0,
    Forward = 2,
    Output = 3,
    Postrouting = 4,
}

/// A base chain: where it hooks, its type ("nat", "filter"), its priority
/// and its policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    pub name: String,
    pub kind: String,
    pub hook: u32,
    pub priority: i32,
    pub policy: i32,
}

/// One expression, with the attributes berth sets (a dump may carry more:
/// they are not kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    Payload {
        dreg: u32,
        base: u32,
        offset: u32,
        len: u32,
    },
    Cmp {
        sreg: u32,
        op: u32,
        data: Vec<u8>,
    },
    /// dreg = (sreg & mask) ^ xor
    Bitwise {
        sreg: u32,
        dreg: u32,
        mask: Vec<u8>,
        xor: Vec<u8>,
    },
    Meta {
        dreg: u32,
        key: u32,
    },
    Ct {
        dreg: u32,
        key: u32,
    },
    Fib {
        dreg: u32,
        result: u32,
        flags: u32,
    },
    /// A constant into a data register.
    Immediate {
        dreg: u32,
        data: Vec<u8>,
    },
    /// A verdict (accept, drop).
    Verdict(i32),
    /// Address and port from registers.
    Nat {
        kind: u32,
        family: u32,
        addr: u32,
        proto: u32,
    },
    Masq,
    /// An expression berth does not write, by name.
    Other(String),
}

const PAYLOAD_DREG: u16 = 1;
const PAYLOAD_BASE: u16 = 2;
const PAYLOAD_OFFSET: u16 = 3;
const PAYLOAD_LEN: u16 = 4;
const CMP_SREG: u16 = 1;
const CMP_OP: u16 = 2;
const CMP_DATA: u16 = 3;
const BITWISE_SREG: u16 = 1;
const BITWISE_DREG: u16 = 2;
const BITWISE_LEN: u16 = 3;
const BITWISE_MASK: u16 = 4;
const BITWISE_XOR: u16 = 5;
const META_DREG: u16 = 1;
const META_KEY: u16 = 2;
const CT_DREG: u16 = 1;
const CT_KEY: u16 = 2;
const FIB_DREG: u16 = 1;
const FIB_RESULT: u16 = 2;
const FIB_FLAGS: u16 = 3;
const IMMEDIATE_DREG: u16 = 1;
const IMMEDIATE_DATA: u16 = 2;
const NAT_TYPE: u16 = 1;
const NAT_FAMILY: u16 = 2;
const NAT_REG_ADDR_MIN: u16 = 3;
const NAT_REG_PROTO_MIN: u16 = 5;

impl Expr {
    fn name(&self) -> &str {
        match self {
            Expr::Payload { .. } => "payload",
            Expr::Cmp { .. } => "cmp",
            Expr::Bitwise { .. } => "bitwise",
            Expr::Meta { .. } => "meta",
            Expr::Ct { .. } => "ct",
            Expr::Fib { .. } => "fib",
            Expr::Immediate { .. } | Expr::Verdict(_) => "immediate",
            Expr::Nat { .. } => "nat",
            Expr::Masq => "masq",
            Expr::Other(name) => name,
        }
    }

    /// Appends this expression as one element of a rule's expression list.
    fn encode(&self, m: &mut Message) {
        let elem = m.nest(NFTA_LIST_ELEM);
        m.attr_str(NFTA_EXPR_NAME, self.name());
        let data = m.nest(NFTA_EXPR_DATA);
        match self {
            Expr::Payload {
                dreg,
                base,
                offset,
                len,
            } => {
                m.attr_be32(PAYLOAD_DREG, *dreg)
                    .attr_be32(PAYLOAD_BASE, *base)
                    .attr_be32(PAYLOAD_OFFSET, *offset)
                    .attr_be32(PAYLOAD_LEN, *len);
            }
            Expr::Cmp { sreg, op, data } => {
                m.attr_be32(CMP_SREG, *sreg).attr_be32(CMP_OP, *op);
                value(m, CMP_DATA, data);
            }
            Expr::Bitwise {
                sreg,
                dreg,
                mask,
                xor,
            } => {
                m.attr_be32(BITWISE_SREG, *sreg)
                    .attr_be32(BITWISE_DREG, *dreg)
                    .attr_be32(BITWISE_LEN, mask.len() as u32);
                value(m, BITWISE_MASK, mask);
                value(m, BITWISE_XOR, xor);
            }
            Expr::Meta { dreg, key } => {
                m.attr_be32(META_DREG, *dreg).attr_be32(META_KEY, *key);
            }
            Expr::Ct { dreg, key } => {
                m.attr_be32(CT_DREG, *dreg).attr_be32(CT_KEY, *key);
            }
            Expr::Fib {
                dreg,
                result,
                flags,
            } => {
                m.attr_be32(FIB_DREG, *dreg)
                    .attr_be32(FIB_RESULT, *result)
                    .attr_be32(FIB_FLAGS, *flags);
            }
            Expr::Immediate { dreg, data } => {
                m.attr_be32(IMMEDIATE_DREG, *dreg);
                value(m, IMMEDIATE_DATA, data);
            }
            Expr::Verdict(code) => {
                m.attr_be32(IMMEDIATE_DREG, REG_VERDICT);
                let outer = m.nest(IMMEDIATE_DATA);
                let verdict = m.nest(NFTA_DATA_VERDICT);
                m.attr_be32(NFTA_VERDICT_CODE, *code as u32);
                m.end(verdict);
                m.end(outer);
            }
            Expr::Nat {
                kind,
                family,
                addr,
                proto,
            } => {
                m.attr_be32(NAT_TYPE, *kind)
                    .attr_be32(NAT_FAMILY, *family)
                    .attr_be32(NAT_REG_ADDR_MIN, *addr)
                    .attr_be32(NAT_REG_PROTO_MIN, *proto);
            }
            Expr::Masq => {}
            Expr::Other(_) => {}
        }
        m.end(data);
        m.end(elem);
    }

    /// Reads one element of a dumped rule's expression list.
    fn decode(elem: &[u8]) -> Expr {
        let name = netlink::find(elem, NFTA_EXPR_NAME)
            .map(netlink::str_of)
            .unwrap_or_default();
        let data = netlink::find(elem, NFTA_EXPR_DATA).unwrap_or(&[]);
        let num = |kind| netlink::find(data, kind).and_then(be32).unwrap_or(0);
        let bytes = |kind| {
            netlink::find(data, kind)
                .and_then(|v| netlink::find(v, NFTA_DATA_VALUE))
                .map(<[u8]>::to_vec)
                .unwrap_or_default()
        };
        match name.as_str() {
            "payload" => Expr::Payload {
                dreg: num(PAYLOAD_DREG),
                base: num(PAYLOAD_BASE),
                offset: num(PAYLOAD_OFFSET),
                len: num(PAYLOAD_LEN),
            },
            "cmp" => Expr::Cmp {
                sreg: num(CMP_SREG),
                op: num(CMP_OP),
                data: bytes(CMP_DATA),
            },
            "bitwise" => Expr::Bitwise {
                sreg: num(BITWISE_SREG),
                dreg: num(BITWISE_DREG),
                mask: bytes(BITWISE_MASK),
                xor: bytes(BITWISE_XOR),
            },
            "meta" => Expr::Meta {
                dreg: num(META_DREG),
                key: num(META_KEY),
            },
            "ct" => Expr::Ct {
                dreg: num(CT_DREG),
                key: num(CT_KEY),
            },
            "fib" => Expr::Fib {
                dreg: num(FIB_DREG),
                result: num(FIB_RESULT),
                flags: num(FIB_FLAGS),
            },
            "immediate" if num(IMMEDIATE_DREG) == REG_VERDICT => {
                let code = netlink::find(data, IMMEDIATE_DATA)
                    .and_then(|v| netlink::find(v, NFTA_DATA_VERDICT))
                    .and_then(|v| netlink::find(v, NFTA_VERDICT_CODE))
                    .and_then(be32)
                    .unwrap_or(u32::MAX);
                Expr::Verdict(code as i32)
            }
            "immediate" => Expr::Immediate {
                dreg: num(IMMEDIATE_DREG),
                data: bytes(IMMEDIATE_DATA),
            },
            "nat" => Expr::Nat {
                kind: num(NAT_TYPE),
                family: num(NAT_FAMILY),
                addr: num(NAT_REG_ADDR_MIN),
                proto: num(NAT_REG_PROTO_MIN),
            },
            "masq" => Expr::Masq,
            _ => Expr::Other(name),
        }
    }
}

/// A nested data attribute holding one value.
fn value(m: &mut Message, kind: u16, data: &[u8]) {
    let n = m.nest(kind);
    m.attr(NFTA_DATA_VALUE, data);
    m.end(n);
}

fn be32(v: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(v.get(..4)?.try_into().ok()?))
}

/// An interface name as the kernel compares it: 16 bytes, NUL-padded.
fn ifname(name: &str) -> Vec<u8> {
    let mut data = name.as_bytes().to_vec();
    data.resize(libc::IFNAMSIZ, 0);
    data
}

/// A rule: its expressions and the same in nft's syntax (for messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub chain: String,
    pub exprs: Vec<Expr>,
    pub text: String,
}

/// Builds a rule a match at a time, each one both as expressions and as
/// nft's words.
impl Rule {
    pub fn new(chain: &str) -> Rule {
        Rule {
            chain: chain.to_string(),
            exprs: Vec::new(),
            text: String::new(),
        }
    }

    fn words(&mut self, text: &str) {
        if !self.text.is_empty() {
            self.text.push(' ');
        }
        self.text.push_str(text);
    }

    fn ip_field(mut self, offset: u32, field: &str, addr: Ipv4Addr, prefix: u8) -> Rule {
        self.exprs.push(Expr::Payload {
            dreg: REG_1,
            base: BASE_NETWORK,
            offset,
            len: 4,
        });
        if prefix < 32 {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            self.exprs.push(Expr::Bitwise {
                sreg: REG_1,
                dreg: REG_1,
                mask: mask.to_be_bytes().to_vec(),
                xor: vec![0; 4],
            });
            let net = Ipv4Addr::from(u32::from(addr) & mask);
            self.exprs.push(cmp(CMP_EQ, &net.octets()));
            self.words(&format!("ip {field} {net}/{prefix}"));
        } else {
            self.exprs.push(cmp(CMP_EQ, &addr.octets()));
            self.words(&format!("ip {field} {addr}"));
        }
        self
    }

    /// `ip saddr ADDR/PREFIX`
    pub fn saddr(self, addr: Ipv4Addr, prefix: u8) -> Rule {
        self.ip_field(12, "saddr", addr, prefix)
    }

    /// `ip daddr ADDR`
    pub fn daddr(self, addr: Ipv4Addr) -> Rule {
        self.ip_field(16, "daddr", addr, 32)
    }

    /// `ip daddr ADDR/PREFIX`
    pub fn daddr_in(self, addr: Ipv4Addr, prefix: u8) -> Rule {
        self.ip_field(16, "daddr", addr, prefix)
    }

    fn ifname_is(mut self, key: u32, word: &str, name: &str, equal: bool) -> Rule {
        self.exprs.push(Expr::Meta { dreg: REG_1, key });
        self.exprs
            .push(cmp(if equal { CMP_EQ } else { CMP_NEQ }, &ifname(name)));
        let op = if equal { "" } else { "!= " };
        self.words(&format!("{word} {op}\"{name}\""));
        self
    }

    /// `iifname NAME`
    pub fn iifname(self, name: &str) -> Rule {
        self.ifname_is(META_IIFNAME, "iifname", name, true)
    }

    /// `oifname NAME` (`equal`) or `oifname != NAME`
    pub fn oifname(self, name: &str, equal: bool) -> Rule {
        self.ifname_is(META_OIFNAME, "oifname", name, equal)
    }

    /// `meta l4proto PROTO th dport PORT`
    pub fn l4_dport(mut self, proto: u8, word: &str, port: u16) -> Rule {
        self.exprs.push(Expr::Meta {
            dreg: REG_1,
            key: META_L4PROTO,
        });
        self.exprs.push(cmp(CMP_EQ, &[proto]));
        self.exprs.push(Expr::Payload {
            dreg: REG_1,
            base: BASE_TRANSPORT,
            offset: 2,
            len: 2,
        });
        self.exprs.push(cmp(CMP_EQ, &port.to_be_bytes()));
        self.words(&format!("meta l4proto {word} th dport {port}"));
        self
    }

    /// `fib daddr type local`
    pub fn daddr_local(mut self) -> Rule {
        self.exprs.push(Expr::Fib {
            dreg: REG_1,
            result: FIB_RESULT_ADDRTYPE,
            flags: FIB_F_DADDR,
        });
        self.exprs.push(cmp(CMP_EQ, &RTN_LOCAL.to_ne_bytes()));
        self.words("fib daddr type local");
        self
    }

    /// Any of `bits` set in a conntrack word (`ct state`, `ct status`).
    fn ct_any(mut self, key: u32, bits: u32, text: &str) -> Rule {
        self.exprs.push(Expr::Ct { dreg: REG_1, key });
        self.exprs.push(Expr::Bitwise {
            sreg: REG_1,
            dreg: REG_1,
            mask: bits.to_ne_bytes().to_vec(),
            xor: vec![0; 4],
        });
        self.exprs.push(cmp(CMP_NEQ, &[0; 4]));
        self.words(text);
        self
    }

    /// `ct state established,related`
    pub fn established(self) -> Rule {
        self.ct_any(
            CT_STATE,
            CT_STATE_ESTABLISHED | CT_STATE_RELATED,
            "ct state established,related",
        )
    }

    /// `ct status dnat`
    pub fn dnatted(self) -> Rule {
        self.ct_any(CT_STATUS, CT_STATUS_DNAT, "ct status dnat")
    }

    pub fn accept(mut self) -> Rule {
        self.exprs.push(Expr::Verdict(NF_ACCEPT));
        self.words("accept");
        self
    }

    pub fn drop(mut self) -> Rule {
        self.exprs.push(Expr::Verdict(NF_DROP));
        self.words("drop");
        self
    }

    pub fn masquerade(mut self) -> Rule {
        self.exprs.push(Expr::Masq);
        self.words("masquerade");
        self
    }

    /// `dnat to ADDR:PORT`
    pub fn dnat(mut self, addr: Ipv4Addr, port: u16) -> Rule {
        self.exprs.push(Expr::Immediate {
            dreg: REG_1,
            data: addr.octets().to_vec(),
        });
        self.exprs.push(Expr::Immediate {
            dreg: REG_2,
            data: port.to_be_bytes().to_vec(),
        });
        self.exprs.push(Expr::Nat {
            kind: NAT_DNAT,
            family: u32::from(NFPROTO_IPV4),
            addr: REG_1,
            proto: REG_2,
        });
        self.words(&format!("dnat to {addr}:{port}"));
        self
    }
}

fn cmp(op: u32, data: &[u8]) -> Expr {
    Expr::Cmp {
        sreg: REG_1,
        op,
        data: data.to_vec(),
    }
}

/// A message of nf_tables of type `msg` for `family`.
fn message(msg: u8, flags: u16, family: u8) -> Message {
    let mut m = Message::new((NFNL_SUBSYS_NFTABLES << 8) | u16::from(msg), flags);
    m.bytes(&[family, 0, 0, 0]);
    m
}

/// An nf_tables message's type and family, if `reply` is one.
pub fn kind_of(reply: &Reply) -> Option<(u8, u8)> {
    if reply.kind >> 8 != NFNL_SUBSYS_NFTABLES {
        return None;
    }
    Some((reply.kind as u8, *reply.payload.first()?))
}

/// The table a table, chain or rule message is about (attribute 1 of each).
pub fn table_of(reply: &Reply) -> Option<String> {
    let attrs = reply.payload.get(4..)?;
    netlink::find(attrs, NFTA_TABLE_NAME).map(netlink::str_of)
}

/// The task that committed the transaction a new-generation notification
/// ends: its thread id (in the initial pid namespace) and its name.
pub fn committer(reply: &Reply) -> (Option<u32>, Option<String>) {
    const NFTA_GEN_PROC_PID: u16 = 2;
    const NFTA_GEN_PROC_NAME: u16 = 3;
    let attrs = reply.payload.get(4..).unwrap_or(&[]);
    (
        netlink::find(attrs, NFTA_GEN_PROC_PID).and_then(be32),
        netlink::find(attrs, NFTA_GEN_PROC_NAME).map(netlink::str_of),
    )
}

fn table_message(msg: u8, flags: u16, family: u8, table: &str) -> Message {
    let mut m = message(msg, flags, family);
    m.attr_str(NFTA_TABLE_NAME, table);
    m
}

fn chain_message(family: u8, table: &str, chain: &Chain) -> Message {
    let mut m = message(NFT_MSG_NEWCHAIN, NLM_F_CREATE, family);
    m.attr_str(NFTA_CHAIN_TABLE, table)
        .attr_str(NFTA_CHAIN_NAME, &chain.name);
    let hook = m.nest(NFTA_CHAIN_HOOK);
    m.attr_be32(NFTA_HOOK_HOOKNUM, chain.hook)
        .attr_be32(NFTA_HOOK_PRIORITY, chain.priority as u32);
    m.end(hook);
    m.attr_be32(NFTA_CHAIN_POLICY, chain.policy as u32)
        .attr_str(NFTA_CHAIN_TYPE, &chain.kind);
    m
}

fn rule_message(family: u8, table: &str, rule: &Rule) -> Message {
    let mut m = message(NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND, family);
    m.attr_str(NFTA_RULE_TABLE, table)
        .attr_str(NFTA_RULE_CHAIN, &rule.chain);
    let list = m.nest(NFTA_RULE_EXPRESSIONS);
    for expr in &rule.exprs {
        expr.encode(&mut m);
    }
    m.end(list);
    m
}

/// Runs `msgs` as one transaction; a refusal names what was refused.
fn transaction(msgs: Vec<Message>, what: impl Fn(usize) -> String) -> io::Result<()> {
    let mut all = Vec::with_capacity(msgs.len() + 2);
    all.push(Message::batch_marker(true, NFNL_SUBSYS_NFTABLES));
    all.extend(msgs);
    all.push(Message::batch_marker(false, NFNL_SUBSYS_NFTABLES));
    let mut socket = Socket::open(libc::NETLINK_NETFILTER)?;
    socket.batch_at(all).map_err(|(index, e)| match index {
        Some(i) if i >= 1 => {
            io::Error::new(e.kind(), format!("nf_tables refused {}: {e}", what(i - 1)))
        }
        _ => io::Error::new(e.kind(), format!("nf_tables transaction: {e}")),
    })
}

/// Replaces table `table` of `family` with one holding exactly `chains`
/// and `rules`, in one transaction: the table is created if missing (so
/// the deletion that follows always finds it), deleted with everything
/// in it, and created anew.
pub fn replace_table(family: u8, table: &str, chains: &[Chain], rules: &[Rule]) -> io::Result<()> {
    let mut msgs = vec![
        table_message(NFT_MSG_NEWTABLE, NLM_F_CREATE, family, table),
        table_message(NFT_MSG_DELTABLE, 0, family, table),
        table_message(NFT_MSG_NEWTABLE, NLM_F_CREATE, family, table),
    ];
    msgs.extend(chains.iter().map(|c| chain_message(family, table, c)));
    msgs.extend(rules.iter().map(|r| rule_message(family, table, r)));
    let first_chain = 3;
    let first_rule = first_chain + chains.len();
    transaction(msgs, |i| {
        if i >= first_rule {
            let rule = &rules[i - first_rule];
            format!("the rule `{}` of chain {}", rule.text, rule.chain)
        } else if i >= first_chain {
            format!("the chain {}", chains[i - first_chain].name)
        } else {
            format!("the table {table}")
        }
    })
}

#[cfg(test)]
/// Deletes table `table` of `family` if it exists (created first in the
/// same transaction, so a missing table is no error).
pub fn delete_table(family: u8, table: &str) -> io::Result<()> {
    let msgs = vec![
        table_message(NFT_MSG_NEWTABLE, NLM_F_CREATE, family, table),
        table_message(NFT_MSG_DELTABLE, 0, family, table),
    ];
    transaction(msgs, |_| format!("the table {table}"))
}

#[cfg(test)]
/// Deletes every rule of table `table` of `family`, leaving its chains.
pub fn flush_table(family: u8, table: &str) -> io::Result<()> {
    let msgs = vec![table_message(NFT_MSG_DELRULE, 0, family, table)];
    transaction(msgs, |_| format!("the flush of table {table}"))
}

fn dump(msg: u8, family: u8, table: Option<&str>) -> io::Result<Vec<Reply>> {
    let mut m = message(msg, 0, family);
    if let Some(table) = table {
        m.attr_str(NFTA_TABLE_NAME, table);
    }
    let mut socket = Socket::open(libc::NETLINK_NETFILTER)?;
    let replies = socket.dump(m)?;
    Ok(replies
        .into_iter()
        .filter(|r| kind_of(r) == Some((msg - 1, family)))
        .filter(|r| table.is_none() || table_of(r).as_deref() == table)
        .collect())
}

/// The names of the tables of `family`.
pub fn tables(family: u8) -> io::Result<Vec<String>> {
    Ok(dump(NFT_MSG_GETTABLE, family, None)?
        .iter()
        .filter_map(table_of)
        .collect())
}

/// The base chains of table `table`.
pub fn chains(family: u8, table: &str) -> io::Result<Vec<Chain>> {
    let mut out = Vec::new();
    for reply in dump(NFT_MSG_GETCHAIN, family, Some(table))? {
        let attrs = &reply.payload[4..];
        let hook = netlink::find(attrs, NFTA_CHAIN_HOOK).unwrap_or(&[]);
        let num = |data, kind| netlink::find(data, kind).and_then(be32).unwrap_or(0);
        out.push(Chain {
            name: netlink::find(attrs, NFTA_CHAIN_NAME)
                .map(netlink::str_of)
                .unwrap_or_default(),
            kind: netlink::find(attrs, NFTA_CHAIN_TYPE)
                .map(netlink::str_of)
                .unwrap_or_default(),
            hook: num(hook, NFTA_HOOK_HOOKNUM),
            priority: num(hook, NFTA_HOOK_PRIORITY) as i32,
            policy: num(attrs, NFTA_CHAIN_POLICY) as i32,
        });
    }
    Ok(out)
}

/// The rules of table `table`, in order, each with its chain and its
/// expressions (the text left empty).
pub fn rules(family: u8, table: &str) -> io::Result<Vec<Rule>> {
    let mut out = Vec::new();
    for reply in dump(NFT_MSG_GETRULE, family, Some(table))? {
        let attrs = &reply.payload[4..];
        let chain = netlink::find(attrs, NFTA_RULE_CHAIN)
            .map(netlink::str_of)
            .unwrap_or_default();
        let list = netlink::find(attrs, NFTA_RULE_EXPRESSIONS).unwrap_or(&[]);
        out.push(Rule {
            chain,
            exprs: netlink::attrs(list).map(|(_, e)| Expr::decode(e)).collect(),
            text: String::new(),
        });
    }
    Ok(out)
}

#[cfg(test)]
/// A rule's expressions one per bracket, for a failed comparison.
pub fn debug(exprs: &[Expr]) -> String {
    let mut out = String::new();
    for e in exprs {
        let _ = std::fmt::Write::write_fmt(&mut out, format_args!("[ {e:?} ] "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expressions_read_back_as_written() {
        let rule = Rule::new("c")
            .saddr(Ipv4Addr::new(10, 88, 0, 9), 24)
            .oifname("berth0", false)
            .l4_dport(6, "tcp", 8080)
            .daddr_local()
            .established()
            .dnat(Ipv4Addr::new(10, 88, 0, 2), 80)
            .masquerade()
            .accept();
        assert_eq!(
            rule.text,
            "ip saddr 10.88.0.0/24 oifname != \"berth0\" meta l4proto tcp th dport 8080 \
             fib daddr type local ct state established,related dnat to 10.88.0.2:80 \
             masquerade accept"
        );
        let back = rules_of_message(rule_message(NFPROTO_IPV4, "t", &rule));
        assert_eq!(back, rule.exprs);
    }

    /// The expressions of a rule message as `rules` would read them.
    fn rules_of_message(m: Message) -> Vec<Expr> {
        let bytes = m.wire();
        let replies = netlink::messages(&bytes);
        let attrs = &replies[0].payload[4..];
        let list = netlink::find(attrs, NFTA_RULE_EXPRESSIONS).unwrap();
        netlink::attrs(list).map(|(_, e)| Expr::decode(e)).collect()
    }

    #[test]
    fn a_prefix_masks_the_address_in_network_order() {
        let r = Rule::new("c").saddr(Ipv4Addr::new(127, 1, 2, 3), 8);
        assert_eq!(
            r.exprs[1],
            Expr::Bitwise {
                sreg: REG_1,
                dreg: REG_1,
                mask: vec![255, 0, 0, 0],
                xor: vec![0; 4]
            }
        );
        assert_eq!(r.exprs[2], cmp(CMP_EQ, &[127, 0, 0, 0]));
        assert_eq!(r.text, "ip saddr 127.0.0.0/8");
        let all = Rule::new("c").saddr(Ipv4Addr::new(1, 2, 3, 4), 0);
        assert_eq!(all.exprs[2], cmp(CMP_EQ, &[0; 4]));
        let one = Rule::new("c").daddr(Ipv4Addr::new(1, 2, 3, 4));
        assert_eq!(one.exprs.len(), 2);
    }
}
