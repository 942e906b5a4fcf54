//! A stable-toolchain fuzz smoke runner: mutates seed documents (the generated fixtures, plus the
//! corpus when present) and feeds them to detection and extraction, which must answer (text or an
//! error) within a time limit and never panic. The short run is an ordinary test; the long one
//! (`cargo test --test extract_smoke -- --ignored`, sized by `FUZZ_SMOKE_SECS`) is what
//! `scripts/fuzz-smoke.sh` runs when cargo-fuzz and a nightly toolchain are not available.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod extract_support;

use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use conversa::domain::FileType;
use conversa::extract::{detect, extract, Limits};
use extract_support::*;

/// A small deterministic generator (xorshift64*), so a failure can be replayed from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const INTERESTING: &[&[u8]] = &[
    b"0",
    b"-1",
    b"4294967295",
    b"99999999999",
    b"obj",
    b"endobj",
    b"stream",
    b"endstream",
    b"/Length 999999",
    b"<<",
    b">>",
    b"[",
    b"]",
    b"R",
    b"xref",
    b"trailer",
    b"<w:p>",
    b"</w:p>",
    b"<w:tbl>",
    b"&amp;",
    b"\xff\xfe",
    b"\x00\x00\x00\x00",
];

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut data = seed.to_vec();
    for _ in 0..=rng.below(4) {
        if data.is_empty() {
            data.push(rng.next() as u8);
            continue;
        }
        let at = rng.below(data.len());
        match rng.below(6) {
            0 => data[at] ^= 1 << rng.below(8),
            1 => data[at] = rng.next() as u8,
            2 => data.truncate(at.max(1)),
            3 => {
                let word = INTERESTING[rng.below(INTERESTING.len())];
                data.splice(at..at, word.iter().copied());
            }
            4 => {
                let len = rng.below(64).min(data.len() - at);
                let chunk: Vec<u8> = data[at..at + len].to_vec();
                let to = rng.below(data.len());
                data.splice(to..to, chunk);
            }
            _ => {
                let len = rng.below(16).min(data.len() - at);
                data.drain(at..at + len);
            }
        }
    }
    data
}

fn seeds() -> Vec<(FileType, &'static str, Vec<u8>)> {
    let mut out = vec![
        (
            FileType::Pdf,
            "a.pdf",
            pdf_with_streams(&[
                "BT /F1 12 Tf 72 720 Td (Hello world) Tj ET".to_owned(),
                "BT /F1 12 Tf 72 720 Td [(A) -500 (B)] TJ ET".to_owned(),
            ]),
        ),
        (
            FileType::Docx,
            "a.docx",
            docx(
                &[
                    p("para"),
                    tbl(&[&["a", "b"], &["1", "2"]]),
                    li(1, 0, "item"),
                ]
                .concat(),
            ),
        ),
        (
            FileType::Xlsx,
            "a.xlsx",
            xlsx(&[("S", vec![vec![s("x"), n(1.5), date(45000)]])]),
        ),
        (FileType::Image, "a.png", png(16, 8)),
        (FileType::Csv, "a.csv", b"a,b\n\"q,1\",2\n".to_vec()),
        (
            FileType::Json,
            "a.json",
            br#"{"a":[1,{"b":null}]}"#.to_vec(),
        ),
    ];
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus");
    if let Ok(dirs) = std::fs::read_dir(&corpus) {
        let mut stack: Vec<_> = dirs.flatten().map(|e| e.path()).collect();
        while let Some(p) = stack.pop() {
            if p.is_dir() {
                if let Ok(d) = std::fs::read_dir(&p) {
                    stack.extend(d.flatten().map(|e| e.path()));
                }
                continue;
            }
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            let Ok(bytes) = std::fs::read(&p) else {
                continue;
            };
            if bytes.len() > 300_000 || name.starts_with('.') {
                continue;
            }
            if let Ok(d) = detect(&bytes, &name, None) {
                let name: &'static str = Box::leak(name.into_boxed_str());
                out.push((d.file_type, name, bytes));
            }
        }
    }
    out
}

fn smoke(budget: Duration, max_iters: usize) -> usize {
    let seeds = seeds();
    let started = Instant::now();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ max_iters as u64);
    let mut done = 0;
    while done < max_iters && started.elapsed() < budget {
        let (file_type, name, seed) = &seeds[done % seeds.len()];
        let input = mutate(&mut rng, seed);
        let (tx, rx) = mpsc::channel();
        let (ft, nm, bytes) = (*file_type, *name, input.clone());
        std::thread::spawn(move || {
            let _ = detect(&bytes, nm, None);
            let r = extract(ft, &bytes, &Limits::default());
            let _ = tx.send(r.is_ok());
        });
        if rx.recv_timeout(Duration::from_secs(20)).is_err() {
            let dump = std::env::temp_dir().join(format!("conversa-smoke-{done}.{name}"));
            let _ = std::fs::write(&dump, &input);
            panic!(
                "{file_type:?} input #{done} hung or panicked outside the guard; saved to {}",
                dump.display()
            );
        }
        done += 1;
    }
    done
}

#[test]
fn mutated_documents_never_panic_or_hang() {
    let n = smoke(Duration::from_secs(60), 300);
    assert!(n >= 50, "only {n} inputs in the time budget");
}

#[test]
#[ignore = "long run: scripts/fuzz-smoke.sh"]
fn fuzz_smoke_long() {
    let secs = std::env::var("FUZZ_SMOKE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    let n = smoke(Duration::from_secs(secs), usize::MAX);
    eprintln!("fuzz smoke: {n} inputs in {secs} s, no panic, no hang");
}
