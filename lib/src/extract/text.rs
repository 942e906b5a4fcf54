//! Text families: plain text (UTF-8, UTF-16 with BOM, Windows-1252/Latin-1 fallback), CSV (delimiter
//! and encoding detected, rendered as a pipe table, cut with a note when long) and JSON
//! (pretty-printed).

use super::markdown;
use super::{ExtractError, Extracted, Limits};

/// UTF-8, UTF-16 with BOM, else Windows-1252 (a superset of Latin-1).
pub(super) fn decode_text(bytes: &[u8]) -> String {
    if let Some((enc, bom)) = encoding_rs::Encoding::for_bom(bytes) {
        let (text, _) = enc.decode_without_bom_handling(&bytes[bom..]);
        return text.into_owned();
    }
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_owned(),
        Err(_) => encoding_rs::WINDOWS_1252.decode(bytes).0.into_owned(),
    }
}

pub(super) fn plain(bytes: &[u8]) -> Extracted {
    Extracted {
        text: decode_text(bytes).replace("\r\n", "\n"),
        ..Default::default()
    }
}

pub(super) fn json(bytes: &[u8]) -> Result<Extracted, ExtractError> {
    let text = decode_text(bytes);
    let value: serde_json::Value = serde_json::from_str(text.trim_start_matches('\u{feff}'))
        .map_err(|e| ExtractError::Corrupt(format!("this JSON file is not valid JSON: {e}")))?;
    let text =
        serde_json::to_string_pretty(&value).map_err(|e| ExtractError::Corrupt(e.to_string()))?;
    Ok(Extracted {
        text,
        ..Default::default()
    })
}

/// The delimiter that splits the first lines into the most, and most consistent, fields.
fn sniff_delimiter(text: &str) -> u8 {
    let sample: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(20)
        .collect();
    let mut best = (b',', 0usize);
    for d in [b',', b';', b'\t', b'|'] {
        let counts: Vec<usize> = sample
            .iter()
            .map(|l| {
                let mut r = csv::ReaderBuilder::new()
                    .delimiter(d)
                    .has_headers(false)
                    .flexible(true)
                    .from_reader(l.as_bytes());
                r.records()
                    .next()
                    .and_then(Result::ok)
                    .map_or(0, |rec| rec.len())
            })
            .collect();
        let Some(&first) = counts.first() else {
            continue;
        };
        if first < 2 {
            continue;
        }
        // Lines that agree with the first line's field count, times that count.
        let agree = counts.iter().filter(|&&c| c == first).count();
        let score = agree * 100 + first;
        if score > best.1 {
            best = (d, score);
        }
    }
    best.0
}

pub(super) fn csv(bytes: &[u8], limits: &Limits) -> Result<Extracted, ExtractError> {
    let text = decode_text(bytes);
    let text = text.trim_start_matches('\u{feff}');
    let delimiter = sniff_delimiter(text);
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let max_rows = limits.max_rows.max(1);
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut total = 0usize;
    for rec in reader.records() {
        let Ok(rec) = rec else {
            // A malformed line (bad quoting) is kept as text rather than refusing the file.
            continue;
        };
        if rec.iter().all(|c| c.trim().is_empty()) {
            continue;
        }
        total += 1;
        if rows.len() < max_rows {
            rows.push(rec.iter().map(str::to_owned).collect());
        }
    }
    if rows.is_empty() {
        return Ok(Extracted {
            text: text.to_owned(),
            ..Default::default()
        });
    }
    let mut out = String::new();
    markdown::table(&rows, &mut out);
    let note = if total > rows.len() {
        out.push_str(&format!("\n[{} more rows not shown]\n", total - rows.len()));
        Some(format!(
            "The first {} of {total} rows are shown ({} cut).",
            rows.len(),
            total - rows.len()
        ))
    } else {
        None
    };
    Ok(Extracted {
        text: out,
        note,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_are_detected() {
        assert_eq!(decode_text("héllo".as_bytes()), "héllo");
        assert_eq!(decode_text(b"caf\xe9"), "café");
        let utf16: Vec<u8> = [0xFF, 0xFE]
            .into_iter()
            .chain("hé".encode_utf16().flat_map(u16::to_le_bytes))
            .collect();
        assert_eq!(decode_text(&utf16), "hé");
    }

    #[test]
    fn csv_delimiters_are_detected_and_rendered_as_a_table() {
        let out = csv(b"name;price\nTea;1,50\nCoffee;2,00\n", &Limits::default()).unwrap();
        assert_eq!(
            out.text,
            "| name | price |\n| --- | --- |\n| Tea | 1,50 |\n| Coffee | 2,00 |\n"
        );
        let out = csv(b"a\tb\n1\t2\n", &Limits::default()).unwrap();
        assert!(out.text.starts_with("| a | b |"), "{}", out.text);
        let out = csv(b"x,\"y, z\"\n1,2\n", &Limits::default()).unwrap();
        assert!(out.text.contains("| y, z |"), "{}", out.text);
    }

    #[test]
    fn long_csv_is_cut_with_a_note() {
        let mut data = String::from("n,sq\n");
        for i in 0..100 {
            data.push_str(&format!("{i},{}\n", i * i));
        }
        let limits = Limits {
            max_rows: 10,
            ..Limits::default()
        };
        let out = csv(data.as_bytes(), &limits).unwrap();
        assert_eq!(
            out.note.as_deref(),
            Some("The first 10 of 101 rows are shown (91 cut).")
        );
        assert!(out.text.contains("| 8 | 64 |"));
        assert!(!out.text.contains("| 9 | 81 |"));
    }
}
