//! The one line codec: every message between berth's processes (client
//! and daemon, daemon and monitor) is one JSON object on one line, read
//! through a size cap and written whole. Readers work on blocking and
//! non-blocking streams alike: partial lines are kept until the rest
//! arrives.

use std::io::{self, Read, Write};

use nanoserde::SerJson;

/// What reading found.
#[derive(Debug, PartialEq, Eq)]
pub enum Got {
    /// A whole line, without its newline.
    Line(Vec<u8>),
    /// Nothing whole yet (the stream would block).
    Partial,
    /// The peer closed before a whole line; what it sent is kept.
    Eof,
    /// More than the cap came without a newline.
    TooLong,
}

/// A capped reader of newline-terminated lines.
#[derive(Debug)]
pub struct LineReader {
    buf: Vec<u8>,
    cap: usize,
}

impl LineReader {
    pub fn new(cap: usize) -> LineReader {
        LineReader {
            buf: Vec::new(),
            cap,
        }
    }

    /// What came so far without a newline.
    #[cfg(test)]
    pub fn pending(&self) -> &[u8] {
        &self.buf
    }

    /// Takes the first whole line out of the buffer, if there is one.
    fn take_line(&mut self) -> Option<Vec<u8>> {
        let i = self.buf.iter().position(|&b| b == b'\n')?;
        let line = self.buf[..i].to_vec();
        self.buf.drain(..=i);
        Some(line)
    }

    /// Reads until a whole line, the end, the cap, or (non-blocking) until
    /// it would block. Errors other than WouldBlock and Interrupted are
    /// returned as they are.
    pub fn read_from(&mut self, r: &mut impl Read) -> io::Result<Got> {
        if let Some(line) = self.take_line() {
            return Ok(Got::Line(line));
        }
        let mut chunk = [0u8; 4096];
        loop {
            if self.buf.len() > self.cap {
                return Ok(Got::TooLong);
            }
            match r.read(&mut chunk) {
                Ok(0) => return Ok(Got::Eof),
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    if let Some(line) = self.take_line() {
                        return Ok(Got::Line(line));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Got::Partial),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

/// One message as its line: JSON and a newline.
pub fn encode<T: SerJson>(msg: &T) -> Vec<u8> {
    let mut s = msg.serialize_json();
    s.push('\n');
    s.into_bytes()
}

/// Decodes one line through berth's strict JSON parser.
pub fn decode<T: nanoserde::DeJson>(line: &[u8]) -> Result<T, String> {
    let text = std::str::from_utf8(line).map_err(|_| "not UTF-8".to_string())?;
    crate::json::decode(text)
}

/// Writes one message on a blocking stream.
pub fn send<T: SerJson>(w: &mut impl Write, msg: &T) -> io::Result<()> {
    w.write_all(&encode(msg))
}

/// Reads one message from a blocking stream: `Ok(None)` when the peer
/// closed without sending a whole line.
pub fn receive<T: nanoserde::DeJson>(r: &mut impl Read, cap: usize) -> io::Result<Option<T>> {
    let mut reader = LineReader::new(cap);
    loop {
        match reader.read_from(r)? {
            Got::Line(line) => {
                return decode(&line)
                    .map(Some)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e));
            }
            Got::Partial => continue,
            Got::Eof => return Ok(None),
            Got::TooLong => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("message larger than {cap} bytes"),
                ));
            }
        }
    }
}

/// A queue of bytes to write to a non-blocking stream.
#[derive(Debug, Default)]
pub struct Outbox {
    buf: Vec<u8>,
}

impl Outbox {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Bytes not yet written.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Writes what the stream takes now. `Ok(true)`: all written;
    /// `Ok(false)`: it would block; `Err`: the peer is gone.
    pub fn flush_to(&mut self, w: &mut impl Write) -> io::Result<bool> {
        while !self.buf.is_empty() {
            match w.write(&self.buf) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.buf.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nanoserde::DeJson;

    /// Hands out its bytes in fixed pieces, then WouldBlock or EOF.
    struct Pieces {
        pieces: Vec<Vec<u8>>,
        then_block: bool,
    }

    impl Read for Pieces {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.pieces.is_empty() {
                return if self.then_block {
                    Err(io::ErrorKind::WouldBlock.into())
                } else {
                    Ok(0)
                };
            }
            let p = self.pieces.remove(0);
            buf[..p.len()].copy_from_slice(&p);
            Ok(p.len())
        }
    }

    #[derive(Debug, PartialEq, SerJson, DeJson)]
    struct Msg {
        verb: String,
        n: u32,
    }

    #[test]
    fn a_line_in_pieces_is_joined() {
        let mut r = LineReader::new(100);
        let mut src = Pieces {
            pieces: vec![b"{\"verb\":".to_vec()],
            then_block: true,
        };
        assert_eq!(r.read_from(&mut src).unwrap(), Got::Partial);
        src.pieces.push(b"\"ps\",\"n\":1}\nnext".to_vec());
        let Got::Line(line) = r.read_from(&mut src).unwrap() else {
            panic!("no line")
        };
        let msg: Msg = decode(&line).unwrap();
        assert_eq!(
            msg,
            Msg {
                verb: "ps".into(),
                n: 1
            }
        );
        assert_eq!(r.pending(), b"next");
    }

    #[test]
    fn two_lines_in_one_read_come_one_by_one() {
        let mut r = LineReader::new(100);
        let mut src = Pieces {
            pieces: vec![b"a\nb\n".to_vec()],
            then_block: false,
        };
        assert_eq!(r.read_from(&mut src).unwrap(), Got::Line(b"a".to_vec()));
        assert_eq!(r.read_from(&mut src).unwrap(), Got::Line(b"b".to_vec()));
        assert_eq!(r.read_from(&mut src).unwrap(), Got::Eof);
    }

    #[test]
    fn the_cap_holds() {
        let mut r = LineReader::new(8);
        let mut src = Pieces {
            pieces: vec![vec![b'x'; 5], vec![b'x'; 5]],
            then_block: true,
        };
        assert_eq!(r.read_from(&mut src).unwrap(), Got::TooLong);
    }

    #[test]
    fn eof_keeps_what_came() {
        let mut r = LineReader::new(100);
        let mut src = Pieces {
            pieces: vec![b"{\"verb\"".to_vec()],
            then_block: false,
        };
        assert_eq!(r.read_from(&mut src).unwrap(), Got::Eof);
        assert_eq!(r.pending(), b"{\"verb\"");
    }

    #[test]
    fn round_trip_through_send_and_receive() {
        let msg = Msg {
            verb: "start".into(),
            n: 7,
        };
        let mut bytes = Vec::new();
        send(&mut bytes, &msg).unwrap();
        assert_eq!(bytes.last(), Some(&b'\n'));
        let got: Option<Msg> = receive(&mut bytes.as_slice(), 100).unwrap();
        assert_eq!(got, Some(msg));
        let none: Option<Msg> = receive(&mut &b""[..], 100).unwrap();
        assert_eq!(none, None);
        let bad = receive::<Msg>(&mut &b"{\"verb\":\n"[..], 100);
        assert!(bad.is_err());
    }

    #[test]
    fn outbox_writes_what_fits() {
        struct Slow(Vec<u8>, usize);
        impl Write for Slow {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                if self.1 == 0 {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                let n = buf.len().min(self.1);
                self.1 -= n;
                self.0.extend_from_slice(&buf[..n]);
                Ok(n)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut out = Outbox::default();
        out.push(b"hello\n");
        let mut w = Slow(Vec::new(), 3);
        assert!(!out.flush_to(&mut w).unwrap());
        w.1 = 100;
        assert!(out.flush_to(&mut w).unwrap());
        assert_eq!(w.0, b"hello\n");
        assert!(out.is_empty());
    }
}
