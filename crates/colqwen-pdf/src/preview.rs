//! Small JPEG previews of rendered pages (for the UI; not model input).

use image::RgbImage;
use image::codecs::jpeg::JpegEncoder;

use crate::error::{Error, Result};

/// Encode a JPEG thumbnail of a rendered page whose longest side is `max_side` px
/// (images already smaller are not enlarged). `quality` is the JPEG quality, 1–100
/// (clamped). Uses the `image` crate's fast thumbnail resize: fine for a preview,
/// not meant for model input. (JPEG rather than WebP: the `image` crate only
/// encodes lossless WebP.)
pub fn encode_preview(image: &RgbImage, max_side: u32, quality: u8) -> Result<Vec<u8>> {
    let (w, h) = image.dimensions();
    let max_side = max_side.max(1);
    let longest = w.max(h);
    let mut out = Vec::new();
    let mut encoder = JpegEncoder::new_with_quality(&mut out, quality.clamp(1, 100));
    if longest > max_side {
        // Keep the aspect ratio; each side at least 1 px.
        let scale = f64::from(max_side) / f64::from(longest);
        let tw = ((f64::from(w) * scale).round() as u32).clamp(1, max_side);
        let th = ((f64::from(h) * scale).round() as u32).clamp(1, max_side);
        let thumb = image::imageops::thumbnail(image, tw, th);
        encoder.encode_image(&thumb)
    } else {
        encoder.encode_image(image)
    }
    .map_err(|source| Error::EncodePreview { source })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preview_is_jpeg_with_right_size() {
        let img = RgbImage::from_pixel(800, 1000, image::Rgb([200, 10, 10]));
        let bytes = encode_preview(&img, 256, 80).unwrap();
        assert_eq!(&bytes[..3], &[0xFF, 0xD8, 0xFF]);
        let small = RgbImage::from_pixel(10, 20, image::Rgb([0, 0, 0]));
        assert!(encode_preview(&small, 256, 80).is_ok());
    }
}
