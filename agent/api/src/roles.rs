//! What a board can be ([`Role`]) and which program does the work ([`Engine`]): one list both
//! binaries compile against. The inventory, the agent's config, its collectors, its samples
//! and the Prometheus labels all use these, spelled as on the wire (`db-master`, `lab-app`).

use std::fmt;

use serde::{Deserialize, Serialize};

/// A role a board can play (ARCHITECTURE.md, "Roles").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// NGINX in front of the app boards.
    Lb,
    /// Our stateless Rust app server.
    App,
    /// memcached.
    Cache,
    /// The database primary (which board is primary is the control plane's decision).
    DbMaster,
    /// A database replica.
    DbReplica,
    /// Our object store.
    Files,
    /// Our CDN edge.
    Cdn,
    /// The floating address two or more lb boards share (keepalived, VRRP): not a role an
    /// inventory gives, the planner adds it to every lb board when there are several.
    Vip,
}

impl Role {
    pub const ALL: [Role; 8] = [
        Role::Lb,
        Role::App,
        Role::Cache,
        Role::DbMaster,
        Role::DbReplica,
        Role::Files,
        Role::Cdn,
        Role::Vip,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Lb => "lb",
            Role::App => "app",
            Role::Cache => "cache",
            Role::DbMaster => "db-master",
            Role::DbReplica => "db-replica",
            Role::Files => "files",
            Role::Cdn => "cdn",
            Role::Vip => "vip",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// The engine that does this role's work.
    pub fn engine(self) -> Engine {
        match self {
            Role::Lb => Engine::Nginx,
            Role::App => Engine::LabApp,
            Role::Cache => Engine::Memcached,
            Role::DbMaster | Role::DbReplica => Engine::Mariadb,
            Role::Files => Engine::LabFiles,
            Role::Cdn => Engine::LabCdn,
            Role::Vip => Engine::Keepalived,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A program the agent runs and samples for a role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Engine {
    /// The distribution's NGINX; sampled through `stub_status` (an http URL).
    Nginx,
    /// The distribution's memcached; sampled through `stats` (host:port).
    Memcached,
    /// The distribution's MariaDB (MySQL where installed); sampled over a unix socket path
    /// or host:port.
    Mariadb,
    /// `lab-agent app`; sampled through its JSON stats (an http URL).
    LabApp,
    /// `lab-agent files`.
    LabFiles,
    /// `lab-agent cdn`.
    LabCdn,
    /// The distribution's keepalived (VRRP): moves the lb boards' floating address.
    Keepalived,
}

impl Engine {
    pub const ALL: [Engine; 7] = [
        Engine::Nginx,
        Engine::Memcached,
        Engine::Mariadb,
        Engine::LabApp,
        Engine::LabFiles,
        Engine::LabCdn,
        Engine::Keepalived,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Nginx => "nginx",
            Engine::Memcached => "memcached",
            Engine::Mariadb => "mariadb",
            Engine::LabApp => "lab-app",
            Engine::LabFiles => "lab-files",
            Engine::LabCdn => "lab-cdn",
            Engine::Keepalived => "keepalived",
        }
    }

    pub fn parse(s: &str) -> Option<Engine> {
        Engine::ALL.into_iter().find(|e| e.as_str() == s)
    }
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_as_on_the_wire() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        for engine in Engine::ALL {
            assert_eq!(Engine::parse(engine.as_str()), Some(engine));
        }
        assert_eq!(Role::parse("db-master"), Some(Role::DbMaster));
        assert_eq!(Engine::parse("lab-app"), Some(Engine::LabApp));
        assert_eq!(Role::parse("dns"), None);
    }

    #[test]
    fn roles_map_to_their_engines() {
        assert_eq!(Role::Lb.engine(), Engine::Nginx);
        assert_eq!(Role::DbReplica.engine(), Engine::Mariadb);
        assert_eq!(Role::Cache.engine(), Engine::Memcached);
    }
}
