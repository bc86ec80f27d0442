//! One authenticated SSH connection to one board: run commands (stdout and stderr merged, so
//! a chatty command cannot stall on a full stderr window), and write files atomically through
//! the channel's stdin (contents never appear on a command line).

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use ssh2::{ExtendedData, Session};

use super::{HostKeyStore, HostKeyVerdict, RemoteCommand, SshError, SshTarget};

/// Timeout of every blocking SSH operation once connected.
const OP_TIMEOUT: Duration = Duration::from_secs(60);

/// What a finished remote command left: exit status and merged output.
#[derive(Debug, Clone)]
pub struct CommandOutput {
    pub status: i32,
    pub output: String,
}

pub struct Connection {
    sess: Session,
    target: SshTarget,
}

impl Connection {
    /// Connect, verify (or pin) the host key, authenticate.
    pub fn open(
        target: &SshTarget,
        keys: &HostKeyStore,
    ) -> Result<(Self, HostKeyVerdict), SshError> {
        let board = target.board.clone();
        if let Some(jump) = &target.proxy_jump {
            return Err(SshError::Unsupported {
                board,
                unsupported: format!("ProxyJump {jump}"),
            });
        }
        let addr = format!("{}:{}", target.host, target.port);
        let connect_err = |source| SshError::Connect {
            board: board.clone(),
            addr: addr.clone(),
            source,
        };
        let sockaddrs: Vec<_> = (target.host.as_str(), target.port)
            .to_socket_addrs()
            .map_err(connect_err)?
            .collect();
        let mut last_err = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
        let mut tcp = None;
        for sa in sockaddrs {
            match TcpStream::connect_timeout(&sa, target.connect_timeout) {
                Ok(s) => {
                    tcp = Some(s);
                    break;
                }
                Err(e) => last_err = e,
            }
        }
        let tcp = tcp.ok_or_else(|| connect_err(last_err))?;
        let _ = tcp.set_nodelay(true);
        let mut sess = Session::new().map_err(|source| SshError::Handshake {
            board: board.clone(),
            addr: addr.clone(),
            source,
        })?;
        sess.set_tcp_stream(tcp);
        sess.set_timeout(OP_TIMEOUT.as_millis() as u32);
        sess.handshake().map_err(|source| SshError::Handshake {
            board: board.clone(),
            addr: addr.clone(),
            source,
        })?;
        let verdict = keys.verify(&sess, &board, &target.host, target.port)?;
        sess.set_keepalive(true, 10);
        authenticate(&sess, target, &addr)?;
        Ok((
            Connection {
                sess,
                target: target.clone(),
            },
            verdict,
        ))
    }

    pub fn target(&self) -> &SshTarget {
        &self.target
    }

    /// Run a command; a non-zero exit is not an error here.
    pub fn run(&self, cmd: &RemoteCommand) -> Result<CommandOutput, SshError> {
        self.exec(cmd, None)
    }

    /// Run a command; a non-zero exit is [`SshError::CommandFailed`] with the output tail.
    pub fn run_ok(&self, cmd: &RemoteCommand) -> Result<String, SshError> {
        let out = self.exec(cmd, None)?;
        self.check(cmd, out)
    }

    /// Atomically replace `dest` on the board with `bytes` (mode `mode`), creating its
    /// directory. Uses sudo when the target needs it.
    pub fn write_file(&self, dest: &str, bytes: &[u8], mode: u32) -> Result<(), SshError> {
        let cmd = write_file_command(dest, mode).sudo(self.target.sudo);
        let out = self.exec(&cmd, Some(bytes))?;
        self.check(&cmd, out).map(|_| ())
    }

    fn check(&self, cmd: &RemoteCommand, out: CommandOutput) -> Result<String, SshError> {
        if out.status == 0 {
            Ok(out.output)
        } else {
            Err(SshError::CommandFailed {
                board: self.target.board.clone(),
                command: cmd.to_shell(),
                status: out.status,
                output_tail: crate::report::last_lines(&out.output, 12),
            })
        }
    }

    fn exec(&self, cmd: &RemoteCommand, stdin: Option<&[u8]>) -> Result<CommandOutput, SshError> {
        let command = cmd.to_shell();
        let chan_err = |source| SshError::Channel {
            board: self.target.board.clone(),
            command: command.clone(),
            source,
        };
        let io_err = |source| SshError::Io {
            board: self.target.board.clone(),
            command: command.clone(),
            source,
        };
        let mut ch = self.sess.channel_session().map_err(chan_err)?;
        ch.handle_extended_data(ExtendedData::Merge)
            .map_err(chan_err)?;
        ch.exec(&command).map_err(chan_err)?;
        if let Some(bytes) = stdin {
            ch.write_all(bytes).map_err(io_err)?;
        }
        ch.send_eof().map_err(chan_err)?;
        let mut raw = Vec::new();
        ch.read_to_end(&mut raw).map_err(io_err)?;
        ch.wait_close().map_err(chan_err)?;
        let status = ch.exit_status().map_err(chan_err)?;
        Ok(CommandOutput {
            status,
            output: String::from_utf8_lossy(&raw).into_owned(),
        })
    }
}

/// `sh -c` script that reads stdin into `dest.lab-new` (umask 077), sets the mode and renames
/// it over `dest`; the destination is passed as `$1`, never spliced into the script.
pub fn write_file_command(dest: &str, mode: u32) -> RemoteCommand {
    let script = format!(
        "set -e; umask 077; d=\"$1\"; mkdir -p \"$(dirname \"$d\")\"; \
         cat > \"$d.lab-new\"; chmod {mode:o} \"$d.lab-new\"; mv -f \"$d.lab-new\" \"$d\""
    );
    RemoteCommand::shell(script).arg("lab-write").arg(dest)
}

fn authenticate(sess: &Session, target: &SshTarget, addr: &str) -> Result<(), SshError> {
    let mut tried = Vec::new();
    if target.use_agent && std::env::var_os("SSH_AUTH_SOCK").is_some() {
        match sess.userauth_agent(&target.user) {
            Ok(()) if sess.authenticated() => return Ok(()),
            Ok(()) => tried.push("ssh-agent (no key accepted)".to_string()),
            Err(e) => tried.push(format!("ssh-agent ({})", e.message())),
        }
    } else if target.use_agent {
        tried.push("ssh-agent (SSH_AUTH_SOCK not set)".to_string());
    }
    for id in &target.identities {
        if !id.exists() {
            continue;
        }
        match sess.userauth_pubkey_file(&target.user, None, id, None) {
            Ok(()) if sess.authenticated() => return Ok(()),
            Ok(()) => tried.push(format!("{} (refused)", id.display())),
            Err(e) => {
                let hint = if is_encrypted_key(id) {
                    " — it has a passphrase: load it into ssh-agent with `ssh-add`"
                } else {
                    ""
                };
                tried.push(format!("{} ({}){hint}", id.display(), e.message()));
            }
        }
    }
    if tried.is_empty() {
        tried.push("no key file found and no ssh-agent".into());
    }
    Err(SshError::Auth {
        board: target.board.clone(),
        user: target.user.clone(),
        addr: addr.to_string(),
        tried: tried.join("; "),
    })
}

fn is_encrypted_key(path: &std::path::Path) -> bool {
    std::fs::read_to_string(path)
        .map(|t| t.contains("ENCRYPTED"))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_command_passes_dest_as_argument() {
        let c = write_file_command("/etc/lab/tls/agent.key", 0o600);
        let s = c.to_shell();
        assert!(s.starts_with("sh -c 'set -e; umask 077;"), "{s}");
        assert!(s.contains("chmod 600"), "{s}");
        assert!(s.ends_with("' lab-write /etc/lab/tls/agent.key"), "{s}");
    }
}
