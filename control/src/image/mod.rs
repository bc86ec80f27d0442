//! `lab image prepare`: a copy of a base image (plain or `.xz`, [`copy`]) with one board's
//! first-boot settings written into its FAT boot partition with mtools, no mount, no root
//! ([`fat`]). What kind of image it is comes from that partition's own files ([`kind`], pure);
//! the files written are the templates of `images/` (compiled in) filled from the inventory:
//! cloud-init's ([`cloud_init`]) or Raspberry Pi OS's `firstrun.sh` style ([`raspios`]). Every
//! value is checked before anything is written ([`settings`]); each board gets an SSH host key
//! of its own that `lab` pins before the board first boots ([`host_key`]). A prepare that
//! fails leaves no output file.

pub mod cloud_init;
pub mod copy;
pub mod fat;
pub mod host_key;
pub mod kind;
pub mod raspios;
pub mod settings;

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

pub use copy::Compression;
pub use host_key::HostKey;
pub use kind::{BootMount, ImageKind};
pub use settings::Wifi;

/// Files to write into a boot partition's root: (name, content).
pub type BootFiles = Vec<(&'static str, String)>;

/// A static address on eth0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticAddress {
    /// `192.168.1.13/24`
    pub cidr: String,
    /// The default route, and the DNS server.
    pub gateway: String,
}

/// One board's first-boot settings.
#[derive(Debug, Clone)]
pub struct FirstBoot {
    pub hostname: String,
    pub user: String,
    /// The SSH public key the login user accepts.
    pub ssh_key: String,
    /// A static address, or DHCP.
    pub static_address: Option<StaticAddress>,
    /// A tz database name, or the image's own.
    pub timezone: Option<String>,
    pub wifi: Option<Wifi>,
    /// The board's SSH host key (its only one).
    pub host_key: HostKey,
}

/// What a prepare found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prepared {
    pub kind: ImageKind,
    pub compression: Compression,
    /// Whether cloud-init's own schema check ran on the user-data (it runs where the
    /// `cloud-init` program is installed).
    pub schema_checked: bool,
}

/// Copies `base` to `out` and writes `boot`'s files into its boot partition. `out` must not
/// exist; it is made 0600 (it holds the board's host private key); on any failure it is
/// removed (nothing half-prepared is left).
pub fn prepare(base: &Path, out: &Path, boot: &FirstBoot) -> anyhow::Result<Prepared> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(crate::state::SECRET_MODE)
        .open(out);
    let mut file = match file {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            bail!("{} exists: choose another -o or remove it", out.display())
        }
        Err(e) => return Err(e).with_context(|| format!("creating {}", out.display())),
    };
    let done = (|| -> anyhow::Result<Prepared> {
        let compression = copy::copy_base(base, &mut file, out)?;
        drop(file);
        let partition = fat::BootPartition::open(out)
            .with_context(|| format!("the boot partition of {}", base.display()))?;
        let (kind, files, schema_checked) = first_boot_files(&partition, boot)
            .with_context(|| format!("the boot partition of {}", base.display()))?;
        partition.write(&files, &boot.hostname).with_context(|| {
            format!(
                "writing board {}'s files into {}",
                boot.hostname,
                out.display()
            )
        })?;
        Ok(Prepared {
            kind,
            compression,
            schema_checked,
        })
    })();
    if done.is_err() {
        let _ = std::fs::remove_file(out);
    }
    done
}

/// The image's kind (from its boot partition) and the files to write for `boot`; whether
/// cloud-init's schema check ran.
fn first_boot_files(
    partition: &fat::BootPartition,
    boot: &FirstBoot,
) -> anyhow::Result<(ImageKind, BootFiles, bool)> {
    let names = partition.root_names()?;
    let cmdline = match names.iter().any(|n| n.eq_ignore_ascii_case("cmdline.txt")) {
        true => Some(partition.read("cmdline.txt")?),
        false => None,
    };
    let kind = ImageKind::recognise(&names, cmdline.as_deref()).map_err(|e| anyhow::anyhow!(e))?;
    Ok(match kind {
        ImageKind::CloudInit => {
            let files = cloud_init::files(boot);
            let checked = cloud_init::check_schema(&files, &boot.hostname)?;
            (kind, files, checked)
        }
        ImageKind::RaspiosFirstrun(mount) => {
            let hash = raspios::random_password_hash()?;
            let files = raspios::files(boot, mount, cmdline.as_deref().unwrap_or(""), &hash)
                .map_err(|e| anyhow::anyhow!(e))?;
            (kind, files, false)
        }
    })
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
    if (!key.starts_with("ssh-") && !key.starts_with("ecdsa-")) || key.contains('\n') {
        bail!("{} is not one SSH public key", path.display());
    }
    Ok(key)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A board's settings for the render tests: DHCP, no time zone, no Wi-Fi.
    pub(crate) fn board() -> FirstBoot {
        FirstBoot {
            hostname: "pi-3".into(),
            user: "pi".into(),
            ssh_key: "ssh-ed25519 AAAAC3 lab@cluster\n".into(),
            static_address: None,
            timezone: None,
            wifi: None,
            host_key: HostKey {
                private: "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbg==\n-----END OPENSSH PRIVATE KEY-----\n".into(),
                public: "ssh-ed25519 AAAAhost root@pi-3\n".into(),
            },
        }
    }
}
