//! The inventory: which boards exist, how to reach them, and what they should be.
//!
//! An inventory is a TOML file with a `[cluster]` table (SSH user, key, port, sudo, state
//! directory), an optional `[virtual]` table (present when `lab` itself creates the boards as
//! Linux namespaces on this host), and one `[[board]]` table per board. Loading validates
//! everything before anything else runs; every problem found is reported at once, each
//! naming the file, the line and the board. Nothing is touched when an inventory is invalid.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

pub use lab_api::Role;

/// What a board should be: given roles, or left to the planner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleSpec {
    Auto,
    Given(Vec<Role>),
}

impl fmt::Display for RoleSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RoleSpec::Auto => f.write_str("auto"),
            RoleSpec::Given(roles) => {
                let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
                f.write_str(&names.join(","))
            }
        }
    }
}

/// How `lab` authenticates over SSH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SshKey {
    /// A key `lab` generates in the state directory (for boards it creates itself).
    Managed,
    /// Only the running ssh-agent (`SSH_AUTH_SOCK`).
    Agent,
    /// This private key file (after ssh-agent, if one runs).
    File(PathBuf),
    /// Whatever `~/.ssh/config` says (IdentityFile), after ssh-agent.
    Default,
}

/// What runs as a virtual board's PID 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VirtualInit {
    /// `lab board-init`: a small init that runs sshd and the host's own userland.
    #[default]
    Lab,
    /// systemd, booted with systemd-nspawn in a cached Debian root (its own userland, users,
    /// journald), the way Raspberry Pi OS and Ubuntu boards run.
    Systemd,
}

impl VirtualInit {
    /// The inventory's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            VirtualInit::Lab => "lab",
            VirtualInit::Systemd => "systemd",
        }
    }
}

/// CPU architecture of a virtual board.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VirtualArch {
    /// The host's own architecture and userland.
    Native,
    /// An emulated arm64 board (Debian arm64 root run through qemu-user-static).
    Arm64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualNet {
    pub subnet: Ipv4Addr,
    pub prefix_len: u8,
    /// How much slower a round trip between two data centers is (`wan_delay`, 40 ms
    /// unless given; only used when boards name data centers).
    pub wan_delay: std::time::Duration,
}

/// `wan_delay` when the inventory gives none.
pub const DEFAULT_WAN_DELAY: std::time::Duration = std::time::Duration::from_millis(40);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    pub name: String,
    pub state_dir: PathBuf,
    /// Login user; `None` defers to `~/.ssh/config`, then `root`.
    pub ssh_user: Option<String>,
    /// SSH port; `None` defers to `~/.ssh/config`, then 22.
    pub ssh_port: Option<u16>,
    pub ssh_key: SshKey,
    pub sudo: bool,
    pub parallel: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Board {
    pub name: String,
    /// IP address, DNS name, or a `Host` alias of `~/.ssh/config`.
    pub address: String,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub model: Option<String>,
    pub roles: RoleSpec,
    pub arch: VirtualArch,
    /// A virtual board's PID 1 (`init = "systemd"`); `Lab` for real boards.
    pub init: VirtualInit,
    /// What a virtual board's link does to frames: its own `link = { ... }`, else its
    /// model's from `[links."<model>"]`; `None`: a plain link.
    pub link: Option<crate::virt::link::LinkProfile>,
    /// A virtual board's data center (`dc = "west"`).
    pub dc: Option<String>,
    /// How big a virtual board is (its cgroup limits); `None` for a real board, whose size is
    /// what it is.
    pub size: Option<BoardSize>,
    /// Line of the board's `name` in the inventory, for messages.
    pub line: usize,
    /// An app board's share of the LB's requests (`weight = 3`; 1 when not given).
    pub weight: u32,
}

impl Board {
    /// In the database group (`db`, `db-master` or `db-replica` among its given roles).
    pub fn in_db_group(&self) -> bool {
        matches!(&self.roles, RoleSpec::Given(r) if r.iter().any(|r| matches!(r, Role::DbMaster | Role::DbReplica)))
    }

    /// Memory the planner can count on: a virtual board's size, else its model's.
    pub fn known_memory(&self) -> Option<u64> {
        self.size.map(|s| s.memory_bytes).or_else(|| {
            self.model
                .as_deref()
                .and_then(model_size)
                .map(|s| s.memory_bytes)
        })
    }
}

/// The CPU and memory a virtual board may use: ceilings its cgroup enforces, not
/// reservations (ten 1-CPU boards run on a 2-core host; they just cannot all be busy at once).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoardSize {
    /// CPUs in thousandths (1000 = one CPU); a CFS quota of `millicpus * 100` us per 100 ms.
    pub millicpus: u32,
    pub memory_bytes: u64,
}

impl BoardSize {
    /// A virtual board with no `model` and no figures: one CPU, 512 MiB (small enough for
    /// ten on a laptop, big enough for sshd, the agent and one engine).
    pub const VIRTUAL_DEFAULT: BoardSize = BoardSize {
        millicpus: 1000,
        memory_bytes: 512 << 20,
    };
    /// Smallest and largest accepted figures.
    pub const MIN_MILLICPUS: u32 = 10;
    pub const MAX_MILLICPUS: u32 = 256_000;
    pub const MIN_MEMORY: u64 = 32 << 20;
    pub const MAX_MEMORY: u64 = 1 << 40;

    /// CPUs as a number (1.5).
    pub fn cpus(&self) -> f64 {
        f64::from(self.millicpus) / 1000.0
    }
}

impl fmt::Display for BoardSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} CPU, {}",
            self.cpus(),
            format_bytes(self.memory_bytes)
        )
    }
}

/// Sizes of the board models `lab` knows, by `model` (matched on its letters and digits,
/// lower case, as a prefix: "Raspberry Pi 4 Model B" and "pi4" are both a Pi 4). A model not
/// listed gives no defaults (the virtual default applies).
pub const MODEL_SIZES: [(&[&str], &str, BoardSize); 5] = [
    (
        &["raspberrypi3", "rpi3", "pi3"],
        "Raspberry Pi 3",
        BoardSize {
            millicpus: 4000,
            memory_bytes: 1 << 30,
        },
    ),
    (
        &["raspberrypi4", "rpi4", "pi4"],
        "Raspberry Pi 4 (4 GiB)",
        BoardSize {
            millicpus: 4000,
            memory_bytes: 4 << 30,
        },
    ),
    (
        &["raspberrypi5", "rpi5", "pi5"],
        "Raspberry Pi 5 (8 GiB)",
        BoardSize {
            millicpus: 4000,
            memory_bytes: 8 << 30,
        },
    ),
    (
        &["jetsonorinnano", "orinnano"],
        "Jetson Orin Nano",
        BoardSize {
            millicpus: 6000,
            memory_bytes: 8 << 30,
        },
    ),
    (
        &["jetsonnano"],
        "Jetson Nano",
        BoardSize {
            millicpus: 4000,
            memory_bytes: 4 << 30,
        },
    ),
];

/// The size of a known `model`, if it is one.
/// A model name as it is matched: lower-case letters and digits only ("Raspberry Pi 3
/// Model B" -> "raspberrypi3modelb").
fn model_key(model: &str) -> String {
    model
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

pub fn model_size(model: &str) -> Option<BoardSize> {
    let key = model_key(model);
    MODEL_SIZES
        .iter()
        .find(|(prefixes, _, _)| prefixes.iter().any(|p| key.starts_with(p)))
        .map(|(_, _, size)| *size)
}

/// Parse a memory size: a number of bytes, or a number with a binary unit: `256MiB`, `1GiB`,
/// `512M` (K, M, G, T mean KiB, MiB, GiB, TiB, as in systemd and Docker), `1.5GiB`. Decimal
/// units (`MB`, `GB`) are refused rather than guessed.
pub fn parse_memory(text: &str) -> Result<u64, String> {
    let s = text.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = (&s[..split], s[split..].trim());
    let bad = || format!("memory `{text}` must look like \"256MiB\", \"1GiB\" or \"512M\"");
    let value: f64 = number.parse().map_err(|_| bad())?;
    let shift = match unit {
        "" | "B" => 0,
        "K" | "k" | "KiB" => 10,
        "M" | "MiB" => 20,
        "G" | "GiB" => 30,
        "T" | "TiB" => 40,
        "KB" | "kB" | "MB" | "GB" | "TB" => {
            return Err(format!(
                "memory `{text}`: {unit} is ambiguous, write {}iB",
                &unit[..1].to_ascii_uppercase()
            ))
        }
        _ => return Err(bad()),
    };
    let bytes = value * (1u64 << shift) as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes.round() as u64)
}

/// `512 MiB`, `1 GiB`, `1.5 GiB`: binary units, as the inventory writes them.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [(&str, u32); 4] = [("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)];
    for (unit, shift) in UNITS {
        let size = 1u64 << shift;
        if bytes >= size {
            let value = bytes as f64 / size as f64;
            return if bytes.is_multiple_of(size) {
                format!("{} {unit}", bytes / size)
            } else {
                format!("{value:.1} {unit}")
            };
        }
    }
    format!("{bytes} B")
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inventory {
    pub path: PathBuf,
    pub cluster: Cluster,
    /// Present when the boards are virtual boards this host creates.
    pub virtual_net: Option<VirtualNet>,
    pub boards: Vec<Board>,
    /// The database group's settings (`[db]`); its members are the boards with a db role.
    pub db: DbGroup,
    /// How the lb boards spread requests over the app boards (`[lb] algorithm`).
    pub lb: LbSettings,
    /// Which files board holds which bucket (`[files.<bucket>]`); None: the default
    /// placement (the plan spreads avatars, invoices and videos over the files boards).
    pub files: Option<Vec<BucketPlacement>>,
    /// The CDN edges' settings (`[cdn] policy`).
    pub cdn: CdnSettings,
    /// How the apps spread keys over the cache boards (`[cache] hashing`).
    pub cache_hashing: lab_api::spec::CacheHashing,
    /// Where the apps keep logins (`[app] sessions`).
    pub sessions: lab_api::spec::Sessions,
}

/// `[cdn]`: how the edges keep objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CdnSettings {
    /// Eviction policy of every edge: `lru` (default, the seed's) or `s3-fifo`.
    pub policy: CdnPolicy,
    /// Per-board exceptions (`[cdn.boards] cdn-2 = "s3-fifo"`): two edges, two policies,
    /// compared side by side.
    pub by_board: std::collections::BTreeMap<String, CdnPolicy>,
    /// Regions and their edge (`[cdn.regions] eu = "cdn-1"`): `lab load --region eu` goes
    /// there, and to the next region's edge when it cannot be reached.
    pub regions: std::collections::BTreeMap<String, String>,
}

impl CdnSettings {
    /// The policy of edge `board`.
    pub fn policy_of(&self, board: &str) -> CdnPolicy {
        self.by_board.get(board).copied().unwrap_or(self.policy)
    }
}

/// An edge's eviction policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CdnPolicy {
    #[default]
    Lru,
    S3Fifo,
}

impl CdnPolicy {
    pub const ALL: [CdnPolicy; 2] = [CdnPolicy::Lru, CdnPolicy::S3Fifo];

    pub fn as_str(self) -> &'static str {
        match self {
            CdnPolicy::Lru => "lru",
            CdnPolicy::S3Fifo => "s3-fifo",
        }
    }
}

impl Default for CdnSettings {
    fn default() -> Self {
        CdnSettings {
            policy: CdnPolicy::Lru,
            by_board: std::collections::BTreeMap::new(),
            regions: std::collections::BTreeMap::new(),
        }
    }
}

/// `[files.<bucket>]`: a bucket placed on a files board by purpose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketPlacement {
    pub name: String,
    pub board: String,
    /// The largest object the bucket takes (`max_object = "5MiB"`).
    pub max_object_bytes: u64,
    /// A second files board holding it too (`replica = "files-2"`): 2-way replication.
    pub replica: Option<String>,
}

/// A bucket's largest object when `max_object` is not given.
pub const DEFAULT_MAX_OBJECT: u64 = 100 << 20;

/// `[lb]`: the load balancers' settings, the classroom switch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LbSettings {
    /// `round-robin` (default), `least-conn` or `ip-hash`.
    pub algorithm: lab_api::spec::LbAlgorithm,
    /// The address clients use when there are two or more lb boards (`[lb] floating_address
    /// = "A.B.C.D"` or `"A.B.C.D/N"`, /24 when not given); keepalived moves it between them.
    /// A virtual cluster without one gets its subnet's last host address.
    pub floating_address: Option<(std::net::Ipv4Addr, u8)>,
}

/// `[db]`: the database group. Members are the boards whose roles name `db` (`db-master`
/// marks the preferred primary, `db-replica` a member that is not). Which member *is*
/// primary is the control plane's decision, kept in its state dir with an epoch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DbGroup {
    /// The primary the inventory prefers (`[db] primary`, or the board with `db-master`).
    pub preferred_primary: Option<String>,
    /// Semi-synchronous replication (the primary waits for a replica's ack per commit).
    pub semi_sync: bool,
}

impl Inventory {
    pub fn board(&self, name: &str) -> Option<&Board> {
        self.boards.iter().find(|b| b.name == name)
    }
    pub fn is_virtual(&self) -> bool {
        self.virtual_net.is_some()
    }
}

/// One thing wrong with an inventory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: usize,
    pub board: Option<String>,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("cannot read inventory {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", render_problems(path, problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

impl InventoryError {
    /// The problems found (empty for a read error).
    pub fn problems(&self) -> &[Problem] {
        match self {
            InventoryError::Read { .. } => &[],
            InventoryError::Invalid { problems, .. } => problems,
        }
    }
}

fn render_problems(path: &Path, problems: &[Problem]) -> String {
    let mut out = format!(
        "inventory {} is invalid ({} problem{}); nothing was changed",
        path.display(),
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    );
    for p in problems {
        out.push_str(&format!("\n  {}:{}: ", path.display(), p.line));
        if let Some(b) = &p.board {
            out.push_str(&format!("board `{b}`: "));
        }
        out.push_str(&p.message);
    }
    out
}

// ---- raw TOML shape -------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInventory {
    cluster: Spanned<RawCluster>,
    #[serde(rename = "virtual")]
    virtual_net: Option<Spanned<RawVirtual>>,
    #[serde(default)]
    board: Vec<Spanned<RawBoard>>,
    db: Option<Spanned<RawDb>>,
    lb: Option<Spanned<RawLb>>,
    files: Option<std::collections::BTreeMap<String, Spanned<RawBucket>>>,
    cdn: Option<RawCdn>,
    cache: Option<RawCache>,
    app: Option<RawApp>,
    links: Option<std::collections::BTreeMap<String, Spanned<RawLink>>>,
}

/// A link's properties as written: `{ delay = "30ms", jitter = "5ms", loss = "1%", rate = "100mbit" }`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLink {
    delay: Option<String>,
    jitter: Option<String>,
    loss: Option<String>,
    rate: Option<String>,
}

impl RawLink {
    fn profile(&self) -> Result<crate::virt::link::LinkProfile, String> {
        use crate::virt::link::profile;
        let mut p = crate::virt::link::LinkProfile::default();
        if let Some(d) = &self.delay {
            p.delay = profile::parse_delay(d)?;
        }
        if let Some(j) = &self.jitter {
            p.jitter = profile::parse_delay(j)?;
        }
        if let Some(l) = &self.loss {
            p.loss_ppm = profile::parse_loss(l)?;
        }
        if let Some(r) = &self.rate {
            p.rate_bps = Some(profile::parse_rate(r)?);
        }
        if let Some(problem) = p.problem() {
            return Err(problem);
        }
        Ok(p)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCdn {
    policy: Option<Spanned<String>>,
    boards: Option<std::collections::BTreeMap<String, Spanned<String>>>,
    regions: Option<std::collections::BTreeMap<String, Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBucket {
    board: Spanned<String>,
    max_object: Option<Spanned<String>>,
    replica: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApp {
    sessions: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCache {
    hashing: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLb {
    algorithm: Option<Spanned<String>>,
    floating_address: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDb {
    primary: Option<Spanned<String>>,
    semi_sync: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    name: Spanned<String>,
    state_dir: Option<Spanned<String>>,
    ssh_user: Option<Spanned<String>>,
    ssh_port: Option<Spanned<u16>>,
    ssh_key: Option<Spanned<String>>,
    sudo: Option<bool>,
    parallel: Option<Spanned<usize>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVirtual {
    subnet: Spanned<String>,
    wan_delay: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBoard {
    name: Spanned<String>,
    address: Spanned<String>,
    port: Option<u16>,
    user: Option<Spanned<String>>,
    model: Option<String>,
    roles: Option<Spanned<RawRoles>>,
    arch: Option<Spanned<String>>,
    init: Option<Spanned<String>>,
    link: Option<Spanned<RawLink>>,
    dc: Option<Spanned<String>>,
    cpus: Option<Spanned<f64>>,
    memory: Option<Spanned<RawMemory>>,
    weight: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawMemory {
    Bytes(u64),
    Text(String),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawRoles {
    One(String),
    Many(Vec<String>),
}

// ---- loading ----------------------------------------------------------------------------

/// Deserialize the raw shape, collecting every type error instead of stopping at the first:
/// a key whose value has the wrong type (or that is unknown) is reported, blanked out
/// (line numbers kept) and the text parsed again. Syntax errors, and a missing required key,
/// end the search: the problems found so far come back as the error.
fn deserialize_collecting(
    text: &str,
    lines: &LineIndex,
) -> Result<(RawInventory, Vec<Problem>), Vec<Problem>> {
    let mut text = text.to_string();
    let mut problems: Vec<Problem> = Vec::new();
    // Each round blanks at least one line, so this ends; the cap bounds a pathological file.
    for _ in 0..64 {
        let e = match toml::from_str::<RawInventory>(&text) {
            Ok(raw) => return Ok((raw, problems)),
            Err(e) => e,
        };
        let span = e.span();
        let line = span.as_ref().map(|s| lines.line(s.start)).unwrap_or(1);
        let message = e.message().trim().to_string();
        let recoverable =
            !message.starts_with("missing field") && toml::from_str::<toml::Table>(&text).is_ok();
        let duplicate = problems
            .iter()
            .any(|p| p.line == line && p.message == message);
        if !duplicate {
            problems.push(Problem {
                line,
                board: None,
                message,
            });
        }
        match span.filter(|_| recoverable && !duplicate) {
            Some(span) => blank_key(&mut text, span),
            None => break,
        }
    }
    problems.sort_by_key(|p| p.line);
    Err(problems)
}

/// Replace the key/value at `span` (from the start of its line to the end of the line the
/// span ends on) with spaces, keeping newlines so every other line keeps its number.
fn blank_key(text: &mut String, span: std::ops::Range<usize>) {
    let start = text[..span.start.min(text.len())]
        .rfind('\n')
        .map_or(0, |i| i + 1);
    // Through the end of the value's last line (an unknown key's span is the key alone).
    let end = span.end.min(text.len()).max(start);
    let end = text[end..].find('\n').map_or(text.len(), |i| end + i);
    let blanked: String = text[start..end]
        .chars()
        .map(|c| if c == '\n' { '\n' } else { ' ' })
        .collect();
    text.replace_range(start..end, &blanked);
}

/// Read and validate an inventory file.
pub fn load(path: &Path) -> Result<Inventory, InventoryError> {
    let text = std::fs::read_to_string(path).map_err(|source| InventoryError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, &text)
}

/// Validate inventory text; `path` is used for messages and to resolve relative paths.
pub fn parse(path: &Path, text: &str) -> Result<Inventory, InventoryError> {
    let lines = LineIndex::new(text);
    let invalid = |problems| InventoryError::Invalid {
        path: path.to_path_buf(),
        problems,
    };
    let (raw, shape_problems) = deserialize_collecting(text, &lines).map_err(invalid)?;
    let base_dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut problems = shape_problems;
    let mut problem = |span: std::ops::Range<usize>, board: Option<&str>, message: String| {
        problems.push(Problem {
            line: lines.line(span.start),
            board: board.map(str::to_string),
            message,
        })
    };

    // [cluster]
    let rc = raw.cluster.get_ref();
    let name = rc.name.get_ref().clone();
    if !is_dns_label(&name) {
        problem(
            rc.name.span(),
            None,
            format!("cluster name `{name}` must be 1-32 characters of a-z, 0-9 and '-'"),
        );
    }
    let state_dir = match &rc.state_dir {
        Some(s) => resolve_path(base_dir, s.get_ref()),
        None => default_state_dir(&name),
    };
    let ssh_key = match &rc.ssh_key {
        None => SshKey::Default,
        Some(k) => match k.get_ref().as_str() {
            "managed" => SshKey::Managed,
            "agent" => SshKey::Agent,
            "" => {
                problem(
                    k.span(),
                    None,
                    "ssh_key is empty: use \"managed\", \"agent\" or a key file path".into(),
                );
                SshKey::Default
            }
            file => {
                let p = resolve_path(base_dir, file);
                if let Err(e) = std::fs::File::open(&p) {
                    problem(
                        k.span(),
                        None,
                        format!("ssh key {} is unreadable: {e}", p.display()),
                    );
                }
                SshKey::File(p)
            }
        },
    };
    let parallel = match &rc.parallel {
        Some(p) if *p.get_ref() == 0 || *p.get_ref() > 256 => {
            problem(p.span(), None, "parallel must be between 1 and 256".into());
            8
        }
        Some(p) => *p.get_ref(),
        None => 16,
    };
    let ssh_user = rc.ssh_user.as_ref().map(|u| {
        if let Err(msg) = validate_user(u.get_ref()) {
            problem(u.span(), None, format!("ssh_user: {msg}"));
        }
        u.get_ref().clone()
    });
    let ssh_port = match &rc.ssh_port {
        Some(p) if *p.get_ref() == 0 => {
            problem(p.span(), None, "ssh_port must not be 0".into());
            None
        }
        Some(p) => Some(*p.get_ref()),
        None => None,
    };
    let cluster = Cluster {
        name,
        state_dir,
        ssh_user,
        ssh_port,
        ssh_key,
        sudo: rc.sudo.unwrap_or(false),
        parallel,
    };

    // [virtual]
    let virtual_net = raw.virtual_net.as_ref().and_then(|v| {
        let s = v.get_ref().subnet.get_ref();
        let wan_delay = match &v.get_ref().wan_delay {
            None => DEFAULT_WAN_DELAY,
            Some(d) => crate::virt::link::profile::parse_delay(d.get_ref()).unwrap_or_else(|msg| {
                problem(d.span(), None, format!("[virtual] wan_delay: {msg}"));
                DEFAULT_WAN_DELAY
            }),
        };
        match parse_subnet(s) {
            Ok(net) => Some(VirtualNet { wan_delay, ..net }),
            Err(msg) => {
                problem(v.get_ref().subnet.span(), None, msg);
                None
            }
        }
    });
    let virtual_declared = raw.virtual_net.is_some();
    // [links."<model>"]: what a model's link does, for the virtual boards of that model.
    let mut model_links = Vec::new();
    for (model, link) in raw.links.iter().flatten() {
        if !virtual_declared {
            problem(
                link.span(),
                None,
                format!("[links.\"{model}\"]: links are shaped on virtual boards only"),
            );
            continue;
        }
        match link.get_ref().profile() {
            Ok(profile) => model_links.push((model_key(model), profile)),
            Err(msg) => problem(link.span(), None, format!("[links.\"{model}\"]: {msg}")),
        }
    }

    // [[board]]
    if raw.board.is_empty() {
        problem(raw.cluster.span(), None, "no [[board]] defined".into());
    }
    let mut seen_names: HashMap<String, usize> = HashMap::new();
    let mut seen_addrs: HashMap<String, (usize, String)> = HashMap::new();
    let mut boards = Vec::new();
    for rb in &raw.board {
        let rb_ref = rb.get_ref();
        let bname = rb_ref.name.get_ref().clone();
        let line = lines.line(rb_ref.name.span().start);
        let b = Some(bname.as_str());
        if !is_dns_label(&bname) {
            problem(
                rb_ref.name.span(),
                b,
                "name must be 1-32 characters of a-z, 0-9 and '-' (it becomes a hostname)".into(),
            );
        }
        if let Some(first) = seen_names.insert(bname.clone(), line) {
            problem(
                rb_ref.name.span(),
                b,
                format!("duplicate board name (first defined on line {first})"),
            );
        }
        let address = rb_ref.address.get_ref().trim().to_string();
        let port = rb_ref.port.or(cluster.ssh_port).unwrap_or(22);
        match validate_address(&address) {
            Err(msg) => problem(rb_ref.address.span(), b, msg),
            Ok(ip) => {
                if let (Some(net), Some(IpAddr::V4(v4))) = (&virtual_net, ip) {
                    if !net.contains(v4) {
                        problem(
                            rb_ref.address.span(),
                            b,
                            format!(
                                "address {address} is outside the virtual subnet {}/{}",
                                net.subnet, net.prefix_len
                            ),
                        );
                    } else if v4 == net.gateway() {
                        problem(
                            rb_ref.address.span(),
                            b,
                            format!(
                                "address {address} is the host's own address on the virtual bridge"
                            ),
                        );
                    }
                } else if virtual_declared && ip.is_none() {
                    problem(
                        rb_ref.address.span(),
                        b,
                        "a virtual board needs an IPv4 address".into(),
                    );
                }
                let key = format!("{address}:{port}");
                if let Some((first, other)) = seen_addrs.insert(key, (line, bname.clone())) {
                    problem(
                        rb_ref.address.span(),
                        b,
                        format!(
                            "duplicate address {address} (board `{other}`, line {first}, has it too)"
                        ),
                    );
                }
            }
        }
        let roles = match &rb_ref.roles {
            None => RoleSpec::Auto,
            Some(r) => match r.get_ref() {
                RawRoles::One(s) if s == "auto" => RoleSpec::Auto,
                RawRoles::One(s) => {
                    parse_roles(std::slice::from_ref(s), &mut |m| problem(r.span(), b, m))
                }
                RawRoles::Many(v) => parse_roles(v, &mut |m| problem(r.span(), b, m)),
            },
        };
        let arch = match &rb_ref.arch {
            None => VirtualArch::Native,
            Some(a) => match a.get_ref().as_str() {
                "native" => VirtualArch::Native,
                "arm64" | "aarch64" => {
                    if !virtual_declared {
                        problem(
                            a.span(),
                            b,
                            "arch is only for virtual boards (a real board's arch is detected)"
                                .into(),
                        );
                    }
                    VirtualArch::Arm64
                }
                other => {
                    problem(
                        a.span(),
                        b,
                        format!("unknown arch `{other}` (virtual boards: native, arm64)"),
                    );
                    VirtualArch::Native
                }
            },
        };
        let init = match &rb_ref.init {
            None => VirtualInit::Lab,
            Some(i) => {
                let init = match i.get_ref().as_str() {
                    "lab" => Some(VirtualInit::Lab),
                    "systemd" => Some(VirtualInit::Systemd),
                    other => {
                        problem(
                            i.span(),
                            b,
                            format!("unknown init `{other}` (virtual boards: lab, systemd)"),
                        );
                        None
                    }
                };
                if init.is_some() && !virtual_declared {
                    problem(
                        i.span(),
                        b,
                        "init is only for virtual boards (a real board runs what it boots)".into(),
                    );
                }
                if init == Some(VirtualInit::Systemd) && arch != VirtualArch::Native {
                    problem(
                        i.span(),
                        b,
                        "init = \"systemd\" boards run the host's architecture (no arch = \"arm64\")"
                            .into(),
                    );
                }
                init.unwrap_or_default()
            }
        };
        let link = match &rb_ref.link {
            Some(l) if !virtual_declared => {
                problem(
                    l.span(),
                    b,
                    "link is for virtual boards (a real board's link is its cable)".into(),
                );
                None
            }
            Some(l) => match l.get_ref().profile() {
                Ok(profile) => Some(profile),
                Err(msg) => {
                    problem(l.span(), b, format!("link: {msg}"));
                    None
                }
            },
            None => rb_ref.model.as_deref().and_then(|m| {
                let key = model_key(m);
                model_links
                    .iter()
                    .find(|(k, _)| key.starts_with(k.as_str()))
                    .map(|(_, p)| *p)
            }),
        };
        let dc = rb_ref.dc.as_ref().and_then(|d| {
            let name = d.get_ref();
            if !virtual_declared {
                problem(
                    d.span(),
                    b,
                    "dc is for virtual boards (real boards are where they are)".into(),
                );
                None
            } else if !is_dns_label(name) {
                problem(
                    d.span(),
                    b,
                    format!("dc `{name}` must be 1-32 characters of a-z, 0-9 and '-'"),
                );
                None
            } else {
                Some(name.clone())
            }
        });
        let size = board_size(rb_ref, virtual_declared, &mut |span, m| problem(span, b, m));
        let user = rb_ref.user.as_ref().map(|u| {
            if let Err(msg) = validate_user(u.get_ref()) {
                problem(u.span(), b, format!("user: {msg}"));
            } else if virtual_declared && u.get_ref() != "root" && init != VirtualInit::Systemd {
                problem(
                    u.span(),
                    b,
                    format!(
                        "user `{}`: a virtual board shares the host's users unless it boots its own \
                         root; add init = \"systemd\" for a login other than root",
                        u.get_ref()
                    ),
                );
            }
            u.get_ref().clone()
        });
        let weight = match &rb_ref.weight {
            None => 1,
            Some(w) => {
                let value = *w.get_ref();
                let is_app = match &roles {
                    RoleSpec::Given(r) => r.contains(&Role::App),
                    RoleSpec::Auto => true,
                };
                if !(1..=100).contains(&value) {
                    problem(
                        w.span(),
                        b,
                        format!("weight {value} is out of range (1..=100)"),
                    );
                } else if !is_app {
                    problem(
                        w.span(),
                        b,
                        "weight is an app board's share of the LB's requests; this board has no app role".into(),
                    );
                }
                u32::try_from(value.clamp(1, 100)).unwrap_or(1)
            }
        };
        boards.push(Board {
            name: bname,
            address,
            port: rb_ref.port,
            user,
            model: rb_ref.model.clone(),
            roles,
            arch,
            init,
            link,
            dc,
            size,
            line,
            weight,
        });
    }
    if boards.iter().any(|b| b.dc.is_some()) {
        for (board, raw_board) in boards.iter().zip(&raw.board) {
            if board.dc.is_none() && raw_board.get_ref().dc.is_none() {
                problem(
                    raw_board.span(),
                    Some(&board.name),
                    "has no dc while other boards have one: give every board its data center"
                        .into(),
                );
            }
        }
    }
    let db = db_group(raw.db.as_ref(), &boards, &lines, &mut problem);
    let mut lb = LbSettings::default();
    if let Some(algorithm) = raw.lb.as_ref().and_then(|t| t.get_ref().algorithm.as_ref()) {
        use lab_api::spec::LbAlgorithm;
        match one_of(
            algorithm.get_ref(),
            "[lb] algorithm",
            &LbAlgorithm::ALL,
            LbAlgorithm::as_str,
        ) {
            Ok(a) => lb.algorithm = a,
            Err(msg) => problem(algorithm.span(), None, msg),
        }
    }
    let mut cache_hashing = lab_api::spec::CacheHashing::default();
    if let Some(hashing) = raw.cache.as_ref().and_then(|c| c.hashing.as_ref()) {
        use lab_api::spec::CacheHashing;
        match one_of(
            hashing.get_ref(),
            "[cache] hashing",
            &CacheHashing::ALL,
            CacheHashing::as_str,
        ) {
            Ok(h) => cache_hashing = h,
            Err(msg) => problem(hashing.span(), None, msg),
        }
    }
    let mut sessions = lab_api::spec::Sessions::default();
    if let Some(given) = raw.app.as_ref().and_then(|a| a.sessions.as_ref()) {
        use lab_api::spec::Sessions;
        let any_cache = boards.iter().any(|b| match &b.roles {
            RoleSpec::Auto => true,
            RoleSpec::Given(roles) => roles.contains(&Role::Cache),
        });
        match one_of(
            given.get_ref(),
            "[app] sessions",
            &Sessions::ALL,
            Sessions::as_str,
        ) {
            Ok(Sessions::Shared) if !any_cache => problem(
                given.span(),
                None,
                "[app] sessions = \"shared\" keeps logins on the cache boards, and no board \
                 has the cache role: give one `roles = [\"cache\"]`, or use \"jwt\""
                    .to_owned(),
            ),
            Ok(kind) => sessions = kind,
            Err(msg) => problem(given.span(), None, msg),
        }
    }
    let floating = raw
        .lb
        .as_ref()
        .and_then(|t| t.get_ref().floating_address.as_ref());
    lb.floating_address = match floating {
        Some(given) => match floating_address(given.get_ref(), &boards, virtual_net.as_ref()) {
            Ok(address) => Some(address),
            Err(msg) => {
                problem(given.span(), None, format!("[lb] floating_address: {msg}"));
                None
            }
        },
        None => virtual_net.as_ref().and_then(|net| {
            let last = net.last_host();
            let taken = boards.iter().any(|b| b.address == last.to_string());
            (!taken).then_some((last, net.prefix_len))
        }),
    };
    let files = raw.files.as_ref().map(|table| {
        let mut placed = Vec::new();
        for (name, bucket) in table {
            let raw = bucket.get_ref();
            if !lab_api::files::is_bucket_name(name) {
                problem(
                    bucket.span(),
                    None,
                    format!("[files.{name}]: a bucket name is a-z, 0-9 and -, 1 to 63 characters"),
                );
                continue;
            }
            let board = raw.board.get_ref();
            match boards.iter().find(|b| &b.name == board) {
                None => problem(
                    raw.board.span(),
                    None,
                    format!("[files.{name}]: no board `{board}`"),
                ),
                Some(b) if !matches!(&b.roles, RoleSpec::Given(r) if r.contains(&Role::Files)) => {
                    problem(
                        raw.board.span(),
                        None,
                        format!(
                            "[files.{name}]: board `{board}` has no files role (roles = [\"files\"])"
                        ),
                    )
                }
                Some(_) => {}
            }
            let max_object_bytes = match &raw.max_object {
                None => DEFAULT_MAX_OBJECT,
                Some(text) => match parse_memory(text.get_ref()) {
                    Ok(0) => {
                        problem(text.span(), None, format!("[files.{name}] max_object must be more than 0"));
                        continue;
                    }
                    Ok(n) => n,
                    Err(msg) => {
                        problem(
                            text.span(),
                            None,
                            format!("[files.{name}] max_object: {}", msg.replacen("memory", "size", 1)),
                        );
                        continue;
                    }
                },
            };
            if let Some(replica) = &raw.replica {
                let r = replica.get_ref();
                let is_files = boards.iter().any(|b| {
                    &b.name == r
                        && matches!(&b.roles, RoleSpec::Given(roles) if roles.contains(&Role::Files))
                });
                if r == board || !is_files {
                    problem(
                        replica.span(),
                        None,
                        format!(
                            "[files.{name}] replica `{r}` must be another board with the files role"
                        ),
                    );
                    continue;
                }
            }
            placed.push(BucketPlacement {
                name: name.clone(),
                board: board.clone(),
                max_object_bytes,
                replica: raw.replica.as_ref().map(|r| r.get_ref().clone()),
            });
        }
        placed
    });
    let mut cdn = CdnSettings::default();
    if let Some(raw_cdn) = raw.cdn.as_ref() {
        let known = |text: &str| CdnPolicy::ALL.into_iter().find(|p| p.as_str() == text);
        if let Some(policy) = &raw_cdn.policy {
            match known(policy.get_ref()) {
                Some(p) => cdn.policy = p,
                None => problem(
                    policy.span(),
                    None,
                    format!(
                        "[cdn] policy `{}` is unknown (known: lru, s3-fifo)",
                        policy.get_ref()
                    ),
                ),
            }
        }
        for (region, board) in raw_cdn.regions.iter().flatten() {
            let has_cdn = boards.iter().any(|b| {
                &b.name == board.get_ref()
                    && matches!(&b.roles, RoleSpec::Given(r) if r.contains(&Role::Cdn))
            });
            if has_cdn {
                cdn.regions.insert(region.clone(), board.get_ref().clone());
            } else {
                problem(
                    board.span(),
                    None,
                    format!(
                        "[cdn.regions] {region}: `{}` is not a board with the cdn role",
                        board.get_ref()
                    ),
                );
            }
        }
        for (board, policy) in raw_cdn.boards.iter().flatten() {
            let has_cdn = boards.iter().any(|b| {
                &b.name == board && matches!(&b.roles, RoleSpec::Given(r) if r.contains(&Role::Cdn))
            });
            match known(policy.get_ref()) {
                _ if !has_cdn => problem(
                    policy.span(),
                    None,
                    format!("[cdn.boards] `{board}` is not a board with the cdn role"),
                ),
                Some(p) => {
                    cdn.by_board.insert(board.clone(), p);
                }
                None => problem(
                    policy.span(),
                    None,
                    format!(
                        "[cdn.boards] {board}: policy `{}` is unknown (known: lru, s3-fifo)",
                        policy.get_ref()
                    ),
                ),
            }
        }
    }
    if !problems.is_empty() {
        problems.sort_by_key(|p| p.line);
        return Err(invalid(problems));
    }
    Ok(Inventory {
        path: path.to_path_buf(),
        cluster,
        virtual_net,
        boards,
        db,
        lb,
        files,
        cdn,
        cache_hashing,
        sessions,
    })
}

/// `given` as one of `all` (by `name`), or the problem in words: "`what` `x` is unknown
/// (known: a, b)".
fn one_of<T: Copy>(
    given: &str,
    what: &str,
    all: &[T],
    name: impl Fn(T) -> &'static str,
) -> Result<T, String> {
    all.iter()
        .copied()
        .find(|t| name(*t) == given)
        .ok_or_else(|| {
            let known: Vec<&str> = all.iter().map(|t| name(*t)).collect();
            format!("{what} `{given}` is unknown (known: {})", known.join(", "))
        })
}

/// A virtual board's size: its own `cpus` and `memory`, else its model's, else
/// [`BoardSize::VIRTUAL_DEFAULT`]. Real boards take no figures.
fn board_size(
    rb: &RawBoard,
    virtual_declared: bool,
    problem: &mut dyn FnMut(std::ops::Range<usize>, String),
) -> Option<BoardSize> {
    if !virtual_declared {
        let given = [
            ("cpus", rb.cpus.as_ref().map(Spanned::span)),
            ("memory", rb.memory.as_ref().map(Spanned::span)),
        ];
        for (what, span) in given {
            if let Some(span) = span {
                problem(
                    span,
                    format!(
                        "{what} is only for virtual boards (a real board's size is what it is)"
                    ),
                );
            }
        }
        return None;
    }
    let base = rb
        .model
        .as_deref()
        .and_then(model_size)
        .unwrap_or(BoardSize::VIRTUAL_DEFAULT);
    let millicpus = match &rb.cpus {
        None => base.millicpus,
        Some(c) => {
            let cpus = *c.get_ref();
            let millicpus = (cpus * 1000.0).round();
            let (min, max) = (BoardSize::MIN_MILLICPUS, BoardSize::MAX_MILLICPUS);
            if !(f64::from(min)..=f64::from(max)).contains(&millicpus) {
                problem(
                    c.span(),
                    format!(
                        "cpus = {cpus} must be between {} and {}",
                        f64::from(min) / 1000.0,
                        max / 1000
                    ),
                );
                base.millicpus
            } else {
                millicpus as u32
            }
        }
    };
    let memory_bytes = match &rb.memory {
        None => base.memory_bytes,
        Some(m) => {
            let parsed = match m.get_ref() {
                RawMemory::Bytes(n) => Ok(*n),
                RawMemory::Text(t) => parse_memory(t),
            };
            let (min, max) = (BoardSize::MIN_MEMORY, BoardSize::MAX_MEMORY);
            match parsed {
                Ok(bytes) if (min..=max).contains(&bytes) => bytes,
                Ok(bytes) => {
                    problem(
                        m.span(),
                        format!(
                            "memory {} must be between {} and {}",
                            format_bytes(bytes),
                            format_bytes(min),
                            format_bytes(max)
                        ),
                    );
                    base.memory_bytes
                }
                Err(msg) => {
                    problem(m.span(), msg);
                    base.memory_bytes
                }
            }
        }
    };
    Some(BoardSize {
        millicpus,
        memory_bytes,
    })
}

/// Where a check reports a problem: the span it is about, the board, the message.
type ProblemSink<'a> = dyn FnMut(std::ops::Range<usize>, Option<&str>, String) + 'a;

/// The `[db]` table checked against the boards: one preferred primary at most, a member of
/// the group; a `[db]` table needs a group.
fn db_group(
    raw: Option<&Spanned<RawDb>>,
    boards: &[Board],
    lines: &LineIndex,
    problem: &mut ProblemSink,
) -> DbGroup {
    let members: Vec<&Board> = boards.iter().filter(|b| b.in_db_group()).collect();
    let marked: Vec<&Board> = boards
        .iter()
        .filter(|b| matches!(&b.roles, RoleSpec::Given(r) if r.contains(&Role::DbMaster)))
        .collect();
    if let [first, second, ..] = marked.as_slice() {
        problem(
            lines_to_span(lines, second.line),
            Some(&second.name),
            format!(
                "two preferred primaries: `{}` (line {}) has db-master too; mark one board \
                 db-master (or set [db] primary) and the others db",
                first.name, first.line
            ),
        );
    }
    let mut group = DbGroup {
        preferred_primary: marked.first().map(|b| b.name.clone()),
        semi_sync: false,
    };
    let Some(raw) = raw else {
        return group;
    };
    let table = raw.get_ref();
    group.semi_sync = table.semi_sync.unwrap_or(false);
    if members.is_empty() {
        problem(
            raw.span(),
            None,
            "[db] describes a database group, but no board has a db role \
             (roles = [\"db\"] on the boards that should run MariaDB)"
                .into(),
        );
    }
    if let Some(p) = &table.primary {
        let name = p.get_ref();
        match boards.iter().find(|b| &b.name == name) {
            None => problem(
                p.span(),
                None,
                format!("[db] primary `{name}` is not a board"),
            ),
            Some(b) if !b.in_db_group() => problem(
                p.span(),
                None,
                format!("[db] primary `{name}` is not in the db group (give it roles = [\"db\"])"),
            ),
            Some(_) => {}
        }
        if let Some(m) = marked.first().filter(|m| &m.name != name) {
            problem(
                p.span(),
                None,
                format!(
                    "two preferred primaries: [db] primary is `{name}` but `{}` (line {}) has db-master",
                    m.name, m.line
                ),
            );
        }
        group.preferred_primary = Some(name.clone());
    }
    group
}

/// A span that reports as `line` (for problems found after parsing, tied to a board).
fn lines_to_span(lines: &LineIndex, line: usize) -> std::ops::Range<usize> {
    let start = lines.offset_of_line(line);
    start..start
}

fn parse_roles(names: &[String], problem: &mut dyn FnMut(String)) -> RoleSpec {
    let mut roles = Vec::new();
    for n in names {
        if n == "db" {
            // A member of the db group; the control plane decides who is primary.
            if roles.contains(&Role::DbMaster) || roles.contains(&Role::DbReplica) {
                problem(format!(
                    "role `{n}` listed twice (db, db-master and db-replica are all the db group)"
                ));
            } else {
                roles.push(Role::DbReplica);
            }
            continue;
        }
        match Role::parse(n) {
            Some(Role::Vip) => problem(
                "`vip` is not given by hand: with two or more lb boards every one gets it \
                 (the floating address is `[lb] floating_address`)"
                    .into(),
            ),
            Some(r) if !roles.contains(&r) => roles.push(r),
            Some(_) => problem(format!("role `{n}` listed twice")),
            None if n == "auto" => problem("`auto` cannot be combined with other roles".into()),
            None => {
                let known: Vec<&str> = Role::ALL
                    .iter()
                    .filter(|r| **r != Role::Vip)
                    .map(|r| r.as_str())
                    .collect();
                problem(format!(
                    "unknown role `{n}` (known: db, {}, or \"auto\")",
                    known.join(", ")
                ))
            }
        }
    }
    if roles.contains(&Role::DbMaster) && roles.contains(&Role::DbReplica) {
        problem("a board cannot be both db-master and db-replica".into());
    }
    RoleSpec::Given(roles)
}

/// `[lb] floating_address`: an IPv4 address (with an optional prefix, /24 by default) that
/// no board uses, inside the virtual subnet when there is one.
fn floating_address(
    text: &str,
    boards: &[Board],
    virtual_net: Option<&VirtualNet>,
) -> Result<(std::net::Ipv4Addr, u8), String> {
    let (ip, len) = match text.split_once('/') {
        Some((ip, len)) => (ip, len.parse::<u8>().ok().filter(|l| (8..=30).contains(l))),
        None => (text, Some(virtual_net.map_or(24, |n| n.prefix_len))),
    };
    let (Ok(ip), Some(len)) = (ip.parse::<std::net::Ipv4Addr>(), len) else {
        return Err(format!(
            "`{text}` must look like 192.168.1.250 or 192.168.1.250/24"
        ));
    };
    if let Some(b) = boards.iter().find(|b| b.address == ip.to_string()) {
        return Err(format!(
            "{ip} is board `{}`'s address; pick a free one",
            b.name
        ));
    }
    if let Some(net) = virtual_net {
        if !net.contains(ip) || ip == net.gateway() {
            return Err(format!(
                "{ip} is not a free host address of the virtual subnet {}/{}",
                net.subnet, net.prefix_len
            ));
        }
    }
    Ok((ip, len))
}

impl VirtualNet {
    /// The subnet's last host address (the one before the broadcast address).
    pub fn last_host(&self) -> Ipv4Addr {
        let host_bits = 32 - u32::from(self.prefix_len);
        Ipv4Addr::from((u32::from(self.subnet) | ((1u32 << host_bits) - 1)) - 1)
    }

    /// The host's address on the virtual bridge (first address of the subnet).
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.subnet) + 1)
    }
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::MAX
            .checked_shl(32 - u32::from(self.prefix_len))
            .unwrap_or(0);
        let ipn = u32::from(ip);
        let net = u32::from(self.subnet);
        ipn & mask == net && ipn != net && ipn != net | !mask
    }
}

/// Parse `A.B.C.D/N` with 16 <= N <= 28 and no host bits set.
pub fn parse_subnet(s: &str) -> Result<VirtualNet, String> {
    let bad = || format!("subnet `{s}` must look like 10.77.0.0/24 (prefix 16 to 28)");
    let (ip, len) = s.split_once('/').ok_or_else(bad)?;
    let ip: Ipv4Addr = ip.parse().map_err(|_| bad())?;
    let len: u8 = len.parse().map_err(|_| bad())?;
    if !(16..=28).contains(&len) {
        return Err(bad());
    }
    let mask = u32::MAX << (32 - u32::from(len));
    if u32::from(ip) & !mask != 0 {
        return Err(format!(
            "subnet `{s}` has host bits set (did you mean {}/{len}?)",
            Ipv4Addr::from(u32::from(ip) & mask)
        ));
    }
    Ok(VirtualNet {
        subnet: ip,
        prefix_len: len,
        wan_delay: DEFAULT_WAN_DELAY,
    })
}

/// An address is an IP address or a DNS name / ssh_config alias. Returns the IP if it is one.
fn validate_address(a: &str) -> Result<Option<IpAddr>, String> {
    if a.is_empty() {
        return Err("address is empty".into());
    }
    if let Ok(ip) = a.parse::<IpAddr>() {
        if ip.is_unspecified() || ip.is_multicast() {
            return Err(format!("address {a} cannot be a board's address"));
        }
        return Ok(Some(ip));
    }
    let looks_numeric = a.chars().all(|c| c.is_ascii_digit() || c == '.');
    let valid_name = a.len() <= 253
        && a.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        });
    if looks_numeric || !valid_name {
        return Err(format!(
            "address `{a}` is neither an IP address nor a host name"
        ));
    }
    Ok(None)
}

/// A login name as POSIX systems accept it (`useradd`'s rule): 1-32 characters of letters,
/// digits, `_`, `.` and `-`, not starting with `-` (it would read as an option to ssh/sudo).
fn validate_user(user: &str) -> Result<(), String> {
    if user.is_empty() || user.len() > 32 {
        return Err(format!("`{user}` must be 1-32 characters"));
    }
    if user.starts_with('-') {
        return Err(format!("`{user}` must not start with '-'"));
    }
    if let Some(c) = user
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(format!(
            "`{user}` contains {c:?}: a login name is letters, digits, '_', '.' and '-'"
        ));
    }
    Ok(())
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn resolve_path(base: &Path, p: &str) -> PathBuf {
    let expanded = match (p.strip_prefix("~/"), home_dir()) {
        (Some(rest), Some(home)) => home.join(rest),
        _ => PathBuf::from(p),
    };
    if expanded.is_absolute() {
        expanded
    } else if base.is_absolute() {
        base.join(expanded)
    } else {
        // `-i inv.toml` from the inventory's own directory: the state dir and key paths are
        // kept absolute (the virtual cluster and the boards' init need them so).
        std::env::current_dir()
            .map(|cwd| cwd.join(base.strip_prefix(".").unwrap_or(base)))
            .unwrap_or_else(|_| base.to_path_buf())
            .join(expanded)
    }
}

pub fn home_dir() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

/// `$LAB_STATE_HOME/<cluster>`, else `$XDG_STATE_HOME/lab/<cluster>`, else
/// `~/.local/state/lab/<cluster>`.
fn default_state_dir(cluster: &str) -> PathBuf {
    if let Some(d) = std::env::var_os("LAB_STATE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join(cluster);
    }
    if let Some(d) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("lab").join(cluster);
    }
    home_dir()
        .unwrap_or_else(|| PathBuf::from("/var/lib"))
        .join(".local/state/lab")
        .join(cluster)
}

/// Byte offset to 1-based line number.
struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Self { starts }
    }
    /// Byte offset where 1-based `line` starts.
    fn offset_of_line(&self, line: usize) -> usize {
        self.starts
            .get(line.saturating_sub(1))
            .copied()
            .unwrap_or(0)
    }
    fn line(&self, offset: usize) -> usize {
        match self.starts.binary_search(&offset) {
            Ok(i) => i + 1,
            Err(i) => i,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[cluster]
name = "lab"
state_dir = "state"
ssh_key = "managed"

[virtual]
subnet = "10.77.0.0/24"

[[board]]
name = "lb-1"
address = "10.77.0.10"
roles = ["lb"]

[[board]]
name = "pi-2"
address = "10.77.0.11"
roles = "auto"
arch = "arm64"
"#;

    #[test]
    fn parses_a_good_inventory() {
        let inv = parse(Path::new("/x/inv.toml"), GOOD).expect("valid");
        assert_eq!(inv.cluster.name, "lab");
        assert_eq!(inv.cluster.state_dir, PathBuf::from("/x/state"));
        assert_eq!(inv.cluster.ssh_key, SshKey::Managed);
        assert_eq!(inv.boards.len(), 2);
        assert_eq!(inv.boards[0].roles, RoleSpec::Given(vec![Role::Lb]));
        assert_eq!(inv.boards[0].line, 11);
        assert_eq!(inv.boards[1].roles, RoleSpec::Auto);
        assert_eq!(inv.boards[1].arch, VirtualArch::Arm64);
        assert_eq!(inv.boards[1].init, VirtualInit::Lab);
        assert_eq!(inv.boards[1].link, None);
        assert_eq!(
            inv.virtual_net.as_ref().map(|n| n.wan_delay),
            Some(DEFAULT_WAN_DELAY)
        );
        let net = inv.virtual_net.expect("virtual");
        assert_eq!(net.gateway(), Ipv4Addr::new(10, 77, 0, 1));
    }

    #[test]
    fn links_come_from_the_board_or_its_model() {
        let text = "[cluster]\nname=\"c\"\n[virtual]\nsubnet=\"10.9.0.0/24\"\nwan_delay=\"60ms\"\n\
            [links.\"Raspberry Pi 3\"]\nrate=\"100mbit\"\n\
            [[board]]\nname=\"a\"\naddress=\"10.9.0.2\"\nmodel=\"Raspberry Pi 3 Model B\"\ndc=\"east\"\n\
            [[board]]\nname=\"b\"\naddress=\"10.9.0.3\"\nmodel=\"Raspberry Pi 3\"\nlink={delay=\"30ms\",jitter=\"5ms\",loss=\"1%\"}\ndc=\"west\"\n\
            [[board]]\nname=\"c\"\naddress=\"10.9.0.4\"\nmodel=\"Raspberry Pi 4\"\ndc=\"west\"\n";
        let inv = parse(Path::new("/x/inv.toml"), text).expect("valid");
        let a = inv.boards[0].link.expect("the model's link");
        assert_eq!(a.rate_bps, Some(100_000_000));
        let b = inv.boards[1].link.expect("its own link");
        assert_eq!(b.to_string(), "delay 30ms ±5ms, loss 1%");
        assert_eq!(inv.boards[2].link, None, "a Pi 4 has no [links] entry");
        assert_eq!(inv.boards[1].dc.as_deref(), Some("west"));
        assert_eq!(
            inv.virtual_net.map(|n| n.wan_delay),
            Some(std::time::Duration::from_millis(60))
        );
    }

    #[test]
    fn the_db_group_and_its_preferred_primary() {
        let text = "[cluster]\nname=\"c\"\n[db]\nsemi_sync=true\n[[board]]\nname=\"a\"\naddress=\"10.0.0.2\"\nroles=[\"db\"]\n[[board]]\nname=\"b\"\naddress=\"10.0.0.3\"\nroles=[\"db-master\", \"cache\"]\n";
        let inv = parse(Path::new("inv.toml"), text).expect("valid");
        assert!(inv.boards.iter().all(Board::in_db_group));
        assert_eq!(inv.db.preferred_primary.as_deref(), Some("b"));
        assert!(inv.db.semi_sync);
        assert_eq!(inv.boards[0].roles, RoleSpec::Given(vec![Role::DbReplica]));
    }

    /// Each broken inventory and the message (with its line) it must produce.
    #[test]
    fn broken_inventories_name_line_and_board() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "duplicate name",
                "[cluster]\nname=\"c\"\n[[board]]\nname=\"a\"\naddress=\"10.0.0.2\"\n[[board]]\nname=\"a\"\naddress=\"10.0.0.3\"\n",
                "inv.toml:7: board `a`: duplicate board name (first defined on line 4)",
            ),
            (
                "duplicate address",
                "[cluster]\nname=\"c\"\n[[board]]\nname=\"a\"\naddress=\"10.0.0.2\"\n[[board]]\nname=\"b\"\naddress=\"10.0.0.2\"\n",
                "inv.toml:8: board `b`: duplicate address 10.0.0.2 (board `a`, line 4, has it too)",
            ),
            (
                "unknown role",
                "[cluster]\nname=\"c\"\n[[board]]\nname=\"a\"\naddress=\"10.0.0.2\"\nroles=[\"lb\",\"dns\"]\n",
                "inv.toml:6: board `a`: unknown role `dns`",
            ),
            (
                "bad address",
                "[cluster]\nname=\"c\"\n[[board]]\nname=\"a\"\naddress=\"10.0.0.300\"\n",
                "inv.toml:5: board `a`: address `10.0.0.300` is neither an IP address nor a host name",
            ),
            (
                "unreadable key",
                "[cluster]\nname=\"c\"\nssh_key=\"/nonexistent/id_ed25519\"\n[[board]]\nname=\"a\"\naddress=\"10.0.0.2\"\n",
                "inv.toml:3: ssh key /nonexistent/id_ed25519 is unreadable",
            ),
            (
                "address outside virtual subnet",
                "[cluster]\nname=\"c\"\n[virtual]\nsubnet=\"10.9.0.0/24\"\n[[board]]\nname=\"a\"\naddress=\"10.0.0.2\"\n",
                "inv.toml:7: board `a`: address 10.0.0.2 is outside the virtual subnet 10.9.0.0/24",
            ),
            (
                "bad board name",
                "[cluster]\nname=\"c\"\n[[board]]\nname=\"Pi_4\"\naddress=\"10.0.0.2\"\n",
                "inv.toml:4: board `Pi_4`: name must be",
            ),
            (
                "dc on a real board",
                "[cluster]\nname=\"c\"\n[[board]]\nname=\"a\"\naddress=\"10.0.0.2\"\ndc=\"west\"\n",
                "inv.toml:6: board `a`: dc is for virtual boards",
            ),
            (
                "a board without dc among boards with one",
                "[cluster]\nname=\"c\"\n[virtual]\nsubnet=\"10.9.0.0/24\"\n[[board]]\nname=\"a\"\naddress=\"10.9.0.2\"\ndc=\"east\"\n[[board]]\nname=\"b\"\naddress=\"10.9.0.3\"\n",
                "board `b`: has no dc while other boards have one",
            ),
            (
                "a link delay that does not parse",
                "[cluster]\nname=\"c\"\n[virtual]\nsubnet=\"10.9.0.0/24\"\n[[board]]\nname=\"a\"\naddress=\"10.9.0.2\"\nlink={delay=\"30 parsecs\"}\n",
                "inv.toml:8: board `a`: link: delay `30 parsecs` must look like",
            ),
            (
                "a link on a real board",
                "[cluster]\nname=\"c\"\n[[board]]\nname=\"a\"\naddress=\"10.0.0.2\"\nlink={rate=\"100mbit\"}\n",
                "inv.toml:6: board `a`: link is for virtual boards",
            ),
            (
                "a wan delay that does not parse",
                "[cluster]\nname=\"c\"\n[virtual]\nsubnet=\"10.9.0.0/24\"\nwan_delay=\"far\"\n[[board]]\nname=\"a\"\naddress=\"10.9.0.2\"\n",
                "inv.toml:5: [virtual] wan_delay: delay `far` must look like",
            ),
            (
                "unknown init",
                "[cluster]\nname=\"c\"\n[virtual]\nsubnet=\"10.9.0.0/24\"\n[[board]]\nname=\"a\"\naddress=\"10.9.0.2\"\ninit=\"openrc\"\n",
                "inv.toml:8: board `a`: unknown init `openrc` (virtual boards: lab, systemd)",
            ),
            (
                "init on a real board",
                "[cluster]\nname=\"c\"\n[[board]]\nname=\"a\"\naddress=\"10.0.0.2\"\ninit=\"systemd\"\n",
                "inv.toml:6: board `a`: init is only for virtual boards",
            ),
            (
                "systemd on an arm64 board",
                "[cluster]\nname=\"c\"\n[virtual]\nsubnet=\"10.9.0.0/24\"\n[[board]]\nname=\"a\"\naddress=\"10.9.0.2\"\narch=\"arm64\"\ninit=\"systemd\"\n",
                "inv.toml:9: board `a`: init = \"systemd\" boards run the host's architecture",
            ),
            (
                "a login user on a virtual board without its own root",
                "[cluster]\nname=\"c\"\n[virtual]\nsubnet=\"10.9.0.0/24\"\n[[board]]\nname=\"a\"\naddress=\"10.9.0.2\"\nuser=\"pi\"\n",
                "inv.toml:8: board `a`: user `pi`: a virtual board shares the host's users",
            ),
            (
                "two preferred primaries",
                "[cluster]\nname=\"c\"\n[[board]]\nname=\"a\"\naddress=\"10.0.0.2\"\nroles=[\"db-master\"]\n[[board]]\nname=\"b\"\naddress=\"10.0.0.3\"\nroles=[\"db-master\"]\n",
                "inv.toml:8: board `b`: two preferred primaries: `a` (line 4) has db-master too",
            ),
            (
                "floating address that is a board's",
                "[cluster]\nname=\"c\"\n[lb]\nfloating_address=\"10.0.0.2\"\n[[board]]\nname=\"a\"\naddress=\"10.0.0.2\"\nroles=[\"lb\"]\n",
                "inv.toml:4: [lb] floating_address: 10.0.0.2 is board `a`'s address; pick a free one",
            ),
            (
                "shared sessions without a cache board",
                "[cluster]\nname=\"c\"\n[app]\nsessions=\"shared\"\n[[board]]\nname=\"a\"\naddress=\"10.0.0.2\"\nroles=[\"app\"]\n",
                "inv.toml:4: [app] sessions = \"shared\" keeps logins on the cache boards, and no board has the cache role",
            ),
            (
                "an unknown session store",
                "[cluster]\nname=\"c\"\n[app]\nsessions=\"cookies\"\n[[board]]\nname=\"a\"\naddress=\"10.0.0.2\"\nroles=[\"app\"]\n",
                "inv.toml:4: [app] sessions `cookies` is unknown (known: jwt, local, shared)",
            ),
            (
                "an unknown cache hashing",
                "[cluster]\nname=\"c\"\n[cache]\nhashing=\"rendezvous\"\n[[board]]\nname=\"a\"\naddress=\"10.0.0.2\"\nroles=[\"cache\"]\n",
                "inv.toml:4: [cache] hashing `rendezvous` is unknown (known: ring, modulo)",
            ),
            (
                "floating address that does not parse",
                "[cluster]\nname=\"c\"\n[lb]\nfloating_address=\"10.0.0/33\"\n[[board]]\nname=\"a\"\naddress=\"10.0.0.2\"\nroles=[\"lb\"]\n",
                "inv.toml:4: [lb] floating_address: `10.0.0/33` must look like 192.168.1.250 or 192.168.1.250/24",
            ),
            (
                "floating address outside the virtual subnet",
                "[cluster]\nname=\"c\"\n[virtual]\nsubnet=\"10.9.0.0/24\"\n[lb]\nfloating_address=\"10.9.1.5\"\n[[board]]\nname=\"a\"\naddress=\"10.9.0.2\"\nroles=[\"lb\"]\n",
                "inv.toml:6: [lb] floating_address: 10.9.1.5 is not a free host address of the virtual subnet 10.9.0.0/24",
            ),
            (
                "bucket on a board without the files role",
                "[cluster]\nname=\"c\"\n[files.avatars]\nboard=\"a\"\n[[board]]\nname=\"a\"\naddress=\"10.0.0.2\"\nroles=[\"app\"]\n",
                "inv.toml:4: [files.avatars]: board `a` has no files role",
            ),
            (
                "bucket on no board",
                "[cluster]\nname=\"c\"\n[files.avatars]\nboard=\"nope\"\n[[board]]\nname=\"a\"\naddress=\"10.0.0.2\"\nroles=[\"files\"]\n",
                "inv.toml:4: [files.avatars]: no board `nope`",
            ),
            (
                "bad bucket name and size",
                "[cluster]\nname=\"c\"\n[files.Avatars]\nboard=\"a\"\n[files.videos]\nboard=\"a\"\nmax_object=\"5MB\"\n[[board]]\nname=\"a\"\naddress=\"10.0.0.2\"\nroles=[\"files\"]\n",
                "[files.Avatars]: a bucket name is a-z, 0-9 and -",
            ),
            (
                "cdn policy for a board without the cdn role",
                "[cluster]\nname=\"c\"\n[cdn.boards]\na=\"s3-fifo\"\n[[board]]\nname=\"a\"\naddress=\"10.0.0.2\"\nroles=[\"app\"]\n",
                "inv.toml:4: [cdn.boards] `a` is not a board with the cdn role",
            ),
            (
                "unknown cdn policy",
                "[cluster]\nname=\"c\"\n[cdn]\npolicy=\"arc\"\n[[board]]\nname=\"a\"\naddress=\"10.0.0.2\"\nroles=[\"cdn\"]\n",
                "inv.toml:4: [cdn] policy `arc` is unknown (known: lru, s3-fifo)",
            ),
            (
                "bucket replicated on its own board",
                "[cluster]\nname=\"c\"\n[files.avatars]\nboard=\"a\"\nreplica=\"a\"\n[[board]]\nname=\"a\"\naddress=\"10.0.0.2\"\nroles=[\"files\"]\n",
                "inv.toml:5: [files.avatars] replica `a` must be another board with the files role",
            ),
            (
                "vip given by hand",
                "[cluster]\nname=\"c\"\n[[board]]\nname=\"a\"\naddress=\"10.0.0.2\"\nroles=[\"lb\", \"vip\"]\n",
                "board `a`: `vip` is not given by hand",
            ),
            (
                "unknown lb algorithm",
                "[cluster]\nname=\"c\"\n[lb]\nalgorithm=\"random\"\n[[board]]\nname=\"a\"\naddress=\"10.0.0.2\"\nroles=[\"lb\"]\n",
                "inv.toml:4: [lb] algorithm `random` is unknown (known: round-robin, least-conn, ip-hash)",
            ),
            (
                "weight on a board without the app role",
                "[cluster]\nname=\"c\"\n[[board]]\nname=\"a\"\naddress=\"10.0.0.2\"\nroles=[\"cache\"]\nweight=2\n",
                "inv.toml:7: board `a`: weight is an app board's share",
            ),
            (
                "weight out of range",
                "[cluster]\nname=\"c\"\n[[board]]\nname=\"a\"\naddress=\"10.0.0.2\"\nroles=[\"app\"]\nweight=0\n",
                "inv.toml:7: board `a`: weight 0 is out of range (1..=100)",
            ),
            (
                "db group with no board",
                "[cluster]\nname=\"c\"\n[db]\nsemi_sync=true\n[[board]]\nname=\"a\"\naddress=\"10.0.0.2\"\nroles=[\"cache\"]\n",
                "inv.toml:3: [db] describes a database group, but no board has a db role",
            ),
            (
                "db primary outside the group",
                "[cluster]\nname=\"c\"\n[db]\nprimary=\"a\"\n[[board]]\nname=\"a\"\naddress=\"10.0.0.2\"\nroles=[\"cache\"]\n[[board]]\nname=\"b\"\naddress=\"10.0.0.3\"\nroles=[\"db\"]\n",
                "inv.toml:4: [db] primary `a` is not in the db group",
            ),
            (
                "db primary and a different db-master",
                "[cluster]\nname=\"c\"\n[db]\nprimary=\"b\"\n[[board]]\nname=\"a\"\naddress=\"10.0.0.2\"\nroles=[\"db-master\"]\n[[board]]\nname=\"b\"\naddress=\"10.0.0.3\"\nroles=[\"db\"]\n",
                "inv.toml:4: two preferred primaries: [db] primary is `b` but `a` (line 6) has db-master",
            ),
            (
                "unknown key",
                "[cluster]\nname=\"c\"\nflavour=1\n[[board]]\nname=\"a\"\naddress=\"10.0.0.2\"\n",
                "inv.toml:3: unknown field `flavour`",
            ),
            (
                "syntax error",
                "[cluster]\nname=\"c\n",
                "inv.toml:2: ",
            ),
            (
                "no boards",
                "[cluster]\nname=\"c\"\n",
                "no [[board]] defined",
            ),
            (
                "subnet host bits",
                "[cluster]\nname=\"c\"\n[virtual]\nsubnet=\"10.9.0.5/24\"\n[[board]]\nname=\"a\"\naddress=\"10.9.0.2\"\n",
                "inv.toml:4: subnet `10.9.0.5/24` has host bits set (did you mean 10.9.0.0/24?)",
            ),
            (
                "master and replica",
                "[cluster]\nname=\"c\"\n[[board]]\nname=\"a\"\naddress=\"10.0.0.2\"\nroles=[\"db-master\",\"db-replica\"]\n",
                "inv.toml:6: board `a`: a board cannot be both db-master and db-replica",
            ),
        ];
        for (what, text, want) in cases {
            let err = parse(Path::new("inv.toml"), text).expect_err(what);
            let msg = err.to_string();
            assert!(
                msg.contains(want),
                "{what}: expected message containing\n  {want}\ngot\n  {msg}"
            );
            assert!(msg.contains("nothing was changed"), "{what}: {msg}");
        }
    }

    #[test]
    fn virtual_boards_are_sized_by_figures_then_model_then_default() {
        let text = r#"
[cluster]
name = "c"
[virtual]
subnet = "10.9.0.0/24"
[[board]]
name = "plain"
address = "10.9.0.2"
[[board]]
name = "pi3"
address = "10.9.0.3"
model = "Raspberry Pi 3 Model B+"
[[board]]
name = "pi4-small"
address = "10.9.0.4"
model = "pi4"
memory = "256MiB"
[[board]]
name = "orin"
address = "10.9.0.5"
model = "Jetson Orin Nano"
cpus = 1.5
[[board]]
name = "odd"
address = "10.9.0.6"
model = "emulated Raspberry Pi (arm64)"
memory = 536870912
"#;
        let inv = parse(Path::new("i.toml"), text).expect("valid");
        let size = |name: &str| inv.board(name).and_then(|b| b.size).expect("sized");
        assert_eq!(size("plain"), BoardSize::VIRTUAL_DEFAULT);
        assert_eq!(
            size("pi3"),
            BoardSize {
                millicpus: 4000,
                memory_bytes: 1 << 30
            }
        );
        assert_eq!(
            size("pi4-small"),
            BoardSize {
                millicpus: 4000,
                memory_bytes: 256 << 20
            }
        );
        assert_eq!(
            size("orin"),
            BoardSize {
                millicpus: 1500,
                memory_bytes: 8 << 30
            }
        );
        assert_eq!(size("odd"), BoardSize::VIRTUAL_DEFAULT);
        assert_eq!(size("orin").to_string(), "1.5 CPU, 8 GiB");
    }

    #[test]
    fn model_names_and_memory_sizes() {
        assert_eq!(
            model_size("Jetson Nano (Ubuntu 18.04)").map(|s| s.millicpus),
            Some(4000)
        );
        assert_eq!(model_size("Pi 5").map(|s| s.memory_bytes), Some(8 << 30));
        assert_eq!(model_size("x86 box"), None);
        for (text, bytes) in [
            ("256MiB", 256 << 20),
            ("1GiB", 1 << 30),
            ("512M", 512 << 20),
            ("1.5 GiB", 3 << 29),
            ("4096", 4096),
            ("64k", 64 << 10),
        ] {
            assert_eq!(parse_memory(text), Ok(bytes), "{text}");
        }
        assert!(parse_memory("1GB").is_err_and(|e| e.contains("write GiB")));
        assert!(parse_memory("lots").is_err());
        assert!(parse_memory("-1M").is_err());
        assert_eq!(format_bytes(512 << 20), "512 MiB");
        assert_eq!(format_bytes(3 << 29), "1.5 GiB");
    }

    #[test]
    fn bad_sizes_name_line_and_board() {
        let head = "[cluster]\nname=\"c\"\n[virtual]\nsubnet=\"10.9.0.0/24\"\n[[board]]\nname=\"a\"\naddress=\"10.9.0.2\"\n";
        let cases: &[(&str, &str)] = &[
            (
                "cpus=0\n",
                "i.toml:8: board `a`: cpus = 0 must be between 0.01 and 256",
            ),
            ("cpus=300.0\n", "cpus = 300 must be between"),
            (
                "memory=\"1MiB\"\n",
                "i.toml:8: board `a`: memory 1 MiB must be between 32 MiB and 1 TiB",
            ),
            (
                "memory=\"2GB\"\n",
                "i.toml:8: board `a`: memory `2GB`: GB is ambiguous, write GiB",
            ),
            ("memory=\"big\"\n", "memory `big` must look like"),
        ];
        for (line, want) in cases {
            let text = format!("{head}{line}");
            let err = parse(Path::new("i.toml"), &text).expect_err(line);
            assert!(err.to_string().contains(want), "{line}: {err}");
        }
        let real = "[cluster]\nname=\"c\"\n[[board]]\nname=\"a\"\naddress=\"10.9.0.2\"\ncpus=1.0\nmemory=\"1GiB\"\n";
        let err = parse(Path::new("i.toml"), real).expect_err("real board with figures");
        assert_eq!(err.problems().len(), 2, "{err}");
        assert!(
            err.to_string().contains("cpus is only for virtual boards"),
            "{err}"
        );
        let inv = parse(
            Path::new("i.toml"),
            "[cluster]\nname=\"c\"\n[[board]]\nname=\"a\"\naddress=\"10.9.0.2\"\nmodel=\"pi4\"\n",
        )
        .expect("real board");
        assert_eq!(inv.boards[0].size, None);
    }

    #[test]
    fn all_problems_are_reported_at_once() {
        let text =
            "[cluster]\nname=\"c\"\n[[board]]\nname=\"a\"\naddress=\"x..y\"\nroles=[\"nope\"]\n";
        let err = parse(Path::new("i.toml"), text).expect_err("invalid");
        assert_eq!(err.problems().len(), 2, "{err}");
    }

    #[test]
    fn type_errors_come_with_every_other_problem() {
        let text = "[cluster]\nname = \"c\"\n\n[[board]]\nname = \"Bad_Name\"\naddress = \"10.0.0.1\"\nport = 70000\n\n[[board]]\nname = \"b\"\naddress = \"10.0.0.1\"\nroles = [\"dns\"]\nuser = \"-oProxyCommand=x\"\nsudo = 3\n";
        let err = parse(Path::new("i.toml"), text).expect_err("invalid");
        let lines: Vec<(usize, &str)> = err
            .problems()
            .iter()
            .map(|p| (p.line, p.message.as_str()))
            .collect();
        let text = err.to_string();
        // The type error (line 7), the bad name (5), the unknown role (12), the bad user (13),
        // the unknown field (14) and the duplicate address (11): all in one report.
        for (line, needle) in [
            (5, "name must be"),
            (7, "70000"),
            (11, "duplicate address"),
            (12, "unknown role `dns`"),
            (13, "must not start with '-'"),
            (14, "sudo"),
        ] {
            assert!(
                lines.iter().any(|(l, m)| *l == line && m.contains(needle)),
                "line {line} `{needle}` missing from:\n{text}"
            );
        }
    }

    #[test]
    fn login_names_are_checked() {
        assert!(validate_user("pi").is_ok());
        assert!(validate_user("ubuntu.admin_2").is_ok());
        for bad in [
            "",
            "-oProxyCommand=x",
            "a b",
            "root;reboot",
            &"x".repeat(33),
        ] {
            assert!(validate_user(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn subnet_containment() {
        let net = parse_subnet("10.1.2.0/24").expect("subnet");
        assert!(net.contains(Ipv4Addr::new(10, 1, 2, 9)));
        assert!(!net.contains(Ipv4Addr::new(10, 1, 2, 0)));
        assert!(!net.contains(Ipv4Addr::new(10, 1, 2, 255)));
        assert!(!net.contains(Ipv4Addr::new(10, 1, 3, 9)));
    }
}
