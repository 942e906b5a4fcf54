//! Extraction in a child process: the result crosses the process boundary intact, errors come back
//! as the same variants, and a child that runs past its time or memory is stopped with a clear
//! error. The child is this test binary re-executed on the `child_entry` test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod extract_support;

use std::time::{Duration, Instant};

use conversa::domain::FileType;
use conversa::extract::{
    child_main, extract, extract_isolated_with, ExtractError, Isolation, Limits,
};
use extract_support::*;

/// In a child (CONVERSA_EXTRACT_CHILD=1) this runs the extraction and exits; in a normal test run
/// it does nothing.
#[test]
fn child_entry() {
    if let Some(code) = child_main() {
        std::process::exit(code);
    }
}

fn isolation() -> Isolation {
    Isolation {
        program: std::env::current_exe().unwrap(),
        args: vec![
            "child_entry".into(),
            "--exact".into(),
            "--nocapture".into(),
            "--test-threads=1".into(),
        ],
    }
}

#[test]
fn isolated_results_equal_in_process_results() {
    let cases: Vec<(FileType, Vec<u8>)> = vec![
        (
            FileType::Pdf,
            pdf_with_pages(&["first page", "second page"]),
        ),
        (FileType::Docx, docx(&p("hello from a document"))),
        (FileType::Image, png(40, 30)),
        (FileType::Csv, b"a,b\n1,2\n".to_vec()),
    ];
    for (t, bytes) in cases {
        let limits = Limits::default();
        let inside = extract(t, &bytes, &limits).unwrap();
        let outside = extract_isolated_with(&isolation(), t, &bytes, &limits).unwrap();
        assert_eq!(inside, outside, "{t:?}");
    }
}

#[test]
fn isolated_errors_keep_their_kind() {
    let e = extract_isolated_with(
        &isolation(),
        FileType::Pdf,
        include_bytes!("fixtures/encrypted-user-password.pdf"),
        &Limits::default(),
    )
    .unwrap_err();
    assert!(matches!(e, ExtractError::Encrypted(_)), "{e:?}");
    let e =
        extract_isolated_with(&isolation(), FileType::Json, b"{", &Limits::default()).unwrap_err();
    assert!(matches!(e, ExtractError::Corrupt(_)), "{e:?}");
}

#[test]
fn a_child_past_its_time_is_killed() {
    // A large image takes a while to decode and downscale; the limit is far shorter.
    let bytes = png(4000, 4000);
    let limits = Limits {
        timeout: Duration::from_millis(30),
        ..Limits::default()
    };
    let started = Instant::now();
    let e = extract_isolated_with(&isolation(), FileType::Image, &bytes, &limits).unwrap_err();
    assert!(matches!(e, ExtractError::Timeout(_)), "{e:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_child_past_its_memory_is_stopped_with_a_clear_error() {
    // Decoding 5000×5000 RGB needs 75 MB, then as much again to convert and downscale; the child gets far less address space than that
    // on top of what the test binary itself maps.
    let bytes = png(5000, 5000);
    let limits = Limits {
        child_memory_bytes: 96 * 1024 * 1024,
        ..Limits::default()
    };
    let e = extract_isolated_with(&isolation(), FileType::Image, &bytes, &limits).unwrap_err();
    assert!(matches!(e, ExtractError::TooLarge(_)), "{e:?}");
    assert!(e.to_string().contains("memory"), "{e}");
    // With room enough, the same file is read.
    let roomy = Limits {
        child_memory_bytes: 2048 * 1024 * 1024,
        ..Limits::default()
    };
    assert!(extract_isolated_with(&isolation(), FileType::Image, &bytes, &roomy).is_ok());
}

#[test]
fn a_missing_program_is_a_clear_error_not_a_panic() {
    let iso = Isolation {
        program: "/nonexistent/conversa-child".into(),
        args: Vec::new(),
    };
    let e = extract_isolated_with(&iso, FileType::Text, b"hi", &Limits::default()).unwrap_err();
    assert!(e.to_string().contains("could not be read"), "{e}");
}

/// A file of `lib/tests/fixtures/`.
fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name),
    )
    .unwrap()
}

fn looping_xls() -> Vec<u8> {
    fixture("xls-fat-cycle.xls")
}

/// Found by the `sheets` fuzz target: an XLS whose FAT chain loops makes calamine 0.38 append
/// sectors without end (it would take the whole server down in-process). The container check
/// before calamine refuses it as damaged, in-process, at once.
#[test]
fn an_xls_whose_sector_chain_loops_is_refused_in_process() {
    let started = Instant::now();
    let e = extract(FileType::Xls, &looping_xls(), &Limits::default()).unwrap_err();
    assert!(matches!(e, ExtractError::Corrupt(_)), "{e:?}");
    assert!(e.to_string().contains("damaged"), "{e}");
    assert!(e.to_string().contains("loops"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

/// Found by the `sheets` fuzz target: an XLS sheet whose DIMENSIONS record declares about a billion
/// cells made calamine 0.38 reserve 31 GB up front, and the failed allocation aborted the process.
/// With the patched calamine (vendor/calamine) the declared size is a hint only: the file gives text
/// or a clear error, in-process, at once.
#[test]
fn an_xls_declaring_a_billion_cells_does_not_reserve_them() {
    let bytes = fixture("xls-huge-dimensions.xls");
    let started = Instant::now();
    match extract(FileType::Xls, &bytes, &Limits::default()) {
        Ok(x) => assert!(
            x.text.len() < 10 * bytes.len(),
            "{} bytes of text",
            x.text.len()
        ),
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// Found by the `sheets` fuzz target: an OLE container with a zip appended passed the zip checks as an
/// XLSX, and calamine's password probe followed its sector chains into gigabytes. It is refused as
/// damaged before calamine sees it.
#[test]
fn an_ole_container_posing_as_xlsx_is_refused_at_once() {
    let bytes = fixture("xlsx-ole-polyglot.xlsx");
    let started = Instant::now();
    let e = extract(FileType::Xlsx, &bytes, &Limits::default()).unwrap_err();
    assert!(matches!(e, ExtractError::Corrupt(_)), "{e:?}");
    assert!(e.to_string().contains("OLE container"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

/// The same file isolated: the child refuses it the same way (no longer by hitting its memory
/// limit).
#[test]
fn an_xls_whose_sector_chain_loops_is_refused_in_its_child() {
    let limits = Limits {
        child_memory_bytes: 256 * 1024 * 1024,
        timeout: Duration::from_secs(20),
        ..Limits::default()
    };
    let started = Instant::now();
    let e =
        extract_isolated_with(&isolation(), FileType::Xls, &looping_xls(), &limits).unwrap_err();
    assert!(matches!(e, ExtractError::Corrupt(_)), "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
}
