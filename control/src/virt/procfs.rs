//! Finding a board's processes on the host through `/proc`: is a recorded init PID still that
//! board's init, and which processes still mention a board directory. Parsing is pure and
//! tested; the scanning functions only read `/proc`.

use std::fs;
use std::path::Path;

/// The argument that makes a `lab` process a board init (`lab board-init ...`).
pub(crate) const BOARD_INIT_ARG: &str = "board-init";

/// Split a raw `/proc/<pid>/cmdline` into its arguments.
pub(crate) fn parse_cmdline(raw: &[u8]) -> Vec<String> {
    raw.split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// The state letter of `/proc/<pid>/stat` (`R`, `S`, `Z`, ...). The command name in
/// parentheses may itself contain spaces and parentheses, so look after the last `)`.
pub(crate) fn parse_stat_state(stat: &str) -> Option<char> {
    let (_, rest) = stat.rsplit_once(')')?;
    rest.trim_start().chars().next()
}

/// Whether `args` are those of the board init of `board_dir` (`<lab> board-init --dir <dir>`).
pub(crate) fn is_board_init(args: &[String], board_dir: &str) -> bool {
    args.get(1).map(String::as_str) == Some(BOARD_INIT_ARG) && mentions(args, board_dir)
}

/// Whether one of `args` is exactly `board_dir` (init, or the `unshare` that started it).
pub(crate) fn mentions(args: &[String], board_dir: &str) -> bool {
    args.iter().any(|a| a == board_dir)
}

/// Parse the content of a PID file.
pub(crate) fn parse_pid(text: &str) -> Option<u32> {
    text.trim().parse().ok().filter(|pid| *pid > 1)
}

fn cmdline(pid: u32) -> Option<Vec<String>> {
    fs::read(format!("/proc/{pid}/cmdline"))
        .ok()
        .map(|raw| parse_cmdline(&raw))
}

/// Whether a process `pid` exists at all (a zombie does).
pub(crate) fn exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Whether `pid` is alive (exists and is not a zombie).
pub(crate) fn is_alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| parse_stat_state(&stat))
        .is_some_and(|state| state != 'Z' && state != 'X')
}

/// Whether `pid` is alive and is the board init of `board_dir`.
pub(crate) fn is_live_board_init(pid: u32, board_dir: &str) -> bool {
    is_alive(pid) && cmdline(pid).is_some_and(|args| is_board_init(&args, board_dir))
}

/// The board init PID recorded in `pid_file`, if that process is still that board's init.
pub(crate) fn running_init(pid_file: &Path, board_dir: &str) -> Option<u32> {
    let pid = parse_pid(&fs::read_to_string(pid_file).ok()?)?;
    is_live_board_init(pid, board_dir).then_some(pid)
}

/// Every live process one of whose arguments is exactly `board_dir`.
pub(crate) fn processes_mentioning(board_dir: &str) -> Vec<u32> {
    scan(|args| mentions(args, board_dir))
}

/// Every live process that is a board init of `board_dir`.
pub(crate) fn board_inits(board_dir: &str) -> Vec<u32> {
    scan(|args| is_board_init(args, board_dir))
}

/// Live processes (other than this one) whose arguments satisfy `pred`.
fn scan(pred: impl Fn(&[String]) -> bool) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = std::process::id();
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me && is_alive(*pid))
        .filter(|pid| cmdline(*pid).is_some_and(|args| pred(&args)))
        .collect()
}

/// Mount points (from `/proc/self/mountinfo`) at or below `dir`.
pub(crate) fn mounts_below(mountinfo: &str, dir: &str) -> Vec<String> {
    let dir = dir.trim_end_matches('/');
    mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(unescape_mount_path)
        .filter(|mp| mp == dir || mp.starts_with(&format!("{dir}/")))
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mount_path(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut rest = field;
    while let Some(idx) = rest.find('\\') {
        out.push_str(&rest[..idx]);
        let code = rest.get(idx + 1..idx + 4);
        match code.and_then(|c| u8::from_str_radix(c, 8).ok()) {
            Some(byte) => {
                out.push(char::from(byte));
                rest = &rest[idx + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[idx + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn cmdline_splits_on_nul() {
        assert_eq!(
            parse_cmdline(b"/usr/bin/lab\0board-init\0--dir\0/s/virtual/b1\0"),
            args(&["/usr/bin/lab", "board-init", "--dir", "/s/virtual/b1"])
        );
        assert!(parse_cmdline(b"").is_empty());
    }

    #[test]
    fn stat_state_survives_odd_command_names() {
        assert_eq!(parse_stat_state("42 (sshd) S 1 42 42 0"), Some('S'));
        assert_eq!(parse_stat_state("42 (a) b) (c) Z 1 42"), Some('Z'));
        assert_eq!(parse_stat_state("garbage"), None);
    }

    #[test]
    fn board_init_is_recognised_exactly() {
        let init = args(&[
            "/x/lab",
            "board-init",
            "--dir",
            "/s/virtual/b1",
            "--hostname",
            "b1",
        ]);
        assert!(is_board_init(&init, "/s/virtual/b1"));
        assert!(!is_board_init(&init, "/s/virtual/b"));
        assert!(!is_board_init(&init, "/s/virtual/b10"));
        let unshare = args(&[
            "unshare",
            "--pid",
            "/x/lab",
            "board-init",
            "--dir",
            "/s/virtual/b1",
        ]);
        assert!(!is_board_init(&unshare, "/s/virtual/b1"));
        assert!(mentions(&unshare, "/s/virtual/b1"));
    }

    #[test]
    fn pid_files_parse() {
        assert_eq!(parse_pid("1234\n"), Some(1234));
        assert_eq!(parse_pid("1"), None);
        assert_eq!(parse_pid("x"), None);
    }

    #[test]
    fn mounts_below_directory() {
        let info = "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n\
                    30 22 0:5 / /s/virtual/b1/root rw - ext4 /dev/sda1 rw\n\
                    31 22 0:5 / /s/virtual/b10 rw - tmpfs tmpfs rw\n\
                    32 22 0:5 / /s/virtual/b1/with\\040space rw - tmpfs tmpfs rw\n";
        assert_eq!(
            mounts_below(info, "/s/virtual/b1/"),
            vec!["/s/virtual/b1/root", "/s/virtual/b1/with space"]
        );
        assert!(mounts_below(info, "/elsewhere").is_empty());
    }

    #[test]
    fn this_process_is_alive_and_not_a_board() {
        assert!(is_alive(std::process::id()));
        assert!(!is_live_board_init(std::process::id(), "/nonexistent"));
    }
}
