//! Extraction benchmark runner: reads a list of files, extracts each with the chosen engine (the
//! product's `conversa::extract`, or an alternative PDF library), repeats small files until a
//! minimum time, writes each text to the output folder and prints one JSON summary line with the
//! bytes, pages, seconds and this process's peak resident memory.
//!
//! Usage: bench-extract ENGINE OUT_DIR FILE... (ENGINE: conversa | pdf-extract | lopdf | pdf_oxide)

use std::path::Path;
use std::time::{Duration, Instant};

use conversa::extract::{detect, extract, Limits};

fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Extracts one file; returns (text, pages).
fn run(engine: &str, name: &str, bytes: &[u8]) -> Result<(String, u32), String> {
    match engine {
        "conversa" => {
            // The benchmark measures reading, not the product's cutting policy: no row or text cap.
            let limits = Limits {
                max_bytes: u64::MAX,
                max_rows: usize::MAX,
                max_chars: usize::MAX,
                ..Limits::default()
            };
            let d = detect(bytes, name, None).map_err(|e| e.to_string())?;
            let out = extract(d.file_type, bytes, &limits).map_err(|e| e.to_string())?;
            Ok((out.text, out.pages.unwrap_or(1)))
        }
        #[cfg(feature = "alternatives")]
        "pdf-extract" => {
            let pages =
                pdf_extract::extract_text_from_mem_by_pages(bytes).map_err(|e| e.to_string())?;
            Ok((pages.join("\n"), pages.len() as u32))
        }
        #[cfg(feature = "alternatives")]
        "lopdf" => {
            let doc = lopdf::Document::load_mem(bytes).map_err(|e| e.to_string())?;
            let pages: Vec<u32> = doc.get_pages().keys().copied().collect();
            let mut s = String::new();
            for p in &pages {
                s.push_str(&doc.extract_text(&[*p]).unwrap_or_default());
                s.push('\n');
            }
            Ok((s, pages.len() as u32))
        }
        #[cfg(feature = "oxide")]
        "pdf_oxide" => {
            let doc =
                pdf_oxide::PdfDocument::from_bytes(bytes.to_vec()).map_err(|e| e.to_string())?;
            let n = doc.page_count().map_err(|e| e.to_string())?;
            let mut s = String::new();
            for i in 0..n {
                s.push_str(&doc.extract_text(i).map_err(|e| e.to_string())?);
                s.push('\n');
            }
            Ok((s, n as u32))
        }
        other => Err(format!("unknown engine {other}")),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: bench-extract ENGINE OUT_DIR FILE...");
        std::process::exit(2);
    }
    let engine = args[1].as_str();
    let out_dir = Path::new(&args[2]);
    let _ = std::fs::create_dir_all(out_dir);
    let (mut bytes_total, mut pages_total, mut seconds, mut files, mut failed) =
        (0u64, 0u64, 0f64, 0u32, 0u32);
    for path in &args[3..] {
        let Ok(bytes) = std::fs::read(path) else {
            continue;
        };
        let name = Path::new(path)
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        // Repeat quick files until 50 ms have passed, for a stable time per run.
        let started = Instant::now();
        let mut runs = 0u32;
        let mut last = None;
        while runs == 0 || (started.elapsed() < Duration::from_millis(50) && runs < 1000) {
            let r = std::panic::catch_unwind(|| run(engine, &name, &bytes));
            last = Some(r);
            runs += 1;
        }
        let per_run = started.elapsed().as_secs_f64() / f64::from(runs);
        files += 1;
        match last {
            Some(Ok(Ok((text, pages)))) => {
                let key = path.replace('/', "__");
                let _ = std::fs::write(out_dir.join(format!("{key}.txt")), text);
                bytes_total += bytes.len() as u64;
                pages_total += u64::from(pages);
                seconds += per_run;
            }
            _ => failed += 1,
        }
    }
    println!(
        "{}",
        serde_json::json!({
            "engine": engine,
            "files": files,
            "failed": failed,
            "bytes": bytes_total,
            "pages": pages_total,
            "seconds": seconds,
            "peak_rss_kb": peak_rss_kb(),
        })
    );
}
