//! Container logs: size-capped files written by the monitor, read back into
//! lines by the client.
//!
//! A log file is a sequence of records, each one line ending in '\n'; the
//! first byte says what it is:
//!
//! - `@<RFC 3339 time>`: the time of the text records that follow;
//! - `+<n>`: the time of the records that follow is `n` nanoseconds after
//!   the one before (decimal; a file's first time record is always `@`);
//! - `o<bytes>` and `e<bytes>`: a line of stdout or stderr, or the piece
//!   that ends it;
//! - `O<bytes>` and `E<bytes>`: a piece of a line that goes on in the next
//!   record of its stream (a long line is cut into records), or the end of
//!   a stream that ended without a newline.
//!
//! The monitor writes what one read of a pipe gave as one time record and
//! its lines, with one write(2): `+1200345\nohello\noworld\n`. Files
//! written before this format have one record per line, `<RFC 3339 time>
//! <stdout|stderr> <F|P> <bytes>` (F: ends a line, P: partial), which
//! always starts with a digit; readers take both, mixed in one file (an
//! older monitor wrote, then a newer one appended).
//!
//! `container.log` is the live file; when a record would take it past the
//! size cap it becomes `container.log.1`, `.1` becomes `.2` and so on, and
//! the oldest beyond `max-files` is removed. Writes never wait on anyone:
//! if the disk refuses one (full), the output is dropped and counted, and
//! no write is tried for a second; the first write that works again is
//! preceded by one stderr record saying how many bytes were dropped, over
//! what time, and why (see [`gap_notice`]).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::{errors, host, when};

/// After a write failed, how long output is dropped before the next try.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

pub const LOG_FILE: &str = "container.log";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    /// The first byte of a text record of this stream.
    fn marker(self, ends_line: bool) -> u8 {
        match (self, ends_line) {
            (Stream::Stdout, true) => b'o',
            (Stream::Stdout, false) => b'O',
            (Stream::Stderr, true) => b'e',
            (Stream::Stderr, false) => b'E',
        }
    }
}

/// The path of rotated file `n` (0 is the live file).
pub fn file_path(dir: &Path, n: u32) -> PathBuf {
    if n == 0 {
        dir.join(LOG_FILE)
    } else {
        dir.join(format!("{LOG_FILE}.{n}"))
    }
}

/// Room kept at the front of a batch for its time record: `@`, an RFC 3339
/// time of 30 bytes and '\n' (a `+` record is shorter).
const HEAD: usize = 32;

/// The live file and what was written to it.
struct Live {
    dir: PathBuf,
    file: Option<File>,
    size: u64,
    max_size: u64,
    max_files: u32,
    /// The time the last time record written to the file stands for; none
    /// since it was opened, so the next one is absolute.
    time: Option<u64>,
}

impl Live {
    fn reopen(&mut self) -> io::Result<()> {
        self.file = None;
        self.time = None;
        let f = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o640)
            .custom_flags(libc::O_CLOEXEC)
            .open(file_path(&self.dir, 0))?;
        self.size = f.metadata()?.len();
        // A record cut off by a crash is ended, so the next one starts on
        // a line of its own.
        let mut last = [0u8; 1];
        if self.size > 0 && f.read_at(&mut last, self.size - 1)? == 1 && last[0] != b'\n' {
            (&f).write_all(b"\n")?;
            self.size += 1;
        }
        self.file = Some(f);
        Ok(())
    }

    /// Whether `len` more bytes keep the file within its cap; `alone`:
    /// they are one record, which an empty file takes however big.
    fn fits(&self, len: usize, alone: bool) -> bool {
        (alone && self.size == 0) || self.size + len as u64 <= self.max_size
    }

    fn rotate(&mut self) {
        self.file = None;
        let _ = fs::remove_file(file_path(&self.dir, self.max_files - 1));
        for n in (1..self.max_files).rev() {
            let _ = fs::rename(file_path(&self.dir, n - 1), file_path(&self.dir, n));
        }
        if self.max_files == 1 {
            let _ = fs::remove_file(file_path(&self.dir, 0));
        }
        self.size = 0;
        let _ = self.reopen();
    }

    /// Writes the records in `batch[HEAD..]`, preceded by the time record
    /// for `now` (put in the room before them), with one write(2). A batch
    /// the disk takes only in part is cut off again.
    fn write_batch(&mut self, batch: &mut [u8], now: u64) -> io::Result<()> {
        if self.file.is_none() {
            self.reopen()?;
        }
        let mut head = [0u8; HEAD];
        let len = match self.time {
            Some(t) if t <= now => {
                let mut w = &mut head[..];
                // 22 bytes at most: cannot fail.
                let _ = writeln!(w, "+{}", now - t);
                HEAD - w.len()
            }
            _ => {
                let at = host::rfc3339(now);
                let len = (at.len() + 2).min(HEAD);
                head[0] = b'@';
                head[1..len - 1].copy_from_slice(&at.as_bytes()[..len - 2]);
                head[len - 1] = b'\n';
                len
            }
        };
        let start = HEAD - len;
        batch[start..HEAD].copy_from_slice(&head[..len]);
        let Some(f) = self.file.as_mut() else {
            return Err(io::Error::from_raw_os_error(libc::EBADF));
        };
        match f.write_all(&batch[start..]) {
            Ok(()) => {
                self.size += (batch.len() - start) as u64;
                self.time = Some(now);
                Ok(())
            }
            Err(e) => {
                let _ = f.set_len(self.size);
                // A fresh file at the next try.
                self.file = None;
                Err(e)
            }
        }
    }
}

/// The buffer reads go into and records are built in: the time record's
/// room, the records, and at its end the room reads go to, which starts
/// far enough on that the records of a read (one byte more per line, and
/// an unfinished line's start) are built in place ahead of what is still
/// to be read (a read of very short lines is written in two or more
/// parts).
const BUF: usize = 32 * 1024;
/// The longest piece of a line kept before it is written as a partial.
const MAX_LINE: usize = 16 * 1024;
// Reads need room after the longest unfinished line's records (an empty
// room would read 0 bytes, which is taken for the end of the stream).
const _: () = assert!(HEAD + MAX_LINE + 2 + 4096 <= BUF);

pub struct LogWriter {
    live: Live,
    /// The unfinished line of each stream, shorter than `max_line`.
    pending: [Vec<u8>; 2],
    /// Whether the last record written of each stream was a partial one.
    open_line: [bool; 2],
    /// Longest piece of a line kept before it is written as a partial.
    max_line: usize,
    /// See [`BUF`].
    buf: Vec<u8>,
    /// The end of the records built in `buf` (`HEAD` when none are).
    out: usize,
    /// Where the room for reads starts in `buf`.
    input_at: usize,
    /// The container's output in the records built: what is lost if
    /// their write fails.
    batch_output: usize,
    /// Whether the last record built of each stream is a partial one.
    batch_open: [Option<bool>; 2],
    /// When the read being logged was made.
    now: u64,
    /// Whether the read being logged is dropped.
    dropping: bool,
    /// Output dropped since the disk last refused a write, if it did.
    gap: Option<Gap>,
    /// Bytes of output dropped in all.
    pub dropped: u64,
    /// How long output is dropped after a failed write.
    retry_after: Duration,
}

/// Output being dropped: since when, how much, why, and when to try again.
#[derive(Debug)]
struct Gap {
    since_ns: u64,
    bytes: u64,
    why: String,
    retry_at: Instant,
}

/// The stderr record that ends a gap in the log: how many bytes of the
/// container's output are missing, between which times, and why.
pub fn gap_notice(bytes: u64, since_ns: u64, until_ns: u64, why: &str) -> String {
    format!(
        "berth: {bytes} bytes of output dropped from {} to {}: {why}",
        host::rfc3339(since_ns),
        host::rfc3339(until_ns)
    )
}

/// The index of the first '\n' in `s`, eight bytes at a time.
fn find_newline(s: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    const NEWLINES: u64 = ONES * b'\n' as u64;
    let mut chunks = s.chunks_exact(8);
    let mut at = 0;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        // A byte equal to '\n' becomes zero; the lowest zero byte is the
        // lowest one whose high bit is set here.
        let x = u64::from_le_bytes(word) ^ NEWLINES;
        let zeros = x.wrapping_sub(ONES) & !x & HIGHS;
        if zeros != 0 {
            return Some(at + zeros.trailing_zeros() as usize / 8);
        }
        at += 8;
    }
    let rest = chunks.remainder();
    rest.iter().position(|&b| b == b'\n').map(|i| at + i)
}

impl LogWriter {
    pub fn open(dir: &Path, max_size: u64, max_files: u32) -> io::Result<LogWriter> {
        fs::create_dir_all(dir)?;
        let max_line = (max_size / 4).clamp(256, MAX_LINE as u64) as usize;
        let mut live = Live {
            dir: dir.to_path_buf(),
            file: None,
            size: 0,
            max_size,
            max_files: max_files.max(1),
            time: None,
        };
        live.reopen()?;
        Ok(LogWriter {
            live,
            pending: [Vec::new(), Vec::new()],
            open_line: [false, false],
            max_line,
            buf: vec![0; BUF],
            out: HEAD,
            // A record built at the start takes at most an unfinished
            // line, a marker and a newline more than it reads.
            input_at: HEAD + max_line + 2,
            batch_output: 0,
            batch_open: [None, None],
            now: 0,
            dropping: false,
            gap: None,
            dropped: 0,
            retry_after: RETRY_AFTER,
        })
    }

    /// Where the next read of a stream goes: then [`LogWriter::take`].
    pub fn input(&mut self) -> &mut [u8] {
        &mut self.buf[self.input_at..]
    }

    /// Logs the `n` bytes a read of `stream` put at the start of
    /// [`LogWriter::input`]: its complete lines are written at once, with
    /// one time record, in one write.
    pub fn take(&mut self, stream: Stream, n: usize) {
        self.begin();
        let end = self.input_at + n.min(self.buf.len() - self.input_at);
        let mut at = self.input_at;
        while let Some(nl) = find_newline(&self.buf[at..end]) {
            self.line(stream, at, nl, true);
            at += nl + 1;
        }
        self.line(stream, at, end - at, false);
        self.flush();
    }

    /// Logs `data` as if a read of `stream` had given it.
    #[cfg(test)]
    pub fn write(&mut self, stream: Stream, data: &[u8]) {
        for chunk in data.chunks(self.buf.len() - self.input_at) {
            self.input()[..chunk.len()].copy_from_slice(chunk);
            self.take(stream, chunk.len());
        }
    }

    /// Writes what is left of unfinished lines, as partial records, and
    /// makes one last try at ending a gap.
    pub fn finish(&mut self) {
        self.begin();
        for stream in [Stream::Stdout, Stream::Stderr] {
            if !self.pending[stream as usize].is_empty() {
                self.place(stream, self.input_at, 0, false, self.buf.len());
            }
        }
        self.flush();
        if self.gap.is_some() {
            let _ = self.close_gap();
        }
    }

    /// Whether output is being dropped now.
    #[cfg(test)]
    pub fn is_dropping(&self) -> bool {
        self.gap.is_some()
    }

    /// Starts logging a read: its time, and whether it is dropped.
    fn begin(&mut self) {
        self.now = host::now_ns();
        self.dropping = match &self.gap {
            None => false,
            Some(g) => Instant::now() < g.retry_at || self.close_gap().is_err(),
        };
    }

    /// Builds the records of the `len` bytes of input at `at`, which
    /// follow the stream's unfinished line: whole pieces of `max_line` as
    /// partials, and the rest as the end of the line when `ends` (the
    /// input's newline follows it), else kept as the unfinished line.
    fn line(&mut self, stream: Stream, mut at: usize, mut len: usize, ends: bool) {
        let idx = stream as usize;
        loop {
            let total = self.pending[idx].len() + len;
            if total < self.max_line || (ends && total == self.max_line) {
                break;
            }
            let n = self.max_line - self.pending[idx].len();
            self.place(stream, at, n, false, at + n);
            at += n;
            len -= n;
        }
        if ends {
            self.place(stream, at, len, true, at + len + 1);
        } else {
            let (pending, buf) = (&mut self.pending[idx], &self.buf);
            pending.extend_from_slice(&buf[at..at + len]);
        }
    }

    /// Builds one text record: the marker, the stream's unfinished line,
    /// the `n` bytes of input at `at` and a newline. What is in `buf` from
    /// `free_until` on is still to be read. First writes what was built
    /// and rotates if the record would not fit.
    fn place(&mut self, stream: Stream, at: usize, n: usize, ends_line: bool, free_until: usize) {
        let idx = stream as usize;
        let p = self.pending[idx].len();
        // The container wrote the newline that ends a line too.
        let output = p + n + usize::from(ends_line);
        let len = p + n + 2;
        let fits = |w: &LogWriter| w.live.fits(w.out + len, w.out == HEAD);
        if !self.dropping && (!fits(self) || self.out + len > free_until) {
            self.flush();
            if !self.dropping && !fits(self) {
                self.live.rotate();
            }
        }
        if self.dropping {
            self.drop_bytes(output);
            self.pending[idx].clear();
            return;
        }
        // `input_at` leaves room for any record built from the start.
        debug_assert!(self.out + len <= free_until);
        let o = self.out;
        // The input first: the marker and the unfinished line may go
        // where it is now.
        self.buf.copy_within(at..at + n, o + 1 + p);
        self.buf[o] = stream.marker(ends_line);
        self.buf[o + 1..o + 1 + p].copy_from_slice(&self.pending[idx]);
        self.buf[o + len - 1] = b'\n';
        self.out = o + len;
        self.pending[idx].clear();
        self.batch_output += output;
        self.batch_open[idx] = Some(!ends_line);
    }

    /// Writes the records built; if that fails, drops them and the rest
    /// of the read.
    fn flush(&mut self) {
        if self.out > HEAD {
            match self.live.write_batch(&mut self.buf[..self.out], self.now) {
                Ok(()) => {
                    for (open, last) in self.open_line.iter_mut().zip(self.batch_open) {
                        *open = last.unwrap_or(*open);
                    }
                }
                Err(e) => {
                    self.open_gap(&e);
                    self.drop_bytes(self.batch_output);
                    self.dropping = true;
                }
            }
        }
        self.out = HEAD;
        self.batch_output = 0;
        self.batch_open = [None, None];
    }

    /// Counts dropped output.
    fn drop_bytes(&mut self, n: usize) {
        self.dropped += n as u64;
        if let Some(g) = &mut self.gap {
            g.bytes += n as u64;
        }
    }

    /// A write failed: from now on output is dropped until the next try.
    fn open_gap(&mut self, e: &io::Error) {
        let retry_at = Instant::now() + self.retry_after;
        match &mut self.gap {
            Some(g) => g.retry_at = retry_at,
            None => {
                self.gap = Some(Gap {
                    since_ns: host::now_ns(),
                    bytes: 0,
                    why: format!(
                        "write {}: {}",
                        file_path(&self.live.dir, 0).display(),
                        errors::io_text(e)
                    ),
                    retry_at,
                });
            }
        }
    }

    /// Ends the gap in the log: lines cut by it are ended, then the notice
    /// is written, in one batch of its own. On failure the gap goes on,
    /// with a new retry time.
    fn close_gap(&mut self) -> io::Result<()> {
        let Some(g) = &self.gap else {
            return Ok(());
        };
        let now = self.now;
        let notice = gap_notice(g.bytes, g.since_ns, now, &g.why);
        let mut batch = vec![0u8; HEAD];
        for stream in [Stream::Stdout, Stream::Stderr] {
            if self.open_line[stream as usize] {
                batch.extend_from_slice(&[stream.marker(true), b'\n']);
            }
        }
        batch.push(Stream::Stderr.marker(true));
        batch.extend_from_slice(notice.as_bytes());
        batch.push(b'\n');
        if !self.live.fits(batch.len(), true) {
            self.live.rotate();
        }
        let result = self.live.write_batch(&mut batch, now);
        match &result {
            Ok(()) => {
                self.gap = None;
                self.open_line = [false, false];
            }
            Err(e) => self.open_gap(e),
        }
        result
    }
}

/// One text record of a log file, with its time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text<'a> {
    /// Nanoseconds since the epoch; 0 when no record said.
    pub time: u64,
    pub stream: Stream,
    /// Whether it ends its line (else a partial piece).
    pub full: bool,
    pub content: &'a [u8],
}

/// Reads records in file order, keeping the time the time records set.
#[derive(Debug, Default, Clone)]
pub struct Clock {
    time: u64,
}

impl Clock {
    /// Takes one record (a line of a log file without its newline): a
    /// text record is returned with its time; a time record sets the
    /// time; anything else is skipped.
    pub fn read<'a>(&mut self, rec: &'a [u8]) -> Option<Text<'a>> {
        let (&first, rest) = rec.split_first()?;
        let time = self.time;
        let text = |stream, full| Text {
            time,
            stream,
            full,
            content: rest,
        };
        match first {
            b'o' => Some(text(Stream::Stdout, true)),
            b'O' => Some(text(Stream::Stdout, false)),
            b'e' => Some(text(Stream::Stderr, true)),
            b'E' => Some(text(Stream::Stderr, false)),
            b'@' => {
                if let Some(t) = std::str::from_utf8(rest).ok().and_then(when::parse_rfc3339) {
                    self.time = t;
                }
                None
            }
            b'+' => {
                if let Some(n) = std::str::from_utf8(rest)
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok())
                {
                    self.time = self.time.saturating_add(n);
                }
                None
            }
            b'0'..=b'9' => parse_old_record(rec),
            _ => None,
        }
    }
}

/// Parses a record of the first format, `<RFC 3339 time> <stdout|stderr>
/// <F|P> <bytes>`.
fn parse_old_record(line: &[u8]) -> Option<Text<'_>> {
    let sp1 = line.iter().position(|&b| b == b' ')?;
    let time = std::str::from_utf8(&line[..sp1])
        .ok()
        .and_then(when::parse_rfc3339)?;
    let rest = &line[sp1 + 1..];
    let (stream, rest) = if let Some(r) = rest.strip_prefix(b"stdout ") {
        (Stream::Stdout, r)
    } else if let Some(r) = rest.strip_prefix(b"stderr ") {
        (Stream::Stderr, r)
    } else {
        return None;
    };
    let (full, content) = if let Some(c) = rest.strip_prefix(b"F ") {
        (true, c)
    } else if let Some(c) = rest.strip_prefix(b"P ") {
        (false, c)
    } else {
        return None;
    };
    Some(Text {
        time,
        stream,
        full,
        content,
    })
}

/// The text records of `bytes` (whole files, oldest first), with their
/// times.
#[cfg(test)]
pub fn texts(bytes: &[u8]) -> Vec<Text<'_>> {
    let mut clock = Clock::default();
    bytes
        .split(|&b| b == b'\n')
        .filter_map(|rec| clock.read(rec))
        .collect()
}

/// Every log file of a container, oldest first.
pub fn files_oldest_first(dir: &Path) -> Vec<PathBuf> {
    let mut numbered: Vec<(u32, PathBuf)> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let n = if name == LOG_FILE {
                0
            } else {
                name.strip_prefix(LOG_FILE)?
                    .strip_prefix('.')?
                    .parse()
                    .ok()?
            };
            Some((n, e.path()))
        })
        .collect();
    numbered.sort_by_key(|(n, _)| std::cmp::Reverse(*n));
    numbered.into_iter().map(|(_, p)| p).collect()
}

/// Turns log records back into lines, joining partial records: what the
/// client reads, fed in any pieces, oldest file first.
#[derive(Default)]
pub struct Assembler {
    /// The unfinished line of each stream: its first record's time, text.
    pending: [Option<(u64, Vec<u8>)>; 2],
    /// A record not yet ended by '\n'.
    raw: Vec<u8>,
    clock: Clock,
}

/// One line as it was written to a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The time of the line's first record, in nanoseconds since the
    /// epoch (0: unknown).
    pub time: u64,
    pub stream: Stream,
    /// Without its newline.
    pub text: Vec<u8>,
    /// False for a line the stream ended without a newline.
    pub newline: bool,
}

impl Assembler {
    /// Takes bytes read from a log file; each line completed by them is
    /// pushed to `out`.
    pub fn feed(&mut self, mut bytes: &[u8], out: &mut Vec<Line>) {
        if !self.raw.is_empty() {
            let Some(nl) = find_newline(bytes) else {
                self.raw.extend_from_slice(bytes);
                return;
            };
            let mut rec = std::mem::take(&mut self.raw);
            rec.extend_from_slice(&bytes[..nl]);
            self.take(&rec, out);
            rec.clear();
            self.raw = rec;
            bytes = &bytes[nl + 1..];
        }
        while let Some(nl) = find_newline(bytes) {
            self.take(&bytes[..nl], out);
            bytes = &bytes[nl + 1..];
        }
        self.raw.extend_from_slice(bytes);
    }

    /// At the end of a file that is complete (not the live one being
    /// followed): a last record without its newline is read as it is.
    pub fn end_file(&mut self, out: &mut Vec<Line>) {
        let rec = std::mem::take(&mut self.raw);
        if !rec.is_empty() {
            self.take(&rec, out);
        }
    }

    fn take(&mut self, rec: &[u8], out: &mut Vec<Line>) {
        let Some(text) = self.clock.read(rec) else {
            return;
        };
        let slot = &mut self.pending[text.stream as usize];
        let (time, mut line) = slot.take().unwrap_or((text.time, Vec::new()));
        line.extend_from_slice(text.content);
        if text.full {
            out.push(Line {
                time,
                stream: text.stream,
                text: line,
                newline: true,
            });
        } else {
            *slot = Some((time, line));
        }
    }

    /// At the end of the logs: partial lines are printed as they are.
    pub fn finish(&mut self, out: &mut Vec<Line>) {
        for (i, stream) in [Stream::Stdout, Stream::Stderr].into_iter().enumerate() {
            if let Some((time, text)) = self.pending[i].take() {
                out.push(Line {
                    time,
                    stream,
                    text,
                    newline: false,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("berth-logs-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn lines(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        for f in files_oldest_first(dir) {
            for r in texts(&fs::read(&f).unwrap()) {
                out.push(format!(
                    "{:?}:{}:{}",
                    r.stream,
                    r.full,
                    String::from_utf8_lossy(r.content)
                ));
            }
        }
        out
    }

    #[test]
    fn lines_partials_and_streams() {
        let d = tmpdir("lines");
        let mut w = LogWriter::open(&d, 1 << 20, 3).unwrap();
        w.write(Stream::Stdout, b"hello\nwor");
        w.write(Stream::Stderr, b"oops\n");
        w.write(Stream::Stdout, b"ld\ntail");
        w.finish();
        assert_eq!(
            lines(&d),
            [
                "Stdout:true:hello",
                "Stderr:true:oops",
                "Stdout:true:world",
                "Stdout:false:tail"
            ]
        );
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn rotation_keeps_newest_within_caps() {
        let d = tmpdir("rot");
        let mut w = LogWriter::open(&d, 4096, 3).unwrap();
        for i in 0..1000 {
            w.write(Stream::Stdout, format!("line {i}\n").as_bytes());
        }
        // And reads far bigger than a file.
        let many: String = (1000..2000).map(|i| format!("line {i}\n")).collect();
        w.write(Stream::Stdout, many.as_bytes());
        let files = files_oldest_first(&d);
        assert_eq!(files.len(), 3);
        for f in &files {
            assert!(fs::metadata(f).unwrap().len() <= 4096);
        }
        let all = lines(&d);
        assert_eq!(all.last().unwrap(), "Stdout:true:line 1999");
        // Contiguous: nothing lost inside the kept window.
        let first: usize = all[0].rsplit(' ').next().unwrap().parse().unwrap();
        assert_eq!(all.len(), 2000 - first);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn long_line_is_cut_into_partials() {
        let d = tmpdir("long");
        let mut w = LogWriter::open(&d, 1 << 20, 1).unwrap();
        let big = vec![b'x'; 40_000];
        w.write(Stream::Stdout, &big);
        w.write(Stream::Stdout, b"\n");
        let all = lines(&d);
        assert!(all.len() >= 3);
        assert!(all.last().unwrap().starts_with("Stdout:true:"));
        let total: usize = all
            .iter()
            .map(|l| l.len() - "Stdout:xxxx:".len() - usize::from(l.contains(":false:")))
            .sum();
        assert_eq!(total, 40_000);
        fs::remove_dir_all(&d).unwrap();
    }

    use crate::testing::TempDir;

    /// Reads every file oldest first, as `berth logs` does, handing the
    /// bytes to the reassembler `chunk` bytes at a time.
    fn read_back(dir: &Path, chunk: usize) -> Vec<Line> {
        let mut asm = Assembler::default();
        let mut out = Vec::new();
        for path in files_oldest_first(dir) {
            for piece in fs::read(&path).unwrap().chunks(chunk) {
                asm.feed(piece, &mut out);
            }
        }
        asm.finish(&mut out);
        out
    }

    #[test]
    fn written_lines_read_back_across_partials_and_rotation() {
        use Stream::{Stderr, Stdout};
        let tmp = TempDir::new("round-trip");
        let mut w = LogWriter::open(&tmp.0, 4096, 100).unwrap();
        let max_line = w.max_line;
        let mut expected: Vec<(Stream, Vec<u8>, bool)> = Vec::new();
        let mut want =
            |stream, text: &[u8], newline| expected.push((stream, text.to_vec(), newline));

        // A stdout line written in two pieces around a whole stderr line.
        w.write(Stdout, b"first ");
        w.write(Stderr, b"an error\n");
        w.write(Stdout, b"and the rest\n");
        want(Stderr, b"an error", true);
        want(Stdout, b"first and the rest", true);
        // Text that looks like record syntax, an empty line, odd bytes.
        w.write(Stdout, b"x stdout F y P \t z\n\n\xff\xfe raw\n");
        want(Stdout, b"x stdout F y P \t z", true);
        want(Stdout, b"", true);
        want(Stdout, b"\xff\xfe raw", true);
        // Enough lines of both streams to rotate several times.
        for i in 0..300 {
            let (stream, text) = if i % 3 == 2 {
                (Stderr, format!("warning {i}: something odd"))
            } else {
                (Stdout, format!("line {i} of the regular output"))
            };
            w.write(stream, format!("{text}\n").as_bytes());
            want(stream, text.as_bytes(), true);
        }
        // A line of more than four partial records' worth, so it cannot fit
        // in one file, with a stderr line written while it is unfinished.
        let long: Vec<u8> = (0..4 * max_line + 300)
            .map(|i| b'a' + (i % 26) as u8)
            .collect();
        let (head, rest) = long.split_at(2 * max_line + 10);
        w.write(Stdout, head);
        w.write(Stderr, b"in between\n");
        w.write(Stdout, rest);
        w.write(Stdout, b"\n");
        want(Stderr, b"in between", true);
        want(Stdout, &long, true);
        // The streams end without a newline.
        w.write(Stdout, b"no newline at the end");
        w.write(Stderr, b"nor here");
        w.finish();
        want(Stdout, b"no newline at the end", false);
        want(Stderr, b"nor here", false);
        assert_eq!(w.dropped, 0);
        drop(w);

        let files = files_oldest_first(&tmp.0);
        assert!(files.len() >= 4, "{} files: no rotation", files.len());
        assert!(files.len() < 100, "the oldest file was rotated away");
        let mut partials = 0;
        for f in &files {
            let bytes = fs::read(f).unwrap();
            assert!(bytes.len() <= 4096);
            assert_eq!(bytes[0], b'@', "each file starts with its time");
            partials += texts(&bytes).iter().filter(|r| !r.full).count();
        }
        // Four pieces of the long line, and the two unfinished ones.
        assert_eq!(partials, 6);

        let lines = read_back(&tmp.0, usize::MAX);
        let got: Vec<(Stream, Vec<u8>, bool)> = lines
            .iter()
            .map(|l| (l.stream, l.text.clone(), l.newline))
            .collect();
        assert_eq!(got.len(), expected.len());
        for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
            assert_eq!(g, e, "line {i}");
        }
        let now = host::now_ns();
        for l in &lines {
            assert!(now - 60_000_000_000 < l.time && l.time <= now, "{l:?}");
        }
        // Fed in small pieces that cut records and files anywhere, the
        // same lines come back.
        assert_eq!(read_back(&tmp.0, 7), lines);
    }

    #[test]
    fn reads_of_tiny_lines_and_long_unfinished_lines_come_back_whole() {
        use Stream::{Stderr, Stdout};
        let tmp = TempDir::new("in-place");
        let mut w = LogWriter::open(&tmp.0, 1 << 20, 1).unwrap();
        let (room, max_line) = (w.input().len(), w.max_line);
        let mut expected: Vec<(Stream, Vec<u8>)> = Vec::new();
        // A read of nothing but newlines: records twice its size.
        w.write(Stdout, &vec![b'\n'; room]);
        expected.extend((0..room).map(|_| (Stdout, Vec::new())));
        // A read of 2-byte lines.
        let letter = |i: usize| b'a' + (i % 26) as u8;
        let two: Vec<u8> = (0..room / 2).flat_map(|i| [letter(i), b'\n']).collect();
        w.write(Stdout, &two);
        expected.extend((0..room / 2).map(|i| (Stdout, vec![letter(i)])));
        // An unfinished line one byte short of a record, ended by a read
        // that goes on with short lines, and one that goes to a record.
        w.write(Stderr, &vec![b'y'; max_line - 1]);
        let mut read = b"z\n".to_vec();
        while read.len() + 4 <= room {
            read.extend_from_slice(b"ab\n");
        }
        w.write(Stderr, &read);
        let mut first = vec![b'y'; max_line - 1];
        first.push(b'z');
        expected.push((Stderr, first));
        expected.extend((0..(read.len() - 2) / 3).map(|_| (Stderr, b"ab".to_vec())));
        w.write(Stdout, &vec![b'q'; max_line - 1]);
        w.write(Stdout, &vec![b'r'; room]);
        w.write(Stdout, b"\n");
        let mut long = vec![b'q'; max_line - 1];
        long.extend(vec![b'r'; room]);
        expected.push((Stdout, long));
        w.finish();
        assert_eq!(w.dropped, 0);

        let got: Vec<(Stream, Vec<u8>)> = read_back(&tmp.0, usize::MAX)
            .into_iter()
            .map(|l| {
                assert!(l.newline);
                (l.stream, l.text)
            })
            .collect();
        assert_eq!(got.len(), expected.len());
        for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
            assert_eq!(g, e, "line {i}");
        }
        // One time record per read, or per part of one.
        let bytes = fs::read(file_path(&tmp.0, 0)).unwrap();
        let times = bytes
            .split(|&b| b == b'\n')
            .filter(|r| r.first().is_some_and(|b| b"@+".contains(b)))
            .count();
        assert!(times < 16, "{times} time records");
    }

    /// The live file's records: (stream, full, content).
    fn records_of(dir: &Path) -> Vec<(Stream, bool, String)> {
        texts(&fs::read(file_path(dir, 0)).unwrap())
            .into_iter()
            .map(|r| {
                (
                    r.stream,
                    r.full,
                    String::from_utf8_lossy(r.content).into_owned(),
                )
            })
            .collect()
    }

    /// Makes the live file refuse every write (ENOSPC, as a full disk
    /// does), from the writer's next open of it.
    fn fill_up(w: &mut LogWriter) {
        let live = file_path(&w.live.dir, 0);
        fs::rename(&live, w.live.dir.join("saved")).unwrap();
        std::os::unix::fs::symlink("/dev/full", &live).unwrap();
        w.live.file = None;
    }

    /// Makes room again: the live file is a file again.
    fn free_up(w: &LogWriter) {
        fs::remove_file(file_path(&w.live.dir, 0)).unwrap();
        fs::rename(w.live.dir.join("saved"), file_path(&w.live.dir, 0)).unwrap();
    }

    #[test]
    fn a_full_disk_drops_counts_and_notes_the_gap_once_it_has_room() {
        use Stream::{Stderr, Stdout};
        let tmp = TempDir::new("full");
        let mut w = LogWriter::open(&tmp.0, 1 << 20, 1).unwrap();
        w.retry_after = Duration::ZERO;
        w.write(Stdout, b"kept\n");
        // A line longer than a record: its first piece is written.
        let piece = vec![b'x'; w.max_line];
        w.write(Stdout, &piece);
        fill_up(&mut w);
        w.write(Stdout, b"rest of the long line\nlost\n");
        w.write(Stderr, b"lost too\n");
        assert!(w.is_dropping());
        assert_eq!(w.dropped, 22 + 5 + 9);
        free_up(&w);
        w.write(Stdout, b"back\n");
        assert!(!w.is_dropping());
        assert_eq!(w.dropped, 36, "nothing more dropped");
        let got = records_of(&tmp.0);
        let x = String::from_utf8(piece).unwrap();
        assert_eq!(got.len(), 5, "{got:?}");
        assert_eq!(got[0], (Stdout, true, "kept".to_string()));
        assert_eq!(got[1], (Stdout, false, x));
        // The line the gap cut is ended before the notice.
        assert_eq!(got[2], (Stdout, true, String::new()));
        let (stream, full, notice) = &got[3];
        assert_eq!((*stream, *full), (Stderr, true));
        assert!(
            notice.starts_with("berth: 36 bytes of output dropped from 20"),
            "{notice}"
        );
        assert!(
            notice.ends_with(&format!(
                ": write {}: No space left on device",
                file_path(&tmp.0, 0).display()
            )),
            "{notice}"
        );
        assert_eq!(got[4], (Stdout, true, "back".to_string()));
    }

    #[test]
    fn while_dropping_no_write_is_tried_until_the_retry_time() {
        use Stream::Stdout;
        let tmp = TempDir::new("retry");
        let mut w = LogWriter::open(&tmp.0, 1 << 20, 1).unwrap();
        w.retry_after = Duration::from_secs(3600);
        fill_up(&mut w);
        w.write(Stdout, b"one\n");
        free_up(&w);
        // Room again, but the next try is an hour away: still dropped.
        w.write(Stdout, b"two\n");
        assert_eq!(w.dropped, 8);
        assert!(records_of(&tmp.0).is_empty());
        // The end of the output is the last chance to say what was lost.
        w.write(Stdout, b"unfinished");
        w.finish();
        assert_eq!(w.dropped, 18);
        let got = records_of(&tmp.0);
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].2.starts_with("berth: 18 bytes of output dropped"));
    }

    #[test]
    fn garbage_lines_are_not_records() {
        let mut clock = Clock::default();
        let t = "2026-11-29T10:00:00.000000001Z";
        for garbage in [
            "nonsense".to_string(),
            format!("{t} stdin F x"),
            format!("{t}stdout F x"),
            "t stdout F x".to_string(),
            "2026-13-29T10:00:00Z stdout F x".to_string(),
            "#o x".to_string(),
            String::new(),
        ] {
            assert_eq!(clock.read(garbage.as_bytes()), None, "{garbage}");
        }
        let old = format!("{t} stderr P x y");
        let r = clock.read(old.as_bytes()).unwrap();
        assert_eq!(
            (r.time, r.stream, r.full, r.content),
            (
                1_795_946_400_000_000_001,
                Stream::Stderr,
                false,
                &b"x y"[..]
            )
        );
        // Bad time records leave the time as it was.
        assert_eq!(clock.read(b"@yesterday"), None);
        assert_eq!(clock.read(b"+-5"), None);
        assert_eq!(clock.read(b"o x").unwrap().time, 0);
    }
}
