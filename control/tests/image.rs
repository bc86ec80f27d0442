//! `lab image prepare` on images built here (an MBR, a FAT32 boot partition made with
//! mkfs.fat, the files a cloud-init or a Raspberry Pi OS image carries, put with mtools): the
//! board's first-boot files land in the copy (read back with mtools, the partition checked
//! with fsck.fat), the base is untouched; an .xz base gives the same files; the host key in
//! the image is the one pinned for the board, proven by a real sshd serving it to `lab`'s own
//! SSH connection; unknown images, bad values, an existing output, a damaged .xz and an
//! unknown board are refused with nothing left behind.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::describe;

/// The boot partition: 64 MiB at sector 2048.
const BOOT_OFFSET: u64 = 2048 * 512;
const BOOT_SECTORS: u32 = 131_072;
/// The root partition after it: an 8 MiB ext4 with a few files.
const ROOT_OFFSET: u64 = BOOT_OFFSET + BOOT_SECTORS as u64 * 512;
const ROOT_BYTES: u64 = 8 << 20;

/// An image of `boot_files` (name, content) in a fresh FAT32 boot partition, plus an ext4
/// root partition after it.
fn base_image(path: &Path, boot_files: &[(&str, &str)]) {
    let file = std::fs::File::create(path).expect("image file");
    file.set_len(ROOT_OFFSET + ROOT_BYTES)
        .expect("size the image");
    let mut mbr = vec![0u8; 512];
    let entry = |mbr: &mut Vec<u8>, i: usize, kind: u8, start: u32, count: u32| {
        let e = 446 + 16 * i;
        mbr[e + 4] = kind;
        mbr[e + 8..e + 12].copy_from_slice(&start.to_le_bytes());
        mbr[e + 12..e + 16].copy_from_slice(&count.to_le_bytes());
    };
    entry(&mut mbr, 0, 0x0c, 2048, BOOT_SECTORS);
    entry(&mut mbr, 1, 0x83, 2048 + BOOT_SECTORS, 16384);
    mbr[510] = 0x55;
    mbr[511] = 0xAA;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open the image");
    std::io::Write::write_all(&mut f, &mbr).expect("write the MBR");
    drop(f);
    let out = Command::new("mkfs.fat")
        .args(["-F", "32", "-n", "BOOT", "--offset", "2048"])
        .arg(path)
        .arg((BOOT_SECTORS / 2).to_string())
        .output()
        .expect("run mkfs.fat");
    assert!(out.status.success(), "{}", describe(&out));
    let dir = path.with_extension("files");
    std::fs::create_dir_all(&dir).expect("dir");
    for (name, text) in boot_files {
        std::fs::write(dir.join(name), text).expect("boot file");
        let out = Command::new("mcopy")
            .env("MTOOLS_SKIP_CHECK", "1")
            .arg("-i")
            .arg(format!("{}@@{BOOT_OFFSET}", path.display()))
            .arg(dir.join(name))
            .arg(format!("::/{name}"))
            .output()
            .expect("run mcopy");
        assert!(out.status.success(), "{}", describe(&out));
    }
    root_partition(path, &dir);
}

/// An ext4 root partition at ROOT_OFFSET of `image`, made from a small tree under `scratch`.
fn root_partition(image: &Path, scratch: &Path) {
    let root = scratch.join("root");
    std::fs::create_dir_all(root.join("etc")).expect("root dir");
    std::fs::write(
        root.join("etc/os-release"),
        "PRETTY_NAME=\"Raspbian GNU/Linux 11 (bullseye)\"\n",
    )
    .expect("os-release");
    std::fs::write(root.join("etc/fstab"), "proc /proc proc defaults 0 0\n").expect("fstab");
    let out = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-E"])
        .arg(format!("offset={ROOT_OFFSET}"))
        .arg("-d")
        .arg(&root)
        .arg(image)
        .arg(format!("{}k", ROOT_BYTES / 1024))
        .output()
        .expect("run mkfs.ext4");
    assert!(out.status.success(), "{}", describe(&out));
}

/// e2fsck finds the image's root partition sound.
fn assert_root_partition_sound(image: &Path) {
    let lo = Command::new("losetup")
        .args(["--find", "--show", "--read-only", "--offset"])
        .arg(ROOT_OFFSET.to_string())
        .arg("--sizelimit")
        .arg(ROOT_BYTES.to_string())
        .arg(image)
        .output()
        .expect("run losetup");
    assert!(lo.status.success(), "{}", describe(&lo));
    let device = BootLoop(String::from_utf8_lossy(&lo.stdout).trim().to_string());
    let fsck = Command::new("e2fsck")
        .args(["-f", "-n", &device.0])
        .output()
        .expect("run e2fsck");
    assert!(fsck.status.success(), "{}", describe(&fsck));
}

fn mtype(image: &Path, name: &str) -> String {
    let out = Command::new("mtype")
        .env("MTOOLS_SKIP_CHECK", "1")
        .arg("-i")
        .arg(format!("{}@@{BOOT_OFFSET}", image.display()))
        .arg(format!("::/{name}"))
        .output()
        .expect("run mtype");
    assert!(out.status.success(), "{}", describe(&out));
    String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n")
}

/// The file names in the image's boot partition, sorted.
fn boot_names(image: &Path) -> Vec<String> {
    let out = Command::new("mdir")
        .env("MTOOLS_SKIP_CHECK", "1")
        .args(["-b", "-i"])
        .arg(format!("{}@@{BOOT_OFFSET}", image.display()))
        .arg("::/")
        .output()
        .expect("run mdir");
    assert!(out.status.success(), "{}", describe(&out));
    let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().trim_start_matches("::/").to_string())
        .filter(|n| !n.is_empty())
        .collect();
    names.sort();
    names
}

/// A read-only loop device over one of the image's partitions; detached on drop.
struct BootLoop(String);

impl Drop for BootLoop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

/// fsck.fat finds the image's boot partition sound.
fn assert_boot_partition_sound(image: &Path) {
    let lo = Command::new("losetup")
        .args(["--find", "--show", "--read-only", "--offset"])
        .arg(BOOT_OFFSET.to_string())
        .arg("--sizelimit")
        .arg((u64::from(BOOT_SECTORS) * 512).to_string())
        .arg(image)
        .output()
        .expect("run losetup");
    assert!(lo.status.success(), "{}", describe(&lo));
    let device = BootLoop(String::from_utf8_lossy(&lo.stdout).trim().to_string());
    let fsck = Command::new("fsck.fat")
        .args(["-n", &device.0])
        .output()
        .expect("run fsck.fat");
    assert!(fsck.status.success(), "{}", describe(&fsck));
}

/// A temp dir with an inventory (board pi-3 at 192.168.1.13, then `extra`), a login key and
/// the tools the tests use; removed on drop, also when a test fails.
struct Fixture {
    dir: tempfile::TempDir,
    inventory: PathBuf,
    key: PathBuf,
}

impl Fixture {
    fn new(extra: &str) -> Fixture {
        common::require_root();
        lab::host_setup::ensure(
            &[
                lab::host_setup::DOSFSTOOLS,
                lab::host_setup::E2FSPROGS,
                lab::host_setup::MTOOLS,
                lab::host_setup::SSH_KEYGEN,
                lab::host_setup::XZ_UTILS,
                lab::host_setup::CLOUD_INIT,
            ],
            &mut |l: &str| eprintln!("{l}"),
        )
        .expect("installing the image tools");
        let dir = tempfile::tempdir().expect("tempdir");
        let key = dir.path().join("lab.pub");
        std::fs::write(&key, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIlab test@lab\n").expect("key");
        let inventory = dir.path().join("homelab.toml");
        std::fs::write(
            &inventory,
            format!(
                "[cluster]\nname = \"img\"\nstate_dir = \"state\"\nssh_user = \"pi\"\n\
                 [[board]]\nname = \"pi-3\"\naddress = \"192.168.1.13\"\n{extra}"
            ),
        )
        .expect("inventory");
        Fixture {
            dir,
            inventory,
            key,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn state(&self) -> PathBuf {
        self.path("state")
    }

    /// `lab image prepare -i INVENTORY --authorized-key KEY` and `args`.
    fn prepare(&self, args: &[&str]) -> Output {
        Command::new(common::LAB)
            .args(["image", "prepare", "-i"])
            .arg(&self.inventory)
            .arg("--authorized-key")
            .arg(&self.key)
            .args(args)
            .output()
            .expect("run lab")
    }

    /// Prepare board pi-3 from `base` into `out`, which must succeed; lab's output.
    fn prepare_ok(&self, base: &Path, out: &Path, args: &[&str]) -> String {
        let mut all = vec!["--board", "pi-3", "--base", s(base), "-o", s(out)];
        all.extend_from_slice(args);
        let done = self.prepare(&all);
        assert!(done.status.success(), "{}", describe(&done));
        describe(&done)
    }

    /// Prepare board pi-3 from `base` into `out`, which must fail leaving no `out`; lab's
    /// output.
    fn prepare_refused(&self, base: &Path, out: &Path, args: &[&str]) -> String {
        let mut all = vec!["--board", "pi-3", "--base", s(base), "-o", s(out)];
        all.extend_from_slice(args);
        let done = self.prepare(&all);
        assert!(!done.status.success(), "{}", describe(&done));
        assert!(
            !out.exists(),
            "a refused image is removed: {}",
            describe(&done)
        );
        describe(&done)
    }
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// The settings flags every settings test gives: a static address behind 192.168.1.1, the
/// Berlin time zone, Wi-Fi `ssid` with the passphrase in `psk`.
fn settings_args<'a>(psk: &'a Path, ssid: &'a str) -> [&'a str; 8] {
    [
        "--gateway",
        "192.168.1.1",
        "--timezone",
        "Europe/Berlin",
        "--wifi-ssid",
        ssid,
        "--wifi-psk-file",
        s(psk),
    ]
}

/// A Bullseye-style Raspberry Pi OS kernel command line.
const BULLSEYE_CMDLINE: &str = "console=serial0,115200 console=tty1 root=PARTUUID=6c586e13-02 \
    rootfstype=ext4 fsck.repair=yes rootwait quiet init=/usr/lib/raspi-config/init_resize.sh\n";
/// A Bookworm-style one.
const BOOKWORM_CMDLINE: &str = "console=serial0,115200 console=tty1 root=PARTUUID=4e639091-02 \
    rootfstype=ext4 fsck.repair=yes rootwait quiet init=/usr/lib/raspberrypi-sys-mods/firstboot\n";
/// The end of the first-boot hook lab appends.
const HOOK_TAIL: &str =
    "systemd.run_success_action=reboot systemd.unit=kernel-command-line.target\n";

/// A Raspberry Pi OS base (no cloud-init) with `cmdline`.
fn raspios_base(path: &Path, cmdline: &str) {
    base_image(
        path,
        &[
            ("cmdline.txt", cmdline),
            ("config.txt", "dtparam=audio=on\narm_64bit=1\n"),
            ("start4.elf", "firmware"),
        ],
    );
}

/// A cloud-init base (Ubuntu-like).
fn cloud_init_base(path: &Path) {
    base_image(
        path,
        &[
            ("meta-data", "placeholder\n"),
            ("config.txt", "arm_64bit=1\n"),
        ],
    );
}

/// What netplan (the network renderer cloud-init hands a v2 network-config to on Ubuntu)
/// makes of `network_config`, run in a root of its own under `root`: every file it wrote,
/// concatenated. A config netplan refuses fails the test.
fn netplan_generate(network_config: &str, root: &Path) -> String {
    lab::host_setup::ensure(&[lab::host_setup::NETPLAN], &mut |l: &str| eprintln!("{l}"))
        .expect("installing netplan.io");
    let dir = root.join("etc/netplan");
    std::fs::create_dir_all(&dir).expect("netplan dir");
    let wrapped: String = std::iter::once("network:\n".to_string())
        .chain(network_config.lines().map(|l| format!("  {l}\n")))
        .collect();
    let file = dir.join("50-cloud-init.yaml");
    std::fs::write(&file, wrapped).expect("netplan yaml");
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("mode");
    let out = Command::new("netplan")
        .args(["generate", "--root-dir"])
        .arg(root)
        .output()
        .expect("run netplan");
    assert!(
        out.status.success(),
        "netplan refuses it: {}",
        describe(&out)
    );
    let mut rendered = String::new();
    for sub in ["run/systemd/network", "run/netplan"] {
        for entry in std::fs::read_dir(root.join(sub)).expect("netplan output") {
            let path = entry.expect("entry").path();
            rendered.push_str(&std::fs::read_to_string(&path).expect("rendered file"));
        }
    }
    rendered
}

/// The one line of `text` that starts with `NAME=`.
fn shell_setting(text: &str, name: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name}= in\n{text}"))
        .to_string()
}

#[test]
fn a_cloud_init_image_gets_the_boards_first_boot_files_and_bad_input_changes_nothing() {
    let fx = Fixture::new("");
    let base = fx.path("ubuntu.img");
    cloud_init_base(&base);
    let out_img = fx.path("pi-3.img");
    let psk = fx.path("wifi.psk");
    std::fs::write(&psk, "pass\"word\\ 1\n").expect("psk");
    let said = fx.prepare_ok(&base, &out_img, &settings_args(&psk, "Home 5G"));
    assert!(said.contains("cloud-init image for pi-3"), "{said}");
    assert!(
        said.contains("user-data passes `cloud-init schema`"),
        "{said}"
    );
    let user_data = mtype(&out_img, "user-data");
    assert!(user_data.starts_with("#cloud-config\n"), "{user_data}");
    assert!(user_data.contains("hostname: pi-3"), "{user_data}");
    assert!(user_data.contains("  - name: pi\n"), "{user_data}");
    assert!(
        user_data.contains("\ntimezone: Europe/Berlin\n"),
        "{user_data}"
    );
    assert!(
        user_data.contains("      - \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIlab test@lab\"\n"),
        "{user_data}"
    );
    assert!(mtype(&out_img, "meta-data").contains("instance-id: lab-pi-3"));
    let net = mtype(&out_img, "network-config");
    assert!(
        net.contains("addresses: [192.168.1.13/24]") && net.contains("via: 192.168.1.1"),
        "{net}"
    );
    let rendered = netplan_generate(&net, fx.path("netplan-root").as_path());
    assert!(
        rendered.contains("Address=192.168.1.13/24") && rendered.contains("Gateway=192.168.1.1"),
        "{rendered}"
    );
    assert!(
        rendered.contains("ssid=\"Home 5G\"") && rendered.contains("psk=\"pass\"word\\ 1\""),
        "{rendered}"
    );
    assert_eq!(
        mtype(&out_img, "config.txt"),
        "arm_64bit=1\n",
        "other files kept"
    );
    assert_eq!(
        mtype(&base, "meta-data"),
        "placeholder\n",
        "the base untouched"
    );
    assert_boot_partition_sound(&out_img);

    // Refused, nothing left: the output exists, an unknown image, gzip, an unknown board.
    let again = fx.prepare(&["--board", "pi-3", "--base", s(&base), "-o", s(&out_img)]);
    assert!(!again.status.success());
    assert!(describe(&again).contains("exists"), "{}", describe(&again));
    assert!(out_img.exists(), "an existing output is left alone");
    let plain = fx.path("plain.img");
    base_image(&plain, &[("EFI.TXT", "x")]);
    let other = fx.path("other.img");
    let said = fx.prepare_refused(&plain, &other, &[]);
    assert!(
        said.contains("unknown image") && said.contains("EFI.TXT"),
        "{said}"
    );
    let gz = fx.path("ubuntu.img.gz");
    std::fs::write(&gz, [0x1f, 0x8b, 8, 0, 0, 0, 0, 0]).expect("gz");
    let said = fx.prepare_refused(&gz, &other, &[]);
    assert!(said.contains("gzip-compressed"), "{said}");
    let out = fx.prepare(&["--board", "pi-9", "--base", s(&base), "-o", s(&other)]);
    assert!(
        describe(&out).contains("no board `pi-9`"),
        "{}",
        describe(&out)
    );
    assert!(!other.exists());

    // --all: one image per board of the inventory, in the directory given.
    let mut text = std::fs::read_to_string(&fx.inventory).expect("inventory");
    text.push_str("[[board]]\nname = \"pi-4\"\naddress = \"192.168.1.14\"\nuser = \"ubuntu\"\n");
    std::fs::write(&fx.inventory, text).expect("inventory");
    let all = fx.path("all");
    let out = fx.prepare(&["--all", "--base", s(&base), "-o", s(&all)]);
    assert!(out.status.success(), "{}", describe(&out));
    for board in ["pi-3", "pi-4"] {
        let img = all.join(format!("{board}.img"));
        assert!(
            mtype(&img, "user-data").contains(&format!("hostname: {board}")),
            "{board}"
        );
        assert!(mtype(&img, "network-config").contains("dhcp4: true"));
    }
    let user = |board: &str| mtype(&all.join(format!("{board}.img")), "user-data");
    assert!(
        user("pi-3").contains("  - name: pi\n"),
        "the cluster's ssh_user"
    );
    assert!(
        user("pi-4").contains("  - name: ubuntu\n"),
        "the board's own user"
    );
}

#[test]
fn a_raspberry_pi_os_image_gets_firstrun_userconf_ssh_and_the_hook_once() {
    let fx = Fixture::new("");
    let base = fx.path("raspios.img");
    raspios_base(&base, BULLSEYE_CMDLINE);
    let psk = fx.path("wifi.psk");
    std::fs::write(&psk, "password\n").expect("psk");
    let args = settings_args(&psk, "IEEE");
    let first = fx.path("pi-3.img");
    let said = fx.prepare_ok(&base, &first, &args);
    assert!(
        said.contains("Raspberry Pi OS (firstrun.sh, /boot) image for pi-3"),
        "{said}"
    );
    assert_eq!(
        boot_names(&first),
        [
            "cmdline.txt",
            "config.txt",
            "firstrun.sh",
            "ssh",
            "start4.elf",
            "userconf.txt"
        ]
    );
    assert_eq!(mtype(&first, "ssh"), "", "an empty ssh file turns sshd on");
    let userconf = mtype(&first, "userconf.txt");
    let hash = userconf
        .strip_prefix("pi:$6$")
        .unwrap_or_else(|| panic!("userconf.txt: {userconf}"));
    assert_eq!(hash.trim_end().split('$').count(), 2, "{userconf}");
    assert!(
        hash.ends_with('\n') && hash.lines().count() == 1,
        "{userconf}"
    );

    let firstrun = mtype(&first, "firstrun.sh");
    assert!(firstrun.starts_with("#!/bin/bash\n"), "{firstrun}");
    for (name, value) in [
        ("NEW_HOSTNAME", "'pi-3'"),
        ("LOGIN_USER", "'pi'"),
        (
            "AUTHORIZED_KEY",
            "'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIlab test@lab'",
        ),
        ("TIMEZONE", "'Europe/Berlin'"),
        ("WIFI_SSID", "'IEEE'"),
        (
            "WIFI_PSK",
            "'f42c6fc52df0ebef9ebb4b90b38a5f902e83fe1b135a70e23aed762e9710a12e'        # the WPA key derived from the passphrase (64 hex digits)",
        ),
    ] {
        assert_eq!(shell_setting(&firstrun, name), value, "{name}");
    }
    assert!(shell_setting(&firstrun, "STATIC_ADDRESS").starts_with("'192.168.1.13/24'"));
    assert!(shell_setting(&firstrun, "GATEWAY").starts_with("'192.168.1.1'"));
    assert!(
        !firstrun.contains("'password'"),
        "no passphrase on the card"
    );
    // bash reads it.
    let script = fx.path("firstrun.sh");
    std::fs::write(&script, &firstrun).expect("script");
    let syntax = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .expect("run bash -n");
    assert!(syntax.status.success(), "{}", describe(&syntax));

    let cmdline = mtype(&first, "cmdline.txt");
    assert_eq!(
        cmdline,
        format!(
            "{} systemd.run=/boot/firstrun.sh {HOOK_TAIL}",
            BULLSEYE_CMDLINE.trim_end()
        )
    );
    assert_eq!(
        mtype(&first, "config.txt"),
        "dtparam=audio=on\narm_64bit=1\n"
    );
    assert_eq!(
        mtype(&base, "cmdline.txt"),
        BULLSEYE_CMDLINE,
        "base untouched"
    );
    assert_boot_partition_sound(&first);
    assert_root_partition_sound(&first);
    let (base_bytes, first_bytes) = (
        std::fs::read(&base).expect("base"),
        std::fs::read(&first).expect("image"),
    );
    assert!(
        base_bytes[ROOT_OFFSET as usize..] == first_bytes[ROOT_OFFSET as usize..],
        "the root partition copied as it is"
    );

    // Again, onto a new output: the same layout, the same script; only the throwaway
    // password's hash differs.
    let second = fx.path("pi-3-again.img");
    fx.prepare_ok(&base, &second, &args);
    assert_eq!(boot_names(&second), boot_names(&first));
    for name in ["cmdline.txt", "firstrun.sh", "ssh", "config.txt"] {
        assert_eq!(mtype(&second, name), mtype(&first, name), "{name}");
    }
    let userconf_again = mtype(&second, "userconf.txt");
    assert!(userconf_again.starts_with("pi:$6$"), "{userconf_again}");
    assert_ne!(userconf_again, userconf, "a new random password each time");
    assert_boot_partition_sound(&second);

    // From an image prepared already, the hook is still there once.
    let third = fx.path("pi-3-from-prepared.img");
    fx.prepare_ok(&first, &third, &args);
    let cmdline_again = mtype(&third, "cmdline.txt");
    assert_eq!(cmdline_again, cmdline);
    assert_eq!(cmdline_again.matches("systemd.run=").count(), 1);
}

#[test]
fn a_bookworm_layout_image_is_hooked_under_boot_firmware() {
    let fx = Fixture::new("");
    let base = fx.path("bookworm.img");
    raspios_base(&base, BOOKWORM_CMDLINE);
    let out = fx.path("pi-3.img");
    let said = fx.prepare_ok(&base, &out, &[]);
    assert!(said.contains("(firstrun.sh, /boot/firmware)"), "{said}");
    let cmdline = mtype(&out, "cmdline.txt");
    assert_eq!(cmdline.lines().count(), 1, "{cmdline}");
    assert!(
        cmdline.ends_with(&format!(
            "firstboot systemd.run=/boot/firmware/firstrun.sh {HOOK_TAIL}"
        )),
        "{cmdline}"
    );
    let firstrun = mtype(&out, "firstrun.sh");
    assert_eq!(shell_setting(&firstrun, "TIMEZONE"), "''");
    assert_eq!(shell_setting(&firstrun, "WIFI_SSID"), "''");
    assert!(
        shell_setting(&firstrun, "STATIC_ADDRESS").starts_with("''"),
        "DHCP"
    );
}

#[test]
fn an_xz_base_gives_the_same_image_and_a_damaged_one_leaves_nothing() {
    let fx = Fixture::new("");
    let base = fx.path("ubuntu.img");
    cloud_init_base(&base);
    let xz = Command::new("xz")
        .args(["-k", "-T1", "-3"])
        .arg(&base)
        .output()
        .expect("run xz");
    assert!(xz.status.success(), "{}", describe(&xz));
    let base_xz = fx.path("ubuntu.img.xz");
    let plain_out = fx.path("plain.img");
    let xz_out = fx.path("from-xz.img");
    fx.prepare_ok(&base, &plain_out, &[]);
    let said = fx.prepare_ok(&base_xz, &xz_out, &[]);
    assert!(said.contains("decompressed from .xz"), "{said}");
    assert_eq!(boot_names(&xz_out), boot_names(&plain_out));
    for name in boot_names(&plain_out) {
        assert_eq!(mtype(&xz_out, &name), mtype(&plain_out, &name), "{name}");
    }
    let (a, b) = (
        std::fs::read(&plain_out).expect("plain"),
        std::fs::read(&xz_out).expect("from xz"),
    );
    assert_eq!(a.len(), b.len(), "same size");
    let boot_end = (BOOT_OFFSET + u64::from(BOOT_SECTORS) * 512) as usize;
    assert!(
        a[..BOOT_OFFSET as usize] == b[..BOOT_OFFSET as usize],
        "same MBR"
    );
    assert!(a[boot_end..] == b[boot_end..], "same root partition");
    assert!(
        a[boot_end..].iter().any(|&x| x != 0),
        "the root partition has content"
    );
    assert_boot_partition_sound(&xz_out);
    assert_root_partition_sound(&xz_out);

    // A truncated .xz is refused, and its half-written output removed.
    let whole = std::fs::read(&base_xz).expect("xz");
    let truncated = fx.path("truncated.img.xz");
    std::fs::write(&truncated, &whole[..whole.len() / 2]).expect("truncated");
    let said = fx.prepare_refused(&truncated, &fx.path("truncated.img"), &[]);
    assert!(
        said.contains("decompressing") && said.contains("truncated.img.xz"),
        "{said}"
    );
    // So is one whose data is damaged.
    let mut damaged = whole.clone();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0xff;
    let damaged_path = fx.path("damaged.img.xz");
    std::fs::write(&damaged_path, &damaged).expect("damaged");
    let said = fx.prepare_refused(&damaged_path, &fx.path("damaged.img"), &[]);
    assert!(said.contains("decompressing"), "{said}");
}

#[test]
fn bad_values_are_refused_before_anything_is_written() {
    let fx = Fixture::new("");
    let base = fx.path("raspios.img");
    raspios_base(&base, BULLSEYE_CMDLINE);
    let out = fx.path("pi-3.img");
    let said = fx.prepare_refused(&base, &out, &["--timezone", "Mars/Olympus_Mons"]);
    assert!(
        said.contains("time zone `Mars/Olympus_Mons`: not in /usr/share/zoneinfo"),
        "{said}"
    );
    let said = fx.prepare_refused(&base, &out, &["--timezone", "../../etc/passwd"]);
    assert!(said.contains("expected an Area/City name"), "{said}");
    let missing = fx.path("no-such.psk");
    let said = fx.prepare_refused(
        &base,
        &out,
        &["--wifi-ssid", "home", "--wifi-psk-file", s(&missing)],
    );
    assert!(
        said.contains("reading the Wi-Fi passphrase file") && said.contains("no-such.psk"),
        "{said}"
    );
    let short = fx.path("short.psk");
    std::fs::write(&short, "1234\n").expect("psk");
    let said = fx.prepare_refused(
        &base,
        &out,
        &["--wifi-ssid", "home", "--wifi-psk-file", s(&short)],
    );
    assert!(said.contains("8 to 63 characters"), "{said}");
    let said = fx.prepare_refused(&base, &out, &["--wifi-ssid", "home"]);
    assert!(said.contains("--wifi-psk-file"), "{said}");
    assert!(
        !fx.state().join("image").exists() && !fx.state().join("known_hosts").exists(),
        "no host key made and nothing pinned for refused values"
    );

    // Found only once the copy is made: removed again, nothing pinned.
    let two_lines = fx.path("two-lines.img");
    raspios_base(&two_lines, "root=/dev/mmcblk0p2\nquiet\n");
    let said = fx.prepare_refused(&two_lines, &out, &[]);
    assert!(said.contains("cmdline.txt has 2 lines"), "{said}");
    let pi_only = fx.path("only-cmdline.img");
    base_image(&pi_only, &[("cmdline.txt", BULLSEYE_CMDLINE)]);
    let said = fx.prepare_refused(&pi_only, &out, &[]);
    assert!(
        said.contains("unknown image") && said.contains("cmdline.txt"),
        "{said}"
    );
    assert!(!fx.state().join("known_hosts").exists(), "nothing pinned");
}

/// An sshd on 127.0.0.1 serving `host_keys`, accepting `authorized_keys` for root; killed
/// on drop.
struct Sshd {
    child: std::process::Child,
    port: u16,
}

impl Sshd {
    fn start(host_keys: &[PathBuf], authorized_keys: &Path) -> Sshd {
        lab::host_setup::ensure(&[lab::host_setup::SSHD], &mut |l: &str| eprintln!("{l}"))
            .expect("installing openssh-server");
        std::fs::create_dir_all("/run/sshd").expect("sshd's privilege separation dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut cmd = Command::new("/usr/sbin/sshd");
        cmd.args([
            "-D",
            "-e",
            "-f",
            "/dev/null",
            "-o",
            "ListenAddress=127.0.0.1",
        ])
        .arg("-o")
        .arg(format!("Port={port}"));
        for key in host_keys {
            cmd.arg("-o").arg(format!("HostKey={}", key.display()));
        }
        let child = cmd
            .arg("-o")
            .arg(format!("AuthorizedKeysFile={}", authorized_keys.display()))
            .args([
                "-o",
                "StrictModes=no",
                "-o",
                "PermitRootLogin=prohibit-password",
                "-o",
                "PidFile=none",
                "-o",
                "UsePAM=no",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start sshd");
        let sshd = Sshd { child, port };
        common::wait_for("sshd to listen", std::time::Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port))
                .map(|_| ())
                .map_err(|e| e.to_string())
        });
        sshd
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_host_key_in_the_image_is_pinned_and_a_real_handshake_verifies_it() {
    let fx = Fixture::new("");
    let login = fx.path("login");
    let keygen = |path: &Path, kind: &str| {
        let out = Command::new("ssh-keygen")
            .args(["-q", "-t", kind, "-N", "", "-f"])
            .arg(path)
            .output()
            .expect("run ssh-keygen");
        assert!(out.status.success(), "{}", describe(&out));
    };
    keygen(&login, "ed25519");
    // A second host key of another type, as a board gets when something makes the missing
    // ones later: the pinned ed25519 one is still the one checked (libssh2 asks for ed25519
    // first).
    let ecdsa = fx.path("ssh_host_ecdsa_key");
    keygen(&ecdsa, "ecdsa");
    let authorized = fx.path("authorized_keys");
    std::fs::copy(login.with_extension("pub"), &authorized).expect("authorized_keys");

    // First prepare, to make the host key; the sshd then serves it on a port of its own,
    // which the inventory names for a second board.
    let base = fx.path("ubuntu.img");
    cloud_init_base(&base);
    let first = fx.path("pi-3.img");
    let said = fx.prepare_ok(&base, &first, &[]);
    assert!(
        said.contains("new host key SHA256:") && said.contains("pinned for 192.168.1.13"),
        "{said}"
    );
    let key_file = fx.state().join("image/host-keys/pi-3/ssh_host_ed25519_key");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&key_file)
            .expect("host key")
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let public = std::fs::read_to_string(key_file.with_extension("pub")).expect("pub");
    let user_data = mtype(&first, "user-data");
    let private = std::fs::read_to_string(&key_file).expect("key");
    let indented: String = private.lines().map(|l| format!("    {l}\n")).collect();
    assert!(
        user_data.contains(&format!("  ed25519_private: |\n{indented}")),
        "{user_data}"
    );
    assert!(
        user_data.contains(&format!("  ed25519_public: {}\n", public.trim())),
        "{user_data}"
    );
    let pins = std::fs::read_to_string(fx.state().join("known_hosts")).expect("pins");
    let fields: Vec<&str> = public.split_whitespace().collect();
    assert_eq!(
        pins,
        format!("192.168.1.13 {} {} pi-3\n", fields[0], fields[1])
    );

    // Again for the same board: the same key, the pin unchanged.
    let said = fx.prepare_ok(&base, &fx.path("pi-3-again.img"), &[]);
    assert!(said.contains("already pinned for 192.168.1.13"), "{said}");
    assert!(mtype(&fx.path("pi-3-again.img"), "user-data").contains(public.trim()));

    // A board at an address of its own on this machine: a real sshd serves the prepared key.
    let sshd = Sshd::start(&[key_file.clone(), ecdsa.clone()], &authorized);
    let mut text = std::fs::read_to_string(&fx.inventory).expect("inventory");
    text = text.replace(
        "address = \"192.168.1.13\"\n",
        &format!("address = \"127.0.0.1\"\nport = {}\n", sshd.port),
    );
    std::fs::write(&fx.inventory, text).expect("inventory");
    let said = fx.prepare_ok(&base, &fx.path("pi-3-local.img"), &[]);
    assert!(
        said.contains(&format!("pinned for [127.0.0.1]:{}", sshd.port)),
        "{said}"
    );
    let store = lab::ssh::HostKeyStore::new(fx.state().join("known_hosts"), None);
    let target = lab::ssh::SshTarget {
        board: "pi-3".into(),
        host: "127.0.0.1".into(),
        port: sshd.port,
        user: "root".into(),
        use_agent: false,
        identities: vec![login.clone()],
        sudo: false,
        connect_timeout: std::time::Duration::from_secs(10),
        proxy_jump: None,
    };
    let (connection, verdict) =
        lab::ssh::Connection::open(&target, &store).expect("connect to the board");
    assert_eq!(
        verdict,
        lab::ssh::HostKeyVerdict::Known,
        "verified, not pinned now"
    );
    drop(connection);
    let pins_after = std::fs::read_to_string(fx.state().join("known_hosts")).expect("pins");
    assert!(
        !pins_after.contains("ecdsa"),
        "no other key pinned: {pins_after}"
    );

    // A board serving another key is refused, naming both fingerprints.
    drop(sshd);
    let stranger = fx.path("stranger");
    keygen(&stranger, "ed25519");
    let sshd = Sshd::start(std::slice::from_ref(&stranger), &authorized);
    let mut text = std::fs::read_to_string(&fx.inventory).expect("inventory");
    let old_port = target.port;
    text = text.replace(
        &format!("port = {old_port}"),
        &format!("port = {}", sshd.port),
    );
    std::fs::write(&fx.inventory, text).expect("inventory");
    fx.prepare_ok(&base, &fx.path("pi-3-other-port.img"), &[]);
    let target = lab::ssh::SshTarget {
        port: sshd.port,
        ..target
    };
    let refused = lab::ssh::Connection::open(&target, &store);
    let err = refused.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("HOST KEY CHANGED"), "{err}");
}

/// A throwaway copy of this machine's `/etc` (and an empty `/home` and `/var/log`) that
/// `firstrun.sh` runs against, in a mount namespace of its own: the script really runs, as
/// root, and this machine is untouched. Removed on drop.
struct FirstrunSandbox {
    dir: tempfile::TempDir,
}

impl FirstrunSandbox {
    /// Runs the `firstrun.sh` of `image` (with its `userconf.txt` and `cmdline.txt` beside
    /// it, as on the boot partition); `network_manager` gives the copy NetworkManager's
    /// connection directory (Bookworm) or takes it away (Bullseye: dhcpcd).
    fn run(image: &Path, network_manager: bool) -> FirstrunSandbox {
        let dir = tempfile::tempdir().expect("tempdir");
        let sandbox = FirstrunSandbox { dir };
        let copy = Command::new("cp")
            .args(["-a", "/etc"])
            .arg(sandbox.path("etc"))
            .output()
            .expect("run cp");
        assert!(copy.status.success(), "{}", describe(&copy));
        let connections = sandbox.path("etc/NetworkManager/system-connections");
        let _ = std::fs::remove_dir_all(&connections);
        if network_manager {
            std::fs::create_dir_all(&connections).expect("NetworkManager dir");
        }
        for dir in ["home", "varlog", "boot"] {
            std::fs::create_dir(sandbox.path(dir)).expect("sandbox dir");
        }
        for name in ["firstrun.sh", "userconf.txt", "cmdline.txt"] {
            std::fs::write(sandbox.path("boot").join(name), mtype(image, name)).expect("boot file");
        }
        let run = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "bash", "-c"])
            .arg(
                "set -e; mount --bind \"$SB/etc\" /etc; mount --bind \"$SB/home\" /home; \
                 mount --bind \"$SB/varlog\" /var/log; exec bash \"$SB/boot/firstrun.sh\"",
            )
            .env("SB", sandbox.dir.path())
            .output()
            .expect("run unshare");
        assert!(
            run.status.success(),
            "firstrun.sh failed: {}",
            describe(&run)
        );
        sandbox
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }

    fn mode(&self, rel: &str) -> u32 {
        let meta = std::fs::symlink_metadata(self.path(rel)).expect("metadata");
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o7777
    }
}

#[test]
fn firstrun_sh_really_configures_a_system_and_removes_its_hook() {
    let fx = Fixture::new("");
    let psk = fx.path("wifi.psk");
    std::fs::write(&psk, "password\n").expect("psk");
    let args = settings_args(&psk, "IEEE");
    let base = fx.path("bullseye.img");
    raspios_base(&base, BULLSEYE_CMDLINE);
    let image = fx.path("pi-3.img");
    fx.prepare_ok(&base, &image, &args);
    let userconf = mtype(&image, "userconf.txt");
    let ran = FirstrunSandbox::run(&image, false);

    assert_eq!(ran.read("etc/hostname"), "pi-3\n");
    assert!(ran.read("etc/hosts").contains("127.0.1.1\tpi-3"));
    let passwd = ran.read("etc/passwd");
    assert!(
        passwd
            .lines()
            .any(|l| l.starts_with("pi:") && l.contains(":/home/pi:")),
        "{passwd}"
    );
    let hash = userconf.trim_end().strip_prefix("pi:").expect("userconf");
    let shadow = ran.read("etc/shadow");
    assert!(
        shadow.contains(&format!("pi:{hash}:")),
        "the throwaway password's hash is set"
    );
    assert_eq!(
        ran.read("home/pi/.ssh/authorized_keys"),
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIlab test@lab\n"
    );
    assert_eq!(ran.mode("home/pi/.ssh"), 0o700);
    assert_eq!(ran.mode("home/pi/.ssh/authorized_keys"), 0o600);
    assert_eq!(
        ran.read("etc/sudoers.d/010_lab-nopasswd"),
        "pi ALL=(ALL) NOPASSWD: ALL\n"
    );
    assert_eq!(ran.mode("etc/sudoers.d/010_lab-nopasswd"), 0o440);

    // The pinned host key is the only one.
    let key_file = fx.state().join("image/host-keys/pi-3/ssh_host_ed25519_key");
    let mut host_keys: Vec<String> = std::fs::read_dir(ran.path("etc/ssh"))
        .expect("etc/ssh")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with("ssh_host_"))
        .collect();
    host_keys.sort();
    assert_eq!(
        host_keys,
        ["ssh_host_ed25519_key", "ssh_host_ed25519_key.pub"]
    );
    assert_eq!(
        ran.read("etc/ssh/ssh_host_ed25519_key"),
        std::fs::read_to_string(&key_file).expect("key")
    );
    assert_eq!(ran.mode("etc/ssh/ssh_host_ed25519_key"), 0o600);
    assert_eq!(
        ran.read("etc/ssh/ssh_host_ed25519_key.pub"),
        std::fs::read_to_string(key_file.with_extension("pub")).expect("pub")
    );

    // dhcpcd and wpa_supplicant (no NetworkManager), the time zone.
    let dhcpcd = ran.read("etc/dhcpcd.conf");
    assert!(
        dhcpcd.contains(
            "interface eth0\nstatic ip_address=192.168.1.13/24\nstatic routers=192.168.1.1\n"
        ),
        "{dhcpcd}"
    );
    let wpa = ran.read("etc/wpa_supplicant/wpa_supplicant.conf");
    assert!(
        wpa.contains("ssid=\"IEEE\"\n    psk=f42c6fc52df0ebef9ebb4b90b38a5f902e83fe1b135a70e23aed762e9710a12e\n"),
        "{wpa}"
    );
    assert_eq!(ran.mode("etc/wpa_supplicant/wpa_supplicant.conf"), 0o600);
    assert_eq!(ran.read("etc/timezone"), "Europe/Berlin\n");
    assert_eq!(
        std::fs::read_link(ran.path("etc/localtime")).expect("localtime"),
        Path::new("/usr/share/zoneinfo/Europe/Berlin")
    );

    // It ran once: the hook, the script and userconf.txt are gone; cmdline.txt is the base's.
    assert_eq!(ran.read("boot/cmdline.txt"), BULLSEYE_CMDLINE);
    assert!(!ran.path("boot/firstrun.sh").exists());
    assert!(!ran.path("boot/userconf.txt").exists());

    // Bookworm: NetworkManager keyfiles instead.
    let base = fx.path("bookworm.img");
    raspios_base(&base, BOOKWORM_CMDLINE);
    let image = fx.path("pi-3-bookworm.img");
    fx.prepare_ok(&base, &image, &args);
    let ran = FirstrunSandbox::run(&image, true);
    let eth0 = ran.read("etc/NetworkManager/system-connections/lab-eth0.nmconnection");
    assert!(
        eth0.contains(
            "[ipv4]\nmethod=manual\naddress1=192.168.1.13/24,192.168.1.1\ndns=192.168.1.1;\n"
        ),
        "{eth0}"
    );
    let wifi = ran.read("etc/NetworkManager/system-connections/lab-wifi.nmconnection");
    assert!(
        wifi.contains("ssid=IEEE\n")
            && wifi
                .contains("psk=f42c6fc52df0ebef9ebb4b90b38a5f902e83fe1b135a70e23aed762e9710a12e\n"),
        "{wifi}"
    );
    assert_eq!(
        ran.mode("etc/NetworkManager/system-connections/lab-wifi.nmconnection"),
        0o600
    );
    assert_eq!(ran.read("boot/cmdline.txt"), BOOKWORM_CMDLINE);
}
