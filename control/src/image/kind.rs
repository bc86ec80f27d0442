//! What kind of image a base is, decided from its own boot partition (pure): cloud-init files,
//! or Raspberry Pi OS's `cmdline.txt` + `config.txt` (and then where the running system mounts
//! that partition, which the first-boot hook on the kernel command line must name).

/// Where Raspberry Pi OS mounts its FAT boot partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootMount {
    /// `/boot` (Bullseye and older).
    Boot,
    /// `/boot/firmware` (Bookworm and later).
    BootFirmware,
}

impl BootMount {
    pub fn path(self) -> &'static str {
        match self {
            BootMount::Boot => "/boot",
            BootMount::BootFirmware => "/boot/firmware",
        }
    }
}

/// What first-boot mechanism an image's boot partition shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageKind {
    /// `user-data` / `meta-data` / `network-config` in the boot partition (Ubuntu for the
    /// Pi, Jetson-style images, recent Raspberry Pi OS).
    CloudInit,
    /// Raspberry Pi OS without cloud-init: `firstrun.sh` run once from the kernel command line.
    RaspiosFirstrun(BootMount),
}

impl std::fmt::Display for ImageKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ImageKind::CloudInit => write!(f, "cloud-init"),
            ImageKind::RaspiosFirstrun(mount) => {
                write!(f, "Raspberry Pi OS (firstrun.sh, {})", mount.path())
            }
        }
    }
}

/// Files that only Bookworm-layout boot partitions carry (the Pi 5's kernel and device tree
/// came with Bookworm).
const BOOKWORM_ONLY: &[&str] = &["kernel_2712.img", "bcm2712-rpi-5-b.dtb"];

impl ImageKind {
    /// From the names in the boot partition's root (any case) and, when there is one, the
    /// text of its `cmdline.txt`.
    pub fn recognise(names: &[String], cmdline: Option<&str>) -> Result<ImageKind, String> {
        let has = |n: &str| names.iter().any(|f| f.eq_ignore_ascii_case(n));
        if has("user-data") || has("meta-data") || has("network-config") {
            return Ok(ImageKind::CloudInit);
        }
        if let (true, Some(cmdline)) = (has("config.txt"), cmdline) {
            // Bookworm's first boot runs raspberrypi-sys-mods' init, Bullseye's raspi-config's.
            let bookworm = cmdline.contains("raspberrypi-sys-mods/firstboot")
                || BOOKWORM_ONLY.iter().any(|n| has(n));
            return Ok(ImageKind::RaspiosFirstrun(if bookworm {
                BootMount::BootFirmware
            } else {
                BootMount::Boot
            }));
        }
        Err(format!(
            "unknown image: its boot partition has neither cloud-init files (user-data, \
             meta-data) nor Raspberry Pi OS's cmdline.txt and config.txt (found: {})",
            if names.is_empty() {
                "nothing".to_string()
            } else {
                names.join(", ")
            }
        ))
    }
}

/// The kernel command line parameters that run `firstrun.sh` once, from `mount`.
pub fn first_boot_hook(mount: BootMount) -> String {
    format!(
        "systemd.run={}/firstrun.sh systemd.run_success_action=reboot \
         systemd.unit=kernel-command-line.target",
        mount.path()
    )
}

/// `cmdline.txt` with the first-boot hook appended to its one line (kept one line, ending in
/// a newline). A line that already carries this hook keeps it once; one that runs something
/// else at first boot, or a file of several lines, is refused.
pub fn hook_cmdline(text: &str, mount: BootMount) -> Result<String, String> {
    let lines: Vec<&str> = text
        .lines()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
        .collect();
    let line = match lines.as_slice() {
        [line] => *line,
        [] => return Err("cmdline.txt is empty".into()),
        more => {
            return Err(format!(
                "cmdline.txt has {} lines; the kernel reads one",
                more.len()
            ))
        }
    };
    let hook = first_boot_hook(mount);
    if line.ends_with(&hook) {
        return Ok(format!("{line}\n"));
    }
    if let Some(other) = line
        .split_whitespace()
        .find(|p| p.starts_with("systemd.run=") || p.starts_with("systemd.unit="))
    {
        return Err(format!(
            "cmdline.txt already has `{other}`: this image runs something else at first boot"
        ));
    }
    Ok(format!("{line} {hook}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    const BULLSEYE: &str = "console=serial0,115200 console=tty1 root=PARTUUID=abcd-02 \
        rootfstype=ext4 fsck.repair=yes rootwait quiet init=/usr/lib/raspi-config/init_resize.sh\n";
    const BOOKWORM: &str = "console=serial0,115200 console=tty1 root=PARTUUID=abcd-02 \
        rootfstype=ext4 fsck.repair=yes rootwait quiet init=/usr/lib/raspberrypi-sys-mods/firstboot\n";

    #[test]
    fn images_are_recognised_by_their_boot_files_or_refused() {
        assert_eq!(
            ImageKind::recognise(&names(&["config.txt", "user-data", "META-DATA"]), None),
            Ok(ImageKind::CloudInit)
        );
        let pi = names(&["cmdline.txt", "config.txt", "start4.elf"]);
        assert_eq!(
            ImageKind::recognise(&pi, Some(BULLSEYE)),
            Ok(ImageKind::RaspiosFirstrun(BootMount::Boot))
        );
        assert_eq!(
            ImageKind::recognise(&pi, Some(BOOKWORM)),
            Ok(ImageKind::RaspiosFirstrun(BootMount::BootFirmware))
        );
        let pi5 = names(&["CMDLINE.TXT", "CONFIG.TXT", "KERNEL_2712.IMG"]);
        assert_eq!(
            ImageKind::recognise(&pi5, Some("root=/dev/mmcblk0p2\n")),
            Ok(ImageKind::RaspiosFirstrun(BootMount::BootFirmware))
        );
        let no_config = ImageKind::recognise(&names(&["cmdline.txt"]), Some(BULLSEYE));
        assert!(no_config.is_err_and(|e| e.contains("unknown image") && e.contains("cmdline.txt")));
        let unknown = ImageKind::recognise(&names(&["EFI"]), None);
        assert!(unknown.is_err_and(|e| e.contains("unknown image") && e.contains("EFI")));
        let empty = ImageKind::recognise(&[], None);
        assert!(empty.is_err_and(|e| e.contains("found: nothing")));
    }

    #[test]
    fn the_hook_is_appended_once_to_the_one_line() {
        let hooked = hook_cmdline(BULLSEYE, BootMount::Boot).expect("hooked");
        assert_eq!(hooked.lines().count(), 1);
        assert!(hooked.ends_with(
            "init_resize.sh systemd.run=/boot/firstrun.sh systemd.run_success_action=reboot \
             systemd.unit=kernel-command-line.target\n"
        ));
        assert_eq!(
            hook_cmdline(&hooked, BootMount::Boot).as_deref(),
            Ok(hooked.as_str()),
            "twice is once"
        );
        let firmware = hook_cmdline(BOOKWORM, BootMount::BootFirmware).expect("hooked");
        assert!(firmware.contains(" systemd.run=/boot/firmware/firstrun.sh "));
        assert_eq!(
            hook_cmdline("root=/dev/x\r\n", BootMount::Boot)
                .map(|l| l.starts_with("root=/dev/x systemd.run=")),
            Ok(true),
            "CRLF"
        );
        assert!(hook_cmdline("a\nb\n", BootMount::Boot).is_err_and(|e| e.contains("2 lines")));
        assert!(hook_cmdline("\n", BootMount::Boot).is_err());
        let other = hook_cmdline("root=x systemd.run=/boot/other.sh\n", BootMount::Boot);
        assert!(other.is_err_and(|e| e.contains("systemd.run=/boot/other.sh")));
    }
}
