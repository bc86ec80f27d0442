//! `lab flash` on loop devices (backed by files in a temp dir, detached also when a test
//! fails): without --yes and a terminal nothing is written; with --yes the image is written,
//! read back and verified, byte for byte; a device smaller than the image, a mounted one and
//! a plain file are refused with nothing written.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::describe;

/// A loop device over a file of `size` zero bytes; detached on drop.
struct Loop {
    device: PathBuf,
    mounted: Option<PathBuf>,
}

impl Loop {
    fn new(dir: &Path, name: &str, size: u64) -> Loop {
        let backing = dir.join(name);
        let file = std::fs::File::create(&backing).expect("backing file");
        file.set_len(size).expect("size the backing file");
        let out = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(&backing)
            .output()
            .expect("run losetup");
        assert!(
            out.status.success(),
            "losetup (needs root): {}",
            describe(&out)
        );
        let device = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        Loop {
            device,
            mounted: None,
        }
    }

    fn read(&self, len: usize) -> Vec<u8> {
        let mut buf = vec![0u8; len];
        let mut f = std::fs::File::open(&self.device).expect("open the loop device");
        std::io::Read::read_exact(&mut f, &mut buf).expect("read the loop device");
        buf
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        if let Some(point) = &self.mounted {
            let _ = Command::new("umount").arg(point).status();
        }
        let _ = Command::new("losetup").arg("-d").arg(&self.device).status();
    }
}

fn lab(args: &[&str]) -> std::process::Output {
    Command::new(common::LAB)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run lab")
}

#[test]
fn an_image_is_written_and_verified_and_unsafe_targets_are_refused() {
    common::require_root();
    lab::host_setup::ensure(&[lab::host_setup::E2FSPROGS], &mut |l: &str| {
        eprintln!("{l}")
    })
    .expect("installing e2fsprogs");
    let dir = tempfile::tempdir().expect("tempdir");
    let image = dir.path().join("pi-3.img");
    let bytes: Vec<u8> = (0..6u32 * 1024 * 1024)
        .map(|i| (i % 253) as u8 + 1)
        .collect();
    std::fs::write(&image, &bytes).expect("write the image");
    let img = image.to_str().expect("utf-8 path");

    let card = Loop::new(dir.path(), "card", 16 << 20);
    let dev = card.device.to_str().expect("utf-8 path");
    // No terminal to ask on and no --yes: refused, the card untouched.
    let out = lab(&["flash", img, dev]);
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(describe(&out).contains("--yes"), "{}", describe(&out));
    assert!(
        card.read(4096).iter().all(|b| *b == 0),
        "written without asking"
    );

    let out = lab(&["flash", img, dev, "--yes"]);
    assert!(out.status.success(), "{}", describe(&out));
    let text = describe(&out);
    assert!(text.contains("written and verified"), "{text}");
    assert!(text.contains("MB/s"), "progress with speed: {text}");
    assert!(card.read(bytes.len()) == bytes, "the card holds the image");

    // Smaller than the image.
    let small = Loop::new(dir.path(), "small", 4 << 20);
    let out = lab(&["flash", img, small.device.to_str().expect("path"), "--yes"]);
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        describe(&out).contains("smaller than the image"),
        "{}",
        describe(&out)
    );
    assert!(small.read(4096).iter().all(|b| *b == 0));

    // Mounted.
    let mut busy = Loop::new(dir.path(), "busy", 16 << 20);
    let busy_dev = busy.device.to_str().expect("path").to_string();
    let mkfs = Command::new("mkfs.ext4")
        .args(["-q", "-F", &busy_dev])
        .output()
        .expect("run mkfs.ext4");
    assert!(mkfs.status.success(), "{}", describe(&mkfs));
    let point = dir.path().join("mnt");
    std::fs::create_dir(&point).expect("mount point");
    let mount = Command::new("mount")
        .arg(&busy_dev)
        .arg(&point)
        .output()
        .expect("run mount");
    assert!(mount.status.success(), "{}", describe(&mount));
    busy.mounted = Some(point.clone());
    std::fs::write(point.join("keep.txt"), "mine").expect("a file on it");
    let out = lab(&["flash", img, &busy_dev, "--yes"]);
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(describe(&out).contains("is mounted"), "{}", describe(&out));
    assert_eq!(
        std::fs::read_to_string(point.join("keep.txt")).expect("still there"),
        "mine"
    );

    // A plain file is not a disk.
    let out = lab(&["flash", img, img, "--yes"]);
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        describe(&out).contains("not a block device"),
        "{}",
        describe(&out)
    );
}
