//! Extraction of small documents built in the test (and two committed encrypted PDFs): what the text
//! looks like for each family, and how hostile files are refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod extract_support;

use std::time::{Duration, Instant};

use conversa::domain::FileType;
use conversa::extract::{detect, extract, ExtractError, Limits};
use extract_support::*;

fn run(file_type: FileType, bytes: &[u8]) -> Result<conversa::extract::Extracted, ExtractError> {
    extract(file_type, bytes, &Limits::default())
}

#[test]
fn two_page_pdf_has_page_markers_sections_and_word_spaces() {
    let streams = vec![
        "BT /F1 12 Tf 72 720 Td (Quarterly revenue grew) Tj 0 -16 Td (in every region.) Tj ET"
            .to_owned(),
        // Words placed apart by positioning, not by space characters.
        "BT /F1 12 Tf 72 720 Td [(Second) -600 (page) -600 (here)] TJ ET".to_owned(),
    ];
    let bytes = pdf_with_streams(&streams);
    assert_eq!(
        detect(&bytes, "report.pdf", Some("application/pdf"))
            .unwrap()
            .file_type,
        FileType::Pdf
    );
    let out = run(FileType::Pdf, &bytes).unwrap();
    assert_eq!(out.pages, Some(2));
    assert!(out.text.starts_with("[page 1]\n"), "{}", out.text);
    assert!(out.text.contains("Quarterly revenue grew"), "{}", out.text);
    assert!(out.text.contains("in every region."), "{}", out.text);
    assert!(
        out.text.contains("[page 2]\nSecond page here"),
        "{}",
        out.text
    );
    assert_eq!(out.sections.len(), 2);
    assert_eq!(out.sections[1].label, "page 2");
    assert_eq!(out.sections[1].text, "Second page here");
    assert!(out.note.is_none(), "{:?}", out.note);
}

#[test]
fn pdf_without_text_layer_is_ready_with_a_note() {
    let bytes = pdf_with_streams(&["0 0 m 100 100 l S".to_owned()]);
    let out = run(FileType::Pdf, &bytes).unwrap();
    assert_eq!(out.pages, Some(1));
    assert!(
        out.note.as_deref().unwrap_or("").contains("no text layer"),
        "{:?}",
        out.note
    );
}

#[test]
fn pdf_pages_past_the_limit_are_left_out_with_a_note() {
    let bytes = pdf_with_pages(&["one", "two", "three"]);
    let limits = Limits {
        max_pages: 2,
        ..Limits::default()
    };
    let out = extract(FileType::Pdf, &bytes, &limits).unwrap();
    assert_eq!(out.pages, Some(3));
    assert_eq!(out.sections.len(), 2);
    assert!(!out.text.contains("three"));
    assert!(out.note.unwrap().contains("first 2 of 3 pages"));
}

#[test]
fn pdf_with_a_user_password_is_encrypted() {
    let bytes = include_bytes!("fixtures/encrypted-user-password.pdf");
    let e = run(FileType::Pdf, bytes).unwrap_err();
    assert!(matches!(e, ExtractError::Encrypted(_)), "{e:?}");
    assert!(e.to_string().contains("password"), "{e}");
}

#[test]
fn pdf_with_only_an_owner_password_is_read() {
    let bytes = include_bytes!("fixtures/encrypted-owner-only.pdf");
    let out = run(FileType::Pdf, bytes).unwrap();
    assert!(
        out.text.contains("Confidential quarterly numbers"),
        "{}",
        out.text
    );
}

#[test]
fn truncated_pdf_is_an_error_or_partial_text_never_a_panic() {
    let bytes = pdf_with_pages(&["alpha", "beta"]);
    for cut in [bytes.len() / 3, bytes.len() / 2, bytes.len() - 30] {
        match run(FileType::Pdf, &bytes[..cut]) {
            Ok(out) => assert!(out.pages.is_some()),
            Err(e) => assert!(matches!(e, ExtractError::Corrupt(_)), "{e:?}"),
        }
    }
    let e = run(FileType::Pdf, b"%PDF-1.7\n1 0 obj\n<<").unwrap_err();
    assert!(matches!(e, ExtractError::Corrupt(_)), "{e:?}");
}

#[test]
fn a_pdf_that_is_really_a_png_is_a_mismatch() {
    let e = detect(&png(4, 4), "report.pdf", Some("application/pdf")).unwrap_err();
    assert!(matches!(e, ExtractError::Mismatch(_)), "{e:?}");
    assert!(e.to_string().contains("report.pdf"), "{e}");
}

#[test]
fn docx_headings_lists_tables_links_headers_footers_and_footnotes() {
    let body = [
        p_styled("Heading1", "Annual Report"),
        p("Intro paragraph with a note<w:r><w:footnoteReference w:id=\"1\"/></w:r>."),
        p_styled("Heading2", "Highlights"),
        li(1, 0, "Revenue up"),
        li(1, 1, "mostly in Europe"),
        li(1, 0, "Costs down"),
        li(2, 0, "First step"),
        li(2, 0, "Second step"),
        tbl(&[&["Region", "Sales"], &["North", "12"], &["South | East", "7"]]),
        "<w:p><w:r><w:t xml:space=\"preserve\">See </w:t></w:r><w:hyperlink r:id=\"rIdLink\"><w:r><w:t>the full report</w:t></w:r></w:hyperlink><w:r><w:t xml:space=\"preserve\"> online.</w:t></w:r></w:p>".to_owned(),
        "<w:p><w:del><w:r><w:delText>removed words</w:delText></w:r></w:del><w:r><w:t>Kept words</w:t></w:r></w:p>".to_owned(),
        "<w:p><w:r><w:t>Tom &amp; Jerry &#8211; friends</w:t></w:r></w:p>".to_owned(),
    ]
    .concat();
    let bytes = docx(&body);
    assert_eq!(
        detect(&bytes, "report.docx", None).unwrap().file_type,
        FileType::Docx
    );
    let out = run(FileType::Docx, &bytes).unwrap();
    let t = &out.text;
    assert!(
        t.starts_with("Acme Corp internal\n\n# Annual Report\n\n"),
        "{t}"
    );
    assert!(t.contains("Intro paragraph with a note[^1]."), "{t}");
    assert!(t.contains("\n## Highlights\n"), "{t}");
    assert!(
        t.contains(
            "- Revenue up\n  - mostly in Europe\n- Costs down\n1. First step\n2. Second step"
        ),
        "{t}"
    );
    assert!(
        t.contains("| Region | Sales |\n| --- | --- |\n| North | 12 |\n| South \\| East | 7 |"),
        "{t}"
    );
    assert!(
        t.contains("See [the full report](https://example.com/report) online."),
        "{t}"
    );
    assert!(
        t.contains("Kept words") && !t.contains("removed words"),
        "{t}"
    );
    assert!(t.contains("Tom & Jerry – friends"), "{t}");
    assert!(t.contains("[^1]: Source: annual survey."), "{t}");
    assert!(t.trim_end().ends_with("Page footer text"), "{t}");
}

#[test]
fn docx_zip_bomb_is_refused_quickly() {
    // Limits scaled down 25× from the defaults (200 MB) so that building the bomb stays quick.
    let limits = Limits {
        max_decompressed_bytes: 8 * 1024 * 1024,
        ..Limits::default()
    };
    // Ten parts of 1 MB of spaces: a few KB zipped, 10 MB unzipped.
    let filler = " ".repeat(1024 * 1024);
    let names: Vec<String> = (0..10).map(|i| format!("word/media/pad{i}.xml")).collect();
    let mut parts: Vec<(&str, &str)> = names
        .iter()
        .map(|n| (n.as_str(), filler.as_str()))
        .collect();
    let body = format!("<w:document {W}><w:body>{}</w:body></w:document>", p("x"));
    parts.push(("word/document.xml", &body));
    let bytes = zip_of(&parts);
    assert!(bytes.len() < 100 * 1024, "{}", bytes.len());
    let started = Instant::now();
    let e = extract(FileType::Docx, &bytes, &limits).unwrap_err();
    assert!(matches!(e, ExtractError::TooLarge(_)), "{e:?}");
    assert!(e.to_string().contains("zip bomb"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(2));
    // The same document within the limit is read.
    let ok = zip_of(&[("word/document.xml", &body)]);
    assert_eq!(extract(FileType::Docx, &ok, &limits).unwrap().text, "x");
}

#[test]
fn xlsx_sheets_dates_formulas_and_trimming() {
    let sales = vec![
        vec![String::new(), String::new(), String::new()],
        vec![String::new(), s("Day"), s("Units"), s("Double")],
        vec![String::new(), date(45292), n(21.0), formula("C3*2", 42.0)],
        vec![String::new(), date(45293), n(2.5), formula("C4*2", 5.0)],
    ];
    let notes = vec![vec![s("Owner"), s("Ana")]];
    let bytes = xlsx(&[("Sales", sales), ("Notes", notes)]);
    assert_eq!(
        detect(&bytes, "book.xlsx", None).unwrap().file_type,
        FileType::Xlsx
    );
    let out = run(FileType::Xlsx, &bytes).unwrap();
    assert_eq!(out.pages, Some(2));
    let t = &out.text;
    assert!(
        t.contains("## Sheet: Sales\n\n| Day | Units | Double |\n| --- | --- | --- |\n| 2024-01-01 | 21 | 42 |\n| 2024-01-02 | 2.5 | 5 |"),
        "{t}"
    );
    assert!(t.contains("## Sheet: Notes\n\n| Owner | Ana |"), "{t}");
    assert!(!t.contains("45292"), "{t}");
    assert_eq!(out.sections.len(), 2);
    assert_eq!(out.sections[0].label, "sheet Sales");
    assert_eq!(out.sections[1].label, "sheet Notes");
}

#[test]
fn huge_sheets_are_cut_with_a_note() {
    let rows: Vec<Vec<String>> = (0..300).map(|i| vec![n(f64::from(i))]).collect();
    let bytes = xlsx(&[("Big", rows)]);
    let limits = Limits {
        max_rows: 100,
        ..Limits::default()
    };
    let out = extract(FileType::Xlsx, &bytes, &limits).unwrap();
    assert_eq!(
        out.note.as_deref(),
        Some("Sheet Big: the first 100 of 300 rows are shown (200 cut).")
    );
    assert!(out.text.contains("| 99 |") && !out.text.contains("| 100 |"));
}

#[test]
fn csv_text_and_json() {
    let d = detect(b"a;b\n1;2\n", "data.csv", None).unwrap();
    assert_eq!(d.file_type, FileType::Csv);
    let out = run(FileType::Csv, "name;city\nZoë;Kraków\n".as_bytes()).unwrap();
    assert_eq!(
        out.text,
        "| name | city |\n| --- | --- |\n| Zoë | Kraków |\n"
    );
    // Latin-1 bytes.
    let out = run(FileType::Csv, b"name,city\nJos\xe9,M\xe1laga\n").unwrap();
    assert!(out.text.contains("| José | Málaga |"), "{}", out.text);
    let out = run(FileType::Text, b"line one\r\nline two").unwrap();
    assert_eq!(out.text, "line one\nline two");
    let out = run(FileType::Json, br#"{"a":[1,2],"b":"x"}"#).unwrap();
    assert_eq!(
        out.text,
        "{\n  \"a\": [\n    1,\n    2\n  ],\n  \"b\": \"x\"\n}"
    );
    let e = run(FileType::Json, b"{not json").unwrap_err();
    assert!(matches!(e, ExtractError::Corrupt(_)), "{e:?}");
}

#[test]
fn images_are_downscaled_and_bombs_refused_before_decoding() {
    let out = run(FileType::Image, &png(3000, 1500)).unwrap();
    let img = out.image.unwrap();
    assert_eq!((img.width, img.height), (2048, 1024));
    assert_eq!(img.mime, "image/jpeg");
    assert!(img.data.starts_with(&[0xFF, 0xD8, 0xFF]));
    let small = run(FileType::Image, &png(20, 10)).unwrap().image.unwrap();
    assert_eq!((small.width, small.height), (20, 10));

    let bomb = png_claiming(100_000, 100_000);
    assert_eq!(
        detect(&bomb, "huge.png", None).unwrap().file_type,
        FileType::Image
    );
    let started = Instant::now();
    let e = run(FileType::Image, &bomb).unwrap_err();
    assert!(matches!(e, ExtractError::TooLarge(_)), "{e:?}");
    assert!(e.to_string().contains("100000×100000"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[test]
fn text_is_cut_at_the_character_limit() {
    let limits = Limits {
        max_chars: 10,
        ..Limits::default()
    };
    let out = extract(FileType::Text, "ééééééééééééééé".as_bytes(), &limits).unwrap();
    assert_eq!(out.text.chars().count(), 10);
    assert_eq!(out.note.as_deref(), Some("Text cut at 10 characters."));
}

/// The progress values `with_progress` receives while `bytes` is extracted in this process.
fn progress_of(file_type: FileType, bytes: &[u8]) -> Vec<u8> {
    let seen = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let sink = seen.clone();
    conversa::extract::with_progress(
        move |p| sink.borrow_mut().push(p),
        || run(file_type, bytes).unwrap(),
    );
    let values = seen.borrow().clone();
    values
}

#[test]
fn docx_and_spreadsheets_report_rising_progress() {
    let rising = |v: &[u8]| v.windows(2).all(|w| w[0] < w[1]) && v.iter().all(|p| *p < 100);

    let body: String = (0..400)
        .map(|i| p(&format!("Paragraph {i} of a long report.")))
        .collect();
    let v = progress_of(FileType::Docx, &docx(&body));
    assert!(rising(&v), "{v:?}");
    assert!(v.len() >= 50, "paragraph by paragraph: {v:?}");
    assert!(*v.last().unwrap() >= 90, "{v:?}");

    // One sheet: the rows count, against the sheet's declared dimension.
    let rows: Vec<Vec<String>> = (0..300).map(|r| vec![s("x"), n(f64::from(r))]).collect();
    let v = progress_of(FileType::Xlsx, &xlsx(&[("Only", rows.clone())]));
    assert!(rising(&v), "{v:?}");
    assert!(v.len() >= 50, "row by row: {v:?}");

    // Two sheets: the second sheet starts at 50.
    let v = progress_of(FileType::Xlsx, &xlsx(&[("A", rows.clone()), ("B", rows)]));
    assert!(rising(&v), "{v:?}");
    assert!(
        v.contains(&50) && v.iter().any(|p| (1..50).contains(p)) && *v.last().unwrap() > 90,
        "{v:?}"
    );
}

#[test]
fn pdf_with_a_wrong_startxref_is_read_through_a_rebuilt_xref() {
    let good =
        pdf_with_streams(&["BT /F1 12 Tf 72 720 Td (Rebuilt from the objects) Tj ET".into()]);
    let text = String::from_utf8_lossy(&good).into_owned();
    let at = text.rfind("startxref\n").unwrap() + "startxref\n".len();
    let end = at + text[at..].find('\n').unwrap();
    // The table's offset points into the middle of an object, as after a bad edit.
    let broken = format!("{}17{}", &text[..at], &text[end..]);
    let out = run(FileType::Pdf, broken.as_bytes()).unwrap();
    assert_eq!(out.pages, Some(1));
    assert!(
        out.text.contains("Rebuilt from the objects"),
        "{}",
        out.text
    );
    // Without any object there is nothing to rebuild from.
    let empty = b"%PDF-1.4\nnothing here\ntrailer\n<< /Root 1 0 R >>\nstartxref\n9\n%%EOF\n";
    assert!(matches!(
        run(FileType::Pdf, empty),
        Err(ExtractError::Corrupt(_))
    ));
}
