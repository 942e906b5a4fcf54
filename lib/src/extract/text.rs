//! Extraction per family.

use std::io::{Cursor, Read};

use super::{ExtractError, Extracted, Limits, PreparedImage};
use crate::domain::FileType;

pub(super) fn extract(
    file_type: FileType,
    bytes: &[u8],
    limits: &Limits,
) -> Result<Extracted, ExtractError> {
    let mut out = match file_type {
        FileType::Pdf => pdf(bytes, limits)?,
        FileType::Docx => docx(bytes, limits)?,
        FileType::Xlsx | FileType::Xls | FileType::Ods => sheets(file_type, bytes, limits)?,
        FileType::Csv | FileType::Text => Extracted {
            text: decode_text(bytes),
            ..Default::default()
        },
        FileType::Json => json(bytes)?,
        FileType::Image => image(bytes, limits)?,
    };
    if out.text.chars().count() > limits.max_chars {
        let cut: String = out.text.chars().take(limits.max_chars).collect();
        out.text = cut;
        out.note = Some(format!("Text cut at {} characters.", limits.max_chars));
    }
    Ok(out)
}

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

fn json(bytes: &[u8]) -> Result<Extracted, ExtractError> {
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

/// Refuses zip archives whose entries would expand past the limits, before any parser reads them.
pub(super) fn check_zip(bytes: &[u8], limits: &Limits) -> Result<(), ExtractError> {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).map_err(|_| {
        ExtractError::Corrupt("the document is damaged (its zip structure cannot be read)".into())
    })?;
    if archive.len() > limits.max_zip_entries {
        return Err(ExtractError::TooLarge(format!(
            "the document has {} parts; the limit is {}",
            archive.len(),
            limits.max_zip_entries
        )));
    }
    let mut total: u64 = 0;
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(|_| {
            ExtractError::Corrupt("the document is damaged (a part cannot be read)".into())
        })?;
        if entry.encrypted() {
            return Err(ExtractError::Encrypted(
                "the document is password-protected".into(),
            ));
        }
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
            return Err(ExtractError::TooLarge(format!(
                "the document expands to more than {} MB; it is refused as a possible zip bomb",
                limits.max_decompressed_bytes / (1024 * 1024)
            )));
        }
    }
    Ok(())
}

fn pdf(bytes: &[u8], _limits: &Limits) -> Result<Extracted, ExtractError> {
    let doc = pdf_extract::extract_text_from_mem_by_pages(bytes).map_err(|e| {
        let msg = e.to_string();
        if msg.to_ascii_lowercase().contains("encrypt") {
            ExtractError::Encrypted("the PDF is password-protected".into())
        } else {
            ExtractError::Corrupt("the PDF is damaged or not readable".into())
        }
    })?;
    let pages = doc.len() as u32;
    let mut text = String::new();
    for (i, page) in doc.iter().enumerate() {
        if !text.is_empty() {
            text.push_str("\n\n");
        }
        text.push_str(&format!("[page {}]\n", i + 1));
        text.push_str(page.trim());
    }
    let note = doc.iter().all(|p| p.trim().is_empty()).then(|| {
        "This PDF has no text layer (it looks scanned); its text could not be read.".to_owned()
    });
    Ok(Extracted {
        text,
        pages: Some(pages),
        image: None,
        note,
    })
}

fn docx(bytes: &[u8], limits: &Limits) -> Result<Extracted, ExtractError> {
    check_zip(bytes, limits)?;
    let doc = docx_rs::read_docx(bytes).map_err(|_| {
        ExtractError::Corrupt("the DOCX document is damaged or not readable".into())
    })?;
    let mut text = String::new();
    for child in doc.document.children {
        if let docx_rs::DocumentChild::Paragraph(p) = child {
            text.push_str(&p.raw_text());
            text.push('\n');
        }
    }
    Ok(Extracted {
        text,
        ..Default::default()
    })
}

fn sheets(file_type: FileType, bytes: &[u8], limits: &Limits) -> Result<Extracted, ExtractError> {
    use calamine::{Data, Reader};
    if file_type != FileType::Xls {
        check_zip(bytes, limits)?;
    }
    let mut wb = calamine::open_workbook_auto_from_rs(Cursor::new(bytes.to_vec()))
        .map_err(|_| ExtractError::Corrupt("the spreadsheet is damaged or not readable".into()))?;
    let names = wb.sheet_names().to_vec();
    let mut text = String::new();
    for name in &names {
        let range = wb
            .worksheet_range(name)
            .map_err(|_| ExtractError::Corrupt(format!("the sheet {name} cannot be read")))?;
        text.push_str(&format!("## Sheet: {name}\n\n"));
        for row in range.rows() {
            let cells: Vec<String> = row
                .iter()
                .map(|c| match c {
                    Data::Empty => String::new(),
                    other => other.to_string(),
                })
                .collect();
            if cells.iter().all(String::is_empty) {
                continue;
            }
            text.push_str("| ");
            text.push_str(&cells.join(" | "));
            text.push_str(" |\n");
        }
        text.push('\n');
    }
    Ok(Extracted {
        text,
        pages: Some(names.len() as u32),
        ..Default::default()
    })
}

fn image(bytes: &[u8], limits: &Limits) -> Result<Extracted, ExtractError> {
    let reader = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|_| ExtractError::Corrupt("the image cannot be read".into()))?;
    let format = reader
        .format()
        .ok_or_else(|| ExtractError::Corrupt("the image format is not recognised".into()))?;
    let (w, h) = reader
        .into_dimensions()
        .map_err(|_| ExtractError::Corrupt("the image is damaged".into()))?;
    if u64::from(w) * u64::from(h) > limits.max_image_pixels {
        return Err(ExtractError::TooLarge(format!(
            "the image is {w}×{h} pixels; the limit is {} megapixels",
            limits.max_image_pixels / 1_000_000
        )));
    }
    let mut reader = image::ImageReader::with_format(Cursor::new(bytes), format);
    let mut lim = image::Limits::default();
    lim.max_alloc = Some(limits.max_image_pixels * 4 + 1024);
    reader.limits(lim);
    let img = reader
        .decode()
        .map_err(|_| ExtractError::Corrupt("the image is damaged".into()))?;
    let side = limits.max_image_side;
    let img = if img.width() > side || img.height() > side {
        img.resize(side, side, image::imageops::FilterType::Triangle)
    } else {
        img
    };
    let mut out = Cursor::new(Vec::new());
    let (fmt, mime) = if img.color().has_alpha() {
        (image::ImageFormat::Png, "image/png")
    } else {
        (image::ImageFormat::Jpeg, "image/jpeg")
    };
    let img = if fmt == image::ImageFormat::Jpeg {
        image::DynamicImage::ImageRgb8(img.to_rgb8())
    } else {
        img
    };
    img.write_to(&mut out, fmt)
        .map_err(|_| ExtractError::Corrupt("the image cannot be re-encoded".into()))?;
    Ok(Extracted {
        text: String::new(),
        pages: None,
        image: Some(PreparedImage {
            mime: mime.to_owned(),
            data: out.into_inner().into(),
            width: img.width(),
            height: img.height(),
        }),
        note: None,
    })
}
