//! Running host tools (`ip`, `ssh-keygen`) with errors that say what ran, on which board, how
//! it ended and the tail of its stderr. Arguments are passed as a list, never through a shell.

use std::process::{Command, Stdio};

use super::error::{Target, VirtError};

/// How many trailing stderr lines an error keeps.
const STDERR_TAIL_LINES: usize = 8;

/// A program and its arguments, kept as a list; rendered only for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CommandLine {
    pub program: String,
    pub args: Vec<String>,
}

impl CommandLine {
    /// `program` with `args`.
    pub fn new<I, S>(program: &str, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            program: program.to_owned(),
            args: args.into_iter().map(Into::into).collect(),
        }
    }

    /// The command as a user would type it (arguments with spaces quoted), for messages only.
    pub fn display(&self) -> String {
        std::iter::once(self.program.as_str())
            .chain(self.args.iter().map(String::as_str))
            .map(crate::ssh::command::quote)
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Run to completion; stdout on success, [`VirtError::CommandFailed`] otherwise.
    pub fn run(&self, target: &Target) -> Result<String, VirtError> {
        let output = Command::new(&self.program)
            .args(&self.args)
            .stdin(Stdio::null())
            .output()
            .map_err(|source| VirtError::Spawn {
                target: target.clone(),
                command: self.display(),
                source,
            })?;
        if output.status.success() {
            return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
        }
        Err(VirtError::CommandFailed {
            target: target.clone(),
            command: self.display(),
            status: output.status.to_string(),
            stderr_tail: tail(&String::from_utf8_lossy(&output.stderr), STDERR_TAIL_LINES),
        })
    }
}

/// Shorthand: run `program args...` for `target`.
pub(crate) fn run(target: &Target, program: &str, args: &[&str]) -> Result<String, VirtError> {
    CommandLine::new(program, args.iter().copied()).run(target)
}

/// The last `lines` non-blank lines of `text`, or a placeholder when there are none.
pub(crate) fn tail(text: &str, lines: usize) -> String {
    let tail = crate::report::last_lines(text, lines);
    if tail.is_empty() {
        "(no output)".to_owned()
    } else {
        tail
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_quotes_only_what_needs_it() {
        let cmd = CommandLine::new("ip", ["-n", "lab-c_b", "addr", "add", "10.0.0.2/24"]);
        assert_eq!(cmd.display(), "ip -n lab-c_b addr add 10.0.0.2/24");
        let cmd = CommandLine::new("ssh-keygen", ["-N", "", "-C", "it's"]);
        assert_eq!(cmd.display(), r"ssh-keygen -N '' -C 'it'\''s'");
    }

    #[test]
    fn tail_keeps_last_non_empty_lines() {
        assert_eq!(tail("a\n\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("  \n", 3), "(no output)");
        assert_eq!(tail("one", 5), "one");
    }

    #[test]
    fn failed_command_reports_status_and_stderr() {
        let err = CommandLine::new("sh", ["-c", "echo first >&2; echo oops >&2; exit 3"])
            .run(&Target::board("c", "b"))
            .expect_err("must fail");
        match err {
            VirtError::CommandFailed {
                status,
                stderr_tail,
                ..
            } => {
                assert!(status.contains('3'), "{status}");
                assert_eq!(stderr_tail, "first\noops");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn missing_program_is_a_spawn_error() {
        let err = run(&Target::cluster("c"), "/nonexistent/tool", &[]).expect_err("must fail");
        assert!(matches!(err, VirtError::Spawn { .. }), "{err:?}");
    }
}
