//! The server under test: the release `conversa-local` binary as a child process on a free loopback
//! port, with its store in a temporary directory, and what `/proc` says about it.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};

use crate::fake::TITLE_MODEL;

/// A running `conversa-local`.
pub struct LocalServer {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its data directory, removed when this is dropped.
    _data_dir: tempfile::TempDir,
    /// Its log (stderr).
    pub log: PathBuf,
}

impl LocalServer {
    /// Starts `binary` answering with the model at `model_base_url`; waits until it listens.
    pub fn start(binary: &Path, model_base_url: &str) -> anyhow::Result<Self> {
        let data_dir = tempfile::Builder::new()
            .prefix("conversa-bench-")
            .tempdir()
            .context("temporary data directory")?;
        let log = data_dir.path().join("server.log");
        let stderr = std::fs::File::create(&log).context("server log")?;
        let mut child = Command::new(binary)
            .env_remove("RUST_LOG")
            .env("CONVERSA_BIND", "127.0.0.1:0")
            .env("CONVERSA_DATA_DIR", data_dir.path().join("data"))
            .env("CONVERSA_FRONTEND_DIR", data_dir.path().join("no-frontend"))
            .env("OPENAI_BASE_URL", model_base_url)
            .env("OPENAI_API_KEY", "bench-key")
            .env("CONVERSA_CHAT_MODEL", crate::client::CHAT_MODEL)
            .env("CONVERSA_TITLE_MODEL", TITLE_MODEL)
            .env("CONVERSA_RATE_LIMIT_PER_MINUTE", "0")
            .env_remove("CONVERSA_AUTH_TOKENS")
            .env_remove("CONVERSA_ORIGIN_SECRET")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("no stdout from the server"))?;
        // Read the address from the banner, then keep draining stdout so the server never blocks on it.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if !sent {
                    if let Some(addr) = banner_addr(&line) {
                        let _ = tx.send(addr);
                        sent = true;
                    }
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                let log_text = std::fs::read_to_string(&log).unwrap_or_default();
                bail!("the server did not start within 60 s; its log:\n{log_text}");
            }
        };
        Ok(Self {
            child,
            addr,
            _data_dir: data_dir,
            log,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `http://ADDR`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops it.
    pub fn stop(mut self) -> anyhow::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The address in `Conversa API is running at http://ADDR/api …`.
fn banner_addr(line: &str) -> Option<SocketAddr> {
    const MARK: &str = "running at http://";
    let rest = &line[line.find(MARK)? + MARK.len()..];
    let end = rest.find('/').unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// Memory and threads of a process, from `/proc/PID/status`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcStatus {
    /// Resident set size now, KiB.
    pub rss_kib: u64,
    /// Peak resident set size, KiB.
    pub hwm_kib: u64,
    /// Threads.
    pub threads: u64,
}

/// Reads `/proc/PID/status`.
pub fn proc_status(pid: u32) -> anyhow::Result<ProcStatus> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let mut out = ProcStatus::default();
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        let key = parts.next().unwrap_or("");
        let value: u64 = parts.next().and_then(|v| v.parse().ok()).unwrap_or(0);
        match key {
            "VmRSS:" => out.rss_kib = value,
            "VmHWM:" => out.hwm_kib = value,
            "Threads:" => out.threads = value,
            _ => {}
        }
    }
    Ok(out)
}

/// Resets the peak RSS so the next reading of `VmHWM` covers only what follows. `false` when the
/// kernel refused.
pub fn reset_peak_rss(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// CPU time (user + system) of a process, in milliseconds, from `/proc/PID/stat`.
pub fn cpu_ms(pid: u32) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let after = &text[text.rfind(')').ok_or_else(|| anyhow!("odd /proc stat"))? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
    let ticks: u64 = [11, 12]
        .iter()
        .map(|i| {
            fields
                .get(*i)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0)
        })
        .sum();
    // USER_HZ is 100 on Linux.
    Ok(ticks * 10)
}

/// The soft limit on open files of this process.
pub fn open_files_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_banner() {
        assert_eq!(
            banner_addr(
                "Conversa API is running at http://127.0.0.1:4321/api (no frontend build found)"
            ),
            Some("127.0.0.1:4321".parse().unwrap())
        );
        assert_eq!(banner_addr("Model: gpt-4o at http://127.0.0.1:9/v1"), None);
    }

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        let s = proc_status(me).unwrap();
        assert!(s.rss_kib > 0 && s.hwm_kib >= s.rss_kib && s.threads >= 1);
        assert!(cpu_ms(me).is_ok());
        assert!(open_files_limit().is_some());
    }
}
