//! `lab image prepare`: a copy of a base image with one board's first-boot settings in its
//! FAT boot partition, written with mtools (no mount, no root). The partition is found in the
//! image's MBR ([`boot_partition`], pure); what kind of image it is comes from the files in
//! that partition's root ([`ImageKind::recognise`], pure); the templates are the plain files
//! under `images/` (compiled in, so the binary works without the checkout) filled from the
//! inventory ([`render`], pure).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

/// The cloud-init templates (`images/cloud-init/`).
const USER_DATA: &str = include_str!("../../images/cloud-init/user-data");
const META_DATA: &str = include_str!("../../images/cloud-init/meta-data");
const NETWORK_CONFIG: &str = include_str!("../../images/cloud-init/network-config");

/// What first-boot mechanism an image's boot partition shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageKind {
    /// `user-data` / `meta-data` / `network-config` in the boot partition (Ubuntu for the
    /// Pi, Jetson-style images, recent Raspberry Pi OS).
    CloudInit,
}

impl ImageKind {
    /// From the names in the boot partition's root (any case).
    pub fn recognise(names: &[String]) -> Result<ImageKind, String> {
        let has = |n: &str| names.iter().any(|f| f.eq_ignore_ascii_case(n));
        if has("user-data") || has("meta-data") || has("network-config") {
            return Ok(ImageKind::CloudInit);
        }
        if has("cmdline.txt") {
            return Err(
                "a Raspberry Pi OS image without cloud-init (firstrun.sh style): not \
                        supported yet; use an image with cloud-init"
                    .into(),
            );
        }
        Err(format!(
            "unknown image: its boot partition has no cloud-init files (found: {})",
            if names.is_empty() {
                "nothing".to_string()
            } else {
                names.join(", ")
            }
        ))
    }
}

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

/// One board's first-boot settings.
#[derive(Debug, Clone)]
pub struct FirstBoot {
    pub hostname: String,
    pub user: String,
    pub ssh_key: String,
    /// A static `address/prefix` and gateway, or DHCP.
    pub static_address: Option<(String, String)>,
}

/// The files to write for `kind`: (name in the boot partition, content).
pub fn render(kind: ImageKind, boot: &FirstBoot) -> Vec<(&'static str, String)> {
    let network = match &boot.static_address {
        None => "    dhcp4: true".to_string(),
        Some((cidr, gateway)) => format!(
            "    dhcp4: false\n    addresses: [{cidr}]\n    routes:\n      - to: default\n        via: {gateway}"
        ),
    };
    let fill = |t: &str| {
        t.replace("{{hostname}}", &boot.hostname)
            .replace("{{user}}", &boot.user)
            .replace("{{ssh_key}}", boot.ssh_key.trim())
            .replace("{{network}}", &network)
    };
    match kind {
        ImageKind::CloudInit => vec![
            ("user-data", fill(USER_DATA)),
            ("meta-data", fill(META_DATA)),
            ("network-config", fill(NETWORK_CONFIG)),
        ],
    }
}

/// Copies `base` to `out` and writes `boot`'s files into its boot partition; the kind found.
/// On any failure `out` is removed (nothing half-prepared is left).
pub fn prepare(base: &Path, out: &Path, boot: &FirstBoot) -> anyhow::Result<ImageKind> {
    if base
        .extension()
        .is_some_and(|e| e == "xz" || e == "gz" || e == "zip")
    {
        bail!(
            "{} is compressed: decompress it first (e.g. `xz -dk {}`)",
            base.display(),
            base.display()
        );
    }
    if out.exists() {
        bail!("{} exists: choose another -o or remove it", out.display());
    }
    let done = (|| -> anyhow::Result<ImageKind> {
        std::fs::copy(base, out)
            .with_context(|| format!("copying {} to {}", base.display(), out.display()))?;
        let mut sector = vec![0u8; 512];
        let mut f = std::fs::File::open(out)?;
        std::io::Read::read_exact(&mut f, &mut sector).context("reading the image's MBR")?;
        let offset =
            boot_partition(&sector).map_err(|e| anyhow::anyhow!("{}: {e}", base.display()))?;
        let image = format!("{}@@{offset}", out.display());
        let listing = mtools("mdir", &["-b", "-i", &image, "::/"])?;
        let names: Vec<String> = listing
            .lines()
            .map(|l| l.trim().trim_start_matches("::/").to_string())
            .filter(|n| !n.is_empty())
            .collect();
        let kind =
            ImageKind::recognise(&names).map_err(|e| anyhow::anyhow!("{}: {e}", base.display()))?;
        // The rendered files go through a private directory of their own, removed after.
        let dir = std::env::temp_dir().join(format!(
            "lab-image-{}-{}",
            std::process::id(),
            boot.hostname
        ));
        std::fs::create_dir_all(&dir).with_context(|| format!("{}", dir.display()))?;
        let copied = (|| -> anyhow::Result<()> {
            for (name, text) in render(kind, boot) {
                let file = dir.join(name);
                std::fs::write(&file, text)?;
                let file = file.to_string_lossy().to_string();
                mtools("mcopy", &["-o", "-i", &image, &file, &format!("::/{name}")])?;
            }
            Ok(())
        })();
        let _ = std::fs::remove_dir_all(&dir);
        copied?;
        Ok(kind)
    })();
    if done.is_err() {
        let _ = std::fs::remove_file(out);
    }
    done
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

/// The public half of the cluster's SSH key: `<state>/ssh/id_ed25519.pub` for a managed key,
/// `<file>.pub` for a key file; else `explicit`.
pub fn public_key(
    inv: &crate::inventory::Inventory,
    explicit: Option<&Path>,
) -> anyhow::Result<String> {
    let path: PathBuf = match (explicit, &inv.cluster.ssh_key) {
        (Some(p), _) => p.to_path_buf(),
        (None, crate::inventory::SshKey::Managed) => {
            crate::state::StateDir::new(&inv.cluster.state_dir)
                .ssh_key()
                .with_extension("pub")
        }
        (None, crate::inventory::SshKey::File(f)) => {
            let mut p = f.clone().into_os_string();
            p.push(".pub");
            PathBuf::from(p)
        }
        (None, _) => bail!(
            "the inventory's ssh_key gives no public key file to put on the board: pass \
             --authorized-key ~/.ssh/id_ed25519.pub"
        ),
    };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading the public key {}", path.display()))?;
    let key = text.trim().to_string();
    if !key.starts_with("ssh-") && !key.starts_with("ecdsa-") {
        bail!("{} is not an SSH public key", path.display());
    }
    Ok(key)
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

    #[test]
    fn images_are_recognised_by_their_boot_files_or_refused() {
        let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            ImageKind::recognise(&names(&["config.txt", "user-data", "META-DATA"])),
            Ok(ImageKind::CloudInit)
        );
        let old = ImageKind::recognise(&names(&["cmdline.txt", "config.txt"]));
        assert!(old.is_err_and(|e| e.contains("firstrun")));
        let unknown = ImageKind::recognise(&names(&["EFI"]));
        assert!(unknown.is_err_and(|e| e.contains("unknown image") && e.contains("EFI")));
    }

    #[test]
    fn templates_are_filled_for_dhcp_and_a_static_address() {
        let mut boot = FirstBoot {
            hostname: "pi-3".into(),
            user: "pi".into(),
            ssh_key: "ssh-ed25519 AAAAC3 lab@cluster\n".into(),
            static_address: None,
        };
        let files = render(ImageKind::CloudInit, &boot);
        let text = |name: &str| {
            files
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, t)| t.clone())
                .unwrap_or_default()
        };
        assert!(text("user-data").starts_with("#cloud-config\n"));
        assert!(text("user-data").contains("hostname: pi-3"));
        assert!(text("user-data").contains("      - ssh-ed25519 AAAAC3 lab@cluster\n"));
        assert!(text("meta-data").contains("instance-id: lab-pi-3"));
        assert!(text("network-config").contains("dhcp4: true"));
        assert!(files.iter().all(|(_, t)| !t.contains("{{")), "{files:?}");
        boot.static_address = Some(("192.168.1.13/24".into(), "192.168.1.1".into()));
        let files = render(ImageKind::CloudInit, &boot);
        let net = &files[2].1;
        assert!(net.contains("addresses: [192.168.1.13/24]") && net.contains("via: 192.168.1.1"));
    }
}
