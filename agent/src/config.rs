//! Reading the agent's configuration file (`/etc/lab/agent.toml`, rendered by `lab`).

use std::path::{Path, PathBuf};

use lab_api::AgentConfig;

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid config file {path}")]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
}

/// Reads and parses the configuration at `path`.
pub fn load(path: &Path) -> Result<AgentConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text).map_err(|source| ConfigError::Parse {
        path: path.to_path_buf(),
        source,
    })
}

/// Parses configuration text; the error names the line and column.
pub fn parse(text: &str) -> Result<AgentConfig, toml::de::Error> {
    toml::from_str(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
cluster = "lab"
board = "pi-1"
listen = "10.77.0.11:7443"
tls_ca = "/etc/lab/tls/ca.pem"
tls_cert = "/etc/lab/tls/agent.pem"
tls_key = "/etc/lab/tls/agent.key"
state_dir = "/var/lib/lab"
"#;

    #[test]
    fn parses_a_rendered_config() {
        let config = parse(GOOD).expect("valid config");
        assert_eq!(config.board, "pi-1");
        assert_eq!(config.listen, "10.77.0.11:7443");
    }

    #[test]
    fn unknown_key_is_reported_with_its_position() {
        let text = format!("{GOOD}colour = \"blue\"\n");
        let message = parse(&text).expect_err("unknown key").to_string();
        assert!(message.contains("colour"), "{message}");
        assert!(message.contains("line 9"), "{message}");
    }

    #[test]
    fn missing_file_names_the_path() {
        let err = load(Path::new("/nonexistent/agent.toml")).expect_err("missing file");
        assert!(err.to_string().contains("/nonexistent/agent.toml"));
    }
}
