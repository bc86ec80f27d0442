//! The classroom exercises run as a student runs them, on the virtual cluster, in the fast
//! profile: `lab exercise start N` brings up the starting cluster, `lab exercise check N`
//! measures. Each check is also seen failing, with its reason, when the outcome is missing:
//! the starting point before the student's change, or a board killed.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{describe, require_root, unique, LAB};

/// A student's working directory with one exercise started in it; `lab down --purge` on drop.
struct Student {
    dir: tempfile::TempDir,
    inventory: PathBuf,
    /// `lab exercise start`'s arguments after the number (name, subnet, listen).
    start_args: Vec<String>,
}

impl Student {
    fn start(number: u32) -> Self {
        require_root();
        let (name, a, b) = unique(&format!("ex{number}"));
        let dir = tempfile::tempdir().expect("tempdir");
        let inventory = dir.path().join(format!("exercise-{number}.toml"));
        let start_args = vec![
            "-o".to_string(),
            inventory.display().to_string(),
            "--name".into(),
            name,
            "--subnet".into(),
            format!("10.{a}.{b}.0/24"),
            "--listen".into(),
            "127.0.0.1:0".into(),
        ];
        let student = Student {
            dir,
            inventory,
            start_args,
        };
        let out = student.start_again(number, false);
        assert!(
            out.status.success(),
            "exercise start {number}:\n{}",
            describe(&out)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Do:") && text.contains("Answer:"), "{text}");
        student
    }

    /// `lab exercise start N` again with the same name and subnet (`--reset`: start over).
    fn start_again(&self, number: u32, reset: bool) -> Output {
        let number = number.to_string();
        let mut args = vec!["exercise", "start", &number];
        args.extend(self.start_args.iter().map(String::as_str));
        if reset {
            args.push("--reset");
        }
        self.lab(&args)
    }

    fn lab(&self, args: &[&str]) -> Output {
        Command::new(LAB)
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("SSH_AUTH_SOCK")
            .output()
            .expect("run lab")
    }

    fn check(&self, number: u32) -> (bool, String) {
        let out = self.lab(&[
            "exercise",
            "check",
            &number.to_string(),
            "--fast",
            "-i",
            &self.inventory.display().to_string(),
        ]);
        (out.status.success(), describe(&out))
    }

    /// Give `board` `roles` in the student's copy (its `roles = ...` line replaced), as the
    /// exercise tells them to, and `lab apply` it.
    fn give_roles(&self, board: &str, roles: &str) {
        self.write_roles(board, roles);
        self.apply();
    }

    fn write_roles(&self, board: &str, roles: &str) {
        let text = std::fs::read_to_string(&self.inventory).expect("read the copy");
        let at = text
            .find(&format!("name = \"{board}\""))
            .unwrap_or_else(|| panic!("no {board} in\n{text}"));
        let roles_at = at + text[at..].find("roles = ").expect("a roles line");
        let line_end = roles_at + text[roles_at..].find('\n').unwrap_or(text.len() - roles_at);
        let changed = format!("{}roles = {roles}{}", &text[..roles_at], &text[line_end..]);
        std::fs::write(&self.inventory, changed).expect("write the copy");
    }

    /// Replace `from` with `to` in the student's copy (it must be there), then `lab apply`.
    fn edit(&self, from: &str, to: &str) {
        let copy = std::fs::read_to_string(&self.inventory).expect("read the copy");
        assert!(copy.contains(from), "no {from} in\n{copy}");
        std::fs::write(&self.inventory, copy.replace(from, to)).expect("write the copy");
        self.apply();
    }

    fn apply(&self) {
        let out = self.lab(&["apply", "-i", &self.inventory.display().to_string()]);
        assert!(out.status.success(), "lab apply:\n{}", describe(&out));
    }

    /// Wait until `board`'s agent says `role` runs.
    fn wait_running(&self, board: &str, role: &str) {
        let inventory = self.inventory.display().to_string();
        common::wait_for(
            &format!("{role} running on {board}"),
            std::time::Duration::from_secs(120),
            || {
                let out = self.lab(&["status", "--json", "-i", &inventory]);
                let boards: serde_json::Value =
                    serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
                let roles = boards
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|b| b["board"] == board)
                    .and_then(|b| b["health"]["roles"].as_array().cloned())
                    .unwrap_or_default();
                roles
                    .iter()
                    .any(|r| r["role"] == role && r["state"] == "running")
                    .then_some(())
                    .ok_or_else(|| format!("{board}: {roles:?}"))
            },
        );
    }

    fn path(&self) -> &Path {
        &self.inventory
    }
}

impl Drop for Student {
    fn drop(&mut self) {
        let out = self.lab(&[
            "down",
            "--purge",
            "-i",
            &self.inventory.display().to_string(),
        ]);
        if !out.status.success() {
            eprintln!("cleanup: lab down --purge failed:\n{}", describe(&out));
        }
    }
}

#[test]
fn exercise_1_one_server_and_a_pulled_plug() {
    let student = Student::start(1);
    let (passed, text) = student.check(1);
    assert!(passed, "{text}");
    assert!(text.contains("exercise 1: passed"), "{text}");
    // Broken on purpose: the one server is gone; the check fails and says why.
    let out = student.lab(&[
        "kill",
        "server-1",
        "-i",
        &student.path().display().to_string(),
    ]);
    assert!(out.status.success(), "{}", describe(&out));
    let (passed, text) = student.check(1);
    assert!(!passed, "passed with its only board dead:\n{text}");
    // Nothing answers: the run cannot even sign its users up, and says where it stopped.
    assert!(text.contains("MISS the load run did not finish"), "{text}");
    assert!(text.contains("connect to"), "{text}");
    assert!(text.contains("not yet"), "{text}");
}

#[test]
fn exercise_2_the_database_moves_to_its_own_board() {
    let student = Student::start(2);
    let (passed, text) = student.check(2);
    assert!(
        !passed,
        "passed with the database on the app's board:\n{text}"
    );
    assert!(
        text.contains("MISS server-1 still runs app and db-master together"),
        "{text}"
    );
    // As the exercise says: copy the data first, then move the primary.
    student.give_roles("db-1", "[\"db-replica\"]");
    student.wait_running("db-1", "db-replica");
    student.write_roles("server-1", "[\"lb\", \"app\"]");
    student.give_roles("db-1", "[\"db-master\"]");
    let (passed, text) = student.check(2);
    assert!(passed, "{text}");
    assert!(text.contains("ok   db-master runs on db-1"), "{text}");
    assert!(text.contains("ok   app runs on server-1"), "{text}");
}

#[test]
fn exercise_10_a_leaving_cache_board_moves_a_third_of_the_keys_not_two() {
    let student = Student::start(10);
    let (passed, text) = student.check(10);
    assert!(passed, "{text}");
    assert!(text.contains("ok   the change moved"), "{text}");
    // Broken on purpose: hash-mod-N moves most keys when one board of three leaves.
    student.wait_running("cache-3", "cache");
    student.edit("hashing = \"ring\"", "hashing = \"modulo\"");
    let (passed, text) = student.check(10);
    assert!(!passed, "modulo hashing passed:\n{text}");
    assert!(text.contains("MISS the change moved"), "{text}");
}

#[test]
fn exercise_6_the_edge_takes_the_objects_off_the_origin() {
    let student = Student::start(6);
    // The starting point: no edge, every object comes from files-1 itself.
    let (passed, text) = student.check(6);
    assert!(!passed, "passed without an edge:\n{text}");
    assert!(
        text.contains("MISS no answer came through a cache"),
        "{text}"
    );
    student.give_roles("cdn-1", "[\"cdn\"]");
    let (passed, text) = student.check(6);
    assert!(passed, "{text}");
    assert!(text.contains("ok   cache hit ratio"), "{text}");
}

#[test]
fn exercise_7_logins_kept_off_the_app_boards_survive_one_dying() {
    let student = Student::start(7);
    // The starting point: each app board keeps its own logins; the other one refuses them.
    let (passed, text) = student.check(7);
    assert!(!passed, "passed with sessions in the apps' memory:\n{text}");
    assert!(text.contains("MISS the load run did not finish"), "{text}");
    assert!(text.contains("no such session on app board"), "{text}");
    student.edit("sessions = \"local\"", "sessions = \"shared\"");
    let (passed, text) = student.check(7);
    assert!(passed, "{text}");
    assert!(
        text.contains("ok   the control plane saw app-1 go down"),
        "{text}"
    );
}

#[test]
fn exercise_3_a_second_app_board_shares_the_load() {
    let student = Student::start(3);
    // The starting point: one app board does everything.
    let (passed, text) = student.check(3);
    assert!(!passed, "passed before app-2 had a role:\n{text}");
    assert!(text.contains("MISS 1 board(s) answered (app-1"), "{text}");
    // A changed copy is kept: start again refuses to throw the student's work away.
    student.give_roles("app-2", "[\"app\"]");
    let again = student.start_again(3, false);
    assert!(!again.status.success(), "{}", describe(&again));
    assert!(
        describe(&again).contains("has your changes"),
        "{}",
        describe(&again)
    );
    let (passed, text) = student.check(3);
    assert!(passed, "{text}");
    assert!(text.contains("app-1") && text.contains("app-2"), "{text}");
    // Starting over: the copy back to the start and a fresh cluster, app-2 idle again.
    let fresh = student.start_again(3, true);
    assert!(fresh.status.success(), "{}", describe(&fresh));
    assert!(
        describe(&fresh).contains("reset: cluster"),
        "{}",
        describe(&fresh)
    );
    let (passed, text) = student.check(3);
    assert!(!passed, "app-2 still served after --reset:\n{text}");
}

#[test]
fn exercise_5_the_cache_takes_reads_off_the_database() {
    let student = Student::start(5);
    let (passed, text) = student.check(5);
    assert!(!passed, "passed without a cache board:\n{text}");
    assert!(text.contains("MISS cache hit ratio 0.0 %"), "{text}");
    assert!(
        text.contains("MISS 100.0 % of the answers reached the database"),
        "{text}"
    );
    student.give_roles("cache-1", "[\"cache\"]");
    let (passed, text) = student.check(5);
    assert!(passed, "{text}");
}

#[test]
fn exercise_4_a_replica_serves_the_reads() {
    let student = Student::start(4);
    let (passed, text) = student.check(4);
    assert!(!passed, "passed with no replica:\n{text}");
    assert!(
        text.contains("MISS 0.0 % of the database's answers came from a replica"),
        "{text}"
    );
    student.give_roles("db-2", "[\"db-replica\"]");
    let (passed, text) = student.check(4);
    assert!(passed, "{text}");
}

#[test]
fn exercise_9_least_connections_sends_the_work_where_it_is_done() {
    let student = Student::start(9);
    let (passed, text) = student.check(9);
    assert!(!passed, "round robin passed:\n{text}");
    assert!(text.contains("MISS the busiest board"), "{text}");
    student.edit("algorithm = \"round-robin\"", "algorithm = \"least-conn\"");
    let (passed, text) = student.check(9);
    assert!(passed, "{text}");
    assert!(text.contains("ok   the busiest board, app-1"), "{text}");
}

#[test]
fn exercise_11_the_student_names_the_slow_board() {
    let student = Student::start(11);
    let inventory = student.path().display().to_string();
    let answer = |given: Option<&str>| {
        let mut args = vec!["exercise", "check", "11", "--fast", "-i", &inventory];
        if let Some(board) = given {
            args.extend(["--answer", board]);
        }
        let out = student.lab(&args);
        (out.status.success(), describe(&out))
    };
    let (passed, text) = answer(None);
    assert!(!passed && text.contains("MISS no answer given"), "{text}");
    let (passed, text) = answer(Some("app-1"));
    assert!(
        !passed && text.contains("MISS app-1 is not the one"),
        "{text}"
    );
    let (passed, text) = answer(Some("app-2"));
    assert!(passed, "{text}");
    assert!(text.contains("3 board(s) answered"), "{text}");
}

#[test]
fn exercise_8_the_drill_heals_with_the_failover_manager() {
    let student = Student::start(8);
    let (passed, text) = student.check(8);
    assert!(passed, "{text}");
    for board in ["app-2", "cache-1", "db-1"] {
        assert!(
            text.contains(&format!("lab kill {board}: {board}: power cut")),
            "{text}"
        );
        assert!(
            text.contains(&format!("ok   the control plane saw {board} go down")),
            "{text}"
        );
    }
    assert!(text.contains("ok   healed"), "{text}");
    assert!(text.contains("ok   0 of "), "{text}");
    assert!(text.contains("acknowledged writes lost"), "{text}");
    // Again on the drilled cluster: the plugs are out already, so nothing is drilled, and
    // the check says so instead of passing.
    let (passed, text) = student.check(8);
    assert!(!passed, "a drill of dead boards passed:\n{text}");
    assert!(
        text.contains("MISS the control plane never saw app-2 go down"),
        "{text}"
    );
}

#[test]
fn exercise_8_without_the_failover_manager_nothing_heals() {
    let student = Student::start(8);
    // Broken on purpose: the control plane (and with it the failover manager) stopped.
    let state = student
        .dir
        .path()
        .read_dir()
        .expect("list the student's dir")
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("state-"))
        })
        .expect("the cluster's state dir");
    let pid: i32 = std::fs::read_to_string(state.join("serve.pid"))
        .expect("serve.pid")
        .trim()
        .parse()
        .expect("a pid");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("stop lab serve");
    common::wait_for("lab serve gone", std::time::Duration::from_secs(10), || {
        if std::path::Path::new(&format!("/proc/{pid}")).exists() {
            Err("still running".to_string())
        } else {
            Ok(())
        }
    });
    let (passed, text) = student.check(8);
    assert!(!passed, "healed with no failover manager:\n{text}");
    assert!(text.contains("MISS not healed"), "{text}");
}

#[test]
fn list_shows_every_exercise_in_order_and_in_japanese() {
    let out = Command::new(LAB)
        .args(["exercise", "list", "--lang", "ja"])
        .output()
        .expect("run lab");
    let text = describe(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("サーバー1台"), "{text}");
    let one = text.find(" 1  ").expect("exercise 1");
    let three = text.find(" 3  ").expect("exercise 3");
    assert!(one < three, "{text}");
    let missing = Command::new(LAB)
        .args(["exercise", "check", "42"])
        .output()
        .expect("run lab");
    assert!(!missing.status.success());
    assert!(
        describe(&missing).contains("no exercise 42"),
        "{}",
        describe(&missing)
    );
}
