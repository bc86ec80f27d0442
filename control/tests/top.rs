//! `lab top` in a real terminal (tmux) against a real control plane: a virtual cluster comes up
//! (`lab up` starts `lab serve` on a loopback port), `lab top --url` runs in a detached tmux
//! session of its own server socket; the screen must show every board and a CPU figure, redraw
//! for a smaller window, and quit on `q` with exit status 0, ending the session.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::{describe, wait_for, TestCluster, LAB};

const TMUX: &str = "/usr/bin/tmux";

/// A tmux server (own socket) with one session; killed on drop.
struct Tmux {
    socket: String,
    session: String,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> Output {
        Command::new(TMUX)
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .env("TERM", "xterm-256color")
            .output()
            .expect("run tmux")
    }

    fn start(name: &str, width: u16, height: u16, command: &str) -> Self {
        lab::host_setup::ensure(&[lab::host_setup::TMUX], &mut |l: &str| eprintln!("{l}"))
            .expect("installing tmux (run the tests as root)");
        assert!(
            Path::new(TMUX).exists(),
            "{TMUX} is missing: install it with `apt-get install -y tmux`"
        );
        let t = Tmux {
            socket: format!("labtest-{name}"),
            session: name.to_string(),
        };
        let out = t.run(&[
            "new-session",
            "-d",
            "-s",
            name,
            "-x",
            &width.to_string(),
            "-y",
            &height.to_string(),
            command,
        ]);
        assert!(
            out.status.success(),
            "tmux new-session:\n{}",
            describe(&out)
        );
        t
    }

    fn screen(&self) -> String {
        let out = self.run(&["capture-pane", "-p", "-t", &self.session]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn alive(&self) -> bool {
        self.run(&["has-session", "-t", &self.session])
            .status
            .success()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

/// A CPU figure as `lab top` prints it (`  3.1`): a number with one decimal on a board's row.
fn has_cpu_figure(screen: &str, board: &str) -> bool {
    screen.lines().filter(|l| l.contains(board)).any(|l| {
        l.split_whitespace().any(|w| {
            w.split_once('.').is_some_and(|(a, b)| {
                !a.is_empty()
                    && a.chars().all(|c| c.is_ascii_digit())
                    && b.len() == 1
                    && b.chars().all(|c| c.is_ascii_digit())
            })
        })
    })
}

#[test]
fn lab_top_draws_resizes_and_quits_in_tmux() {
    let cluster = TestCluster::new("tp", &[("top-a", "native"), ("top-b", "native")]);
    let addr = cluster.up_with_serve();
    let names: Vec<String> = cluster.boards.iter().map(|(n, _)| n.clone()).collect();

    // Without a control plane: the clear error, before touching the terminal.
    let out = Command::new(LAB)
        .args(["top", "--url", "http://127.0.0.1:9"])
        .output()
        .expect("run lab top");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("control plane not running: start it with `lab up` or `lab serve`"),
        "{err}"
    );

    let exit_file = cluster.dir.path().join("top.exit");
    let command = format!(
        "{LAB} top --url http://{addr}; echo $? > {}",
        exit_file.display()
    );
    let session = format!("top{}", std::process::id());
    let tmux = Tmux::start(&session, 120, 30, &command);

    let screen = wait_for(
        "boards and CPU figures on screen",
        Duration::from_secs(30),
        || {
            let s = tmux.screen();
            let ok = s.contains("2/2 boards up")
                && names
                    .iter()
                    .all(|n| s.contains(n.as_str()) && has_cpu_figure(&s, n));
            if ok {
                Ok(s)
            } else {
                Err(format!("screen:\n{s}"))
            }
        },
    );
    println!("lab top at 120x30:\n{screen}");
    assert!(
        screen.contains("NET TX"),
        "120 columns show every column:\n{screen}"
    );

    // A smaller window: redrawn to fit (fewer columns, nothing wider than the window).
    let out = tmux.run(&["resize-window", "-t", &session, "-x", "80", "-y", "24"]);
    assert!(out.status.success(), "resize:\n{}", describe(&out));
    wait_for("a redraw at 80x24", Duration::from_secs(10), || {
        let s = tmux.screen();
        let fits = s.lines().all(|l| l.trim_end().chars().count() <= 80);
        let ok = fits
            && s.lines().count() <= 24
            && !s.contains("NET TX")
            && s.contains("BOARD")
            && names.iter().all(|n| s.contains(n.as_str()));
        if ok {
            Ok(())
        } else {
            Err(format!("screen:\n{s}"))
        }
    });

    // `q` quits with status 0 and the session ends with it.
    let out = tmux.run(&["send-keys", "-t", &session, "q"]);
    assert!(out.status.success(), "send-keys:\n{}", describe(&out));
    wait_for(
        "lab top to exit and the session to end",
        Duration::from_secs(10),
        || {
            if tmux.alive() {
                Err(format!("session still there; screen:\n{}", tmux.screen()))
            } else {
                Ok(())
            }
        },
    );
    let status = std::fs::read_to_string(&exit_file).unwrap_or_default();
    assert_eq!(status.trim(), "0", "lab top's exit status");
}
