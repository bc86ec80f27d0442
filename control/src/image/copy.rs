//! The base image copied to the board's output file: as it is, or an `.xz` decompressed while
//! copying (streamed, never whole in memory or on disk twice). Runs of zeros are skipped
//! rather than written, so the output is sparse where the image is empty. Progress is shown
//! on a terminal. Other compressions are refused by name. The caller removes the output if
//! anything fails.

use std::fs::File;
use std::io::{IsTerminal, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// What a base image's first bytes say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Xz,
    /// A format `lab` does not decompress; its name.
    Other(&'static str),
}

impl Compression {
    /// From the file's first bytes (magic numbers).
    pub fn sniff(head: &[u8]) -> Compression {
        match head {
            [0xFD, b'7', b'z', b'X', b'Z', 0x00, ..] => Compression::Xz,
            [0x1F, 0x8B, ..] => Compression::Other("gzip"),
            [b'P', b'K', 0x03, 0x04, ..] => Compression::Other("zip"),
            [0x28, 0xB5, 0x2F, 0xFD, ..] => Compression::Other("zstd"),
            [b'B', b'Z', b'h', ..] => Compression::Other("bzip2"),
            _ => Compression::None,
        }
    }
}

/// Copy size of one read or write.
const CHUNK: usize = 1 << 20;

/// Copies (or decompresses) `base` into `out`, which the caller has just created empty.
pub fn copy_base(base: &Path, out: &mut File, out_name: &Path) -> anyhow::Result<Compression> {
    let mut input = File::open(base).with_context(|| format!("opening {}", base.display()))?;
    let mut head = [0u8; 6];
    let n =
        read_full(&mut input, &mut head).with_context(|| format!("reading {}", base.display()))?;
    let compression = Compression::sniff(&head[..n]);
    if let Compression::Other(name) = compression {
        bail!(
            "{} is {name}-compressed: decompress it first (lab reads .xz itself)",
            base.display()
        );
    }
    input.seek(SeekFrom::Start(0))?;
    let total = input
        .metadata()
        .with_context(|| format!("reading {}", base.display()))?
        .len();
    let read = Arc::new(AtomicU64::new(0));
    let mut progress = Progress::new(out_name, total, read.clone());
    let source = CountingReader { inner: input, read };
    let written = match compression {
        Compression::Xz => {
            let mut xz =
                liblzma::read::XzDecoder::new_multi_decoder(std::io::BufReader::new(source));
            sparse_copy(&mut xz, out, &mut |n| progress.update(n))
        }
        _ => {
            let mut plain = source;
            sparse_copy(&mut plain, out, &mut |n| progress.update(n))
        }
    };
    progress.finish();
    let written = written.with_context(|| match compression {
        Compression::Xz => format!(
            "decompressing {} (a damaged or truncated .xz?)",
            base.display()
        ),
        _ => format!("copying {}", base.display()),
    })?;
    out.set_len(written)
        .and_then(|()| out.sync_all())
        .with_context(|| format!("writing {}", out_name.display()))?;
    Ok(compression)
}

/// Copies `from` to `to` chunk by chunk, seeking over all-zero chunks; the bytes copied.
fn sparse_copy(
    from: &mut dyn Read,
    to: &mut File,
    on_progress: &mut dyn FnMut(u64),
) -> std::io::Result<u64> {
    let mut buf = vec![0u8; CHUNK];
    let mut done = 0u64;
    loop {
        let n = read_full(from, &mut buf)?;
        if n == 0 {
            return Ok(done);
        }
        if buf[..n].iter().all(|&b| b == 0) {
            to.seek(SeekFrom::Current(n as i64))?;
        } else {
            to.write_all(&buf[..n])?;
        }
        done += n as u64;
        on_progress(done);
    }
}

/// Reads until `buf` is full or the input ends; the bytes read.
fn read_full(from: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match from.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// A reader that counts what passed (the compressed bytes consumed, for progress).
struct CountingReader<R> {
    inner: R,
    read: Arc<AtomicU64>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// One progress line on stderr, rewritten at most twice a second, only on a terminal.
struct Progress {
    name: String,
    /// The base's size, and how much of it was read so far.
    total: u64,
    read: Arc<AtomicU64>,
    on_terminal: bool,
    last: Instant,
    shown: bool,
}

impl Progress {
    fn new(out: &Path, total: u64, read: Arc<AtomicU64>) -> Progress {
        Progress {
            name: out.display().to_string(),
            total,
            read,
            on_terminal: std::io::stderr().is_terminal(),
            last: Instant::now(),
            shown: false,
        }
    }

    fn update(&mut self, written: u64) {
        if !self.on_terminal || self.last.elapsed() < Duration::from_millis(500) {
            return;
        }
        self.last = Instant::now();
        self.shown = true;
        let read = self.read.load(Ordering::Relaxed);
        eprint!(
            "\r  {}: {} written, {}% of the base read   ",
            self.name,
            mib(written),
            (read * 100).checked_div(self.total).unwrap_or(100)
        );
    }

    fn finish(&mut self) {
        if self.shown {
            eprintln!();
        }
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / (1024.0 * 1024.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressions_are_told_by_their_magic() {
        assert_eq!(
            Compression::sniff(&[0xFD, b'7', b'z', b'X', b'Z', 0]),
            Compression::Xz
        );
        assert_eq!(
            Compression::sniff(&[0x1F, 0x8B, 8]),
            Compression::Other("gzip")
        );
        assert_eq!(Compression::sniff(b"PK\x03\x04"), Compression::Other("zip"));
        assert_eq!(Compression::sniff(&[0u8; 6]), Compression::None, "an MBR");
        assert_eq!(Compression::sniff(&[]), Compression::None);
    }

    #[test]
    fn zeros_are_skipped_and_the_rest_copied() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut data = vec![0u8; 3 * CHUNK + 17];
        data[5] = 1;
        data[3 * CHUNK + 3] = 7;
        let mut out = File::create(dir.path().join("out")).expect("out");
        let mut seen = 0;
        let n = sparse_copy(&mut data.as_slice(), &mut out, &mut |d| seen = d).expect("copy");
        out.set_len(n).expect("len");
        assert_eq!(n, data.len() as u64);
        assert_eq!(seen, n);
        assert_eq!(std::fs::read(dir.path().join("out")).expect("read"), data);
    }
}
