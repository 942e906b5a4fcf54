//! Spreadsheets (XLSX, XLSM, XLSB, XLS, ODS) → one pipe table per sheet under `## Sheet: NAME`:
//! cached formula values, dates as ISO dates, empty rows and columns dropped, long sheets cut with a
//! note saying how many rows were left out.

use std::io::Cursor;

use calamine::{open_workbook_from_rs, Cell, Data, DataRef, Ods, Range, Reader, Xls, Xlsb, Xlsx};

use super::cfb;
use super::markdown;
use super::zipsafe::{check_zip, Container};
use super::{ExtractError, Extracted, Limits, Section};
use crate::domain::FileType;

pub(super) fn extract(
    file_type: FileType,
    bytes: &[u8],
    limits: &Limits,
) -> Result<Extracted, ExtractError> {
    let sheets = match file_type {
        FileType::Xls => {
            if is_encrypted_ooxml(bytes) {
                return Err(encrypted());
            }
            // calamine follows the container's sector chains without a loop check: refuse a
            // looping or out-of-range chain before it allocates without end.
            cfb::check(bytes).map_err(|damage| {
                ExtractError::Corrupt(format!(
                    "the spreadsheet is damaged or not readable ({damage})"
                ))
            })?;
            let wb = open_workbook_from_rs::<Xls<_>, _>(Cursor::new(bytes)).map_err(open_err)?;
            read_all(wb, limits)?
        }
        FileType::Ods => {
            check_zip(bytes, limits)?;
            let wb = open_workbook_from_rs::<Ods<_>, _>(Cursor::new(bytes)).map_err(open_err)?;
            read_all(wb, limits)?
        }
        _ => {
            // An OLE container is not an XLSX/XLSB, though a zip can be appended to one: calamine
            // would follow its sector chains (unchecked) looking for a password. Encrypted OOXML is
            // such a container.
            if bytes.starts_with(&cfb::SIGNATURE) {
                if is_encrypted_ooxml(bytes) {
                    return Err(encrypted());
                }
                return Err(ExtractError::Corrupt(
                    "the spreadsheet is damaged or not readable (an OLE container, not a workbook \
                     package)"
                        .into(),
                ));
            }
            check_zip(bytes, limits)?;
            let binary = Container::open(bytes, limits)?
                .names()
                .iter()
                .any(|n| n.ends_with("workbook.bin"));
            if binary {
                let wb =
                    open_workbook_from_rs::<Xlsb<_>, _>(Cursor::new(bytes)).map_err(open_err)?;
                read_all(wb, limits)?
            } else {
                let mut wb =
                    open_workbook_from_rs::<Xlsx<_>, _>(Cursor::new(bytes)).map_err(open_err)?;
                let names = wb.sheet_names();
                read_sheets(&names, limits, |name, progress| {
                    xlsx_range(&mut wb, name, progress).map_err(|e| e.to_string())
                })?
            }
        }
    };
    Ok(sheets)
}

fn encrypted() -> ExtractError {
    ExtractError::Encrypted("the spreadsheet is password-protected".into())
}

fn open_err(e: impl std::fmt::Display) -> ExtractError {
    if e.to_string().to_ascii_lowercase().contains("password") {
        encrypted()
    } else {
        ExtractError::Corrupt("the spreadsheet is damaged or not readable".into())
    }
}

/// An encrypted XLSX/DOCX is an OLE container with an `EncryptedPackage` stream.
pub(super) fn is_encrypted_ooxml(bytes: &[u8]) -> bool {
    const NAME: &[u8] = b"E\0n\0c\0r\0y\0p\0t\0e\0d\0P\0a\0c\0k\0a\0g\0e\0";
    bytes.windows(NAME.len()).any(|w| w == NAME)
}

fn read_all<RS, R>(mut wb: R, limits: &Limits) -> Result<Extracted, ExtractError>
where
    RS: std::io::Read + std::io::Seek,
    R: Reader<RS>,
    R::Error: std::fmt::Display,
{
    let names = wb.sheet_names();
    read_sheets(&names, limits, |name, _| {
        wb.worksheet_range(name).map_err(|e| e.to_string())
    })
}

/// An XLSX sheet's values, read cell by cell so that progress can follow the rows against the
/// sheet's declared dimension (`progress(done, total)`); the same cells as calamine's
/// `worksheet_range` (empty cells skipped, chart sheets empty).
fn xlsx_range<RS: std::io::Read + std::io::Seek>(
    wb: &mut Xlsx<RS>,
    name: &str,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Range<Data>, calamine::XlsxError> {
    let mut reader = match wb.worksheet_cells_reader(name) {
        Ok(r) => r,
        Err(calamine::XlsxError::NotAWorksheet(_)) => return Ok(Range::default()),
        Err(e) => return Err(e),
    };
    let dim = reader.dimensions();
    let rows = dim.end.0.saturating_sub(dim.start.0) as usize + 1;
    let mut cells = Vec::new();
    let mut last_row = u32::MAX;
    while let Some(cell) = reader.next_cell()? {
        let (row, _) = cell.get_position();
        // Without a declared dimension (one row: `A1`) only whole sheets count.
        if row != last_row && rows > 1 {
            last_row = row;
            progress(row.saturating_sub(dim.start.0) as usize, rows);
        }
        if !matches!(cell.get_value(), DataRef::Empty) {
            cells.push(Cell::new(
                cell.get_position(),
                Data::from(cell.get_value().clone()),
            ));
        }
    }
    Ok(Range::from_sparse(cells))
}

/// Reads every sheet through `range_of(name, progress)`, reporting progress as sheets done plus
/// the share of the current sheet that `range_of` reports.
fn read_sheets(
    names: &[String],
    limits: &Limits,
    mut range_of: impl FnMut(&str, &mut dyn FnMut(usize, usize)) -> Result<Range<Data>, String>,
) -> Result<Extracted, ExtractError> {
    // Units of progress per sheet.
    const PER_SHEET: usize = 1000;
    let all = names.len().saturating_mul(PER_SHEET);
    let mut text = String::new();
    let mut sections = Vec::new();
    let mut notes = Vec::new();
    let mut read = 0usize;
    for (i, name) in names.iter().enumerate() {
        let base = i.saturating_mul(PER_SHEET);
        super::report_progress(base, all);
        let mut within = |done: usize, total: usize| {
            if let Some(part) = done.min(total).saturating_mul(PER_SHEET).checked_div(total) {
                super::report_progress(base.saturating_add(part), all);
            }
        };
        let range = match range_of(name, &mut within) {
            Ok(r) => r,
            Err(e) => {
                if e.to_ascii_lowercase().contains("password") {
                    return Err(encrypted());
                }
                // Chart sheets and damaged sheets: say so, keep the others.
                notes.push(format!("Sheet {name} could not be read."));
                continue;
            }
        };
        read += 1;
        let (body, cut) = sheet_table(&range, limits.max_rows);
        if let Some((shown, total)) = cut {
            notes.push(format!(
                "Sheet {name}: the first {shown} of {total} rows are shown ({} cut).",
                total - shown
            ));
        }
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(&format!("## Sheet: {name}\n\n"));
        text.push_str(&body);
        sections.push(Section {
            label: format!("sheet {name}"),
            text: body,
        });
        if text.len() > limits.max_chars.saturating_mul(4) {
            notes.push("Later sheets were left out: the text limit was reached.".into());
            break;
        }
    }
    if read == 0 && !names.is_empty() {
        return Err(ExtractError::Corrupt(
            "the spreadsheet is damaged or not readable (no sheet could be read)".into(),
        ));
    }
    Ok(Extracted {
        text,
        pages: Some(names.len() as u32),
        image: None,
        note: (!notes.is_empty()).then(|| notes.join(" ")),
        sections,
    })
}

/// One sheet as a pipe table, and (rows shown, rows in total) when it was cut.
fn sheet_table(range: &Range<Data>, max_rows: usize) -> (String, Option<(usize, usize)>) {
    let rows: Vec<&[Data]> = range
        .rows()
        .filter(|r| r.iter().any(|c| !is_blank(c)))
        .collect();
    if rows.is_empty() {
        return ("(empty sheet)\n".to_owned(), None);
    }
    let width = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    let used: Vec<usize> = (0..width)
        .filter(|&c| rows.iter().any(|r| r.get(c).is_some_and(|d| !is_blank(d))))
        .collect();
    let total = rows.len();
    let shown = total.min(max_rows.max(1));
    let table: Vec<Vec<String>> = rows[..shown]
        .iter()
        .map(|r| {
            used.iter()
                .map(|&c| r.get(c).map(cell).unwrap_or_default())
                .collect()
        })
        .collect();
    let mut out = String::new();
    markdown::table(&table, &mut out);
    if shown < total {
        out.push_str(&format!("\n[{} more rows not shown]\n", total - shown));
    }
    (out, (shown < total).then_some((shown, total)))
}

fn is_blank(d: &Data) -> bool {
    match d {
        Data::Empty => true,
        Data::String(s) => s.trim().is_empty(),
        _ => false,
    }
}

/// A cell as a person reads it: dates as ISO dates, whole numbers without `.0`.
fn cell(d: &Data) -> String {
    match d {
        Data::Empty => String::new(),
        Data::String(s) => s.clone(),
        Data::Int(i) => i.to_string(),
        Data::Float(f) => number(*f),
        Data::Bool(b) => if *b { "TRUE" } else { "FALSE" }.to_owned(),
        Data::DateTime(dt) => {
            if dt.is_duration() {
                return match dt.as_duration() {
                    Some(d) => {
                        let s = d.num_seconds();
                        format!("{}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
                    }
                    None => number(dt.as_f64()),
                };
            }
            match dt.as_datetime() {
                Some(t) => {
                    let v = dt.as_f64();
                    if v.fract() == 0.0 {
                        t.format("%Y-%m-%d").to_string()
                    } else if v < 1.0 {
                        t.format("%H:%M:%S").to_string()
                    } else {
                        t.format("%Y-%m-%d %H:%M:%S").to_string()
                    }
                }
                None => number(dt.as_f64()),
            }
        }
        Data::DateTimeIso(s) => s
            .strip_suffix("T00:00:00")
            .unwrap_or(s)
            .replacen('T', " ", 1),
        Data::DurationIso(s) => iso_duration(s).unwrap_or_else(|| s.clone()),
        Data::Error(e) => e.to_string(),
    }
}

/// `PT27H17M54S` → `27:17:54` (OpenDocument times and durations).
fn iso_duration(s: &str) -> Option<String> {
    let rest = s.strip_prefix("PT")?;
    let (h, rest) = rest.split_once('H')?;
    let (m, rest) = rest.split_once('M')?;
    let sec = rest.strip_suffix('S')?;
    let sec: f64 = sec.parse().ok()?;
    Some(format!(
        "{}:{:02}:{:02}",
        h.parse::<u64>().ok()?,
        m.parse::<u64>().ok()?,
        sec.round() as u64
    ))
}

/// Numbers as a spreadsheet shows them: at most 15 significant digits, no trailing zeros.
fn number(f: f64) -> String {
    if !f.is_finite() {
        return f.to_string();
    }
    if f.fract() == 0.0 && f.abs() < 1e15 {
        return format!("{}", f as i64);
    }
    let magnitude = if f == 0.0 {
        0
    } else {
        f.abs().log10().floor() as i32
    };
    let decimals = (14 - magnitude).clamp(0, 20) as usize;
    let s = format!("{f:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_durations_read_as_clock_times() {
        assert_eq!(iso_duration("PT27H17M54S").as_deref(), Some("27:17:54"));
        assert_eq!(iso_duration("PT00H00M12.4S").as_deref(), Some("0:00:12"));
        assert_eq!(iso_duration("P1D"), None);
    }

    #[test]
    fn numbers_read_like_a_spreadsheet_shows_them() {
        assert_eq!(number(3.0), "3");
        assert_eq!(number(-12.5), "-12.5");
        assert_eq!(number(0.1 + 0.2), "0.3");
        assert_eq!(number(1234567.891), "1234567.891");
        assert_eq!(number(1e20), "100000000000000000000");
    }

    #[test]
    fn empty_rows_and_columns_are_dropped_and_long_sheets_cut() {
        let mut range: Range<Data> = Range::new((0, 0), (5, 3));
        range.set_value((1, 1), Data::String("Name".into()));
        range.set_value((1, 3), Data::String("Qty".into()));
        for r in 2..6u32 {
            range.set_value((r, 1), Data::String(format!("item{r}")));
            range.set_value((r, 3), Data::Int(i64::from(r)));
        }
        let (t, cut) = sheet_table(&range, 100);
        assert!(cut.is_none());
        assert!(
            t.starts_with("| Name | Qty |\n| --- | --- |\n| item2 | 2 |"),
            "{t}"
        );
        let (t, cut) = sheet_table(&range, 3);
        assert_eq!(cut, Some((3, 5)));
        assert!(t.contains("[2 more rows not shown]"), "{t}");
        assert!(!t.contains("item4"), "{t}");
    }
}
