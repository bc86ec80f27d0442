//! `lab exercise list|start|check`: the classroom exercises (see [`crate::exercise`]), run
//! through the same commands a student types: `start` writes the student's copy of the
//! starting inventory and runs `lab up` on it, `check` runs `lab load` and judges its
//! summary. Exit code 0 when every bound is met, 1 otherwise, so a teacher can grade a class
//! with a script.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};

use crate::exercise::{self, expect, Exercise};

#[derive(Debug, Args)]
pub struct ExerciseArgs {
    #[command(subcommand)]
    pub command: ExerciseCommand,
}

#[derive(Debug, Subcommand)]
pub enum ExerciseCommand {
    /// The exercises in order, each with its goal and board count.
    List {
        /// Language of the texts (en, ja, ko); default from LANG, else English.
        #[arg(long)]
        lang: Option<String>,
    },
    /// Bring a cluster to exercise N's starting point (your copy of its inventory in
    /// ./exercise-N.toml, then `lab up`) and say what to do, what to watch and what to answer.
    Start(StartArgs),
    /// Measure exercise N's outcome with `lab load` and say what is missing, with the figures.
    Check(CheckArgs),
}

#[derive(Debug, Args)]
pub struct StartArgs {
    /// The exercise's number (`lab exercise list`).
    pub number: u32,
    /// Where your copy of the starting inventory goes. Default: ./exercise-N.toml.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// The cluster's name (several students or exercises on one machine each need their own).
    /// Default: exN.
    #[arg(long)]
    pub name: Option<String>,
    /// Move the cluster to this subnet (e.g. 10.90.7.0/24); each board keeps its host part.
    #[arg(long)]
    pub subnet: Option<String>,
    /// Start over: the copy back to the starting point (your changes overwritten) and a fresh
    /// cluster (the running one taken down, its state dir with its decisions removed).
    #[arg(long)]
    pub reset: bool,
    /// Where `lab up` starts the control plane (passed on as its --listen).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Language of the texts (en, ja, ko).
    #[arg(long)]
    pub lang: Option<String>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The exercise's number.
    pub number: u32,
    /// Your copy of the inventory. Default: ./exercise-N.toml.
    #[arg(short, long, value_name = "FILE")]
    pub inventory: Option<PathBuf>,
    /// Short load runs (the test suite's profile).
    #[arg(long)]
    pub fast: bool,
    /// Your answer, for exercises that ask for one (e.g. the board you found slow).
    #[arg(long, value_name = "BOARD")]
    pub answer: Option<String>,
    /// Language of the texts (en, ja, ko).
    #[arg(long)]
    pub lang: Option<String>,
}

pub async fn run(args: ExerciseArgs) -> anyhow::Result<ExitCode> {
    tokio::task::spawn_blocking(move || match args.command {
        ExerciseCommand::List { lang } => list(lang.as_deref()),
        ExerciseCommand::Start(a) => start(a),
        ExerciseCommand::Check(a) => check(a),
    })
    .await?
}

fn find(number: u32) -> anyhow::Result<Exercise> {
    let dir = exercise::default_dir();
    let all = exercise::load_all(&dir)?;
    let have: Vec<String> = all.iter().map(|e| e.number.to_string()).collect();
    all.into_iter()
        .find(|e| e.number == number)
        .with_context(|| {
            format!(
                "no exercise {number} in {} (there are: {})",
                dir.display(),
                have.join(", ")
            )
        })
}

fn list(lang: Option<&str>) -> anyhow::Result<ExitCode> {
    let lang = exercise::language(lang);
    let all = exercise::load_all(&exercise::default_dir())?;
    let mut text = String::new();
    for e in &all {
        let t = e.text(&lang);
        text.push_str(&format!(
            "{:>2}  {} ({} board{})\n    {}\n",
            e.number,
            t.title,
            e.boards,
            plural(e.boards),
            t.goal
        ));
    }
    text.push_str(&format!(
        "\nStart one with `{} exercise start N`; check it with `{} exercise check N`.\n",
        super::lab_command(),
        super::lab_command()
    ));
    // `lab exercise list | head` closes the pipe early: that is not an error.
    match std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(ExitCode::SUCCESS),
    }
}

fn plural(n: u32) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn start(args: StartArgs) -> anyhow::Result<ExitCode> {
    let e = find(args.number)?;
    let lang = exercise::language(args.lang.as_deref());
    let out = args
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("exercise-{}.toml", e.number)));
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| format!("ex{}", e.number));
    let subnet = match &args.subnet {
        Some(s) => {
            let net = crate::inventory::parse_subnet(s).map_err(anyhow::Error::msg)?;
            Some((net.subnet, net.prefix_len))
        }
        None => None,
    };
    let starting = std::fs::read_to_string(e.inventory_path())
        .with_context(|| format!("reading {}", e.inventory_path().display()))?;
    let title = &e.text(&lang).title;
    let copy = format!(
        "# Exercise {}: {title}. Your copy of its starting point: change it as the exercise\n\
         # says, then `lab apply -i {}`. `lab exercise start {} --reset` starts over.\n{}",
        e.number,
        out.display(),
        e.number,
        exercise::student_inventory(&starting, &name, subnet)?
    );
    // The copy must be a valid inventory before anything is written or started.
    let fresh = crate::inventory::parse(&out, &copy).map_err(|err| anyhow::anyhow!("{err}"))?;
    if args.reset {
        reset_cluster(&out, &fresh)?;
    }
    match std::fs::read_to_string(&out) {
        Ok(existing) if existing == copy => {}
        Ok(_) if !args.reset => bail!(
            "{} has your changes; keep going with `lab apply -i {}`, or start over with --reset",
            out.display(),
            out.display()
        ),
        _ => crate::state::write_atomic(&out, copy.as_bytes(), crate::state::PUBLIC_MODE)?,
    }
    println!("exercise {}: {title}", e.number);
    println!("your inventory: {}", out.display());
    let mut up = Command::new(std::env::current_exe().context("locating the lab binary")?);
    up.arg("up").arg("-i").arg(&out);
    if let Some(listen) = &args.listen {
        up.args(["--listen", listen]);
    }
    let status = up.status().context("running lab up")?;
    if !status.success() {
        bail!("lab up -i {} failed ({status}); see above", out.display());
    }
    print_texts(&e, &lang, &out);
    Ok(ExitCode::SUCCESS)
}

/// `--reset`: the cluster of the student's copy (as it is now, else as it will be) taken
/// down and its state dir removed, so the exercise starts from nothing: no decision kept
/// (a primary promoted by a drill would stay primary), no board's disk.
fn reset_cluster(copy: &Path, fresh: &crate::inventory::Inventory) -> anyhow::Result<()> {
    let current = crate::inventory::load(copy).ok();
    let inv = current.as_ref().unwrap_or(fresh);
    if !inv.is_virtual() || !inv.cluster.state_dir.exists() {
        return Ok(());
    }
    let lab = std::env::current_exe().context("locating the lab binary")?;
    let down = Command::new(lab)
        .args(["down", "--purge", "-i"])
        .arg(&inv.path)
        .stdin(Stdio::null())
        .status()
        .context("running lab down --purge")?;
    if !down.success() {
        bail!(
            "lab down --purge -i {} failed ({down}); nothing was reset",
            inv.path.display()
        );
    }
    std::fs::remove_dir_all(&inv.cluster.state_dir)
        .with_context(|| format!("removing {}", inv.cluster.state_dir.display()))?;
    println!(
        "reset: cluster `{}` taken down, its state ({}) removed",
        inv.cluster.name,
        inv.cluster.state_dir.display()
    );
    Ok(())
}

fn print_texts(e: &Exercise, lang: &str, inventory: &Path) {
    let t = e.text(lang);
    let rule = "-".repeat(72);
    println!("\n{rule}\nExercise {}: {}\n{}\n", e.number, t.title, t.goal);
    println!("Do:\n{}", t.steps.trim_end());
    println!("\nWatch: {}", t.watch);
    println!("\nAnswer: {}", t.question);
    println!(
        "\nWhen you are done: {} exercise check {} -i {}\n{rule}",
        super::lab_command(),
        e.number,
        inventory.display()
    );
}

fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let e = find(args.number)?;
    let lang = exercise::language(args.lang.as_deref());
    let inventory = args
        .inventory
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("exercise-{}.toml", e.number)));
    if !inventory.is_file() {
        bail!(
            "{} does not exist: run `lab exercise start {}` first (or pass -i FILE)",
            inventory.display(),
            e.number
        );
    }
    println!("exercise {}: {}", e.number, e.text(&lang).title);
    let mut missed = 0usize;
    let mut judged = 0usize;
    for (i, c) in e.checks.iter().enumerate() {
        let findings = match (&c.expect, &c.answer) {
            (None, None) if !c.apart.is_empty() => {
                println!("check: {}", c.name);
                match running_roles(&inventory) {
                    Ok(running) => expect::judge_apart(&c.apart, &running),
                    Err(err) => vec![expect::Finding {
                        passed: false,
                        text: format!("could not ask the boards what they run: {err:#}"),
                    }],
                }
            }
            (Some(bounds), _) => {
                let seconds = if args.fast { c.fast_seconds } else { c.seconds };
                println!(
                    "check: {} (lab load {} for {seconds} s)",
                    c.name,
                    c.load.join(" ")
                );
                match measure(&inventory, &c.load, seconds, &c.during, i) {
                    Ok((run, failed_actions)) => {
                        let killed: Vec<&str> = c
                            .during
                            .iter()
                            .filter(|a| a.lab.first().is_some_and(|verb| verb == "kill"))
                            .filter_map(|a| a.lab.get(1).map(String::as_str))
                            .collect();
                        let mut findings = failed_actions;
                        findings.extend(expect::judge_drill(&killed, &run));
                        findings.extend(expect::judge(bounds, &run));
                        findings
                    }
                    Err(err) => vec![expect::Finding {
                        passed: false,
                        text: format!("the load run did not finish: {err:#}"),
                    }],
                }
            }
            (None, Some(wanted)) => {
                println!("check: {}", c.name);
                vec![judge_answer(args.answer.as_deref(), wanted, e.number)]
            }
            (None, None) => Vec::new(),
        };
        for f in &findings {
            println!("  {} {}", if f.passed { "ok  " } else { "MISS" }, f.text);
            judged += 1;
            missed += usize::from(!f.passed);
        }
    }
    if missed == 0 {
        println!(
            "exercise {}: passed ({judged} of {judged} bounds met)",
            e.number
        );
        Ok(ExitCode::SUCCESS)
    } else {
        println!(
            "exercise {}: not yet: {missed} of {judged} bounds missed (see MISS above)",
            e.number
        );
        Ok(ExitCode::from(1))
    }
}

/// What each board's agent says runs there (`lab status --json`): board, roles running.
fn running_roles(inventory: &Path) -> anyhow::Result<Vec<(String, Vec<lab_api::roles::Role>)>> {
    let lab = std::env::current_exe().context("locating the lab binary")?;
    let out = Command::new(lab)
        .args(["status", "--json", "-i"])
        .arg(inventory)
        .stdin(Stdio::null())
        .output()
        .context("running lab status")?;
    if !out.status.success() {
        bail!(
            "lab status failed: {}",
            crate::report::last_lines(&String::from_utf8_lossy(&out.stderr), 3)
        );
    }
    #[derive(serde::Deserialize)]
    struct Board {
        board: String,
        health: Option<lab_api::Health>,
    }
    let boards: Vec<Board> =
        serde_json::from_slice(&out.stdout).context("reading lab status --json")?;
    Ok(boards
        .into_iter()
        .map(|b| {
            let running = b
                .health
                .map(|h| {
                    h.roles
                        .into_iter()
                        .filter(|r| r.state == lab_api::spec::RoleState::Running)
                        .map(|r| r.role)
                        .collect()
                })
                .unwrap_or_default();
            (b.board, running)
        })
        .collect())
}

/// The student's `--answer` against the exercise's.
fn judge_answer(given: Option<&str>, wanted: &str, number: u32) -> expect::Finding {
    match given {
        None => expect::Finding {
            passed: false,
            text: format!(
                "no answer given: name the board with `lab exercise check {number} --answer BOARD`"
            ),
        },
        Some(board) if board == wanted => expect::Finding {
            passed: true,
            text: format!("{board} it is"),
        },
        Some(board) => expect::Finding {
            passed: false,
            text: format!(
                "{board} is not the one: compare each board's CPU with its CPUS in `lab top` while `lab load` runs"
            ),
        },
    }
}

/// One `lab load` run against the student's cluster, with the check's actions done during
/// it; its summary's figures and its seconds, and a failed finding for each action that
/// failed (a drill whose plug could not be pulled measured nothing).
fn measure(
    inventory: &Path,
    load: &[String],
    seconds: u32,
    during: &[exercise::Action],
    index: usize,
) -> anyhow::Result<(expect::RunFigures, Vec<expect::Finding>)> {
    let out = std::env::temp_dir().join(format!(
        "lab-exercise-{}-{index}-{}",
        std::process::id(),
        crate::metrics::events::now_ms()
    ));
    let result = (|| {
        let lab = std::env::current_exe().context("locating the lab binary")?;
        let mut child = Command::new(&lab)
            .arg("load")
            .arg("-i")
            .arg(inventory)
            .args(load)
            .args(["--duration", &format!("{seconds}s"), "--json", "--out"])
            .arg(&out)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("running lab load")?;
        let stderr = child.stderr.take().context("lab load's stderr")?;
        let (first_second, measured) = std::sync::mpsc::channel();
        // The live lines go to stderr; the first ("   1s ...") says the measured run began
        // (after the app setup), which is what the actions' times count from.
        let reader = std::thread::spawn(move || {
            use std::io::BufRead;
            let mut lines = Vec::new();
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if crate::load::progress::is_first_second(&line) {
                    let _ = first_second.send(Instant::now());
                }
                lines.push(line);
            }
            lines
        });
        let mut failed_actions = Vec::new();
        if !during.is_empty() {
            if let Ok(began) = measured.recv_timeout(SETUP_LIMIT) {
                failed_actions = do_actions(&lab, inventory, during, began);
            }
        }
        let status = child.wait().context("waiting for lab load")?;
        let stderr = reader.join().unwrap_or_default().join("\n");
        let summary = out.join(crate::load::files::SUMMARY_JSON);
        let text = std::fs::read_to_string(&summary).map_err(|_| {
            anyhow::anyhow!(
                "lab load wrote no summary ({status}): {}",
                crate::report::last_lines(&stderr, 6)
            )
        })?;
        let mut figures: expect::RunFigures = serde_json::from_str(&text)
            .with_context(|| format!("reading {}", summary.display()))?;
        let timeline = out.join(crate::load::files::TIMELINE_JSON);
        figures.seconds = serde_json::from_str(
            &std::fs::read_to_string(&timeline)
                .with_context(|| format!("reading {}", timeline.display()))?,
        )
        .with_context(|| format!("reading {}", timeline.display()))?;
        Ok((figures, failed_actions))
    })();
    let _ = std::fs::remove_dir_all(&out);
    result
}

/// Longest the app setup of a check's load may take before its actions are given up.
const SETUP_LIMIT: Duration = Duration::from_secs(120);

/// Run each action at its time (seconds after `began`), saying what it did; a failed
/// finding for each one that failed.
fn do_actions(
    lab: &Path,
    inventory: &Path,
    during: &[exercise::Action],
    began: Instant,
) -> Vec<expect::Finding> {
    let mut failed = Vec::new();
    let mut actions: Vec<&exercise::Action> = during.iter().collect();
    actions.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
    for action in actions {
        let due = began + Duration::from_secs_f64(action.at_s);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let done = Command::new(lab)
            .args(&action.lab)
            .arg("-i")
            .arg(inventory)
            .stdin(Stdio::null())
            .output();
        let said = match &done {
            Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("done")
                .to_owned(),
            Ok(o) => format!(
                "failed: {}",
                crate::report::last_lines(&String::from_utf8_lossy(&o.stderr), 2)
            ),
            Err(e) => format!("could not run: {e}"),
        };
        println!(
            "  at +{:.0} s: lab {}: {said}",
            action.at_s + 1.0,
            action.lab.join(" ")
        );
        if !matches!(&done, Ok(o) if o.status.success()) {
            failed.push(expect::Finding {
                passed: false,
                text: format!(
                    "the drill's `lab {}` {said}: nothing was drilled (on a fresh cluster: \
                     `lab exercise start N --reset`)",
                    action.lab.join(" ")
                ),
            });
        }
    }
    failed
}
