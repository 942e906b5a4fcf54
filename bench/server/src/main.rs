//! `conversa-bench`: measures what the Conversa server adds to a model's stream (time to first token
//! and per token, against calling the model directly) and how it holds 1,000 concurrent streams;
//! prints the results as Markdown.
//!
//! See `scripts/bench-server.sh` for the usual run and `--help` for the knobs.

mod client;
mod fake;
mod server;
mod stats;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};

use client::{Protocol, StreamResult, Target};
use fake::Plan;
use server::LocalServer;
use stats::{ms, us, us_diff, Samples};

const HELP: &str = "conversa-bench: server overhead and concurrency benchmarks

Options (defaults in brackets):
  --server PATH          the conversa-local binary [next to this one]
  --streams N            measured streams per target, sequential [200]
  --warmup N             warm-up streams per target [20]
  --tokens N             tokens per measured stream [200]
  --gap-us A-B           gap before each token, microseconds [0-2000]
  --concurrency N        simultaneous streams in the load run; 0 skips it [1000]
  --load-tokens N        tokens per stream in the load run [100]
  --load-gap-us A-B      gap before each token in the load run [10000-30000]
  --load-targets LIST    targets of the load run, comma-separated names [server,direct]
  --fake-bind ADDR       where the fake model listens [127.0.0.1:0]
  --proxy NAME=URL       another OpenAI-compatible endpoint fronting the fake model (its /v1 base),
                         measured like the others (repeatable)
  --proxy-model NAME=M   the model name to send to proxy NAME [gpt-4o]
";

struct Options {
    server: PathBuf,
    streams: u32,
    warmup: u32,
    tokens: u32,
    gap: (u64, u64),
    concurrency: u32,
    load_tokens: u32,
    load_gap: (u64, u64),
    load_targets: Vec<String>,
    fake_bind: SocketAddr,
    proxies: Vec<(String, String)>,
    proxy_models: Vec<(String, String)>,
}

fn range(v: &str) -> anyhow::Result<(u64, u64)> {
    let (a, b) = v
        .split_once('-')
        .ok_or_else(|| anyhow!("expected A-B, got {v}"))?;
    let (a, b) = (a.parse()?, b.parse()?);
    if a > b {
        bail!("{v}: the first bound is larger");
    }
    Ok((a, b))
}

fn options() -> anyhow::Result<Option<Options>> {
    let beside = std::env::current_exe()?.with_file_name("conversa-local");
    let mut o = Options {
        server: beside,
        streams: 200,
        warmup: 20,
        tokens: 200,
        gap: (0, 2000),
        concurrency: 1000,
        load_tokens: 100,
        load_gap: (10_000, 30_000),
        load_targets: vec!["server".into(), "direct".into()],
        fake_bind: "127.0.0.1:0".parse()?,
        proxies: vec![],
        proxy_models: vec![],
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--help" || flag == "-h" {
            print!("{HELP}");
            return Ok(None);
        }
        let value = args.next().ok_or_else(|| anyhow!("{flag} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| anyhow!("{flag} {value}: {e}");
        match flag.as_str() {
            "--server" => o.server = PathBuf::from(&value),
            "--streams" => o.streams = value.parse().map_err(|e| bad(&e))?,
            "--warmup" => o.warmup = value.parse().map_err(|e| bad(&e))?,
            "--tokens" => o.tokens = value.parse().map_err(|e| bad(&e))?,
            "--gap-us" => o.gap = range(&value).map_err(|e| bad(&e))?,
            "--concurrency" => o.concurrency = value.parse().map_err(|e| bad(&e))?,
            "--load-tokens" => o.load_tokens = value.parse().map_err(|e| bad(&e))?,
            "--load-gap-us" => o.load_gap = range(&value).map_err(|e| bad(&e))?,
            "--load-targets" => {
                o.load_targets = value.split(',').map(|s| s.trim().to_owned()).collect()
            }
            "--fake-bind" => o.fake_bind = value.parse().map_err(|e| bad(&e))?,
            "--proxy" => {
                let (name, url) = value
                    .split_once('=')
                    .ok_or_else(|| bad(&"expected NAME=URL"))?;
                o.proxies
                    .push((name.to_owned(), url.trim_end_matches('/').to_owned()));
            }
            "--proxy-model" => {
                let (name, model) = value
                    .split_once('=')
                    .ok_or_else(|| bad(&"expected NAME=MODEL"))?;
                o.proxy_models.push((name.to_owned(), model.to_owned()));
            }
            _ => bail!("unknown option {flag} (see --help)"),
        }
    }
    if let Some((name, _)) = o
        .proxy_models
        .iter()
        .find(|(name, _)| !o.proxies.iter().any(|(p, _)| p == name))
    {
        bail!("--proxy-model names {name}, which no --proxy defines");
    }
    if o.tokens == 0 || o.load_tokens == 0 {
        bail!("streams need at least one token");
    }
    Ok(Some(o))
}

fn main() -> anyhow::Result<()> {
    let Some(options) = options()? else {
        return Ok(());
    };
    // Two workers: the fake model and the client share this process's side of the machine.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run(options))
}

/// Latency samples of one target.
struct Measured {
    target: Target,
    ttft: Samples,
    meta: Samples,
    per_token: Samples,
    streams: u32,
    failures: Vec<String>,
}

fn measure(target: &Target, results: &[StreamResult], plan_tokens: u32) -> Measured {
    let mut ttft = Vec::new();
    let mut meta = Vec::new();
    let mut per_token = Vec::new();
    let mut failures = Vec::new();
    for r in results {
        let ok = r.error.is_none() && r.done && r.tokens == plan_tokens;
        if !ok {
            failures.push(r.error.clone().unwrap_or_else(|| {
                format!(
                    "{} of {plan_tokens} tokens, end {}",
                    r.tokens,
                    if r.done { "seen" } else { "missing" }
                )
            }));
            continue;
        }
        ttft.extend(r.ttft_ns);
        meta.extend(r.meta_ns);
        per_token.extend_from_slice(&r.token_latency_ns);
    }
    Measured {
        target: target.clone(),
        ttft: Samples::new(ttft),
        meta: Samples::new(meta),
        per_token: Samples::new(per_token),
        streams: results.len() as u32,
        failures,
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("MemTotal"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map(|kib| format!("{:.0} GiB", kib as f64 / 1024.0 / 1024.0))
        .unwrap_or_default();
    format!("{cpu}, {cores} cores, {mem}")
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|t| t.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

async fn wait_ready(
    http: &reqwest::Client,
    target: &Target,
    epoch: Instant,
    plan: &Plan,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let r = client::run(http, target, plan, epoch, Duration::from_secs(30)).await;
        if r.ok(plan) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "{} does not answer properly: {}",
                target.name,
                r.error.unwrap_or_else(|| format!("{} tokens", r.tokens))
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// One turn through the server, read whole and checked with the product's own SSE parser.
async fn smoke(http: &reqwest::Client, server: &LocalServer, plan: &Plan) -> anyhow::Result<()> {
    let response = http
        .post(format!("{}/api/chat/send", server.base_url()))
        .json(&serde_json::json!({ "message": client::message(plan) }))
        .send()
        .await?;
    let status = response.status();
    let text = response.text().await?;
    if !status.is_success() {
        bail!("the server answered {status}: {text}");
    }
    let events = conversa::testing::parse_sse(&text);
    let names: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    let tokens = names.iter().filter(|n| **n == "token").count();
    if names.first() != Some(&"meta")
        || names.last() != Some(&"done")
        || tokens as u32 != plan.tokens
    {
        bail!("unexpected stream from the server: {names:?}");
    }
    Ok(())
}

async fn run(o: Options) -> anyhow::Result<()> {
    let epoch = Instant::now();
    let load_before = load();
    if !o.server.is_file() {
        bail!(
            "{} not found: build it with `cargo build --release -p conversa-local` or pass --server",
            o.server.display()
        );
    }
    let needed = u64::from(o.concurrency) * 4 + 256;
    match server::open_files_limit() {
        Some(limit) if limit < needed => bail!(
            "open-file limit {limit} is below the {needed} that {} streams need: raise it (`ulimit -n 65536`)",
            o.concurrency
        ),
        _ => {}
    }

    let fake = fake::start(o.fake_bind, epoch).await?;
    eprintln!("[bench] fake model at {}", fake.base_url);
    let server = LocalServer::start(&o.server, &fake.base_url)?;
    let pid = server.pid();
    eprintln!(
        "[bench] conversa-local (pid {pid}) at {}",
        server.base_url()
    );
    let http = client::http_client()?;

    let mut targets = vec![
        Target {
            name: "direct".into(),
            url: format!("{}/chat/completions", fake.base_url),
            protocol: Protocol::OpenAi,
            model: client::CHAT_MODEL.into(),
        },
        Target {
            name: "server".into(),
            url: format!("{}/api/chat/send", server.base_url()),
            protocol: Protocol::Conversa,
            model: client::CHAT_MODEL.into(),
        },
    ];
    for (name, url) in &o.proxies {
        targets.push(Target {
            name: name.clone(),
            url: format!("{url}/chat/completions"),
            protocol: Protocol::OpenAi,
            model: o
                .proxy_models
                .iter()
                .find(|(n, _)| n == name)
                .map_or(client::CHAT_MODEL, |(_, m)| m.as_str())
                .to_owned(),
        });
    }

    let plan = |seed: u64| Plan {
        tokens: o.tokens,
        gap_min_us: o.gap.0,
        gap_max_us: o.gap.1,
        seed,
    };
    smoke(&http, &server, &plan(0))
        .await
        .context("smoke test")?;
    for t in &targets {
        wait_ready(&http, t, epoch, &plan(0)).await?;
    }
    let rss_idle = server::proc_status(pid)?;

    // Warm-up, then the measured streams: one at a time, the targets taking turns (in an order that
    // rotates each round) so that noise from the rest of the machine falls on all of them alike.
    eprintln!("[bench] warm-up: {} streams per target", o.warmup);
    let limit = Duration::from_secs(60);
    for round in 0..o.warmup {
        for t in &targets {
            let _ = client::run(&http, t, &plan(1_000_000 + u64::from(round)), epoch, limit).await;
        }
    }
    eprintln!(
        "[bench] latency: {} streams × {} tokens per target",
        o.streams, o.tokens
    );
    let cpu_before = server::cpu_ms(pid)?;
    let mut results: Vec<Vec<StreamResult>> = targets.iter().map(|_| Vec::new()).collect();
    for round in 0..o.streams {
        let n = targets.len();
        for k in 0..n {
            let i = (k + round as usize) % n;
            let r = client::run(&http, &targets[i], &plan(u64::from(round)), epoch, limit).await;
            results[i].push(r);
        }
    }
    let latency_cpu_ms = server::cpu_ms(pid)?.saturating_sub(cpu_before);
    let measured: Vec<Measured> = targets
        .iter()
        .zip(&results)
        .map(|(t, r)| measure(t, r, o.tokens))
        .collect();

    // The load run.
    let mut load_rows = Vec::new();
    if o.concurrency > 0 {
        for name in &o.load_targets {
            let Some(target) = targets.iter().find(|t| &t.name == name) else {
                bail!("--load-targets: no target named {name}");
            };
            eprintln!(
                "[bench] load: {} simultaneous streams to {}",
                o.concurrency, target.name
            );
            load_rows.push(load_run(&o, target, epoch, pid).await?);
            // Let the server finish storing titles before the next run.
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
    let stored = stored_messages(&http, &server).await;
    let final_status = server::proc_status(pid)?;
    let counters = &fake.counters;
    let load_after = load();
    let log_lines = std::fs::read_to_string(&server.log)
        .map(|t| {
            t.lines()
                .filter(|l| l.contains("WARN") || l.contains("ERROR"))
                .count()
        })
        .unwrap_or(0);
    server.stop()?;

    // Report.
    let direct = &measured[0];
    let conversa = &measured[1];
    let server_tokens = (conversa.per_token.len()) as f64;
    println!("## Server\n");
    println!(
        "Machine: {}; load average (1, 5, 15 min) {load_before} before the run, {load_after} after.",
        machine()
    );
    println!(
        "Server: `conversa-local` release build, a child process on loopback, SQLite store in a \
         temporary directory (every turn creates a conversation, stores the user message and the \
         answer, and asks the title model: that is part of the cost measured). Model: a fake \
         OpenAI-compatible endpoint in the benchmark process, with pre-serialized chunks.\n"
    );
    println!(
        "### What the server adds\n\n{} sequential streams per target after {} warm-up streams, {} \
         tokens each, a gap of {}–{} µs before each token (tokio's timer rounds sleeps up to 1 ms), \
         targets taking turns. Time to first token: request sent to first token received. Per \
         token: a token's arrival at the client minus the moment the model wrote it (the token \
         carries that time). Baseline: the same client calling the model endpoint directly.\n",
        o.streams, o.warmup, o.tokens, o.gap.0, o.gap.1
    );
    println!("| metric | direct p50 | direct p99 | through server p50 | through server p99 | added p50 | added p99 | budget (p99) |");
    println!("|---|---|---|---|---|---|---|---|");
    println!(
        "| time to first token | {} | {} | {} | {} | {} | {} | < 1 ms {} |",
        us(direct.ttft.p50()),
        us(direct.ttft.p99()),
        us(conversa.ttft.p50()),
        us(conversa.ttft.p99()),
        us_diff(conversa.ttft.p50(), direct.ttft.p50()),
        us_diff(conversa.ttft.p99(), direct.ttft.p99()),
        verdict(conversa.ttft.p99().saturating_sub(direct.ttft.p99()) < 1_000_000),
    );
    println!(
        "| per token | {} | {} | {} | {} | {} | {} | < 50 µs {} |",
        us(direct.per_token.p50()),
        us(direct.per_token.p99()),
        us(conversa.per_token.p50()),
        us(conversa.per_token.p99()),
        us_diff(conversa.per_token.p50(), direct.per_token.p50()),
        us_diff(conversa.per_token.p99(), direct.per_token.p99()),
        verdict(
            conversa
                .per_token
                .p99()
                .saturating_sub(direct.per_token.p99())
                < 50_000
        ),
    );
    println!(
        "| of which before `meta` (request, store, context; the model not yet called) | | | {} | {} | | | |",
        us(conversa.meta.p50()),
        us(conversa.meta.p99()),
    );
    println!();
    println!(
        "Samples: {} TTFT and {} token latencies per target; max per token: direct {}, server {}. \
         Failed streams: direct {}, server {}. Server CPU during these streams: {} ms for {} \
         turns ({:.1} µs per token, every cost of a turn included).\n",
        conversa.ttft.len(),
        conversa.per_token.len(),
        us(direct.per_token.max()),
        us(conversa.per_token.max()),
        direct.failures.len(),
        conversa.failures.len(),
        latency_cpu_ms,
        conversa.streams,
        if server_tokens > 0.0 {
            latency_cpu_ms as f64 * 1000.0 / server_tokens
        } else {
            0.0
        },
    );
    if measured.len() > 2 {
        println!("Other baselines: OpenAI-compatible gateways in front of the same fake model, measured in the same rounds.\n");
        println!("| target | TTFT p50 | TTFT p99 | added TTFT p50 / p99 | per token p50 | per token p99 | added per token p99 | failed |");
        println!("|---|---|---|---|---|---|---|---|");
        for m in &measured {
            println!(
                "| {} | {} | {} | {} / {} | {} | {} | {} | {} |",
                m.target.name,
                us(m.ttft.p50()),
                us(m.ttft.p99()),
                us_diff(m.ttft.p50(), direct.ttft.p50()),
                us_diff(m.ttft.p99(), direct.ttft.p99()),
                us(m.per_token.p50()),
                us(m.per_token.p99()),
                us_diff(m.per_token.p99(), direct.per_token.p99()),
                m.failures.len(),
            );
        }
        println!();
        for m in &measured[2..] {
            let ratio = |ours: u64, theirs: u64, base: u64| {
                let ours = ours as f64 - base as f64;
                let theirs = theirs as f64 - base as f64;
                if ours >= 1_000.0 && theirs > 0.0 {
                    format!("{:.1}×", theirs / ours)
                } else {
                    "— (one of the two adds under 1 µs here)".to_owned()
                }
            };
            println!(
                "{} adds, compared with what Conversa adds: time to first token p50 {}, p99 {}; per token p50 {}, p99 {}.",
                m.target.name,
                ratio(conversa.ttft.p50(), m.ttft.p50(), direct.ttft.p50()),
                ratio(conversa.ttft.p99(), m.ttft.p99(), direct.ttft.p99()),
                ratio(conversa.per_token.p50(), m.per_token.p50(), direct.per_token.p50()),
                ratio(conversa.per_token.p99(), m.per_token.p99(), direct.per_token.p99()),
            );
        }
        println!();
    }
    for m in &measured {
        if let Some(first) = m.failures.first() {
            println!(
                "{} failures ({}), first: {first}\n",
                m.target.name,
                m.failures.len()
            );
        }
    }

    if !load_rows.is_empty() {
        println!(
            "### {} concurrent streams\n\nAll streams start at once on fresh connections; {} tokens each, a gap of {}–{} µs \
             before each token (about {} tokens/s per stream, like a hosted model). Peak RSS is the \
             server's `VmHWM`, reset just before the run; RSS idle was {} after warm-up.\n",
            o.concurrency,
            o.load_tokens,
            o.load_gap.0,
            o.load_gap.1,
            2_000_000 / (o.load_gap.0 + o.load_gap.1).max(1),
            mib(rss_idle.rss_kib),
        );
        println!("| target | streams | errors | total time | streams/s | tokens/s | TTFT p50 / p99 | per token p50 / p99 | server peak RSS | server threads (peak) | server CPU |");
        println!("|---|---|---|---|---|---|---|---|---|---|---|");
        for row in &load_rows {
            println!("{}", row.markdown());
        }
        println!();
        for row in &load_rows {
            if let Some(first) = row.first_error.as_ref() {
                println!("{} errors ({}), first: {first}\n", row.name, row.errors);
            }
        }
    }
    let server_turns: u64 = counters.chat.load(Ordering::Relaxed);
    println!(
        "Checks: the fake model answered {} chat and {} title requests ({} refused); the server holds {}; \
         its log has {log_lines} warning or error lines; its RSS at the end: {} (peak since the last reset {}).",
        server_turns,
        counters.title.load(Ordering::Relaxed),
        counters.refused.load(Ordering::Relaxed),
        stored,
        mib(final_status.rss_kib),
        mib(final_status.hwm_kib),
    );
    Ok(())
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "✅"
    } else {
        "❌"
    }
}

/// Conversations and messages stored by the server, from its own API.
async fn stored_messages(http: &reqwest::Client, server: &LocalServer) -> String {
    let mut conversations = 0u64;
    let mut messages = 0u64;
    let mut cursor: Option<String> = None;
    for _ in 0..1000 {
        let mut url = format!("{}/api/conversations?limit=200", server.base_url());
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page: serde_json::Value = match http.get(&url).send().await {
            Ok(r) => match r.json().await {
                Ok(v) => v,
                Err(e) => return format!("(could not read the list: {e})"),
            },
            Err(e) => return format!("(could not list conversations: {e})"),
        };
        let items = page["items"].as_array().cloned().unwrap_or_default();
        conversations += items.len() as u64;
        messages += items
            .iter()
            .filter_map(|c| c["message_count"].as_u64())
            .sum::<u64>();
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    format!("{conversations} conversations with {messages} messages")
}

struct LoadRow {
    name: String,
    streams: u32,
    errors: usize,
    first_error: Option<String>,
    total: Duration,
    tokens: u64,
    ttft: Samples,
    per_token: Samples,
    server: Option<(server::ProcStatus, u64, u64)>,
}

impl LoadRow {
    fn markdown(&self) -> String {
        let secs = self.total.as_secs_f64().max(1e-9);
        let (rss, threads, cpu) = match self.server {
            Some((s, peak_threads, cpu)) => (
                mib(s.hwm_kib),
                peak_threads.to_string(),
                format!("{:.2} s", cpu as f64 / 1000.0),
            ),
            None => ("—".into(), "—".into(), "—".into()),
        };
        format!(
            "| {} | {} | {} | {:.2} s | {:.0} | {:.0} | {} / {} | {} / {} | {} | {} | {} |",
            self.name,
            self.streams,
            self.errors,
            secs,
            f64::from(self.streams) / secs,
            self.tokens as f64 / secs,
            ms(self.ttft.p50()),
            ms(self.ttft.p99()),
            us(self.per_token.p50()),
            ms(self.per_token.p99()),
            rss,
            threads,
            cpu,
        )
    }
}

async fn load_run(
    o: &Options,
    target: &Target,
    epoch: Instant,
    pid: u32,
) -> anyhow::Result<LoadRow> {
    // A client of its own: every stream opens its connection, as 1,000 users would.
    let http = client::http_client()?;
    let is_server = target.protocol == Protocol::Conversa;
    let reset = is_server && server::reset_peak_rss(pid);
    if is_server && !reset {
        eprintln!("[bench] could not reset the server's peak RSS; it covers the whole run");
    }
    let cpu_before = server::cpu_ms(pid)?;
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let sampling = Arc::clone(&sampling);
        tokio::spawn(async move {
            let mut peak_threads = 0;
            while sampling.load(Ordering::Relaxed) {
                if let Ok(s) = server::proc_status(pid) {
                    peak_threads = peak_threads.max(s.threads);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            peak_threads
        })
    };
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(o.concurrency as usize);
    for i in 0..o.concurrency {
        let plan = Plan {
            tokens: o.load_tokens,
            gap_min_us: o.load_gap.0,
            gap_max_us: o.load_gap.1,
            seed: 5_000_000 + u64::from(i),
        };
        let http = http.clone();
        let target = target.clone();
        tasks.push(tokio::spawn(async move {
            let r = client::run(&http, &target, &plan, epoch, Duration::from_secs(300)).await;
            (plan, r)
        }));
    }
    let mut results = Vec::with_capacity(tasks.len());
    for t in tasks {
        results.push(t.await?);
    }
    let total = start.elapsed();
    sampling.store(false, Ordering::Relaxed);
    let peak_threads = sampler.await?;
    let status = server::proc_status(pid)?;
    let cpu = server::cpu_ms(pid)?.saturating_sub(cpu_before);

    let mut ttft = Vec::new();
    let mut per_token = Vec::new();
    let mut errors = 0;
    let mut first_error = None;
    let mut tokens = 0u64;
    for (plan, r) in &results {
        tokens += u64::from(r.tokens);
        if r.ok(plan) {
            ttft.extend(r.ttft_ns);
            per_token.extend_from_slice(&r.token_latency_ns);
        } else {
            errors += 1;
            if first_error.is_none() {
                first_error = Some(
                    r.error
                        .clone()
                        .unwrap_or_else(|| format!("{} of {} tokens", r.tokens, plan.tokens)),
                );
            }
        }
    }
    Ok(LoadRow {
        name: target.name.clone(),
        streams: o.concurrency,
        errors,
        first_error,
        total,
        tokens,
        ttft: Samples::new(ttft),
        per_token: Samples::new(per_token),
        server: is_server.then_some((status, peak_threads, cpu)),
    })
}
