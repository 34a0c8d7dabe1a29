//! Drawing a similarity map over a page preview: the map (values in `[0, 1]`, one per cell of the page's
//! visual grid) is scaled to 0–255, up-sampled bicubically to the preview's size (as colpali-engine's
//! `plot_similarity_map` does with Pillow), coloured with viridis (readable with the common colour-vision
//! deficiencies and in greyscale) and blended over the preview at half opacity. The maths of the map itself
//! is `colqwen_core::similarity`.

use image::imageops::FilterType;
use image::{GrayImage, ImageFormat, Rgb, RgbImage};

use crate::error::{Error, Result};

/// Viridis (matplotlib's default colour map) at nine evenly spaced stops, interpolated linearly between them.
const VIRIDIS: [[u8; 3]; 9] = [
    [68, 1, 84],
    [72, 40, 120],
    [62, 73, 137],
    [49, 104, 142],
    [38, 130, 142],
    [31, 158, 137],
    [53, 183, 121],
    [110, 206, 88],
    [253, 231, 37],
];

/// Opacity of the colour layer.
const ALPHA: f32 = 0.5;

/// The viridis colour of `v` in `0..=255`.
pub fn viridis(v: u8) -> [u8; 3] {
    let t = f32::from(v) / 255.0 * (VIRIDIS.len() - 1) as f32;
    let i = (t.floor() as usize).min(VIRIDIS.len() - 2);
    let f = t - i as f32;
    let (a, b) = (VIRIDIS[i], VIRIDIS[i + 1]);
    std::array::from_fn(|c| (f32::from(a[c]) * (1.0 - f) + f32::from(b[c]) * f).round() as u8)
}

/// A PNG of `preview` (JPEG bytes) with `map` (row-major `rows × cols`, values in `[0, 1]`) laid over it.
pub fn overlay_png(preview_jpeg: &[u8], map: &[f32], cols: usize, rows: usize) -> Result<Vec<u8>> {
    let page = image::load_from_memory_with_format(preview_jpeg, ImageFormat::Jpeg)
        .map_err(|e| Error::Overlay(format!("the page preview cannot be decoded: {e}")))?
        .to_rgb8();
    let png = |img: &RgbImage| -> Result<Vec<u8>> {
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, ImageFormat::Png)
            .map_err(|e| Error::Overlay(format!("the PNG cannot be encoded: {e}")))?;
        Ok(out.into_inner())
    };
    if cols == 0 || rows == 0 || map.len() != cols * rows {
        return Err(Error::Overlay(format!("a {cols}×{rows} map cannot hold {} values", map.len())));
    }
    let grid = GrayImage::from_fn(cols as u32, rows as u32, |x, y| {
        let v = map[y as usize * cols + x as usize];
        image::Luma([(v.clamp(0.0, 1.0) * 255.0) as u8])
    });
    let (w, h) = page.dimensions();
    let heat = image::imageops::resize(&grid, w, h, FilterType::CatmullRom);
    let out = RgbImage::from_fn(w, h, |x, y| {
        let base = page.get_pixel(x, y).0;
        let colour = viridis(heat.get_pixel(x, y).0[0]);
        Rgb(std::array::from_fn(|c| (f32::from(base[c]) * (1.0 - ALPHA) + f32::from(colour[c]) * ALPHA).round() as u8))
    });
    png(&out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn viridis_ends_are_the_palette_ends() {
        assert_eq!(viridis(0), VIRIDIS[0]);
        assert_eq!(viridis(255), VIRIDIS[8]);
    }

    #[test]
    fn the_hot_cell_is_brighter_in_the_overlay() {
        let page = RgbImage::from_pixel(56, 28, Rgb([128, 128, 128]));
        let mut jpeg = std::io::Cursor::new(Vec::new());
        page.write_to(&mut jpeg, ImageFormat::Jpeg).unwrap();
        let png = overlay_png(jpeg.get_ref(), &[0.0, 1.0], 2, 1).unwrap();
        let img = image::load_from_memory(&png).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (56, 28));
        let (cold, hot) = (img.get_pixel(2, 14).0, img.get_pixel(53, 14).0);
        assert!(hot[1] > cold[1] + 60, "hot {hot:?} cold {cold:?}");
    }
}
