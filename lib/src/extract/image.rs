//! Images → an image for a vision model: size read from the header and refused past the pixel limit
//! before any decoding (decompression bombs), then decoded under an allocation limit, downscaled to
//! the longest-side limit and re-encoded (PNG when it has transparency, else JPEG).

use std::io::Cursor;

use super::{ExtractError, Extracted, Limits, PreparedImage};

pub(super) fn extract(bytes: &[u8], limits: &Limits) -> Result<Extracted, ExtractError> {
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
    if w == 0 || h == 0 {
        return Err(ExtractError::Corrupt("the image has no pixels".into()));
    }
    let mut reader = image::ImageReader::with_format(Cursor::new(bytes), format);
    let mut lim = image::Limits::default();
    // Room for the largest allowed image at 16 bits per channel with alpha.
    lim.max_alloc = Some(limits.max_image_pixels.saturating_mul(8) + (1 << 20));
    lim.max_image_width = Some(w);
    lim.max_image_height = Some(h);
    reader.limits(lim);
    let img = reader.decode().map_err(|e| match e {
        image::ImageError::Limits(_) => {
            ExtractError::TooLarge("the image needs more memory to decode than allowed".into())
        }
        _ => ExtractError::Corrupt("the image is damaged".into()),
    })?;
    let side = limits.max_image_side.max(1);
    let img = if img.width() > side || img.height() > side {
        img.resize(side, side, image::imageops::FilterType::Triangle)
    } else {
        img
    };
    let has_alpha = img.color().has_alpha();
    let (img, fmt, mime) = if has_alpha {
        (
            image::DynamicImage::ImageRgba8(img.to_rgba8()),
            image::ImageFormat::Png,
            "image/png",
        )
    } else {
        (
            image::DynamicImage::ImageRgb8(img.to_rgb8()),
            image::ImageFormat::Jpeg,
            "image/jpeg",
        )
    };
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, fmt)
        .map_err(|_| ExtractError::Corrupt("the image cannot be re-encoded".into()))?;
    Ok(Extracted {
        image: Some(PreparedImage {
            mime: mime.to_owned(),
            data: out.into_inner().into(),
            width: img.width(),
            height: img.height(),
        }),
        ..Default::default()
    })
}
