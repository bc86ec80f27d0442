//! Classroom exercises: each step of "from one server to millions of users" as data a teacher
//! can read, change and add (`inventory/exercises/NN-slug/`): `exercise.toml` (number, board
//! count, texts per language, checks) and `inventory.toml` (the starting cluster).
//!
//! This module loads and validates them, and makes a student's copy of the starting
//! inventory ([`student_inventory`]: own cluster name, subnet and state directory). Checks
//! are evaluated in [`expect`]; the commands that run the real CLI are in `cli/exercise.rs`.

pub mod expect;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::Deserialize;

pub use self::expect::Expect;

/// The exercises shipped with this checkout, unless `LAB_EXERCISES` names another directory.
pub fn default_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("LAB_EXERCISES").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let here = PathBuf::from("inventory/exercises");
    if here.is_dir() {
        return here;
    }
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../inventory/exercises"
    ))
}

/// One exercise, as its files say.
#[derive(Debug, Clone)]
pub struct Exercise {
    /// Its directory (holding `exercise.toml` and `inventory.toml`).
    pub dir: PathBuf,
    pub number: u32,
    /// How many boards the starting cluster has.
    pub boards: u32,
    /// Texts by language code (`en`, `ja`, `ko`).
    pub texts: BTreeMap<String, Text>,
    /// The English texts (every exercise has them; other languages fall back to them).
    pub english: Text,
    /// What `lab exercise check` measures, in order.
    pub checks: Vec<Check>,
}

/// What a student reads.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Text {
    pub title: String,
    /// One line: what the exercise is for.
    pub goal: String,
    /// What to do, step by step.
    #[serde(rename = "do")]
    pub steps: String,
    /// Where to look while doing it.
    pub watch: String,
    /// The question to answer.
    pub question: String,
}

/// One check: a measured `lab load` run and what its summary must show, or the answer the
/// student must give (`lab exercise check N --answer ...`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Check {
    /// What is checked, in words.
    pub name: String,
    /// Extra `lab load` arguments (the mix, rate, keys...).
    #[serde(default)]
    pub load: Vec<String>,
    /// How long the run lasts, in seconds; `fast_seconds` with `--fast`.
    #[serde(default)]
    pub seconds: u32,
    #[serde(default)]
    pub fast_seconds: u32,
    #[serde(default)]
    pub expect: Option<Expect>,
    /// The answer expected (a board's name), for checks a student answers.
    pub answer: Option<String>,
    /// What the check does to the cluster while its load runs (a drill).
    #[serde(default)]
    pub during: Vec<Action>,
    /// Roles that must run, each on a board of its own (`["app", "db-master"]`): judged
    /// from what the agents say they run (`lab status`), not from the inventory.
    #[serde(default)]
    pub apart: Vec<lab_api::roles::Role>,
}

/// A `lab` command run during a check's load, `at_s` seconds after its first measured second.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Action {
    pub at_s: f64,
    /// The command's arguments (`["kill", "db-1"]`); the student's inventory is added.
    pub lab: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExercise {
    number: u32,
    boards: u32,
    text: BTreeMap<String, Text>,
    check: Vec<Check>,
}

/// Every exercise under `dir`, by number. A directory without `exercise.toml` is skipped; a
/// broken one is an error naming its file (and line, for TOML errors).
pub fn load_all(dir: &Path) -> anyhow::Result<Vec<Exercise>> {
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("reading the exercises in {}", dir.display()))?;
    let mut dirs: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("exercise.toml").is_file())
        .collect();
    dirs.sort();
    let mut all = Vec::new();
    for d in dirs {
        all.push(load(&d)?);
    }
    all.sort_by_key(|e| e.number);
    for pair in all.windows(2) {
        if pair[0].number == pair[1].number {
            bail!(
                "{} and {} both say they are exercise {}",
                pair[0].dir.display(),
                pair[1].dir.display(),
                pair[0].number
            );
        }
    }
    Ok(all)
}

/// The exercise in `dir`.
pub fn load(dir: &Path) -> anyhow::Result<Exercise> {
    let path = dir.join("exercise.toml");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let raw: RawExercise = toml::from_str(&text).map_err(|e| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1)
            .unwrap_or(1);
        anyhow::anyhow!("{}:{line}: {}", path.display(), e.message())
    })?;
    let Some(english) = raw.text.get("en").cloned() else {
        bail!("{}: [text.en] is missing (English first)", path.display());
    };
    if raw.check.is_empty() {
        bail!(
            "{}: no [[check]]: a student could not be told how they did",
            path.display()
        );
    }
    for check in &raw.check {
        match (&check.expect, &check.answer, check.apart.len()) {
            (Some(_), None, 0) => {}
            (None, Some(_), 0) | (None, None, 2..) if check.load.is_empty() => continue,
            _ => bail!(
                "{}: check `{}` needs one of `expect` (with a load run), `answer`, or `apart` \
                 (two roles or more)",
                path.display(),
                check.name
            ),
        }
        if check.fast_seconds == 0 || check.seconds < check.fast_seconds {
            bail!(
                "{}: check `{}`: seconds ({}) must be at least fast_seconds ({}), which is at least 1",
                path.display(),
                check.name,
                check.seconds,
                check.fast_seconds
            );
        }
        if let Some(action) = check
            .during
            .iter()
            .find(|a| !(0.0..f64::from(check.fast_seconds)).contains(&a.at_s) || a.lab.is_empty())
        {
            bail!(
                "{}: check `{}`: an action at {} s must name a lab command and fall inside the fast run ({} s)",
                path.display(),
                check.name,
                action.at_s,
                check.fast_seconds
            );
        }
        if let Some(problem) = check.expect.as_ref().and_then(Expect::problem) {
            bail!("{}: check `{}`: {problem}", path.display(), check.name);
        }
    }
    let inventory = dir.join("inventory.toml");
    if !inventory.is_file() {
        bail!("{}: the starting inventory.toml is missing", dir.display());
    }
    Ok(Exercise {
        dir: dir.to_path_buf(),
        number: raw.number,
        boards: raw.boards,
        texts: raw.text,
        english,
        checks: raw.check,
    })
}

impl Exercise {
    /// The texts in `lang`, else English.
    pub fn text(&self, lang: &str) -> &Text {
        self.texts.get(lang).unwrap_or(&self.english)
    }

    /// The starting inventory, as written in the exercise.
    pub fn inventory_path(&self) -> PathBuf {
        self.dir.join("inventory.toml")
    }
}

/// The language to show: `--lang`, else the start of `LANG` when an exercise text exists
/// for it (ja_JP.UTF-8 -> ja), else English.
pub fn language(given: Option<&str>) -> String {
    if let Some(lang) = given {
        return lang.to_owned();
    }
    std::env::var("LANG")
        .ok()
        .and_then(|l| l.get(..2).map(str::to_owned))
        .filter(|l| l.chars().all(|c| c.is_ascii_lowercase()))
        .unwrap_or_else(|| "en".to_owned())
}

/// A student's copy of the starting inventory: the cluster renamed to `name`, its subnet
/// moved to `subnet` (each board keeping its host part) and its state kept in `state-<name>`
/// next to the copy, so several exercises (or students) on one machine do not collide.
pub fn student_inventory(
    starting: &str,
    name: &str,
    subnet: Option<(Ipv4Addr, u8)>,
) -> anyhow::Result<String> {
    let mut table: toml::Table = toml::from_str(starting).context("the starting inventory")?;
    let cluster = table
        .get_mut("cluster")
        .and_then(toml::Value::as_table_mut)
        .context("the starting inventory has no [cluster]")?;
    cluster.insert("name".into(), name.into());
    cluster.insert("state_dir".into(), format!("state-{name}").into());
    if let Some((net, prefix)) = subnet {
        let old = table
            .get("virtual")
            .and_then(|v| v.get("subnet"))
            .and_then(toml::Value::as_str)
            .and_then(|s| crate::inventory::parse_subnet(s).ok())
            .context("the starting inventory has no [virtual] subnet to move")?;
        let host_mask = u32::MAX.checked_shr(u32::from(prefix)).unwrap_or(0);
        if let Some(v) = table.get_mut("virtual").and_then(toml::Value::as_table_mut) {
            v.insert("subnet".into(), format!("{net}/{prefix}").into());
        }
        for board in table
            .get_mut("board")
            .and_then(toml::Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            let Some(addr) = board
                .get("address")
                .and_then(toml::Value::as_str)
                .and_then(|a| a.parse::<Ipv4Addr>().ok())
            else {
                continue;
            };
            let host = (u32::from(addr) & !u32::from(old.subnet)) & host_mask;
            let moved = Ipv4Addr::from(u32::from(net) | host);
            if let Some(b) = board.as_table_mut() {
                b.insert("address".into(), moved.to_string().into());
            }
        }
    }
    Ok(toml::to_string(&table)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_exercises_load() {
        let all = load_all(&default_dir()).expect("the shipped exercises");
        assert!(all.len() >= 3, "{} exercises", all.len());
        let numbers: Vec<u32> = all.iter().map(|e| e.number).collect();
        assert!(numbers.windows(2).all(|w| w[0] < w[1]), "{numbers:?}");
        for e in &all {
            let inv = crate::inventory::load(&e.inventory_path())
                .unwrap_or_else(|err| panic!("exercise {}: {err}", e.number));
            assert_eq!(inv.boards.len() as u32, e.boards, "exercise {}", e.number);
        }
        for e in all.iter().filter(|e| e.number <= 3) {
            for lang in ["ja", "ko"] {
                assert!(
                    e.texts.contains_key(lang),
                    "exercise {} has no {lang}",
                    e.number
                );
            }
        }
    }

    #[test]
    fn a_student_copy_moves_the_cluster() {
        let starting = "[cluster]\nname = \"ex1\"\nssh_key = \"managed\"\n\n[virtual]\nsubnet = \"10.78.1.0/24\"\n\n[[board]]\nname = \"server-1\"\naddress = \"10.78.1.10\"\nroles = [\"lb\"]\n";
        let copy = student_inventory(starting, "ex1-ana", Some((Ipv4Addr::new(10, 90, 7, 0), 24)))
            .expect("copy");
        let inv = crate::inventory::parse(Path::new("/c/ex.toml"), &copy).expect("valid");
        assert_eq!(inv.cluster.name, "ex1-ana");
        assert_eq!(inv.cluster.state_dir, PathBuf::from("/c/state-ex1-ana"));
        assert_eq!(inv.boards[0].address, "10.90.7.10");
        assert_eq!(
            inv.virtual_net.map(|n| n.subnet),
            Some(Ipv4Addr::new(10, 90, 7, 0))
        );
    }

    #[test]
    fn a_broken_exercise_names_its_file_and_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ex = dir.path().join("01-x");
        std::fs::create_dir(&ex).expect("mkdir");
        std::fs::write(ex.join("exercise.toml"), "number = 1\nboards = \"one\"\n").expect("write");
        let err = load(&ex).expect_err("broken").to_string();
        assert!(err.contains("exercise.toml:2"), "{err}");
    }
}
