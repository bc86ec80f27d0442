//! `lab image prepare` on images built here (an MBR, a FAT32 boot partition made with
//! mkfs.fat, the files a cloud-init image carries, put with mtools): the board's first-boot
//! files land in the copy (read back with mtools, the partition checked with fsck.fat), the
//! base is untouched; an image without cloud-init, an existing output, a compressed base and
//! an unknown board are refused with nothing left behind.

mod common;

use std::path::Path;
use std::process::Command;

use common::describe;

/// The boot partition: 64 MiB at sector 2048.
const BOOT_OFFSET: u64 = 2048 * 512;
const BOOT_SECTORS: u32 = 131_072;

/// An image of `boot_files` (name, content) in a fresh FAT32 boot partition, plus a Linux
/// partition entry after it.
fn base_image(path: &Path, boot_files: &[(&str, &str)]) {
    let file = std::fs::File::create(path).expect("image file");
    file.set_len(BOOT_OFFSET + u64::from(BOOT_SECTORS) * 512 + (8 << 20))
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

/// A read-only loop device over the image's boot partition; detached on drop.
struct BootLoop(String);

impl Drop for BootLoop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

#[test]
fn a_cloud_init_image_gets_the_boards_first_boot_files_and_bad_input_changes_nothing() {
    common::require_root();
    lab::host_setup::ensure(
        &[lab::host_setup::DOSFSTOOLS, lab::host_setup::MTOOLS],
        &mut |l: &str| eprintln!("{l}"),
    )
    .expect("installing dosfstools and mtools");
    let dir = tempfile::tempdir().expect("tempdir");
    let base = dir.path().join("ubuntu.img");
    base_image(
        &base,
        &[
            ("meta-data", "placeholder\n"),
            ("config.txt", "arm_64bit=1\n"),
        ],
    );
    let key = dir.path().join("lab.pub");
    std::fs::write(&key, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIlab test@lab\n").expect("key");
    let inventory = dir.path().join("homelab.toml");
    std::fs::write(
        &inventory,
        "[cluster]\nname = \"img\"\nstate_dir = \"state\"\nssh_user = \"pi\"\n\
         [[board]]\nname = \"pi-3\"\naddress = \"192.168.1.13\"\n",
    )
    .expect("inventory");
    let lab = |extra: &[&str]| {
        Command::new(common::LAB)
            .args(["image", "prepare", "-i"])
            .arg(&inventory)
            .args(extra)
            .output()
            .expect("run lab")
    };
    let out_img = dir.path().join("pi-3.img");
    let (base_s, out_s, key_s) = (
        base.to_str().expect("path"),
        out_img.to_str().expect("path"),
        key.to_str().expect("path"),
    );
    let out = lab(&[
        "--board",
        "pi-3",
        "--base",
        base_s,
        "-o",
        out_s,
        "--gateway",
        "192.168.1.1",
        "--authorized-key",
        key_s,
    ]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(describe(&out).contains("CloudInit"), "{}", describe(&out));
    let user_data = mtype(&out_img, "user-data");
    assert!(user_data.starts_with("#cloud-config\n"), "{user_data}");
    assert!(user_data.contains("hostname: pi-3"), "{user_data}");
    assert!(user_data.contains("  - name: pi\n"), "{user_data}");
    assert!(
        user_data.contains("- ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIlab test@lab"),
        "{user_data}"
    );
    assert!(mtype(&out_img, "meta-data").contains("instance-id: lab-pi-3"));
    let net = mtype(&out_img, "network-config");
    assert!(
        net.contains("addresses: [192.168.1.13/24]") && net.contains("via: 192.168.1.1"),
        "{net}"
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
    // The boot partition is a sound FAT filesystem.
    let lo = Command::new("losetup")
        .args(["--find", "--show", "--read-only", "--offset"])
        .arg(BOOT_OFFSET.to_string())
        .arg("--sizelimit")
        .arg((u64::from(BOOT_SECTORS) * 512).to_string())
        .arg(&out_img)
        .output()
        .expect("run losetup");
    assert!(lo.status.success(), "{}", describe(&lo));
    let device = BootLoop(String::from_utf8_lossy(&lo.stdout).trim().to_string());
    let fsck = Command::new("fsck.fat")
        .args(["-n", &device.0])
        .output()
        .expect("run fsck.fat");
    assert!(fsck.status.success(), "{}", describe(&fsck));
    drop(device);

    // Refused, nothing left: the output exists, no cloud-init, compressed, unknown board.
    let again = lab(&[
        "--board",
        "pi-3",
        "--base",
        base_s,
        "-o",
        out_s,
        "--authorized-key",
        key_s,
    ]);
    assert!(!again.status.success());
    assert!(describe(&again).contains("exists"), "{}", describe(&again));
    let plain = dir.path().join("plain.img");
    base_image(&plain, &[("EFI.TXT", "x")]);
    let other = dir.path().join("other.img");
    let o = other.to_str().expect("path");
    let out = lab(&[
        "--board",
        "pi-3",
        "--base",
        plain.to_str().expect("p"),
        "-o",
        o,
        "--authorized-key",
        key_s,
    ]);
    assert!(!out.status.success());
    assert!(
        describe(&out).contains("unknown image"),
        "{}",
        describe(&out)
    );
    assert!(!other.exists(), "a refused image is removed");
    let xz = dir.path().join("ubuntu.img.xz");
    std::fs::write(&xz, "x").expect("xz");
    let out = lab(&[
        "--board",
        "pi-3",
        "--base",
        xz.to_str().expect("p"),
        "-o",
        o,
        "--authorized-key",
        key_s,
    ]);
    assert!(describe(&out).contains("compressed"), "{}", describe(&out));
    let out = lab(&[
        "--board",
        "pi-9",
        "--base",
        base_s,
        "-o",
        o,
        "--authorized-key",
        key_s,
    ]);
    assert!(
        describe(&out).contains("no board `pi-9`"),
        "{}",
        describe(&out)
    );
    assert!(!other.exists());

    // --all: one image per board of the inventory, in the directory given.
    let mut text = std::fs::read_to_string(&inventory).expect("inventory");
    text.push_str("[[board]]\nname = \"pi-4\"\naddress = \"192.168.1.14\"\n");
    std::fs::write(&inventory, text).expect("inventory");
    let all = dir.path().join("all");
    let all_s = all.to_str().expect("path");
    let out = lab(&[
        "--all",
        "--base",
        base_s,
        "-o",
        all_s,
        "--authorized-key",
        key_s,
    ]);
    assert!(out.status.success(), "{}", describe(&out));
    for board in ["pi-3", "pi-4"] {
        let img = all.join(format!("{board}.img"));
        assert!(
            mtype(&img, "user-data").contains(&format!("hostname: {board}")),
            "{board}"
        );
        assert!(mtype(&img, "network-config").contains("dhcp4: true"));
    }
}
