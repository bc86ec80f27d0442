//! Writing a prepared board image to a card (`lab flash`): the checks that keep a user from
//! writing over the wrong disk, the write with progress, and the read-back verification.
//!
//! A target must be a whole block device (not a partition, not a file), not mounted (the
//! disk or any of its partitions, swap included), not the disk this system runs from, and at
//! least as large as the image. Devices are told apart by their `major:minor`, read from
//! sysfs, and compared with `/proc/self/mountinfo` and `/proc/swaps`; the pure halves
//! ([`mounted_devices`], [`refusals`]) are tested without a disk. The write opens the device
//! with `O_EXCL` (the kernel refuses a device in use), goes in 4 MiB chunks with an fsync at
//! the end; the verification drops the device's cached pages and compares SHA-256 of the
//! image with that of what the device gives back.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use sha2::{Digest, Sha256};

/// Bytes per write and read.
const CHUNK: usize = 4 << 20;

/// A block device, as sysfs describes it.
#[derive(Debug, Clone)]
pub struct Disk {
    pub path: PathBuf,
    /// The kernel's name (`sdb`, `mmcblk0`, `loop3`).
    pub name: String,
    pub size: u64,
    /// Its `major:minor` and those of its partitions.
    pub devices: BTreeSet<String>,
    /// A partition rather than a whole disk.
    pub is_partition: bool,
    /// Vendor/model, when sysfs has them.
    pub model: Option<String>,
}

/// Reads what sysfs says of the block device at `path`.
pub fn inspect(path: &Path) -> anyhow::Result<Disk> {
    let meta = std::fs::metadata(path).with_context(|| format!("{}", path.display()))?;
    if !meta.file_type().is_block_device() {
        bail!(
            "{} is not a block device: give the card's whole disk, e.g. /dev/sdb or /dev/mmcblk0",
            path.display()
        );
    }
    let real = std::fs::canonicalize(path).with_context(|| format!("{}", path.display()))?;
    let name = real
        .file_name()
        .and_then(|n| n.to_str())
        .map(str::to_string)
        .with_context(|| format!("{} has no device name", real.display()))?;
    let sys = Path::new("/sys/class/block").join(&name);
    let read = |p: PathBuf| std::fs::read_to_string(p).map(|t| t.trim().to_string());
    let sectors: u64 = read(sys.join("size"))
        .with_context(|| format!("sysfs has no size for {name}"))?
        .parse()
        .with_context(|| format!("sysfs size of {name}"))?;
    let mut devices = BTreeSet::new();
    devices.insert(read(sys.join("dev")).with_context(|| format!("sysfs dev of {name}"))?);
    if let Ok(entries) = std::fs::read_dir(&sys) {
        for entry in entries.filter_map(Result::ok) {
            let sub = entry.path();
            if sub.join("partition").exists() {
                if let Ok(dev) = read(sub.join("dev")) {
                    devices.insert(dev);
                }
            }
        }
    }
    let model = ["device/vendor", "device/model"]
        .iter()
        .filter_map(|f| read(sys.join(f)).ok())
        .filter(|t| !t.is_empty())
        .reduce(|a, b| format!("{a} {b}"));
    Ok(Disk {
        path: path.to_path_buf(),
        is_partition: sys.join("partition").exists(),
        name,
        size: sectors * 512,
        devices,
        model,
    })
}

/// What is in use now: (`major:minor` of every mounted filesystem, that of `/`).
pub fn mounted_devices(mountinfo: &str) -> (BTreeSet<String>, Option<String>) {
    let mut all = BTreeSet::new();
    let mut root = None;
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // id parent major:minor root mount-point ...
        if let (Some(dev), Some(point)) = (fields.get(2), fields.get(4)) {
            all.insert(dev.to_string());
            if *point == "/" {
                root = Some(dev.to_string());
            }
        }
    }
    (all, root)
}

/// Why `disk` must not be written with an image of `image_size` bytes (empty: go ahead).
/// `mounted`, `root`: from [`mounted_devices`]; `swaps`: `major:minor` of swap devices.
pub fn refusals(
    disk: &Disk,
    image_size: u64,
    mounted: &BTreeSet<String>,
    root: Option<&str>,
    swaps: &BTreeSet<String>,
) -> Vec<String> {
    let mut out = Vec::new();
    let name = disk.path.display();
    if disk.is_partition {
        out.push(format!(
            "{name} is a partition: give the whole disk (the image has its own partitions)"
        ));
    }
    if root.is_some_and(|r| disk.devices.contains(r)) {
        out.push(format!("{name} holds this system's root filesystem"));
    } else if disk.devices.iter().any(|d| mounted.contains(d)) {
        out.push(format!(
            "{name} (or a partition of it) is mounted: unmount it first"
        ));
    }
    if disk.devices.iter().any(|d| swaps.contains(d)) {
        out.push(format!("{name} (or a partition of it) is in use as swap"));
    }
    if disk.size < image_size {
        out.push(format!(
            "{name} is smaller than the image ({} < {} bytes)",
            disk.size, image_size
        ));
    }
    out
}

/// `major:minor` of the swap devices in `/proc/swaps`.
pub fn swap_devices() -> BTreeSet<String> {
    let text = std::fs::read_to_string("/proc/swaps").unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .filter_map(|dev| {
            let name = Path::new(dev).file_name()?.to_str()?.to_string();
            std::fs::read_to_string(Path::new("/sys/class/block").join(name).join("dev"))
                .ok()
                .map(|t| t.trim().to_string())
        })
        .collect()
}

/// Every check of [`refusals`] against this machine's state now.
pub fn check(disk: &Disk, image_size: u64) -> anyhow::Result<()> {
    let mountinfo =
        std::fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
    let (mounted, root) = mounted_devices(&mountinfo);
    let problems = refusals(disk, image_size, &mounted, root.as_deref(), &swap_devices());
    if problems.is_empty() {
        Ok(())
    } else {
        bail!(
            "refusing to write: {}; nothing was written",
            problems.join("; ")
        )
    }
}

/// How far a write or verification got (for the progress line).
pub struct Progress {
    pub done: u64,
    pub total: u64,
    pub started: Instant,
}

impl Progress {
    pub fn rate_mb_s(&self) -> f64 {
        let secs = self.started.elapsed().as_secs_f64().max(1e-6);
        self.done as f64 / secs / 1e6
    }
}

/// Writes `image` to `disk` (checked first) and reads it back; `progress` is called about
/// twice a second with the phase ("writing", "verifying"). Returns the image's SHA-256.
pub fn write_and_verify(
    image: &Path,
    disk: &Disk,
    progress: &mut dyn FnMut(&str, &Progress),
) -> anyhow::Result<String> {
    let mut source = File::open(image).with_context(|| format!("{}", image.display()))?;
    let size = source.metadata()?.len();
    check(disk, size)?;
    let mut target = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(nix::libc::O_EXCL)
        .open(&disk.path)
        .with_context(|| format!("opening {} (in use?)", disk.path.display()))?;
    let mut buf = vec![0u8; CHUNK];
    let mut hash = Sha256::new();
    let mut p = Progress {
        done: 0,
        total: size,
        started: Instant::now(),
    };
    let mut last = Instant::now();
    loop {
        let n = source.read(&mut buf).context("reading the image")?;
        if n == 0 {
            break;
        }
        target
            .write_all(&buf[..n])
            .with_context(|| format!("writing {} at byte {}", disk.path.display(), p.done))?;
        hash.update(&buf[..n]);
        p.done += n as u64;
        if last.elapsed() >= Duration::from_millis(500) {
            progress("writing", &p);
            last = Instant::now();
        }
    }
    target
        .sync_all()
        .with_context(|| format!("flushing {}", disk.path.display()))?;
    progress("writing", &p);
    let want = hex(&hash.finalize());

    // Read back what the device holds, not what the page cache remembers.
    let _ = nix::fcntl::posix_fadvise(
        std::os::fd::AsRawFd::as_raw_fd(&target),
        0,
        0,
        nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
    );
    drop(target);
    let mut back = File::open(&disk.path).with_context(|| format!("{}", disk.path.display()))?;
    let _ = nix::fcntl::posix_fadvise(
        std::os::fd::AsRawFd::as_raw_fd(&back),
        0,
        0,
        nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
    );
    back.seek(SeekFrom::Start(0))?;
    let mut hash = Sha256::new();
    let mut p = Progress {
        done: 0,
        total: size,
        started: Instant::now(),
    };
    while p.done < size {
        let want_n = ((size - p.done) as usize).min(CHUNK);
        back.read_exact(&mut buf[..want_n])
            .with_context(|| format!("reading {} back at byte {}", disk.path.display(), p.done))?;
        hash.update(&buf[..want_n]);
        p.done += want_n as u64;
        if last.elapsed() >= Duration::from_millis(500) {
            progress("verifying", &p);
            last = Instant::now();
        }
    }
    progress("verifying", &p);
    let got = hex(&hash.finalize());
    if got != want {
        bail!(
            "{} does not hold the image after writing it (SHA-256 {got}, image {want}): the \
             card may be failing or fake",
            disk.path.display()
        );
    }
    Ok(want)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk(devices: &[&str], size: u64, is_partition: bool) -> Disk {
        Disk {
            path: PathBuf::from("/dev/sdx"),
            name: "sdx".into(),
            size,
            devices: devices.iter().map(|d| d.to_string()).collect(),
            is_partition,
            model: None,
        }
    }

    const MOUNTINFO: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
23 22 0:21 / /proc rw - proc proc rw
40 22 8:17 / /media/card rw - vfat /dev/sdb1 rw
";

    #[test]
    fn mounted_devices_and_the_root_come_from_mountinfo() {
        let (all, root) = mounted_devices(MOUNTINFO);
        assert_eq!(root.as_deref(), Some("8:1"));
        assert!(all.contains("8:17") && all.contains("0:21"));
    }

    #[test]
    fn the_system_disk_a_mounted_card_a_partition_and_a_small_card_are_refused() {
        let (mounted, root) = mounted_devices(MOUNTINFO);
        let none = BTreeSet::new();
        let check = |d: &Disk, size| refusals(d, size, &mounted, root.as_deref(), &none);
        let system = check(&disk(&["8:0", "8:1", "8:2"], 1 << 40, false), 1 << 30);
        assert!(system[0].contains("root filesystem"), "{system:?}");
        let card = check(&disk(&["8:16", "8:17"], 32 << 30, false), 1 << 30);
        assert!(card[0].contains("is mounted"), "{card:?}");
        let part = check(&disk(&["8:33"], 32 << 30, true), 1 << 30);
        assert!(part[0].contains("partition"), "{part:?}");
        let small = check(&disk(&["8:32"], 1 << 20, false), 1 << 30);
        assert!(small[0].contains("smaller than the image"), "{small:?}");
        let fine = check(&disk(&["8:32", "8:33"], 32 << 30, false), 1 << 30);
        assert!(fine.is_empty(), "{fine:?}");
        let swaps: BTreeSet<String> = ["8:33".to_string()].into();
        let swap = refusals(
            &disk(&["8:32", "8:33"], 32 << 30, false),
            1,
            &mounted,
            root.as_deref(),
            &swaps,
        );
        assert!(swap[0].contains("swap"), "{swap:?}");
    }
}
