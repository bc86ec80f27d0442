//! The lb role: NGINX in front of the app boards. The config is rendered from the spec into
//! `<state>/lb/nginx.conf` ([`render_config`], pure) and NGINX runs in the foreground with
//! that directory as its prefix, its error log in the role's log. Ready when `stub_status`
//! answers on loopback. A changed app set or algorithm is applied in place: the new config is
//! checked with `nginx -t` and the master is sent HUP (a graceful reload: old workers finish
//! their requests, new ones take the new upstreams); a config NGINX refuses leaves the old
//! one in place and running.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use lab_api::spec::{LbAlgorithm, LbConfig};

use crate::engine::{EngineCommand, StopSignals};

/// The binary Debian's `nginx-light` (and `nginx`) package installs.
pub const BINARY: &str = "/usr/sbin/nginx";
/// How long NGINX may take to answer after it was started.
pub const READY_WITHIN: Duration = Duration::from_secs(10);
/// A graceful stop (QUIT) lets workers finish requests in flight; then the group is killed.
pub const STOP_DEADLINE: Duration = Duration::from_secs(10);
/// Longest `nginx -t` may take.
const CHECK_WITHIN: Duration = Duration::from_secs(10);
/// How long a request may wait for an app's answer. Short: the app answers in
/// milliseconds, and a request sent on a kept-alive connection to a board whose plug was
/// pulled gets no RST, only this timeout (then a GET goes to the next app). Above the app's
/// own budget for the database primary (`app/db.rs`), so a dead primary is the app's 503,
/// not a timeout counted against the app.
const READ_TIMEOUT_SECS: u32 = 3;
/// The same for sign-up and log-in, which hash a password (argon2: slow on purpose, and
/// slower on a small board under load).
const PASSWORD_READ_TIMEOUT_SECS: u32 = 30;
/// How long an upload's answer may take once its body is sent.
const UPLOAD_READ_TIMEOUT_SECS: u32 = 60;
/// How many app boards one idempotent request may try.
const TRIES: u32 = 3;

/// One lb role.
pub struct Lb {
    pub config: LbConfig,
    pub dir: PathBuf,
    pub log: PathBuf,
}

impl Lb {
    pub fn new(config: LbConfig, state_dir: &Path, log: PathBuf) -> Lb {
        Lb {
            config,
            dir: state_dir.join("lb"),
            log,
        }
    }

    fn conf(&self) -> PathBuf {
        self.dir.join("nginx.conf")
    }

    /// Writes the config and the temp directories; the command line.
    pub async fn prepare(&self) -> anyhow::Result<EngineCommand> {
        if tokio::fs::metadata(BINARY).await.is_err() {
            bail!("nginx not found ({BINARY}): install the nginx-light package");
        }
        let tmp = self.dir.join("tmp");
        tokio::fs::create_dir_all(&tmp)
            .await
            .with_context(|| format!("creating {}", tmp.display()))?;
        self.write_config(&self.config).await?;
        Ok(EngineCommand::new("nginx", BINARY, StopSignals::NGINX)
            .arg("-p")
            .arg(&self.dir)
            .arg("-c")
            .arg(self.conf())
            .arg("-e")
            .arg(&self.log)
            .args(["-g", "daemon off;"])
            .log_to(&self.log))
    }

    async fn write_config(&self, config: &LbConfig) -> anyhow::Result<()> {
        let text = render_config(config, &self.dir, &self.log);
        crate::roles::store::write_atomically_off_runtime(self.conf(), text.into_bytes())
            .await
            .with_context(|| format!("writing {}", self.conf().display()))
    }

    /// One probe: `stub_status` answers.
    pub async fn ready(&self) -> anyhow::Result<()> {
        let url = format!("http://127.0.0.1:{}/stub_status", self.config.status_port);
        tokio::time::timeout(Duration::from_secs(1), crate::collect::nginx::collect(&url))
            .await
            .context("no answer within 1 s")?
            .map_err(|err| anyhow::anyhow!("{url}: {err}"))?;
        Ok(())
    }

    /// Takes `config` in place: written, checked with `nginx -t`, then the master (`pid`)
    /// reloads. A refused config is rolled back and the running one kept.
    pub async fn reload(&mut self, config: LbConfig, pid: i32) -> anyhow::Result<String> {
        let old = std::mem::replace(&mut self.config, config);
        self.write_config(&self.config).await?;
        if let Err(err) = self.check().await {
            self.config = old;
            self.write_config(&self.config).await?;
            return Err(err.context("the new NGINX config was refused; the old one stays"));
        }
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGHUP,
        )
        .context("asking NGINX to reload")?;
        Ok(self.message())
    }

    /// `nginx -t` on the written config.
    async fn check(&self) -> anyhow::Result<()> {
        let run = tokio::process::Command::new(BINARY)
            .arg("-t")
            .arg("-q")
            .arg("-p")
            .arg(&self.dir)
            .arg("-c")
            .arg(self.conf())
            .arg("-e")
            .arg(&self.log)
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(CHECK_WITHIN, run)
            .await
            .context("nginx -t did not finish")?
            .context("running nginx -t")?;
        if !out.status.success() {
            bail!(
                "nginx -t: {}",
                String::from_utf8_lossy(&out.stderr)
                    .trim()
                    .replace('\n', "; ")
            );
        }
        Ok(())
    }

    /// What health says while it runs.
    pub fn message(&self) -> String {
        let c = &self.config;
        format!(
            "listening on {}:{}, {} over {}",
            c.listen,
            c.port,
            c.algorithm,
            c.upstreams
                .iter()
                .map(|u| u.board.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

/// The whole `nginx.conf` for `config`. Everything NGINX writes stays under `dir` (pid,
/// temp files) or goes to `log`; no access log (the app counts requests).
pub fn render_config(config: &LbConfig, dir: &Path, log: &Path) -> String {
    let d = dir.display();
    let balance = match config.algorithm {
        LbAlgorithm::RoundRobin => "",
        LbAlgorithm::LeastConn => "    least_conn;\n",
        LbAlgorithm::IpHash => "    ip_hash;\n",
    };
    let mut servers = String::new();
    for u in &config.upstreams {
        // max_fails=1: one failed connect takes the app out for fail_timeout, so a dead
        // board costs one connect timeout, not one per request.
        servers.push_str(&format!(
            "    server {}:{} weight={} max_fails=1 fail_timeout=5s; # {}\n",
            u.host, u.port, u.weight, u.board
        ));
    }
    format!(
        "# Rendered by lab-agent from the board's spec; changes here are overwritten.\n\
worker_processes 1;\n\
pid {d}/nginx.pid;\n\
error_log {log} warn;\n\
events {{\n    worker_connections 4096;\n}}\n\
http {{\n\
    access_log off;\n\
    server_tokens off;\n\
    client_body_temp_path {d}/tmp/body;\n\
    proxy_temp_path {d}/tmp/proxy;\n\
    fastcgi_temp_path {d}/tmp/fastcgi;\n\
    uwsgi_temp_path {d}/tmp/uwsgi;\n\
    scgi_temp_path {d}/tmp/scgi;\n\
    # Workers run as nobody and cannot write the temp dirs: bodies stay in memory (larger\n\
    # ones are refused with 413), answers are passed on as they come.\n\
    client_max_body_size 64k;\n\
    client_body_buffer_size 64k;\n\
    proxy_max_temp_file_size 0;\n\
    upstream app {{\n{balance}{servers}        keepalive 64;\n    }}\n\
    server {{\n\
        listen {listen}:{port} reuseport backlog=4096;\n\
        server_name _;\n\
        add_header X-LB $hostname always;\n\
        location /_lab/ {{\n            return 404;\n        }}\n\
        proxy_http_version 1.1;\n\
        proxy_set_header Connection \"\";\n\
        proxy_set_header Host $host;\n\
        proxy_set_header X-Real-IP $remote_addr;\n\
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n\
        proxy_connect_timeout {connect}ms;\n\
        # Only idempotent requests are retried on the next app once sent (NGINX never\n\
        # resends a POST it has sent unless told to with non_idempotent). An app's own 502 or\n\
        # 503 is its database's or files board's failure, the same for every app: neither\n\
        # retried nor counted against the app (max_fails would take every app out at once).\n\
        proxy_next_upstream error timeout;\n\
        proxy_next_upstream_tries {TRIES};\n\
        location / {{\n\
            proxy_pass http://app;\n\
            proxy_read_timeout {READ_TIMEOUT_SECS}s;\n\
        }}\n\
        location ~ ^/api/(signup|login)$ {{\n\
            proxy_pass http://app;\n\
            proxy_read_timeout {PASSWORD_READ_TIMEOUT_SECS}s;\n\
        }}\n\
        # Uploads stream through to the app and on to the files board (the bucket's own\n\
        # limit applies there), never held here.\n\
        location /api/files/ {{\n\
            proxy_pass http://app;\n\
            client_max_body_size 1g;\n\
            proxy_request_buffering off;\n\
            proxy_read_timeout {UPLOAD_READ_TIMEOUT_SECS}s;\n\
        }}\n\
    }}\n\
    server {{\n\
        listen 127.0.0.1:{status};\n\
        location = /stub_status {{\n            stub_status;\n        }}\n\
        location / {{\n            return 404;\n        }}\n\
    }}\n\
}}\n",
        log = log.display(),
        listen = config.listen,
        port = config.port,
        connect = config.connect_timeout_ms,
        status = config.status_port,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use lab_api::spec::Upstream;

    fn lb(algorithm: LbAlgorithm) -> LbConfig {
        LbConfig {
            listen: "10.77.0.11".into(),
            port: 80,
            status_port: 8081,
            algorithm,
            upstreams: vec![
                Upstream {
                    board: "app-1".into(),
                    host: "10.77.0.21".into(),
                    port: 8080,
                    weight: 1,
                },
                Upstream {
                    board: "app-2".into(),
                    host: "10.77.0.22".into(),
                    port: 8080,
                    weight: 3,
                },
            ],
            connect_timeout_ms: 300,
        }
    }

    #[test]
    fn config_names_every_app_and_the_algorithm() {
        let text = render_config(
            &lb(LbAlgorithm::LeastConn),
            Path::new("/var/lib/lab/lb"),
            Path::new("/var/log/lab/nginx.log"),
        );
        assert!(text.contains("server 10.77.0.21:8080 weight=1"), "{text}");
        assert!(text.contains("server 10.77.0.22:8080 weight=3"), "{text}");
        assert!(text.contains("    least_conn;\n"), "{text}");
        assert!(text.contains("listen 10.77.0.11:80 "), "{text}");
        assert!(text.contains("proxy_connect_timeout 300ms;"), "{text}");
        assert!(text.contains("listen 127.0.0.1:8081;"), "{text}");
        assert!(!text.contains("non_idempotent;"), "{text}");
        assert!(text.contains("pid /var/lib/lab/lb/nginx.pid;"), "{text}");
        let rr = render_config(
            &lb(LbAlgorithm::RoundRobin),
            Path::new("/x"),
            Path::new("/y"),
        );
        assert!(
            !rr.contains("least_conn") && !rr.contains("ip_hash"),
            "{rr}"
        );
        let ih = render_config(&lb(LbAlgorithm::IpHash), Path::new("/x"), Path::new("/y"));
        assert!(ih.contains("    ip_hash;\n"), "{ih}");
    }
}
