//! Netlink sockets and the message format they carry: a request and its
//! acknowledgement, a dump, a batch of requests sent at once (an nf_tables
//! transaction), and a socket that listens to a multicast group. Messages
//! are built and read as bytes (safe); only the socket calls are unsafe.
//!
//! A message is a 16-byte header (length, type, flags, sequence, port id),
//! a fixed family header (ifinfomsg, nfgenmsg, ...) and attributes: each a
//! 4-byte header (length, type) and its data, padded to 4 bytes; a nested
//! attribute holds attributes. Everything is in host byte order except
//! what a family says is big-endian.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use super::cvt;

pub const NLM_F_REQUEST: u16 = 0x1;
pub const NLM_F_ACK: u16 = 0x4;
pub const NLM_F_DUMP: u16 = 0x300;
pub const NLM_F_REPLACE: u16 = 0x100;
pub const NLM_F_EXCL: u16 = 0x200;
pub const NLM_F_CREATE: u16 = 0x400;
pub const NLM_F_APPEND: u16 = 0x800;
/// Set on an attribute type whose data is attributes.
pub const NLA_F_NESTED: u16 = 0x8000;

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const HEADER: usize = 16;
/// In an error message: the error's text (extended acknowledgement).
const NLMSGERR_ATTR_MSG: u16 = 1;
/// Flag of an error message that carries extended-ack attributes.
const NLM_F_ACK_TLVS: u16 = 0x200;
/// Flag of an error message whose copy of the request is cut to its header.
const NLM_F_CAPPED: u16 = 0x100;
/// Large enough for any one read of a dump (the kernel fills at most
/// about a page per message, several messages per read).
const RECV_BUFFER: usize = 64 * 1024;
/// What the default socket buffers surely hold (net.core.wmem_default
/// and rmem_default are 208 KiB unless lowered).
const DEFAULT_ROOM: usize = 64 * 1024;
/// The room one queued acknowledgement takes in a receive buffer (the
/// kernel counts the memory of its buffer, not the message's bytes).
const ACK_ROOM: usize = 2048;
/// How long a request waits for the kernel's answer before giving up.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

fn align(n: usize) -> usize {
    (n + 3) & !3
}

/// One message being built.
#[derive(Debug, Clone)]
pub struct Message {
    buf: Vec<u8>,
    /// An nfnetlink batch marker: the kernel never answers it.
    marker: bool,
}

/// Where a nested attribute began, to close it.
#[must_use]
pub struct Nest(usize);

impl Message {
    /// A message of `kind` with `flags` (NLM_F_REQUEST is added).
    pub fn new(kind: u16, flags: u16) -> Message {
        let mut buf = vec![0u8; HEADER];
        buf[4..6].copy_from_slice(&kind.to_ne_bytes());
        buf[6..8].copy_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
        Message { buf, marker: false }
    }

    /// The marker that opens (`begin`) or closes an nfnetlink batch for
    /// the subsystem `subsys` (NFNL_SUBSYS_NFTABLES).
    pub fn batch_marker(begin: bool, subsys: u16) -> Message {
        let kind = if begin {
            NFNL_MSG_BATCH_BEGIN
        } else {
            NFNL_MSG_BATCH_END
        };
        let mut m = Message::new(kind, 0);
        // nfgenmsg: family AF_UNSPEC, version 0, res_id the subsystem
        // (big-endian).
        let mut header = [0u8; 4];
        header[2..4].copy_from_slice(&subsys.to_be_bytes());
        m.bytes(&header);
        m.marker = true;
        m
    }

    /// Appends raw bytes (a family header), padded to 4 bytes.
    pub fn bytes(&mut self, data: &[u8]) -> &mut Message {
        self.buf.extend_from_slice(data);
        self.buf.resize(align(self.buf.len()), 0);
        self
    }

    pub fn attr(&mut self, kind: u16, data: &[u8]) -> &mut Message {
        let len = (4 + data.len()) as u16;
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.bytes(data)
    }

    #[cfg(test)]
    pub fn attr_u8(&mut self, kind: u16, v: u8) -> &mut Message {
        self.attr(kind, &[v])
    }

    pub fn attr_u32(&mut self, kind: u16, v: u32) -> &mut Message {
        self.attr(kind, &v.to_ne_bytes())
    }

    /// A 32-bit value in network byte order (nf_tables' numbers).
    pub fn attr_be32(&mut self, kind: u16, v: u32) -> &mut Message {
        self.attr(kind, &v.to_be_bytes())
    }

    /// A NUL-terminated string.
    pub fn attr_str(&mut self, kind: u16, s: &str) -> &mut Message {
        let mut data = Vec::with_capacity(s.len() + 1);
        data.extend_from_slice(s.as_bytes());
        data.push(0);
        self.attr(kind, &data)
    }

    /// Opens a nested attribute; the attributes added until `end` are in it.
    pub fn nest(&mut self, kind: u16) -> Nest {
        let at = self.buf.len();
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf
            .extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
        Nest(at)
    }

    pub fn end(&mut self, nest: Nest) -> &mut Message {
        let len = (self.buf.len() - nest.0) as u16;
        self.buf[nest.0..nest.0 + 2].copy_from_slice(&len.to_ne_bytes());
        self
    }

    fn flags(&self) -> u16 {
        u16::from_ne_bytes([self.buf[6], self.buf[7]])
    }

    /// The finished bytes as a first message would be sent.
    #[cfg(test)]
    pub fn wire(mut self) -> Vec<u8> {
        self.finish(1).to_vec()
    }

    /// The finished bytes, with length and sequence number filled in.
    fn finish(&mut self, seq: u32) -> &[u8] {
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf[8..12].copy_from_slice(&seq.to_ne_bytes());
        &self.buf
    }
}

/// One message read from the kernel: its type, flags and what follows the
/// netlink header (the family header, then attributes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub kind: u16,
    pub flags: u16,
    pub seq: u32,
    pub payload: Vec<u8>,
}

/// Splits what one read returned into messages.
pub fn messages(buf: &[u8]) -> Vec<Reply> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + HEADER <= buf.len() {
        let word = |i: usize| u32::from_ne_bytes(buf[at + i..at + i + 4].try_into().unwrap());
        let len = word(0) as usize;
        if len < HEADER || at + len > buf.len() {
            break;
        }
        out.push(Reply {
            kind: u16::from_ne_bytes([buf[at + 4], buf[at + 5]]),
            flags: u16::from_ne_bytes([buf[at + 6], buf[at + 7]]),
            seq: word(8),
            payload: buf[at + HEADER..at + len].to_vec(),
        });
        at += align(len);
    }
    out
}

/// The attributes in `data`, as (type without the nested flag, data).
pub fn attrs(data: &[u8]) -> Attrs<'_> {
    Attrs { data }
}

pub struct Attrs<'a> {
    data: &'a [u8],
}

impl<'a> Iterator for Attrs<'a> {
    type Item = (u16, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.data.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([self.data[0], self.data[1]]) as usize;
        let kind = u16::from_ne_bytes([self.data[2], self.data[3]]) & !NLA_F_NESTED & 0x3fff;
        if len < 4 || len > self.data.len() {
            self.data = &[];
            return None;
        }
        let value = &self.data[4..len];
        self.data = &self.data[align(len).min(self.data.len())..];
        Some((kind, value))
    }
}

/// The data of the first attribute of `kind` in `data`.
pub fn find(data: &[u8], kind: u16) -> Option<&[u8]> {
    attrs(data).find(|&(k, _)| k == kind).map(|(_, v)| v)
}

/// A NUL-terminated string attribute's text.
pub fn str_of(value: &[u8]) -> String {
    let end = value.iter().position(|&b| b == 0).unwrap_or(value.len());
    String::from_utf8_lossy(&value[..end]).into_owned()
}

pub fn u32_of(value: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(value.get(..4)?.try_into().ok()?))
}

/// An error the kernel answered with, in its own words (extended
/// acknowledgement). An `io::Error` carrying one has no raw errno: ask
/// [`errno_of`].
#[derive(Debug)]
pub struct KernelError {
    pub errno: i32,
    pub text: String,
}

impl std::fmt::Display for KernelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let base = io::Error::from_raw_os_error(self.errno);
        write!(f, "{base}: {}", self.text)
    }
}

impl std::error::Error for KernelError {}

/// The errno of an error a netlink request returned, whether or not the
/// kernel gave its words with it.
pub fn errno_of(e: &io::Error) -> Option<i32> {
    e.raw_os_error()
        .or_else(|| Some(e.get_ref()?.downcast_ref::<KernelError>()?.errno))
}

/// The error an error message carries (None for an acknowledgement), with
/// the kernel's own words when it gave some.
fn error_of(reply: &Reply) -> Option<io::Error> {
    let code = i32::from_ne_bytes(reply.payload.get(..4)?.try_into().ok()?);
    if code == 0 {
        return None;
    }
    let errno = code.checked_neg().unwrap_or(libc::EIO);
    let base = io::Error::from_raw_os_error(errno);
    if reply.flags & NLM_F_ACK_TLVS == 0 {
        return Some(base);
    }
    // After the code: the request's header (and the request itself, unless
    // capped), then the attributes.
    let request_len = if reply.flags & NLM_F_CAPPED != 0 {
        HEADER
    } else {
        reply
            .payload
            .get(4..8)
            .map(|b| u32::from_ne_bytes(b.try_into().unwrap()) as usize)
            .unwrap_or(HEADER)
    };
    let tlvs = reply.payload.get(4 + align(request_len)..).unwrap_or(&[]);
    match find(tlvs, NLMSGERR_ATTR_MSG).map(str_of) {
        Some(text) if !text.is_empty() => {
            Some(io::Error::new(base.kind(), KernelError { errno, text }))
        }
        _ => Some(base),
    }
}

/// A netlink socket of one protocol (NETLINK_ROUTE, NETLINK_NETFILTER),
/// in the network namespace of the thread that opened it.
pub struct Socket {
    fd: OwnedFd,
    seq: u32,
    /// The sequence number of the message the last batch's first error
    /// answered.
    refused: Option<u32>,
}

impl Socket {
    pub fn open(protocol: i32) -> io::Result<Socket> {
        // SAFETY: plain arguments; returns a new fd.
        let fd = cvt(unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                protocol,
            )
        })?;
        // SAFETY: the fd is new and owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let socket = Socket {
            fd,
            seq: 1,
            refused: None,
        };
        // The kernel's words with an error, and acknowledgements without a
        // copy of the request. Older kernels refuse: not needed.
        let _ = socket.set_option(libc::NETLINK_EXT_ACK, 1);
        let _ = socket.set_option(libc::NETLINK_CAP_ACK, 1);
        let timeout = libc::timeval {
            tv_sec: ANSWER_TIMEOUT.as_secs() as _,
            tv_usec: 0,
        };
        // SAFETY: `timeout` is a valid timeval for the call.
        cvt(unsafe {
            libc::setsockopt(
                socket.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const timeout).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        })?;
        Ok(socket)
    }

    /// A non-blocking socket that receives the multicast `groups` (e.g.
    /// RTNLGRP_LINK) of `protocol`; read it with `receive`.
    pub fn listen(protocol: i32, groups: &[u32]) -> io::Result<Socket> {
        let socket = Socket::open(protocol)?;
        // Bound to a port id of its own: the kernel sends its notices
        // from port 0 and skips a socket whose port id is the sender's,
        // as an unbound socket's (0) is.
        socket.bind()?;
        for &group in groups {
            socket.set_option(libc::NETLINK_ADD_MEMBERSHIP, group as libc::c_int)?;
        }
        super::fd::set_nonblocking(&socket.fd, true)?;
        Ok(socket)
    }

    /// Binds to a port id the kernel picks.
    fn bind(&self) -> io::Result<()> {
        // SAFETY: an all-zero sockaddr_nl asks for any port id, no groups.
        let mut at: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        at.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: `at` is a valid sockaddr_nl for its length.
        cvt(unsafe {
            libc::bind(
                self.fd.as_raw_fd(),
                (&raw const at).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        })?;
        Ok(())
    }

    /// Sets the socket's receive buffer to `bytes`: beyond the system's
    /// limit (net.core.rmem_max) where the caller may (CAP_NET_ADMIN),
    /// else up to it.
    pub fn set_receive_buffer(&self, bytes: usize) -> io::Result<()> {
        self.set_buffer(libc::SO_RCVBUFFORCE, libc::SO_RCVBUF, bytes)
    }

    /// Sets the socket's send buffer to `bytes`, as `set_receive_buffer`:
    /// one write of a batch must fit in it.
    pub fn set_send_buffer(&self, bytes: usize) -> io::Result<()> {
        self.set_buffer(libc::SO_SNDBUFFORCE, libc::SO_SNDBUF, bytes)
    }

    fn set_buffer(&self, force: libc::c_int, plain: libc::c_int, bytes: usize) -> io::Result<()> {
        // The kernel doubles what it is given (bookkeeping overhead).
        let value = libc::c_int::try_from(bytes / 2).unwrap_or(libc::c_int::MAX / 2);
        self.set_int(libc::SOL_SOCKET, force, value)
            .or_else(|_| self.set_int(libc::SOL_SOCKET, plain, value))
    }

    /// The socket's receive buffer, as the kernel counts it.
    #[cfg(test)]
    pub fn receive_buffer(&self) -> io::Result<usize> {
        let mut value: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `value` and `len` are valid for writes of their sizes.
        cvt(unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&raw mut value).cast(),
                &raw mut len,
            )
        })?;
        Ok(value as usize)
    }

    fn set_option(&self, option: libc::c_int, value: libc::c_int) -> io::Result<()> {
        self.set_int(libc::SOL_NETLINK, option, value)
    }

    fn set_int(
        &self,
        level: libc::c_int,
        option: libc::c_int,
        value: libc::c_int,
    ) -> io::Result<()> {
        // SAFETY: `value` is a valid int for the call.
        cvt(unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                level,
                option,
                (&raw const value).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        })?;
        Ok(())
    }

    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    fn send(&self, bytes: &[u8]) -> io::Result<()> {
        // SAFETY: an all-zero sockaddr_nl is the kernel as destination.
        let mut to: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        to.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: `bytes` and `to` are valid for their lengths.
        let sent = cvt(unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                bytes.as_ptr().cast(),
                bytes.len(),
                0,
                (&raw const to).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        })?;
        if sent as usize != bytes.len() {
            return Err(io::Error::from_raw_os_error(libc::EMSGSIZE));
        }
        Ok(())
    }

    /// One read: the messages it brought (empty when nothing was waiting
    /// on a non-blocking socket).
    pub fn receive(&self) -> io::Result<Vec<Reply>> {
        match self.read_messages() {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Vec::new()),
            other => other,
        }
    }

    /// One read of the answer to a request: an error once the answer
    /// timeout passed (SO_RCVTIMEO) without one.
    fn answers(&self) -> io::Result<Vec<Reply>> {
        match self.read_messages() {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "no answer from the kernel within {} s",
                    ANSWER_TIMEOUT.as_secs()
                ),
            )),
            other => other,
        }
    }

    fn read_messages(&self) -> io::Result<Vec<Reply>> {
        let mut buf = vec![0u8; RECV_BUFFER];
        // SAFETY: `buf` is valid for writes of its length.
        let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n == -1 {
            return Err(io::Error::last_os_error());
        }
        Ok(messages(&buf[..n as usize]))
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1).max(1);
        self.seq
    }

    /// Sends one request and waits for its acknowledgement.
    pub fn request(&mut self, msg: Message) -> io::Result<()> {
        self.batch(vec![msg])
    }

    /// As [`Socket::batch`], and with an error the index in `msgs` of the
    /// message the kernel refused (None when no one message was: the send
    /// failed or no answer came).
    pub fn batch_at(&mut self, msgs: Vec<Message>) -> Result<(), (Option<usize>, io::Error)> {
        let first = self.seq.wrapping_add(1);
        self.refused = None;
        self.batch(msgs)
            .map_err(|e| (self.refused.map(|s| s.wrapping_sub(first) as usize), e))
    }

    /// Sends `msgs` in one write and waits until the kernel answered each
    /// (an acknowledgement is asked for every message but those of the
    /// nfnetlink batch markers, which the kernel never answers); returns
    /// the first error. nf_tables applies a batch between its begin and end
    /// markers as one transaction: all of it or nothing.
    pub fn batch(&mut self, mut msgs: Vec<Message>) -> io::Result<()> {
        let mut bytes = Vec::new();
        let mut waiting = Vec::new();
        for msg in &mut msgs {
            let marker = msg.marker;
            if !marker {
                let flags = msg.flags() | NLM_F_ACK;
                msg.buf[6..8].copy_from_slice(&flags.to_ne_bytes());
            }
            let seq = self.next_seq();
            if !marker {
                waiting.push(seq);
            }
            bytes.extend_from_slice(msg.finish(seq));
        }
        self.make_room(bytes.len(), waiting.len());
        self.send(&bytes)?;
        let mut first_error = None;
        while !waiting.is_empty() {
            for reply in self.answers()? {
                if reply.kind != NLMSG_ERROR {
                    continue;
                }
                waiting.retain(|&s| s != reply.seq);
                if let Some(e) = error_of(&reply) {
                    self.refused.get_or_insert(reply.seq);
                    first_error.get_or_insert(e);
                }
            }
            if first_error.is_some() {
                // Acknowledgements of the rest of a failed batch may or may
                // not come: what is left is read away by the next request.
                break;
            }
        }
        self.drain_stale();
        first_error.map_or(Ok(()), Err)
    }

    /// Makes the socket's buffers large enough for a batch of `len` bytes
    /// sent in one write (the kernel refuses a write larger than the send
    /// buffer with EMSGSIZE) and for its `answers` acknowledgements, which
    /// the kernel queues before the reading starts (and drops, when they
    /// overrun the receive buffer). Small batches fit the defaults.
    fn make_room(&self, len: usize, answers: usize) {
        if len <= DEFAULT_ROOM && answers <= DEFAULT_ROOM / ACK_ROOM {
            return;
        }
        // Best effort: where they cannot be raised, the send or the wait
        // for the answers says so.
        let _ = self.set_send_buffer(len + 64 * 1024);
        let _ = self.set_receive_buffer(DEFAULT_ROOM.max(answers * ACK_ROOM));
    }

    /// Reads away answers still queued (those of a failed batch), without
    /// waiting.
    fn drain_stale(&self) {
        let mut buf = [0u8; 4096];
        loop {
            // SAFETY: `buf` is valid for writes of its length.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n <= 0 {
                return;
            }
        }
    }

    /// Sends one request the kernel answers with one message (RTM_GETLINK
    /// of a named link) and returns that message.
    pub fn get(&mut self, mut msg: Message) -> io::Result<Reply> {
        let seq = self.next_seq();
        self.send(msg.finish(seq))?;
        loop {
            for reply in self.answers()? {
                if reply.seq != seq {
                    continue;
                }
                if reply.kind == NLMSG_ERROR {
                    return Err(error_of(&reply).unwrap_or_else(|| {
                        io::Error::new(io::ErrorKind::InvalidData, "an acknowledgement, no answer")
                    }));
                }
                return Ok(reply);
            }
        }
    }

    /// Sends a dump request and returns every message of the answer.
    pub fn dump(&mut self, mut msg: Message) -> io::Result<Vec<Reply>> {
        let flags = msg.flags() | NLM_F_DUMP;
        msg.buf[6..8].copy_from_slice(&flags.to_ne_bytes());
        let seq = self.next_seq();
        self.send(msg.finish(seq))?;
        let mut out = Vec::new();
        loop {
            for reply in self.answers()? {
                if reply.seq != seq {
                    continue;
                }
                match reply.kind {
                    NLMSG_DONE => return Ok(out),
                    NLMSG_ERROR => {
                        return Err(error_of(&reply)
                            .unwrap_or_else(|| io::Error::from_raw_os_error(libc::EIO)));
                    }
                    _ => out.push(reply),
                }
            }
        }
    }
}

/// nfnetlink's batch markers (message types of subsystem 0).
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_padded_nested_and_read_back() {
        let mut m = Message::new(16, NLM_F_CREATE);
        m.bytes(&[1, 2, 3, 4, 5]);
        m.attr_str(3, "eth0");
        let n = m.nest(18);
        m.attr_u32(1, 7);
        m.attr_u8(2, 9);
        m.end(n);
        let bytes = m.finish(42).to_vec();
        assert_eq!(bytes.len() % 4, 0);
        let msgs = messages(&bytes);
        assert_eq!(msgs.len(), 1);
        let r = &msgs[0];
        assert_eq!((r.kind, r.seq), (16, 42));
        assert_eq!(r.flags, NLM_F_CREATE | NLM_F_REQUEST);
        assert_eq!(&r.payload[..5], &[1, 2, 3, 4, 5]);
        let top: Vec<_> = attrs(&r.payload[8..]).collect();
        assert_eq!(top.len(), 2);
        assert_eq!(top[0].0, 3);
        assert_eq!(str_of(top[0].1), "eth0");
        assert_eq!(top[1].0, 18, "the nested flag is masked off");
        let inner: Vec<_> = attrs(top[1].1).collect();
        assert_eq!(inner, vec![(1, &7u32.to_ne_bytes()[..]), (2, &[9u8][..])]);
    }

    #[test]
    fn truncated_attributes_end_the_walk() {
        let data = [8u8, 0, 1, 0, 1, 2];
        assert_eq!(attrs(&data).count(), 0);
    }

    #[test]
    fn an_error_reply_carries_the_errno_and_the_kernels_words() {
        let mut payload = (-libc::EEXIST).to_ne_bytes().to_vec();
        // The capped copy of the request: its header only.
        payload.extend_from_slice(&[0u8; HEADER]);
        let mut tlv = Message {
            buf: Vec::new(),
            marker: false,
        };
        tlv.attr_str(NLMSGERR_ATTR_MSG, "File exists here");
        payload.extend_from_slice(&tlv.buf);
        let reply = Reply {
            kind: NLMSG_ERROR,
            flags: NLM_F_ACK_TLVS | NLM_F_CAPPED,
            seq: 1,
            payload,
        };
        let e = error_of(&reply).unwrap();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert!(e.to_string().ends_with(": File exists here"), "{e}");
        assert_eq!(errno_of(&e), Some(libc::EEXIST));
        let ack = Reply {
            kind: NLMSG_ERROR,
            flags: 0,
            seq: 1,
            payload: vec![0; 20],
        };
        assert!(error_of(&ack).is_none());
    }

    #[test]
    fn the_kernel_answers_a_dump_and_refuses_a_bad_request() {
        // In a network namespace of this test's own (namespaces are per
        // thread).
        std::thread::spawn(|| {
            super::super::ns::unshare(libc::CLONE_NEWNET).unwrap();
            // The links of this namespace: lo.
            let mut s = Socket::open(libc::NETLINK_ROUTE).unwrap();
            let mut m = Message::new(libc::RTM_GETLINK, 0);
            m.bytes(&[0u8; 16]);
            let links = s.dump(m).unwrap();
            assert!(!links.is_empty());
            assert!(links.iter().all(|r| r.kind == libc::RTM_NEWLINK));
            // Deleting a link that does not exist is refused, and the socket
            // still answers the next request.
            let mut del = Message::new(libc::RTM_DELLINK, 0);
            let mut ifi = [0u8; 16];
            ifi[4..8].copy_from_slice(&0x7fff_fff0i32.to_ne_bytes());
            del.bytes(&ifi);
            let e = s.request(del).unwrap_err();
            assert_eq!(errno_of(&e), Some(libc::ENODEV), "{e}");
            // One link asked for by name: its own message.
            let mut get = Message::new(libc::RTM_GETLINK, 0);
            get.bytes(&[0u8; 16]).attr_str(3, "lo");
            let lo = s.get(get).unwrap();
            assert_eq!(lo.kind, libc::RTM_NEWLINK);
            let mut again = Message::new(libc::RTM_GETLINK, 0);
            again.bytes(&[0u8; 16]);
            assert!(!s.dump(again).unwrap().is_empty());
        })
        .join()
        .unwrap();
    }
}
