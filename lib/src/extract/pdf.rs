//! PDF → text per page, under `[page N]` markers: lopdf parses the file (and decrypts it when it
//! opens with the empty user password), pdf-extract lays out the glyphs of each page (fonts,
//! encodings, CMaps, spacing between words), then the text is tidied (ligatures expanded, spaces
//! and blank lines collapsed). A PDF that needs a password is [`ExtractError::Encrypted`]; one with
//! no text layer is read with a note saying so.

use lopdf::Document;

use super::{ExtractError, Extracted, Limits, Section};

pub(super) fn extract(bytes: &[u8], limits: &Limits) -> Result<Extracted, ExtractError> {
    let mut doc = Document::load_mem(bytes).map_err(load_err)?;
    if doc.is_encrypted() {
        doc.decrypt("").map_err(|_| {
            ExtractError::Encrypted(
                "the PDF is password-protected; remove the password and upload it again".into(),
            )
        })?;
    }
    let pages = doc.get_pages();
    let total = pages.len();
    let mut notes = Vec::new();
    let mut sections = Vec::with_capacity(total.min(limits.max_pages as usize));
    let mut failed = 0usize;
    let mut chars = 0usize;
    for (i, (&number, _)) in pages.iter().enumerate() {
        super::report_progress(i, total);
        if i >= limits.max_pages as usize {
            notes.push(format!(
                "Only the first {} of {total} pages were read.",
                limits.max_pages
            ));
            break;
        }
        if chars > limits.max_chars {
            // The rest would be cut anyway.
            notes.push(format!(
                "Only the first {i} of {total} pages were read (the text limit was reached)."
            ));
            break;
        }
        let mut raw = String::new();
        let mut out = pdf_extract::PlainTextOutput::new(&mut raw);
        if pdf_extract::output_doc_page(&doc, &mut out, number).is_err() {
            failed += 1;
        }
        let text = tidy(&raw);
        chars += text.len();
        sections.push(Section {
            label: format!("page {}", i + 1),
            text,
        });
    }
    if sections.is_empty() && total > 0 {
        return Err(ExtractError::Corrupt(
            "the PDF is damaged or not readable".into(),
        ));
    }
    if failed > 0 {
        notes.push(format!(
            "{failed} of {} pages could not be read completely.",
            sections.len()
        ));
    }
    if sections.iter().all(|s| s.text.trim().is_empty()) {
        notes.insert(
            0,
            "This PDF has no text layer (it looks scanned); its text could not be read.".into(),
        );
    }
    let mut text = String::new();
    for s in &sections {
        if !text.is_empty() {
            text.push_str("\n\n");
        }
        text.push('[');
        text.push_str(&s.label);
        text.push_str("]\n");
        text.push_str(&s.text);
    }
    Ok(Extracted {
        text,
        pages: Some(total as u32),
        image: None,
        note: (!notes.is_empty()).then(|| notes.join(" ")),
        sections,
    })
}

fn load_err(e: lopdf::Error) -> ExtractError {
    let msg = e.to_string().to_ascii_lowercase();
    if msg.contains("encrypt") || msg.contains("decrypt") || msg.contains("password") {
        ExtractError::Encrypted(
            "the PDF is password-protected; remove the password and upload it again".into(),
        )
    } else {
        ExtractError::Corrupt("the PDF is damaged or not readable".into())
    }
}

/// Expands ligatures, drops control characters, collapses runs of spaces and of blank lines, and
/// trims every line.
pub(super) fn tidy(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut blank_lines = 0usize;
    for line in raw.lines() {
        let mut l = String::with_capacity(line.len());
        let mut space = false;
        for ch in line.chars() {
            let expanded = match ch {
                '\u{FB00}' => "ff",
                '\u{FB01}' => "fi",
                '\u{FB02}' => "fl",
                '\u{FB03}' => "ffi",
                '\u{FB04}' => "ffl",
                '\u{FB05}' | '\u{FB06}' => "st",
                '\u{00A0}' | '\t' | ' ' | '\u{2002}'..='\u{200A}' => {
                    space = true;
                    continue;
                }
                '\u{00AD}' | '\u{200B}' | '\u{FEFF}' => continue,
                c if c.is_control() => continue,
                _ => {
                    if space && !l.is_empty() {
                        l.push(' ');
                    }
                    space = false;
                    l.push(ch);
                    continue;
                }
            };
            if space && !l.is_empty() {
                l.push(' ');
            }
            space = false;
            l.push_str(expanded);
        }
        if l.is_empty() {
            blank_lines += 1;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank_lines > 0 { "\n\n" } else { "\n" });
        }
        blank_lines = 0;
        out.push_str(&l);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tidying_expands_ligatures_and_collapses_space() {
        assert_eq!(
            tidy("  \u{FB01}nal   o\u{FB03}ce\u{00A0}\u{00A0}report \n\n\n\nnext\u{0}"),
            "final office report\n\nnext"
        );
    }
}
