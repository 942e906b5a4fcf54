//! Real-world documents from other projects' test suites (fetched by `scripts/corpus.sh` into
//! `corpus/`): every file is detected and extracted without a panic, within the time limit, into
//! text or a clear error; a selection must contain phrases checked by hand against the documents.
//! Skips, saying why, when `corpus/` is absent.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use conversa::extract::{detect, extract, ExtractError, Extracted, Limits};

fn corpus_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("CONVERSA_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus"));
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "SKIPPED: no corpus at {} — run scripts/corpus.sh first (CI does)",
            dir.display()
        );
        None
    }
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if name.starts_with('.') {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Detects and extracts on a worker thread; fails the test when it runs past `limit`.
fn run(path: &Path, limit: Duration) -> Result<Extracted, ExtractError> {
    let bytes = std::fs::read(path).unwrap();
    let name = path.file_name().unwrap().to_string_lossy().to_string();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let r = detect(&bytes, &name, None)
            .and_then(|d| extract(d.file_type, &bytes, &Limits::default()));
        let _ = tx.send(r);
    });
    match rx.recv_timeout(limit) {
        Ok(r) => r,
        Err(_) => panic!("{} took longer than {limit:?}", path.display()),
    }
}

#[test]
fn every_corpus_file_gives_text_or_a_clear_error_in_time() {
    let Some(dir) = corpus_dir() else { return };
    let all = files(&dir);
    assert!(all.len() > 100, "only {} corpus files", all.len());
    let (mut ok, mut refused) = (0, 0);
    for path in &all {
        let started = Instant::now();
        match run(path, Duration::from_secs(30)) {
            Ok(out) => {
                ok += 1;
                assert!(
                    !out.text.is_empty() || out.note.is_some() || out.image.is_some(),
                    "{}: empty text and no note",
                    path.display()
                );
            }
            Err(e) => {
                refused += 1;
                // Every refusal names its cause in words a person understands.
                assert!(e.to_string().len() > 10, "{}: {e:?}", path.display());
                eprintln!("refused {}: {e}", path.display());
            }
        }
        let took = started.elapsed();
        if took > Duration::from_secs(2) {
            eprintln!("slow: {} took {took:?}", path.display());
        }
    }
    eprintln!("corpus: {ok} read, {refused} refused, of {}", all.len());
    // The corpus is mostly valid documents: most must be read.
    assert!(ok * 10 >= all.len() * 8, "{ok} of {} read", all.len());
}

/// (file under corpus/, phrases its text must contain), each checked by hand against the document
/// as a viewer shows it.
const EXPECTED: &[(&str, &[&str])] = &[
    // PDF: page markers, word spaces, line order, non-Latin scripts.
    (
        "pypdf-7.1.0/resources/crazyones.pdf",
        &[
            "[page 1]\n",
            "The round pegs in the square holes.",
            "We make tools for these kinds of people.",
        ],
    ),
    (
        "pypdf-7.1.0/resources/multilang.pdf",
        &[
            "Hello World",
            "Привет, мир",
            "你好世界",
            "こんにちは世界",
            "สวัสดีชาวโลก",
        ],
    ),
    // DOCX: headings, hyperlinks, headers and footers, numbered lists, tables.
    (
        "python_docx-1.2.0/tests/test_files/test.docx",
        &["# python-docx was here!", "python-docx was here too!"],
    ),
    (
        "python_docx-1.2.0/features/steps/test_files/par-hyperlinks.docx",
        &[
            "One [awesome hyperlink](http://yahoo.com/).",
            "the [second one](http://python.org/), and the [third](http://yahoo.com/)",
        ],
    ),
    (
        "python_docx-1.2.0/features/steps/test_files/hdr-header-footer.docx",
        &[
            "Header for section-1",
            "section with header",
            "Footer for section 1",
        ],
    ),
    (
        "python_docx-1.2.0/features/steps/test_files/num-having-numbering-part.docx",
        &["1. Paragraph having List Number style."],
    ),
    (
        "python_docx-1.2.0/tests/test_files/blk-inner-content.docx",
        &["P1\n\n| T2 |  |\n| --- | --- |\n\nP3"],
    ),
    // Spreadsheets: one table per sheet, ISO dates and times, booleans, formula values.
    (
        "python_calamine-0.9.1/tests/data/base.xlsx",
        &[
            "## Sheet: Sheet1",
            "| String | 1 | 1.1 | TRUE | FALSE | 2010-10-10 | 2010-10-10 10:10:10 | 10:10:10 |",
            "## Sheet: Sheet3",
            "| line2 | line2 | line2 |",
        ],
    ),
    (
        "python_calamine-0.9.1/tests/data/base.xlsb",
        &["| String | 1 | 1.1 | TRUE | FALSE | 2010-10-10 | 2010-10-10 10:10:10 | 10:10:10 |"],
    ),
    (
        "python_calamine-0.9.1/tests/data/base.xls",
        &["| String | 1 | 1.1 | TRUE | FALSE | 2010-10-10 | 2010-10-10 10:10:10 | 10:10:10 |"],
    ),
    (
        "python_calamine-0.9.1/tests/data/base.ods",
        &["| String | 1 | 1.1 | TRUE | FALSE | 2010-10-10 | 2010-10-10 10:10:10 | 10:10:10 |"],
    ),
    (
        "xlsx2csv-0.8.6/test/datetime.xlsx",
        &["2011-09-15 15:22:00"],
    ),
    (
        "pyexcel-ods3-0.6.1/tests/fixtures/ods_formats.ods",
        &["| 2014-11-11 | 11:12:12 | TRUE | 11.11 |", "| 27:17:54 |"],
    ),
    (
        "odfpy-1.4.1/tests/examples/pythagoras.ods",
        &["| 3 |\n| --- |\n| 4 |\n| 5 |"],
    ),
];

#[test]
fn selected_corpus_files_contain_known_phrases() {
    let Some(dir) = corpus_dir() else { return };
    for (file, phrases) in EXPECTED {
        let path = dir.join(file);
        let out = run(&path, Duration::from_secs(30)).unwrap_or_else(|e| panic!("{file}: {e:?}"));
        for phrase in *phrases {
            assert!(
                out.text.contains(phrase),
                "{file}: missing {phrase:?} in:\n{}",
                out.text.chars().take(3000).collect::<String>()
            );
        }
    }
}

#[test]
fn encrypted_corpus_files_are_refused_as_encrypted() {
    let Some(dir) = corpus_dir() else { return };
    for file in [
        "pypdf-7.1.0/resources/encryption/r2-user-password.pdf",
        "pypdf-7.1.0/resources/encryption/r4-user-password.pdf",
        "pypdf-7.1.0/resources/encryption/r4-aes-user-password.pdf",
        "pypdf-7.1.0/resources/encryption/r6-both-passwords.pdf",
        "pypdf-7.1.0/resources/libreoffice-writer-password.pdf",
        "python_calamine-0.9.1/tests/data/password.xlsx",
        "python_calamine-0.9.1/tests/data/password.xls",
    ] {
        let e = run(&dir.join(file), Duration::from_secs(30)).unwrap_err();
        assert!(matches!(e, ExtractError::Encrypted(_)), "{file}: {e:?}");
        assert!(e.to_string().contains("password"), "{file}: {e}");
    }
}

#[test]
fn pdfs_that_open_with_an_empty_password_are_read() {
    // These have a user password but an empty owner password (pypdf's `decrypt("")` answers
    // OWNER_PASSWORD), or only an owner password: anyone may open them.
    let Some(dir) = corpus_dir() else { return };
    for file in [
        "pypdf-7.1.0/resources/encryption/r5-user-password.pdf",
        "pypdf-7.1.0/resources/encryption/r6-user-password.pdf",
        "pypdf-7.1.0/resources/encryption/r4-owner-password.pdf",
        "pypdf-7.1.0/resources/encryption/r2-empty-password.pdf",
    ] {
        let out = run(&dir.join(file), Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("{file}: {e:?}"));
        assert!(
            out.text.contains("pdf encryption test"),
            "{file}: {}",
            out.text
        );
    }
}

/// PDFs whose cross-reference table or trailer is broken (lopdf refuses them as they are; PyMuPDF
/// repairs them): read through the rebuilt cross-reference table.
#[test]
fn pdfs_with_a_broken_xref_are_read_after_a_rebuild() {
    let Some(dir) = corpus_dir() else { return };
    for (name, phrase) in [
        // One page without a text layer.
        ("pypdf-7.1.0/resources/issue-297.pdf", "[page 1]"),
        (
            "pypdf-7.1.0/resources/selenium-pypdf-issue-177.pdf",
            "Hello World",
        ),
        ("pypdf-7.1.0/resources/toy.pdf", "Something[cited]"),
    ] {
        let bytes = std::fs::read(dir.join(name)).unwrap();
        let out = conversa::extract::extract(
            conversa::domain::FileType::Pdf,
            &bytes,
            &conversa::extract::Limits::default(),
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(out.pages, Some(1), "{name}");
        assert!(out.text.contains(phrase), "{name}: {}", out.text);
    }
}
