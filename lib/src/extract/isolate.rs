//! Process isolation for extraction: the parent re-executes a program (normally this same binary)
//! with [`CHILD_ENV`] set, sends the file on stdin and reads a serialized result on stdout. The
//! child caps its own address space (`RLIMIT_AS`) and CPU time (`RLIMIT_CPU`) before reading a
//! byte; the parent kills it at the wall-clock limit. A parser that panics, aborts, loops or
//! allocates without end takes down only the child.
//!
//! Wire format: parent → child, one JSON header line `{"file_type":…,"limits":…}` then the raw
//! bytes; child → parent, whatever the parsers print, then [`MARKER`] and the JSON of
//! `Result<Extracted, ExtractError>`. The marker lets stray output of a parser (or of a test
//! harness) come first without confusing the parent.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{family_name, ExtractError, Extracted, Limits};
use crate::domain::FileType;

/// Set (to `1`) in the environment of an extraction child.
pub const CHILD_ENV: &str = "CONVERSA_EXTRACT_CHILD";

/// The address-space limit handed to the child, in bytes.
const MEMORY_ENV: &str = "CONVERSA_EXTRACT_CHILD_MEMORY";

/// Separates stray output from the result.
const MARKER: &[u8] = b"\n\x1e--conversa-extract-result--\x1e\n";

/// Most bytes of child output kept (text, image, stray output); the rest is drained unread.
const MAX_OUTPUT: usize = 256 * 1024 * 1024;

/// Which program runs the child and with what arguments.
#[derive(Debug, Clone)]
pub struct Isolation {
    /// A binary whose `main` calls [`child_main`] first.
    pub program: PathBuf,
    /// Arguments for it (none for the product's binaries; a test filter for test binaries).
    pub args: Vec<String>,
}

impl Isolation {
    /// This very binary, with no arguments.
    pub fn current_exe() -> Result<Self, ExtractError> {
        let program = std::env::current_exe().map_err(|e| {
            tracing::error!(error = %e, "cannot locate the current executable for extraction");
            ExtractError::Corrupt(
                "the document could not be read (extraction is unavailable)".into(),
            )
        })?;
        Ok(Self {
            program,
            args: Vec::new(),
        })
    }
}

#[derive(Serialize, Deserialize)]
struct Header {
    file_type: FileType,
    limits: Limits,
}

/// Extracts in a child process of this same binary (see [`child_main`]), with the memory limit
/// `limits.child_memory_bytes` and the wall-clock limit `limits.timeout`.
pub fn extract_isolated(
    file_type: FileType,
    bytes: &[u8],
    limits: &Limits,
) -> Result<Extracted, ExtractError> {
    extract_isolated_with(&Isolation::current_exe()?, file_type, bytes, limits)
}

/// [`extract_isolated`] with an explicit program (tests run their own harness binary).
///
/// Inside an extraction child this extracts in-process: children never start children.
pub fn extract_isolated_with(
    isolation: &Isolation,
    file_type: FileType,
    bytes: &[u8],
    limits: &Limits,
) -> Result<Extracted, ExtractError> {
    extract_isolated_reporting(isolation, file_type, bytes, limits, None)
}

/// [`extract_isolated_with`], passing the child's progress (0–100) to `progress` as it comes.
pub fn extract_isolated_reporting(
    isolation: &Isolation,
    file_type: FileType,
    bytes: &[u8],
    limits: &Limits,
    progress: Option<&(dyn Fn(u8) + Sync)>,
) -> Result<Extracted, ExtractError> {
    if std::env::var_os(CHILD_ENV).is_some() {
        return super::extract(file_type, bytes, limits);
    }
    let unavailable = |what: &str, e: &dyn std::fmt::Display| {
        tracing::error!(error = %e, "extraction child: {what}");
        ExtractError::Corrupt(format!(
            "the {} could not be read (extraction is unavailable)",
            family_name(file_type)
        ))
    };
    let header = serde_json::to_vec(&Header {
        file_type,
        limits: limits.clone(),
    })
    .map_err(|e| unavailable("header", &e))?;
    let started = Instant::now();
    let mut child = Command::new(&isolation.program)
        .args(&isolation.args)
        .env(CHILD_ENV, "1")
        .env(MEMORY_ENV, limits.child_memory_bytes.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| unavailable("spawn", &e))?;

    std::thread::scope(|scope| {
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        scope.spawn(move || {
            if let Some(mut stdin) = stdin {
                // A child that dies early closes the pipe: nothing to do about it here.
                let _ = stdin
                    .write_all(&header)
                    .and_then(|()| stdin.write_all(b"\n"))
                    .and_then(|()| stdin.write_all(bytes));
            }
        });
        let out = scope.spawn(move || stdout.map(|s| read_bounded(s, MAX_OUTPUT)));
        let err = scope.spawn(move || stderr.map(|s| read_stderr(s, 64 * 1024, progress)));

        let deadline = started + limits.timeout;
        let mut pause = Duration::from_millis(1);
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
                Ok(None) => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(20));
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(unavailable("wait", &e));
                }
            }
        };
        let out = out.join().ok().flatten().unwrap_or_default();
        let err = err.join().ok().flatten().unwrap_or_default();
        let Some(status) = status else {
            return Err(ExtractError::Timeout(format!(
                "the {} took longer than {} seconds to read and was stopped",
                family_name(file_type),
                limits.timeout.as_secs_f32()
            )));
        };
        if let Some(at) = find_last(&out, MARKER) {
            return serde_json::from_slice::<Result<Extracted, ExtractError>>(
                &out[at + MARKER.len()..],
            )
            .map_err(|e| unavailable("result", &e))?;
        }
        let stderr = String::from_utf8_lossy(&err);
        tracing::warn!(%status, stderr = %stderr, "extraction child died");
        if stderr.contains("memory allocation") || stderr.contains("out of memory") {
            return Err(ExtractError::TooLarge(format!(
                "the {} needs more than {} MB of memory to read",
                family_name(file_type),
                limits.child_memory_bytes / (1024 * 1024)
            )));
        }
        if cpu_exhausted(&status) {
            return Err(ExtractError::Timeout(format!(
                "the {} took longer than {} seconds to read and was stopped",
                family_name(file_type),
                limits.timeout.as_secs_f32()
            )));
        }
        Err(ExtractError::Corrupt(format!(
            "the {} could not be read (the document is malformed)",
            family_name(file_type)
        )))
    })
}

#[cfg(unix)]
fn cpu_exhausted(status: &std::process::ExitStatus) -> bool {
    use std::os::unix::process::ExitStatusExt;
    // SIGXCPU: the child's CPU-time limit.
    status.signal() == Some(24)
}

#[cfg(not(unix))]
fn cpu_exhausted(_status: &std::process::ExitStatus) -> bool {
    false
}

/// Starts the child's progress lines on stderr.
const PROGRESS_PREFIX: &str = "\u{1e}progress ";

/// Reads the child's stderr: progress lines go to the parent's progress sink, the rest is kept
/// (bounded) for diagnostics.
fn read_stderr(r: impl Read, max: usize, progress: Option<&(dyn Fn(u8) + Sync)>) -> Vec<u8> {
    use std::io::BufRead;
    let mut out = Vec::new();
    for line in std::io::BufReader::new(r)
        .split(b'\n')
        .map_while(Result::ok)
    {
        let text = String::from_utf8_lossy(&line);
        if let Some(n) = text
            .strip_prefix(PROGRESS_PREFIX)
            .and_then(|n| n.trim().parse::<u8>().ok())
        {
            if let Some(sink) = progress {
                sink(n);
            }
            continue;
        }
        if out.len() < max {
            out.extend_from_slice(&line);
            out.push(b'\n');
        }
    }
    out
}

fn read_bounded(mut r: impl Read, max: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = (&mut r).take(max as u64).read_to_end(&mut out);
    let _ = std::io::copy(&mut r, &mut std::io::sink());
    out
}

fn find_last(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).rposition(|w| w == needle)
}

/// Runs the extraction child when this process is one ([`CHILD_ENV`] is set): call it first in
/// every binary's `main` and exit with the code it returns. `None` means "not a child: carry on".
///
/// ```text
/// fn main() {
///     if let Some(code) = conversa::extract::child_main() {
///         std::process::exit(code);
///     }
///     // … the server …
/// }
/// ```
pub fn child_main() -> Option<i32> {
    if std::env::var_os(CHILD_ENV).is_none_or(|v| v != "1") {
        // This binary can serve as its own extraction child.
        SUPPORTED.store(true, std::sync::atomic::Ordering::Relaxed);
        return None;
    }
    Some(match run_child() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("extraction child: {e}");
            2
        }
    })
}

fn run_child() -> Result<(), String> {
    let memory = std::env::var(MEMORY_ENV)
        .ok()
        .and_then(|v| v.parse::<u64>().ok());
    let mut input = Vec::new();
    std::io::stdin()
        .lock()
        .read_to_end(&mut input)
        .map_err(|e| format!("reading stdin: {e}"))?;
    let newline = input
        .iter()
        .position(|&b| b == b'\n')
        .ok_or("no header line")?;
    let header: Header =
        serde_json::from_slice(&input[..newline]).map_err(|e| format!("header: {e}"))?;
    limit_self(memory, header.limits.timeout);
    let bytes = &input[newline + 1..];
    // Progress goes to stderr as `PROGRESS_PREFIX N` lines, which the parent reads as they come.
    let result = super::with_progress(
        |p| eprintln!("{PROGRESS_PREFIX}{p}"),
        || super::extract(header.file_type, bytes, &header.limits),
    );
    let json = serde_json::to_vec(&result).map_err(|e| format!("result: {e}"))?;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(MARKER)
        .and_then(|()| stdout.write_all(&json))
        .and_then(|()| stdout.flush())
        .map_err(|e| format!("writing stdout: {e}"))
}

static SUPPORTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether this binary called [`child_main`] at start, so [`extract_isolated`] can re-run it as an
/// extraction child (the product's binaries do; test harnesses do not and extract in-process).
pub fn isolation_available() -> bool {
    SUPPORTED.load(std::sync::atomic::Ordering::Relaxed)
}

/// Caps this (child) process: address space, and CPU seconds as a backstop should the parent
/// die before its wall-clock kill.
#[cfg(unix)]
fn limit_self(memory: Option<u64>, timeout: Duration) {
    if let Some(m) = memory {
        if let Err(e) = rlimit::setrlimit(rlimit::Resource::AS, m, m) {
            eprintln!("extraction child: cannot limit memory: {e}");
        }
    }
    let cpu = timeout.as_secs().saturating_add(2);
    if let Err(e) = rlimit::setrlimit(rlimit::Resource::CPU, cpu, cpu.saturating_add(1)) {
        eprintln!("extraction child: cannot limit CPU time: {e}");
    }
}

#[cfg(not(unix))]
fn limit_self(_memory: Option<u64>, _timeout: Duration) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_result_follows_the_last_marker() {
        let mut out = b"running 1 test\nnoise".to_vec();
        out.extend_from_slice(MARKER);
        out.extend_from_slice(b"{\"Ok\":{}}");
        let at = find_last(&out, MARKER).unwrap();
        assert_eq!(&out[at + MARKER.len()..], b"{\"Ok\":{}}");
        assert!(find_last(b"nothing here", MARKER).is_none());
    }

    #[test]
    fn not_a_child_without_the_variable() {
        // The test process is not started with CONVERSA_EXTRACT_CHILD.
        if std::env::var_os(CHILD_ENV).is_none() {
            assert_eq!(child_main(), None);
        }
    }
}
