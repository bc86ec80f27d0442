//! An image's FAT boot partition, read and written with mtools (no mount, no root): found in
//! the image's MBR ([`boot_partition`], pure), listed, read and written file by file.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

/// The byte offset of the first FAT partition in the MBR `sector` (the image's first 512
/// bytes).
pub fn boot_partition(sector: &[u8]) -> Result<u64, String> {
    if sector.len() < 512 || sector[510] != 0x55 || sector[511] != 0xAA {
        return Err("no MBR partition table (no 55 AA at byte 510)".into());
    }
    for i in 0..4 {
        let entry = &sector[446 + 16 * i..446 + 16 * (i + 1)];
        let kind = entry[4];
        let start = u32::from_le_bytes([entry[8], entry[9], entry[10], entry[11]]);
        if matches!(kind, 0x01 | 0x04 | 0x06 | 0x0b | 0x0c | 0x0e) && start > 0 {
            return Ok(u64::from(start) * 512);
        }
    }
    Err("no FAT partition in the MBR (types 0b/0c/0e/06)".into())
}

/// The boot partition of one image file, as mtools names it (`image@@offset`).
pub struct BootPartition {
    spec: String,
}

impl BootPartition {
    /// The first FAT partition of `image`'s MBR.
    pub fn open(image: &Path) -> anyhow::Result<BootPartition> {
        let mut sector = vec![0u8; 512];
        let mut f =
            std::fs::File::open(image).with_context(|| format!("opening {}", image.display()))?;
        std::io::Read::read_exact(&mut f, &mut sector)
            .with_context(|| format!("reading {}'s MBR", image.display()))?;
        let offset = boot_partition(&sector).map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(BootPartition {
            spec: format!("{}@@{offset}", image.display()),
        })
    }

    /// The names in the partition's root directory.
    pub fn root_names(&self) -> anyhow::Result<Vec<String>> {
        let listing = mtools("mdir", &["-b", "-i", &self.spec, "::/"])?;
        Ok(listing
            .lines()
            .map(|l| l.trim().trim_start_matches("::/").to_string())
            .filter(|n| !n.is_empty())
            .collect())
    }

    /// A text file of the root directory.
    pub fn read(&self, name: &str) -> anyhow::Result<String> {
        mtools("mtype", &["-i", &self.spec, &format!("::/{name}")])
    }

    /// Writes `files` (name, content) into the root directory, replacing what is there. They
    /// pass through a private directory of their own (0700; they may hold keys), removed
    /// after.
    pub fn write(&self, files: &[(&str, String)], label: &str) -> anyhow::Result<()> {
        let staging = staging_dir(label)?;
        let written = (|| -> anyhow::Result<()> {
            for (name, text) in files {
                let file = staging.join(name);
                crate::state::write_atomic(&file, text.as_bytes(), crate::state::SECRET_MODE)?;
                let file = file.to_string_lossy().to_string();
                mtools(
                    "mcopy",
                    &["-o", "-i", &self.spec, &file, &format!("::/{name}")],
                )?;
            }
            Ok(())
        })();
        let _ = std::fs::remove_dir_all(&staging);
        written
    }
}

/// A new private directory under the system's temporary directory.
pub fn staging_dir(label: &str) -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("lab-image-{}-{label}", std::process::id()));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// Runs an mtools command; its output, or an error with its stderr.
fn mtools(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(program)
        .args(args)
        .env("MTOOLS_SKIP_CHECK", "1")
        .output()
        .with_context(|| format!("running {program} (install the mtools package)"))?;
    if !out.status.success() {
        bail!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mbr(kind: u8, start: u32) -> Vec<u8> {
        let mut s = vec![0u8; 512];
        s[446 + 4] = kind;
        s[446 + 8..446 + 12].copy_from_slice(&start.to_le_bytes());
        s[510] = 0x55;
        s[511] = 0xAA;
        s
    }

    #[test]
    fn the_boot_partition_is_the_first_fat_one() {
        assert_eq!(boot_partition(&mbr(0x0c, 8192)), Ok(8192 * 512));
        assert!(boot_partition(&mbr(0x83, 8192)).is_err(), "Linux only");
        assert!(boot_partition(&vec![0u8; 512]).is_err(), "no signature");
    }
}
