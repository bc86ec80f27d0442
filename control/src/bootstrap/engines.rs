//! The engine packages a board's roles need (nginx-light, memcached, mariadb-server), found
//! missing by the probe and installed with the board's own `apt-get` (with sudo where the
//! login needs it). A board without apt gets a clear error naming the package, never a
//! silent skip. Virtual boards share the host's packages, so this finds nothing to do there.

use lab_api::{Engine, Role};

use crate::host_setup::{Requirement, ENGINES};
use crate::ssh::RemoteCommand;

use super::probe::Probe;

/// The package that provides `engine`, if it comes from the distribution.
pub fn requirement(engine: Engine) -> Option<&'static Requirement> {
    let package = match engine {
        Engine::Nginx => "nginx-light",
        Engine::Memcached => "memcached",
        Engine::Mariadb => "mariadb-server",
        Engine::Keepalived => "keepalived",
        Engine::LabApp | Engine::LabFiles | Engine::LabCdn => return None,
    };
    ENGINES.iter().find(|r| r.package == package)
}

/// The packages `roles` need that the probe did not find on the board (each once).
pub fn missing(roles: &[Role], probe: &Probe) -> Vec<&'static Requirement> {
    let mut out: Vec<&'static Requirement> = Vec::new();
    for role in roles {
        if let Some(req) = requirement(role.engine()) {
            let present = probe.engines.iter().any(|p| p == req.provides);
            if !present && !out.iter().any(|r| r.package == req.package) {
                out.push(req);
            }
        }
    }
    out
}

/// `apt-get install` of `packages`, refreshing the package lists first only when the plain
/// install fails (a freshly flashed board often has none).
pub fn install_command(packages: &[&Requirement], sudo: bool) -> RemoteCommand {
    let script = "export DEBIAN_FRONTEND=noninteractive; \
        apt-get install -y -q --no-install-recommends \"$@\" \
        || { apt-get update -q && apt-get install -y -q --no-install-recommends \"$@\"; }";
    RemoteCommand::shell(script)
        .arg("lab-install")
        .args(packages.iter().map(|r| r.package))
        .sudo(sudo)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(engines: &[&str]) -> Probe {
        Probe {
            machine: "aarch64".into(),
            os: "Debian".into(),
            init: super::super::probe::Init::Systemd,
            hashes: Default::default(),
            engines: engines.iter().map(|s| s.to_string()).collect(),
            apt: true,
        }
    }

    #[test]
    fn only_what_the_roles_need_and_the_board_lacks() {
        let roles = [Role::DbMaster, Role::Cache, Role::App, Role::DbReplica];
        let names = |v: Vec<&Requirement>| v.iter().map(|r| r.package).collect::<Vec<_>>();
        assert_eq!(
            names(missing(&roles, &probe(&[]))),
            vec!["mariadb-server", "memcached"]
        );
        assert_eq!(
            names(missing(&roles, &probe(&["/usr/sbin/mariadbd"]))),
            vec!["memcached"]
        );
        assert!(missing(&[Role::App], &probe(&[])).is_empty());
    }

    #[test]
    fn packages_are_arguments_not_script() {
        let reqs = missing(&[Role::Lb], &probe(&[]));
        let c = install_command(&reqs, true).to_shell();
        assert!(c.starts_with("sudo -n -- sh -c "), "{c}");
        assert!(c.ends_with(" lab-install nginx-light"), "{c}");
    }
}
