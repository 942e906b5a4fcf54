//! Type detection: binary families from their magic bytes (they must agree with the claimed type or
//! extension), text families from the claimed type or extension (the bytes must be text).

use std::io::{Cursor, Read};

use super::{Detected, ExtractError};
use crate::domain::FileType;

/// What the client claims a file is, before any byte is seen (presigned uploads: the bytes decide
/// at completion): by extension, else by media type. A type the product does not read is refused
/// with the same message as an upload.
pub fn claim(filename: &str, content_type: Option<&str>) -> Result<FileType, ExtractError> {
    claimed(filename, content_type).ok_or_else(|| unsupported(filename))
}

/// The media type of an image, from its bytes; `None` when the bytes are no image this product reads.
pub fn image_type(bytes: &[u8]) -> Option<&'static str> {
    match sniff(bytes) {
        Some((FileType::Image, ct)) => Some(ct),
        _ => None,
    }
}

fn unsupported(filename: &str) -> ExtractError {
    ExtractError::Unsupported(format!(
        "{filename}: unsupported file type (supported: PDF, DOCX, XLSX, XLS, ODS, CSV, text, Markdown, JSON, PNG, JPEG, WEBP, GIF)"
    ))
}

/// What the client claimed: the extension of `filename` and the part's `Content-Type`.
fn claimed(filename: &str, content_type: Option<&str>) -> Option<FileType> {
    let ext = filename
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase());
    let by_ext = ext.as_deref().and_then(|e| {
        Some(match e {
            "pdf" => FileType::Pdf,
            "docx" => FileType::Docx,
            "xlsx" | "xlsm" | "xlsb" => FileType::Xlsx,
            "xls" => FileType::Xls,
            "ods" => FileType::Ods,
            "csv" | "tsv" => FileType::Csv,
            "txt" | "md" | "markdown" | "text" | "log" => FileType::Text,
            "json" => FileType::Json,
            "png" | "jpg" | "jpeg" | "webp" | "gif" => FileType::Image,
            _ => return None,
        })
    });
    let ct = content_type.map(|c| {
        c.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    });
    let by_type = ct.as_deref().and_then(|c| {
        Some(match c {
            "application/pdf" => FileType::Pdf,
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document" => {
                FileType::Docx
            }
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
            | "application/vnd.ms-excel.sheet.macroenabled.12"
            | "application/vnd.ms-excel.sheet.binary.macroenabled.12" => FileType::Xlsx,
            "application/vnd.ms-excel" => FileType::Xls,
            "application/vnd.oasis.opendocument.spreadsheet" => FileType::Ods,
            "text/csv" | "text/tab-separated-values" => FileType::Csv,
            "text/plain" | "text/markdown" | "text/x-markdown" => FileType::Text,
            "application/json" | "text/json" => FileType::Json,
            "image/png" | "image/jpeg" | "image/webp" | "image/gif" => FileType::Image,
            _ => return None,
        })
    });
    // The extension is the stronger claim: browsers send generic types for unknown extensions.
    by_ext.or(by_type)
}

/// What the bytes are, for binary families.
fn sniff(bytes: &[u8]) -> Option<(FileType, &'static str)> {
    // The header may follow up to 1 KB of junk; then the file must also end like a PDF, so that a
    // text file that merely mentions "%PDF-" stays text.
    let tail = &bytes[bytes.len().saturating_sub(2048)..];
    if bytes.starts_with(b"%PDF-")
        || (bytes[..bytes.len().min(1024)]
            .windows(5)
            .any(|w| w == b"%PDF-")
            && tail.windows(5).any(|w| w == b"%%EOF"))
    {
        return Some((FileType::Pdf, "application/pdf"));
    }
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Some((FileType::Image, "image/png"));
    }
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return Some((FileType::Image, "image/jpeg"));
    }
    if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        return Some((FileType::Image, "image/webp"));
    }
    if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        return Some((FileType::Image, "image/gif"));
    }
    if bytes.starts_with(&[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1]) {
        return Some(ole_family(bytes));
    }
    if bytes.starts_with(b"PK\x03\x04") {
        return zip_family(bytes);
    }
    None
}

/// OLE compound files: an Excel 97-2003 workbook, an encrypted Office Open XML document (which
/// lives in such a container), or something else (legacy Word, PowerPoint, MSI…).
fn ole_family(bytes: &[u8]) -> (FileType, &'static str) {
    let has = |name: &str| {
        let utf16: Vec<u8> = name.encode_utf16().flat_map(u16::to_le_bytes).collect();
        bytes.windows(utf16.len()).any(|w| w == utf16.as_slice())
    };
    if has("EncryptedPackage") {
        return (FileType::Xlsx, ENCRYPTED_OOXML);
    }
    if has("Workbook") || has("Book") {
        return (FileType::Xls, "application/vnd.ms-excel");
    }
    (FileType::Text, OTHER)
}

/// Marks an encrypted Office Open XML document in [`sniff`]'s answer.
const ENCRYPTED_OOXML: &str = "application/x-encrypted-ooxml";
/// Marks a container that is no document this product reads (zip, other OLE files).
const OTHER: &str = "application/octet-stream";

/// Tells DOCX, XLSX and ODS apart by the entries of the zip (its central directory only: nothing is
/// decompressed here).
fn zip_family(bytes: &[u8]) -> Option<(FileType, &'static str)> {
    let Ok(mut archive) = zip::ZipArchive::new(Cursor::new(bytes)) else {
        return Some((FileType::Text, OTHER));
    };
    let names: Vec<String> = archive
        .file_names()
        .filter_map(Result::ok)
        .map(|n| n.into_owned())
        .collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let has_types = names.contains(&"[Content_Types].xml");
    if has_types && names.iter().any(|n| n.starts_with("word/")) {
        return Some((
            FileType::Docx,
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        ));
    }
    if has_types && names.iter().any(|n| n.starts_with("xl/")) {
        return Some((
            FileType::Xlsx,
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        ));
    }
    if names.contains(&"content.xml") {
        // The mimetype entry says which OpenDocument this is (text, spreadsheet, …).
        let mut mimetype = String::new();
        if let Ok(entry) = archive.by_name("mimetype") {
            let _ = entry.take(128).read_to_string(&mut mimetype);
        }
        let spreadsheet = mimetype.trim() == "application/vnd.oasis.opendocument.spreadsheet";
        if spreadsheet {
            return Some((
                FileType::Ods,
                "application/vnd.oasis.opendocument.spreadsheet",
            ));
        }
    }
    Some((FileType::Text, OTHER))
}

fn is_text(bytes: &[u8]) -> bool {
    if bytes.starts_with(&[0xFF, 0xFE]) || bytes.starts_with(&[0xFE, 0xFF]) {
        return true; // UTF-16 with BOM
    }
    let sample = &bytes[..bytes.len().min(64 * 1024)];
    if sample.contains(&0) {
        return false;
    }
    let controls = sample
        .iter()
        .filter(|&&b| b < 0x20 && !matches!(b, b'\n' | b'\r' | b'\t' | 0x0C))
        .count();
    controls * 100 <= sample.len().max(1)
}

/// Decides a file's type from its bytes and what the client claimed.
pub fn detect(
    bytes: &[u8],
    filename: &str,
    content_type: Option<&str>,
) -> Result<Detected, ExtractError> {
    let claim = claimed(filename, content_type);
    let sniffed = sniff(bytes);
    match (sniffed, claim) {
        (Some((_, ENCRYPTED_OOXML)), _) => Err(ExtractError::Encrypted(format!(
            "{filename} is password-protected; remove the password and upload it again"
        ))),
        (Some((_, OTHER)), _) => Err(ExtractError::Unsupported(format!(
            "{filename} is an archive or a legacy Office file, not a document this assistant reads (PDF, DOCX, XLSX, XLS, ODS, CSV, text, JSON, images)"
        ))),
        (Some((found, ct)), Some(want)) if found == want => Ok(Detected { file_type: found, content_type: ct.to_owned() }),
        (Some((found, _)), Some(want)) => Err(ExtractError::Mismatch(format!(
            "{filename} claims to be {} but its content is {}",
            want.as_str().to_uppercase(),
            found.as_str().to_uppercase()
        ))),
        (Some((found, ct)), None) => Ok(Detected { file_type: found, content_type: ct.to_owned() }),
        (None, Some(want @ (FileType::Text | FileType::Csv | FileType::Json))) => {
            if is_text(bytes) {
                let ct = match want {
                    FileType::Csv => "text/csv",
                    FileType::Json => "application/json",
                    _ if filename.to_ascii_lowercase().ends_with(".md") => "text/markdown",
                    _ => "text/plain",
                };
                Ok(Detected { file_type: want, content_type: ct.to_owned() })
            } else {
                Err(ExtractError::Mismatch(format!("{filename} is not a text file (its content is binary)")))
            }
        }
        (None, Some(want)) => Err(ExtractError::Mismatch(format!(
            "{filename} claims to be {} but its content is not",
            want.as_str().to_uppercase()
        ))),
        (None, None) => Err(unsupported(filename)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_types_come_from_the_bytes() {
        let d = detect(b"%PDF-1.7\n...", "report.pdf", Some("application/pdf")).unwrap();
        assert_eq!(d.file_type, FileType::Pdf);
        let e = detect(b"%PDF-1.7\n...", "photo.png", None).unwrap_err();
        assert!(matches!(e, ExtractError::Mismatch(_)), "{e:?}");
        let e = detect(b"\x89PNG\r\n\x1a\n....", "report.pdf", None).unwrap_err();
        assert!(matches!(e, ExtractError::Mismatch(_)), "{e:?}");
    }

    #[test]
    fn containers_that_are_no_document_are_refused() {
        use std::io::Write;
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        w.start_file("notes.txt", zip::write::SimpleFileOptions::default())
            .unwrap();
        w.write_all(b"hello").unwrap();
        let plain_zip = w.finish().unwrap().into_inner();
        let e = detect(&plain_zip, "report.docx", None).unwrap_err();
        assert!(matches!(e, ExtractError::Unsupported(_)), "{e:?}");
        let e = detect(&plain_zip, "archive.zip", None).unwrap_err();
        assert!(matches!(e, ExtractError::Unsupported(_)), "{e:?}");
        // A legacy Word file is an OLE container with no workbook stream.
        let mut doc = vec![0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];
        doc.extend("WordDocument".encode_utf16().flat_map(u16::to_le_bytes));
        let e = detect(&doc, "old.doc", None).unwrap_err();
        assert!(matches!(e, ExtractError::Unsupported(_)), "{e:?}");
        // An encrypted DOCX/XLSX lives in an OLE container too.
        let mut enc = vec![0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];
        enc.extend("EncryptedPackage".encode_utf16().flat_map(u16::to_le_bytes));
        let e = detect(&enc, "secret.xlsx", None).unwrap_err();
        assert!(matches!(e, ExtractError::Encrypted(_)), "{e:?}");
    }

    #[test]
    fn a_text_file_that_mentions_a_pdf_header_stays_text() {
        let d = detect(b"notes: files start with %PDF-1.7\n", "notes.txt", None).unwrap();
        assert_eq!(d.file_type, FileType::Text);
    }

    #[test]
    fn claims_come_from_the_extension_first() {
        assert_eq!(claim("a.PDF", None).unwrap(), FileType::Pdf);
        assert_eq!(
            claim("notes", Some("text/markdown; charset=utf-8")).unwrap(),
            FileType::Text
        );
        assert_eq!(
            claim("sheet.xlsx", Some("text/plain")).unwrap(),
            FileType::Xlsx
        );
        let e = claim("a.exe", Some("application/x-msdownload")).unwrap_err();
        assert!(
            matches!(&e, ExtractError::Unsupported(m) if m.starts_with("a.exe: unsupported file type")),
            "{e:?}"
        );
        assert!(claim("archive.zip", None).is_err());
    }

    #[test]
    fn image_types_come_from_the_bytes() {
        assert_eq!(image_type(b"\x89PNG\r\n\x1a\n...."), Some("image/png"));
        assert_eq!(image_type(b"GIF89a...."), Some("image/gif"));
        assert_eq!(image_type(b"RIFF\0\0\0\0WEBPVP8 "), Some("image/webp"));
        assert_eq!(image_type(&[0xFF, 0xD8, 0xFF, 0xE0]), Some("image/jpeg"));
        assert_eq!(image_type(b"%PDF-1.7\n"), None);
    }

    #[test]
    fn text_types_come_from_the_claim() {
        assert_eq!(
            detect(b"a,b\n1,2\n", "x.csv", None).unwrap().file_type,
            FileType::Csv
        );
        assert_eq!(
            detect(b"{\"a\":1}", "x.json", None).unwrap().file_type,
            FileType::Json
        );
        assert_eq!(
            detect(b"hello", "notes", Some("text/plain"))
                .unwrap()
                .file_type,
            FileType::Text
        );
        assert!(matches!(
            detect(b"\x00\x01\x02\x03", "x.txt", None),
            Err(ExtractError::Mismatch(_))
        ));
        assert!(matches!(
            detect(b"hello", "x.exe", None),
            Err(ExtractError::Unsupported(_))
        ));
    }
}
