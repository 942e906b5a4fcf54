//! PDF → text per page, under `[page N]` markers: lopdf parses the file (and decrypts it when it
//! opens with the empty user password), pdf-extract lays out the glyphs of each page (fonts,
//! encodings, CMaps, spacing between words), then the text is tidied (ligatures expanded, spaces
//! and blank lines collapsed). A PDF that needs a password is [`ExtractError::Encrypted`]; one with
//! no text layer is read with a note saying so.

use lopdf::Document;

use super::{ExtractError, Extracted, Limits, Section};

pub(super) fn extract(bytes: &[u8], limits: &Limits) -> Result<Extracted, ExtractError> {
    let mut doc = load(bytes)?;
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

/// Parses the file; when lopdf refuses it (a broken cross-reference table or trailer), tries
/// once more on a copy whose cross-reference table was rebuilt from the objects themselves
/// ([`rebuild_xref`]), as other PDF readers do.
fn load(bytes: &[u8]) -> Result<Document, ExtractError> {
    let first = match Document::load_mem(bytes) {
        Ok(doc) => return Ok(doc),
        Err(e) => load_err(e),
    };
    if matches!(first, ExtractError::Encrypted(_)) {
        return Err(first);
    }
    match rebuild_xref(bytes).map(|b| Document::load_mem(&b)) {
        Some(Ok(doc)) if !doc.get_pages().is_empty() => Ok(doc),
        _ => Err(first),
    }
}

/// Most objects a rebuilt cross-reference table lists.
const MAX_REBUILT_OBJECTS: usize = 1_000_000;

/// `bytes` with a new cross-reference section appended: every `N G obj` that starts a line (the
/// last definition of a number wins, as with incremental updates), and a trailer naming the
/// catalog of the last `/Root N G R` in the file, else the last `/Type /Catalog` object. `None`
/// when no object or no catalog is found, or when the file is encrypted (its trailer's `/ID` and
/// `/Encrypt` are not rebuilt).
fn rebuild_xref(bytes: &[u8]) -> Option<Vec<u8>> {
    // lopdf reads from the `%PDF-` header on: offsets count from there.
    let start = find(bytes, b"%PDF-", 0)?;
    let body = &bytes[start..];
    if find(body, b"/Encrypt", 0).is_some() {
        return None;
    }
    let mut objects: std::collections::BTreeMap<u32, (u16, usize)> = Default::default();
    let mut catalog = None;
    let mut at = 0;
    while let Some(i) = find(body, b" obj", at) {
        at = i + 4;
        let Some((number, generation, begin)) = object_header(body, i) else {
            continue;
        };
        if objects.len() >= MAX_REBUILT_OBJECTS && !objects.contains_key(&number) {
            return None;
        }
        objects.insert(number, (generation, begin));
        let head = &body[at..body.len().min(at + 256)];
        if find(head, b"/Type/Catalog", 0).is_some() || find(head, b"/Type /Catalog", 0).is_some() {
            catalog = Some((number, generation));
        }
    }
    let root = last_root(body).or(catalog)?;
    if objects.is_empty() {
        return None;
    }
    let mut out = bytes.to_vec();
    if !out.ends_with(b"\n") {
        out.push(b'\n');
    }
    let xref_at = out.len() - start;
    let mut table = String::from("xref\n0 1\n0000000000 65535 f \n");
    for (number, (generation, offset)) in &objects {
        table.push_str(&format!("{number} 1\n{offset:010} {generation:05} n \n"));
    }
    let size = objects
        .keys()
        .next_back()
        .map_or(1, |n| n.saturating_add(1));
    table.push_str(&format!(
        "trailer\n<< /Size {size} /Root {} {} R >>\nstartxref\n{xref_at}\n%%EOF\n",
        root.0, root.1
    ));
    out.extend_from_slice(table.as_bytes());
    Some(out)
}

/// The first index of `needle` in `hay` at or after `from`.
fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

/// For ` obj` at `i`: the object number, generation and offset of an `N G obj` header that starts a
/// line (only spaces before it), when the bytes there are one.
fn object_header(body: &[u8], i: usize) -> Option<(u32, u16, usize)> {
    // Whatever follows `obj` must end the keyword.
    if body
        .get(i + 4)
        .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
    {
        return None;
    }
    let before = &body[..i];
    let gen_start = before
        .iter()
        .rposition(|c| !c.is_ascii_digit())
        .map_or(0, |p| p + 1);
    let generation: u16 = std::str::from_utf8(&before[gen_start..])
        .ok()?
        .parse()
        .ok()?;
    let spaces_end = gen_start;
    let spaces_start = before[..spaces_end]
        .iter()
        .rposition(|c| *c != b' ')
        .map_or(0, |p| p + 1);
    if spaces_start == spaces_end {
        return None;
    }
    let num_start = before[..spaces_start]
        .iter()
        .rposition(|c| !c.is_ascii_digit())
        .map_or(0, |p| p + 1);
    let number: u32 = std::str::from_utf8(&before[num_start..spaces_start])
        .ok()?
        .parse()
        .ok()?;
    let line_start = before[..num_start]
        .iter()
        .rposition(|c| *c != b' ' && *c != b'\t')
        .is_none_or(|p| matches!(before[p], b'\n' | b'\r'));
    (line_start && number > 0).then_some((number, generation, num_start))
}

/// The last `/Root N G R` of the file (trailers come after the objects they name).
fn last_root(body: &[u8]) -> Option<(u32, u16)> {
    let mut found = None;
    let mut at = 0;
    while let Some(i) = find(body, b"/Root", at) {
        at = i + 5;
        let rest = &body[at..body.len().min(at + 32)];
        let text = String::from_utf8_lossy(rest);
        let mut words = text.split_ascii_whitespace();
        if let (Some(n), Some(g), Some(r)) = (words.next(), words.next(), words.next()) {
            if let (Ok(n), Ok(g), true) = (n.parse(), g.parse(), r.starts_with('R')) {
                found = Some((n, g));
            }
        }
    }
    found
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
