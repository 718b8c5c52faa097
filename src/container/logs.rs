//! Container logs: size-capped files written by the monitor, read back into
//! lines by the client.
//!
//! One record per line: `<RFC 3339 time> <stdout|stderr> <F|P> <bytes>`,
//! where P marks a partial line (a long line is cut into records, or the
//! stream ended without a newline) and F the record that ends a line.
//! `container.log` is the live file; when a record would take it past the
//! size cap it becomes `container.log.1`, `.1` becomes `.2` and so on, and
//! the oldest beyond `max-files` is removed. Writes never wait on anyone:
//! if the disk refuses one (full), the output is dropped and counted, and
//! no write is tried for a second; the first write that works again is
//! preceded by one stderr record saying how many bytes were dropped, over
//! what time, and why (see [`gap_notice`]).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::{errors, host};

/// After a write failed, how long output is dropped before the next try.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

pub const LOG_FILE: &str = "container.log";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
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

pub struct LogWriter {
    dir: PathBuf,
    file: Option<File>,
    size: u64,
    max_size: u64,
    max_files: u32,
    /// The unfinished line of each stream.
    pending: [Vec<u8>; 2],
    /// Whether the last record written of each stream was a partial one.
    open_line: [bool; 2],
    /// Longest piece of a line kept before it is written as a partial.
    max_line: usize,
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

impl LogWriter {
    pub fn open(dir: &Path, max_size: u64, max_files: u32) -> io::Result<LogWriter> {
        fs::create_dir_all(dir)?;
        let mut w = LogWriter {
            dir: dir.to_path_buf(),
            file: None,
            size: 0,
            max_size,
            max_files: max_files.max(1),
            pending: [Vec::new(), Vec::new()],
            open_line: [false, false],
            max_line: (max_size / 4).clamp(256, 16 * 1024) as usize,
            gap: None,
            dropped: 0,
            retry_after: RETRY_AFTER,
        };
        w.reopen()?;
        Ok(w)
    }

    fn reopen(&mut self) -> io::Result<()> {
        let f = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o640)
            .custom_flags(libc::O_CLOEXEC)
            .open(file_path(&self.dir, 0))?;
        self.size = f.metadata()?.len();
        self.file = Some(f);
        Ok(())
    }

    /// Takes bytes read from a stream; complete lines are written at once.
    pub fn write(&mut self, stream: Stream, mut data: &[u8]) {
        let idx = stream as usize;
        while !data.is_empty() {
            match data.iter().position(|&b| b == b'\n') {
                Some(nl) => {
                    let mut line = std::mem::take(&mut self.pending[idx]);
                    line.extend_from_slice(&data[..nl]);
                    self.emit_line(stream, &line, true);
                    data = &data[nl + 1..];
                }
                None => {
                    self.pending[idx].extend_from_slice(data);
                    data = &[];
                }
            }
            while self.pending[idx].len() >= self.max_line {
                let rest = self.pending[idx].split_off(self.max_line);
                let piece = std::mem::replace(&mut self.pending[idx], rest);
                self.emit(stream, &piece, false);
            }
        }
    }

    fn emit_line(&mut self, stream: Stream, line: &[u8], full: bool) {
        let mut line = line;
        while line.len() > self.max_line {
            self.emit(stream, &line[..self.max_line], false);
            line = &line[self.max_line..];
        }
        self.emit(stream, line, full);
    }

    /// Writes what is left of unfinished lines, as partial records, and
    /// makes one last try at ending a gap.
    pub fn finish(&mut self) {
        for stream in [Stream::Stdout, Stream::Stderr] {
            let rest = std::mem::take(&mut self.pending[stream as usize]);
            if !rest.is_empty() {
                self.emit(stream, &rest, false);
            }
        }
        if self.gap.is_some() {
            let _ = self.close_gap();
        }
    }

    /// Whether output is being dropped now.
    #[cfg(test)]
    pub fn is_dropping(&self) -> bool {
        self.gap.is_some()
    }

    fn emit(&mut self, stream: Stream, content: &[u8], full: bool) {
        let waiting = self
            .gap
            .as_ref()
            .is_some_and(|g| Instant::now() < g.retry_at);
        // The container wrote the newline that ends a full record too.
        let lost = content.len() + usize::from(full);
        if waiting || (self.gap.is_some() && self.close_gap().is_err()) {
            self.drop_bytes(lost);
            return;
        }
        if let Err(e) = self.append(stream, content, full) {
            self.open_gap(&e);
            self.drop_bytes(lost);
        }
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
                        file_path(&self.dir, 0).display(),
                        errors::io_text(e)
                    ),
                    retry_at,
                });
            }
        }
    }

    /// Ends the gap in the log: lines cut by it are ended, then the notice
    /// is written. On failure the gap goes on, with a new retry time.
    fn close_gap(&mut self) -> io::Result<()> {
        let Some(g) = &self.gap else {
            return Ok(());
        };
        let notice = gap_notice(g.bytes, g.since_ns, host::now_ns(), &g.why);
        let result = (|| {
            for stream in [Stream::Stdout, Stream::Stderr] {
                if self.open_line[stream as usize] {
                    self.append(stream, b"", true)?;
                }
            }
            self.append(Stream::Stderr, notice.as_bytes(), true)
        })();
        match &result {
            Ok(()) => self.gap = None,
            Err(e) => self.open_gap(e),
        }
        result
    }

    /// Appends one record to the live file, rotating first if it would not
    /// fit. A record the disk takes only in part is cut off again, so the
    /// next one starts on a line of its own.
    fn append(&mut self, stream: Stream, content: &[u8], full: bool) -> io::Result<()> {
        let mut rec = Vec::with_capacity(content.len() + 48);
        rec.extend_from_slice(host::rfc3339(host::now_ns()).as_bytes());
        rec.push(b' ');
        rec.extend_from_slice(stream.as_str().as_bytes());
        rec.extend_from_slice(if full { b" F " } else { b" P " });
        rec.extend_from_slice(content);
        rec.push(b'\n');
        if self.size > 0 && self.size + rec.len() as u64 > self.max_size {
            self.rotate();
        }
        if self.file.is_none() {
            self.reopen()?;
        }
        let Some(f) = self.file.as_mut() else {
            return Err(io::Error::from_raw_os_error(libc::EBADF));
        };
        match f.write_all(&rec) {
            Ok(()) => {
                self.size += rec.len() as u64;
                self.open_line[stream as usize] = !full;
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

    fn rotate(&mut self) {
        self.file = None;
        let _ = fs::remove_file(file_path(&self.dir, self.max_files - 1));
        for n in (1..self.max_files.saturating_sub(1) + 1).rev() {
            let _ = fs::rename(file_path(&self.dir, n - 1), file_path(&self.dir, n));
        }
        if self.max_files == 1 {
            let _ = fs::remove_file(file_path(&self.dir, 0));
        }
        self.size = 0;
        let _ = self.reopen();
    }
}

/// One parsed log record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    pub time: &'a str,
    pub stream: Stream,
    pub full: bool,
    pub content: &'a [u8],
}

/// Parses one line of a log file (without its newline).
pub fn parse_record(line: &[u8]) -> Option<Record<'_>> {
    let sp1 = line.iter().position(|&b| b == b' ')?;
    let time = std::str::from_utf8(&line[..sp1]).ok()?;
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
    Some(Record {
        time,
        stream,
        full,
        content,
    })
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
    pending: [Option<(String, Vec<u8>)>; 2],
    /// A file line not yet ended by '\n'.
    raw: Vec<u8>,
}

/// One line as it was written to a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The time of the line's first record.
    pub time: String,
    pub stream: Stream,
    /// Without its newline.
    pub text: Vec<u8>,
    /// False for a line the stream ended without a newline.
    pub newline: bool,
}

impl Assembler {
    /// Takes bytes read from a log file; each line completed by them is
    /// pushed to `out`.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<Line>) {
        self.raw.extend_from_slice(bytes);
        let mut start = 0;
        while let Some(nl) = self.raw[start..].iter().position(|&b| b == b'\n') {
            let line = self.raw[start..start + nl].to_vec();
            start += nl + 1;
            if let Some(rec) = parse_record(&line) {
                let slot = &mut self.pending[rec.stream as usize];
                let (time, mut text) = slot
                    .take()
                    .unwrap_or_else(|| (rec.time.to_string(), Vec::new()));
                text.extend_from_slice(rec.content);
                if rec.full {
                    out.push(Line {
                        time,
                        stream: rec.stream,
                        text,
                        newline: true,
                    });
                } else {
                    *slot = Some((time, text));
                }
            }
        }
        self.raw.drain(..start);
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
            for l in fs::read(&f)
                .unwrap()
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
            {
                let r = parse_record(l).unwrap();
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
        for i in 0..2000 {
            w.write(Stream::Stdout, format!("line {i}\n").as_bytes());
        }
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
        for i in 0..150 {
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
            for l in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                partials += usize::from(!parse_record(l).unwrap().full);
            }
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
        for l in &lines {
            let t = l.time.as_bytes();
            assert_eq!((t.len(), t[10], t[29]), (30, b'T', b'Z'), "{}", l.time);
        }
        // Fed in small pieces that cut records and files anywhere, the
        // same lines come back.
        assert_eq!(read_back(&tmp.0, 7), lines);
    }

    /// The live file's records: (stream, full, content).
    fn records_of(dir: &Path) -> Vec<(Stream, bool, String)> {
        fs::read(file_path(dir, 0))
            .unwrap()
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| {
                let r = parse_record(l).unwrap();
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
        let live = file_path(&w.dir, 0);
        fs::rename(&live, w.dir.join("saved")).unwrap();
        std::os::unix::fs::symlink("/dev/full", &live).unwrap();
        w.file = None;
    }

    /// Makes room again: the live file is a file again.
    fn free_up(w: &LogWriter) {
        fs::remove_file(file_path(&w.dir, 0)).unwrap();
        fs::rename(w.dir.join("saved"), file_path(&w.dir, 0)).unwrap();
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
        assert!(parse_record(b"nonsense").is_none());
        assert!(parse_record(b"t stdin F x").is_none());
        assert_eq!(parse_record(b"t stderr P x y").unwrap().content, b"x y");
    }
}
