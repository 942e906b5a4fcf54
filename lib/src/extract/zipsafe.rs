//! Zip containers (DOCX, XLSX, ODS) read within limits: entry count, decompressed size counted as it
//! streams (not as the headers claim), encrypted entries refused.

use std::io::{Cursor, Read};

use super::{ExtractError, Limits};

type Archive<'a> = zip::ZipArchive<Cursor<&'a [u8]>>;

/// Entry `index` of `archive`, refused when it is encrypted or cannot be read.
fn entry<'z, 'a>(
    archive: &'z mut Archive<'a>,
    index: usize,
) -> Result<zip::read::ZipFile<'z, Cursor<&'a [u8]>>, ExtractError> {
    let encrypted = || ExtractError::Encrypted("the document is password-protected".into());
    let entry = archive.by_index(index).map_err(|e| match e {
        zip::result::ZipError::UnsupportedArchive(m) if m.contains("ncrypt") => encrypted(),
        _ => ExtractError::Corrupt("the document is damaged (a part cannot be read)".into()),
    })?;
    if entry.encrypted() {
        return Err(encrypted());
    }
    Ok(entry)
}

/// A zip archive whose parts are read with a shared decompression budget.
pub(super) struct Container<'a> {
    archive: Archive<'a>,
    budget: u64,
    limit: u64,
}

impl<'a> Container<'a> {
    /// Opens the archive and checks its entry count.
    pub(super) fn open(bytes: &'a [u8], limits: &Limits) -> Result<Self, ExtractError> {
        let archive = zip::ZipArchive::new(Cursor::new(bytes)).map_err(|_| {
            ExtractError::Corrupt(
                "the document is damaged (its zip structure cannot be read)".into(),
            )
        })?;
        if archive.len() > limits.max_zip_entries {
            return Err(ExtractError::TooLarge(format!(
                "the document has {} parts; the limit is {}",
                archive.len(),
                limits.max_zip_entries
            )));
        }
        // What the headers declare is checked up front (no decompression); what really comes out
        // is counted as each part is read.
        // (Unknown when parts use data descriptors: then only the counting applies.)
        let declared = archive.decompressed_size().unwrap_or(0);
        if declared > u128::from(limits.max_decompressed_bytes) {
            return Err(ExtractError::TooLarge(format!(
                "the document expands to more than {} MB; it is refused as a possible zip bomb",
                limits.max_decompressed_bytes / (1024 * 1024)
            )));
        }
        Ok(Self {
            archive,
            budget: limits.max_decompressed_bytes,
            limit: limits.max_decompressed_bytes,
        })
    }

    /// The names of all entries.
    pub(super) fn names(&self) -> Vec<String> {
        self.archive
            .file_names()
            .filter_map(Result::ok)
            .map(|n| n.into_owned())
            .collect()
    }

    /// Reads one part as UTF-8 text (a BOM is dropped); `None` when the part does not exist.
    pub(super) fn text(&mut self, name: &str) -> Result<Option<String>, ExtractError> {
        let Some(raw) = self.bytes(name)? else {
            return Ok(None);
        };
        let text = match String::from_utf8(raw) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        };
        Ok(Some(match text.strip_prefix('\u{feff}') {
            Some(rest) => rest.to_owned(),
            None => text,
        }))
    }

    /// Reads one part, charging what comes out against the budget; `None` when it does not exist.
    pub(super) fn bytes(&mut self, name: &str) -> Result<Option<Vec<u8>>, ExtractError> {
        let Some(index) = self.archive.index_for_name(name) else {
            return Ok(None);
        };
        let mut entry = entry(&mut self.archive, index)?;
        let mut out = Vec::with_capacity(entry.size().min(self.budget).min(1 << 24) as usize);
        let n = (&mut entry)
            .take(self.budget.saturating_add(1))
            .read_to_end(&mut out)
            .map_err(|_| {
                ExtractError::Corrupt(
                    "the document is damaged (a part cannot be decompressed)".into(),
                )
            })? as u64;
        drop(entry);
        if n > self.budget {
            return Err(self.too_large());
        }
        self.budget -= n;
        Ok(Some(out))
    }

    fn too_large(&self) -> ExtractError {
        ExtractError::TooLarge(format!(
            "the document expands to more than {} MB; it is refused as a possible zip bomb",
            self.limit / (1024 * 1024)
        ))
    }
}

/// Refuses zip archives whose entries would expand past the limits, before any parser reads them.
/// Streams every entry through a counting sink: memory stays flat whatever the archive claims.
pub(super) fn check_zip(bytes: &[u8], limits: &Limits) -> Result<(), ExtractError> {
    let mut container = Container::open(bytes, limits)?;
    let mut total: u64 = 0;
    for i in 0..container.archive.len() {
        let mut entry = entry(&mut container.archive, i)?;
        // Count what really comes out, not what the header claims.
        let budget = limits.max_decompressed_bytes.saturating_sub(total) + 1;
        let n =
            std::io::copy(&mut (&mut entry).take(budget), &mut std::io::sink()).map_err(|_| {
                ExtractError::Corrupt(
                    "the document is damaged (a part cannot be decompressed)".into(),
                )
            })?;
        total += n;
        if total > limits.max_decompressed_bytes {
            drop(entry);
            return Err(container.too_large());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for (name, data) in entries {
            w.start_file(*name, opts).unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    #[test]
    fn a_small_archive_that_expands_past_the_limit_is_refused() {
        let zeros = vec![0u8; 4 * 1024 * 1024];
        let bytes = zip_of(&[("a.xml", &zeros), ("b.xml", &zeros)]);
        assert!(bytes.len() < 64 * 1024, "{}", bytes.len());
        let limits = Limits {
            max_decompressed_bytes: 6 * 1024 * 1024,
            ..Limits::default()
        };
        assert!(matches!(
            check_zip(&bytes, &limits),
            Err(ExtractError::TooLarge(_))
        ));
        // Refused from the declared sizes, before anything is decompressed.
        assert!(matches!(
            Container::open(&bytes, &limits),
            Err(ExtractError::TooLarge(_))
        ));
        // What comes out is counted too, part after part, against one budget.
        let roomy = Limits {
            max_decompressed_bytes: 9 * 1024 * 1024,
            ..Limits::default()
        };
        let mut c = Container::open(&bytes, &roomy).unwrap();
        assert_eq!(c.bytes("a.xml").unwrap().unwrap().len(), zeros.len());
        assert_eq!(c.budget, 5 * 1024 * 1024);
        assert!(check_zip(&bytes, &Limits::default()).is_ok());
    }

    #[test]
    fn entry_count_is_bounded_and_missing_parts_are_none() {
        let bytes = zip_of(&[("a", b"1"), ("b", b"2"), ("c", b"3")]);
        let limits = Limits {
            max_zip_entries: 2,
            ..Limits::default()
        };
        assert!(matches!(
            Container::open(&bytes, &limits),
            Err(ExtractError::TooLarge(_))
        ));
        let mut c = Container::open(&bytes, &Limits::default()).unwrap();
        assert_eq!(c.text("b").unwrap().as_deref(), Some("2"));
        assert_eq!(c.text("zzz").unwrap(), None);
    }
}
