//! Remote commands as argument lists, quoted in exactly one place.
//!
//! A [`RemoteCommand`] is a program and its arguments; [`RemoteCommand::to_shell`] renders the
//! single string the SSH `exec` request needs, single-quoting every word that needs it. With
//! `sudo`, the rendered string is prefixed by `sudo -n --` so a missing password fails at once
//! instead of hanging on a prompt.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteCommand {
    argv: Vec<String>,
    sudo: bool,
}

impl RemoteCommand {
    pub fn new(program: impl Into<String>) -> Self {
        Self {
            argv: vec![program.into()],
            sudo: false,
        }
    }

    /// `sh -c SCRIPT`: for the few steps that need a pipeline. The script is one argument, so
    /// it is quoted like any other.
    pub fn shell(script: impl Into<String>) -> Self {
        Self::new("sh").arg("-c").arg(script)
    }

    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.argv.push(a.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.argv.extend(args.into_iter().map(Into::into));
        self
    }

    /// Run through `sudo -n` when `yes`.
    pub fn sudo(mut self, yes: bool) -> Self {
        self.sudo = yes;
        self
    }

    /// The string sent in the SSH exec request.
    pub fn to_shell(&self) -> String {
        let words = self.argv.iter().map(|a| quote(a));
        let mut out = String::new();
        if self.sudo {
            out.push_str("sudo -n -- ");
        }
        out.push_str(&words.collect::<Vec<_>>().join(" "));
        out
    }
}

impl fmt::Display for RemoteCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_shell())
    }
}

/// POSIX shell quoting: words of safe characters stay as they are, anything else is wrapped
/// in single quotes with embedded single quotes written as `'\''`.
pub fn quote(word: &str) -> String {
    let safe = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c));
    if safe {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_words_are_left_alone() {
        let c = RemoteCommand::new("install").args([
            "-m",
            "0755",
            "/tmp/x",
            "/usr/local/bin/lab-agent",
        ]);
        assert_eq!(
            c.to_shell(),
            "install -m 0755 /tmp/x /usr/local/bin/lab-agent"
        );
    }

    #[test]
    fn awkward_words_are_single_quoted() {
        let c = RemoteCommand::new("echo").args(["a b", "it's", "", "$HOME", "x;rm -rf /"]);
        assert_eq!(
            c.to_shell(),
            r#"echo 'a b' 'it'\''s' '' '$HOME' 'x;rm -rf /'"#
        );
    }

    #[test]
    fn sudo_never_prompts() {
        let c = RemoteCommand::shell("systemctl restart lab-agent").sudo(true);
        assert_eq!(
            c.to_shell(),
            "sudo -n -- sh -c 'systemctl restart lab-agent'"
        );
    }
}
