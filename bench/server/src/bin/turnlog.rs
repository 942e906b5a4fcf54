//! What the turn log adds per token, in one process, without the network's noise: many turns
//! stream paced tokens to a reader (as the answer task streams to the HTTP layer), with and
//! without a `Recorder` writing every event to the SQLite turn log in its batches. Arms alternate
//! round by round; the process's CPU time (user + system) per token of each arm, and the
//! difference, are printed as a Markdown table.
//!
//!   conversa-bench-turnlog [--turns 50] [--tokens 2000] [--gap-us 1000] [--rounds 3]

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use conversa::domain::{ConversationId, MessageId, Owner};
use conversa::service::chat::recorder::Recorder;
use conversa::service::chat::{TurnEvent, TurnMeta};
use conversa::store::sqlite::SqliteStore;
use conversa::turns::sqlite::SqliteTurnLog;
use conversa::turns::TurnLog;
use tokio::sync::mpsc;

struct Options {
    turns: usize,
    tokens: usize,
    gap: Duration,
    rounds: usize,
}

fn options() -> anyhow::Result<Options> {
    let mut o = Options {
        turns: 50,
        tokens: 2000,
        gap: Duration::from_micros(1000),
        rounds: 3,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| anyhow!("{flag} needs a value"))?;
        match flag.as_str() {
            "--turns" => o.turns = value.parse()?,
            "--tokens" => o.tokens = value.parse()?,
            "--gap-us" => o.gap = Duration::from_micros(value.parse()?),
            "--rounds" => o.rounds = value.parse()?,
            _ => bail!("unknown option {flag}"),
        }
    }
    if o.turns == 0 || o.tokens == 0 || o.rounds == 0 {
        bail!("--turns, --tokens and --rounds must be at least 1");
    }
    Ok(o)
}

/// The process's CPU time so far (user + system), from `/proc/self/stat`.
fn cpu() -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // Fields after the command name (which is in parentheses): utime is the 14th field overall.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| anyhow!("unexpected /proc/self/stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields
        .get(11)
        .zip(fields.get(12))
        .map(|(u, s)| -> anyhow::Result<u64> { Ok(u.parse::<u64>()? + s.parse::<u64>()?) })
        .ok_or_else(|| anyhow!("unexpected /proc/self/stat"))??;
    // The kernel's USER_HZ is 100 on Linux.
    Ok(Duration::from_millis(ticks * 10))
}

fn meta(i: usize) -> TurnMeta {
    TurnMeta {
        conversation_id: ConversationId::from(format!("c{i}").as_str()),
        user_message_id: MessageId::generate(),
        assistant_message_id: MessageId::generate(),
        created_conversation: false,
        files: vec![],
        model: "bench".into(),
    }
}

/// One turn: `tokens` paced tokens sent to a reader task, and to the log when there is one.
async fn turn(i: usize, o: &Options, log: Option<Arc<dyn TurnLog>>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(u64, TurnEvent)>();
    let reader = tokio::spawn(async move {
        let mut bytes = 0;
        while let Some((_, TurnEvent::Token(t))) = rx.recv().await {
            bytes += t.len();
        }
        bytes
    });
    let meta = meta(i);
    let recorder = log.map(|log| Recorder::start(log, Owner::local(), &meta));
    let mut ticker = tokio::time::interval(o.gap);
    for n in 0..o.tokens {
        ticker.tick().await;
        let event = TurnEvent::Token(format!(" word{n}"));
        let id = n as u64 + 2;
        if let Some(r) = &recorder {
            r.record(id, &event);
        }
        if tx.send((id, event)).is_err() {
            break;
        }
    }
    drop(tx);
    if let Some(r) = recorder {
        r.finish().await;
    }
    let _ = reader.await;
}

async fn arm(o: &Options, log: Option<Arc<dyn TurnLog>>) -> anyhow::Result<(Duration, Duration)> {
    let started = Instant::now();
    let before = cpu()?;
    let turns: Vec<_> = (0..o.turns)
        .map(|i| {
            let log = log.clone();
            async move { turn(i, o, log).await }
        })
        .collect();
    futures::future::join_all(turns).await;
    Ok((cpu()? - before, started.elapsed()))
}

fn main() -> anyhow::Result<()> {
    let o = options()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let dir = tempfile::tempdir()?;
        let store = SqliteStore::open(&dir.path().join("bench.db")).context("the SQLite store")?;
        let log: Arc<dyn TurnLog> = Arc::new(SqliteTurnLog::new(store));
        let tokens = (o.turns * o.tokens) as f64;
        println!(
            "{} turns at once × {} tokens, one every {} µs; load average at the start {}\n",
            o.turns,
            o.tokens,
            o.gap.as_micros(),
            std::fs::read_to_string("/proc/loadavg")?
                .split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        );
        println!("| round | without the log: CPU per token | with the log: CPU per token | added by the log | wall time (without / with) |");
        println!("|---|---|---|---|---|");
        let mut added = Vec::new();
        for round in 1..=o.rounds {
            // Alternate which arm goes first.
            let (without, with) = if round % 2 == 1 {
                let a = arm(&o, None).await?;
                let b = arm(&o, Some(log.clone())).await?;
                (a, b)
            } else {
                let b = arm(&o, Some(log.clone())).await?;
                let a = arm(&o, None).await?;
                (a, b)
            };
            let per = |d: Duration| d.as_secs_f64() * 1e6 / tokens;
            added.push(per(with.0) - per(without.0));
            println!(
                "| {round} | {:.2} µs | {:.2} µs | {:+.2} µs | {:.1} / {:.1} s |",
                per(without.0),
                per(with.0),
                per(with.0) - per(without.0),
                without.1.as_secs_f64(),
                with.1.as_secs_f64()
            );
        }
        added.sort_by(f64::total_cmp);
        println!(
            "\nAdded by the log per token, median of {} rounds: {:+.2} µs of CPU.",
            added.len(),
            added[added.len() / 2]
        );
        anyhow::Ok(())
    })
}
