//! `lab link-shaper`: the process that makes a virtual link slow, lossy or narrow. It moves
//! Ethernet frames between two host interfaces through raw packet sockets (both directions),
//! holding each frame until its [`Pacer`] says it may leave.
//!
//! This is what `tc qdisc ... netem` does in the kernel; it is done here because the kernels
//! virtual clusters run on do not all carry netem (this project's CI machines do not), and one
//! way that always works beats two. The interfaces that transmit into the shaper have their
//! checksum and segmentation offloads off (see `link::mod`), so every frame read is a whole,
//! checksummed frame of at most the MTU and can be sent on as it is.
//!
//! Per direction, one thread reads (drop or stamp with a due time, queue) and one sends at
//! the due time. A socket does not see the frames it sent itself, so nothing loops. The
//! process ends when either interface disappears; it is otherwise stopped with SIGKILL.

use std::process::ExitCode;
use std::sync::mpsc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use pnet_datalink::{Channel, DataLinkReceiver, DataLinkSender};

use super::pacer::Pacer;
use super::profile::{self, LinkProfile};

/// Frames queued per direction beyond which new ones are dropped.
const QUEUE_FRAMES: usize = 4096;
/// Largest frame read (the MTU plus headers, with room).
const FRAME_BUFFER: usize = 16 * 1024;

/// The start of the line a shaper logs once both its sockets are open.
pub const READY: &str = "lab link-shaper: forwarding";

/// What `lab link-shaper` is told.
#[derive(Debug, Clone, PartialEq)]
pub struct ShaperArgs {
    /// The board or data-center directory it serves (also how `lab down` finds it).
    pub dir: String,
    /// One interface.
    pub a: String,
    /// The other.
    pub b: String,
    /// What each direction does.
    pub profile: LinkProfile,
}

impl ShaperArgs {
    /// The arguments following `link-shaper`.
    pub fn to_args(&self) -> Vec<String> {
        let p = &self.profile;
        let mut args = vec![
            "--dir".to_owned(),
            self.dir.clone(),
            "--between".to_owned(),
            self.a.clone(),
            self.b.clone(),
            "--delay".to_owned(),
            profile::format_duration(p.delay),
            "--jitter".to_owned(),
            profile::format_duration(p.jitter),
            "--loss".to_owned(),
            profile::format_loss(p.loss_ppm),
        ];
        if let Some(bps) = p.rate_bps {
            args.push("--rate".to_owned());
            args.push(profile::format_rate(bps));
        }
        args
    }

    /// Parse the arguments following `link-shaper`.
    pub fn parse(args: &[String]) -> Result<Self, String> {
        let mut dir = None;
        let mut ends = None;
        let mut profile = LinkProfile::default();
        let mut iter = args.iter();
        while let Some(flag) = iter.next() {
            let mut value = || iter.next().ok_or_else(|| format!("{flag} needs a value"));
            match flag.as_str() {
                "--dir" => dir = Some(value()?.clone()),
                "--between" => {
                    let a = value()?.clone();
                    let b = iter.next().ok_or("--between needs two interfaces")?.clone();
                    ends = Some((a, b));
                }
                "--delay" => profile.delay = profile::parse_delay(value()?)?,
                "--jitter" => profile.jitter = profile::parse_delay(value()?)?,
                "--loss" => profile.loss_ppm = profile::parse_loss(value()?)?,
                "--rate" => profile.rate_bps = Some(profile::parse_rate(value()?)?),
                other => return Err(format!("unknown argument {other}")),
            }
        }
        let (a, b) = ends.ok_or("--between is required")?;
        Ok(Self {
            dir: dir.ok_or("--dir is required")?,
            a,
            b,
            profile,
        })
    }
}

/// Entry point of the hidden `lab link-shaper` subcommand.
pub fn link_shaper_main(args: Vec<String>) -> ExitCode {
    let args = match ShaperArgs::parse(&args) {
        Ok(args) => args,
        Err(reason) => {
            eprintln!("lab link-shaper: {reason}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("lab link-shaper [{} <-> {}]: {err:#}", args.a, args.b);
            ExitCode::FAILURE
        }
    }
}

fn run(args: &ShaperArgs) -> Result<()> {
    let (a_tx, a_rx) = open(&args.a)?;
    let (b_tx, b_rx) = open(&args.b)?;
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    // Both sockets are open: this line is what its starter waits for (READY).
    eprintln!("{READY} {} <-> {}: {}", args.a, args.b, args.profile);
    let (done_tx, done_rx) = mpsc::channel::<String>();
    let directions = [
        (
            format!("{} -> {}", args.a, args.b),
            a_rx,
            b_tx,
            seed,
            args.a.clone(),
        ),
        (
            format!("{} -> {}", args.b, args.a),
            b_rx,
            a_tx,
            seed ^ 0x5555,
            args.b.clone(),
        ),
    ];
    for (name, rx, tx, seed, rx_name) in directions {
        let pacer = Pacer::new(args.profile, seed);
        let done = done_tx.clone();
        std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || {
                let why = forward(rx, tx, pacer, &rx_name);
                let _ = done.send(format!("{name}: {why}"));
            })
            .context("start a shaper thread")?;
    }
    // Either direction ending (its interface gone) ends the link.
    let why = done_rx
        .recv()
        .unwrap_or_else(|_| "both directions ended".to_owned());
    bail!("{why}")
}

type Ends = (Box<dyn DataLinkSender>, Box<dyn DataLinkReceiver>);

fn open(name: &str) -> Result<Ends> {
    let interface = pnet_datalink::interfaces()
        .into_iter()
        .find(|i| i.name == name)
        .with_context(|| format!("no interface {name}"))?;
    let config = pnet_datalink::Config {
        read_buffer_size: FRAME_BUFFER,
        write_buffer_size: FRAME_BUFFER,
        promiscuous: true,
        ..Default::default()
    };
    match pnet_datalink::channel(&interface, config)
        .with_context(|| format!("open a packet socket on {name}"))?
    {
        Channel::Ethernet(tx, rx) => Ok((tx, rx)),
        _ => bail!("{name}: not an Ethernet channel"),
    }
}

/// Read frames from `rx`, pace them, send them on `tx`; returns why it stopped.
fn forward(
    mut rx: Box<dyn DataLinkReceiver>,
    tx: Box<dyn DataLinkSender>,
    mut pacer: Pacer,
    rx_name: &str,
) -> String {
    let (queue_tx, queue_rx) = mpsc::sync_channel::<(Instant, Vec<u8>)>(QUEUE_FRAMES);
    let sender = std::thread::spawn(move || send_when_due(queue_rx, tx));
    let why = loop {
        match rx.next() {
            Ok(frame) => {
                let Some(due) = pacer.admit(Instant::now(), frame.len()) else {
                    continue;
                };
                match queue_tx.try_send((due, frame.to_vec())) {
                    Ok(()) | Err(mpsc::TrySendError::Full(_)) => {}
                    Err(mpsc::TrySendError::Disconnected(_)) => {
                        break "the sender stopped".to_owned()
                    }
                }
            }
            // A link going down reports ENETDOWN once; the socket works again when it is up.
            Err(err) if interface_exists(rx_name) => {
                if err.kind() != std::io::ErrorKind::Interrupted {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
            }
            Err(err) => break format!("{rx_name} is gone ({err})"),
        }
    };
    drop(queue_tx);
    let _ = sender.join();
    why
}

fn send_when_due(queue: mpsc::Receiver<(Instant, Vec<u8>)>, mut tx: Box<dyn DataLinkSender>) {
    while let Ok((due, frame)) = queue.recv() {
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        // A frame sent into a link that is down is lost, as on a cable.
        let _ = tx.send_to(&frame, None);
    }
}

fn interface_exists(name: &str) -> bool {
    std::path::Path::new("/sys/class/net").join(name).exists()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn arguments_round_trip() {
        let args = ShaperArgs {
            dir: "/s/virtual/pi-1".into(),
            a: "lv0123abcd".into(),
            b: "ls0123abcd".into(),
            profile: LinkProfile {
                delay: Duration::from_millis(30),
                jitter: Duration::from_millis(5),
                loss_ppm: 10_000,
                rate_bps: Some(100_000_000),
            },
        };
        assert_eq!(ShaperArgs::parse(&args.to_args()), Ok(args));
        assert!(ShaperArgs::parse(&["--dir".into()]).is_err());
        assert!(ShaperArgs::parse(&["--dir".into(), "/d".into()])
            .is_err_and(|e| e.contains("--between")));
    }
}
