//! Choosing the pixel size to render a page at.

use crate::contain::RenderLimits;
use crate::document::MAX_SIDE_PX;

/// Pixel size `(width_px, height_px)` to render a page of `page_size_pt` (as
/// displayed, from [`Document::page_size_pt`](crate::Document::page_size_pt)) at, so
/// that a downstream resize to about `target_pixels` (the vision model's pixel cap,
/// e.g. 602112 = 768 tokens × 28²) only ever downsamples.
///
/// The page is scaled, aspect ratio kept, to about `limits.oversample ×
/// target_pixels` pixels: with the default 1.25, rounding each side to a multiple
/// of 28 (Qwen2.5-VL's `smart_resize`) can never make the model input larger than the
/// render, for pages up to an aspect ratio of about 1:150 at a 602112 px target (about
/// 1:20 at 100352 px; more extreme shapes could gain up to 14 px on one side). The scale is raised to at least
/// `limits.min_dpi` (large-format pages), then capped so the result fits
/// `limits.max_pixels` and 65535 px per side; each side is at least 1 px.
///
/// Degenerate inputs (zero, negative or non-finite sizes) are treated as A4.
pub fn render_size(page_size_pt: (f32, f32), target_pixels: u64, limits: &RenderLimits) -> (u32, u32) {
    const A4_PT: (f64, f64) = (595.2756, 841.8898);
    let (mut w_pt, mut h_pt) = (f64::from(page_size_pt.0), f64::from(page_size_pt.1));
    if !(w_pt.is_finite() && h_pt.is_finite() && w_pt > 0.0 && h_pt > 0.0) {
        (w_pt, h_pt) = A4_PT;
    }
    let area_pt = w_pt * h_pt;

    // Pixels per point.
    let oversample = if limits.oversample.is_finite() && limits.oversample > 0.0 { limits.oversample } else { 1.0 };
    let mut scale = (oversample * target_pixels as f64 / area_pt).sqrt();
    let min_scale = f64::from(limits.min_dpi) / 72.0;
    if min_scale.is_finite() && scale < min_scale {
        scale = min_scale;
    }
    let max_scale = (limits.max_pixels as f64 / area_pt)
        .sqrt()
        .min(f64::from(MAX_SIDE_PX) / w_pt)
        .min(f64::from(MAX_SIDE_PX) / h_pt);
    if scale > max_scale {
        scale = max_scale;
    }

    let side = |pt: f64| -> u32 {
        // The float-to-int `as` saturates (NaN -> 0), so this cannot overflow.
        ((pt * scale).round() as u32).clamp(1, MAX_SIDE_PX)
    };
    let (mut w, mut h) = (side(w_pt), side(h_pt));
    // Rounding both sides up can overshoot max_pixels by a few pixels; trim the longer side.
    while u64::from(w) * u64::from(h) > limits.max_pixels && (w > 1 || h > 1) {
        if w >= h {
            w -= 1;
        } else {
            h -= 1;
        }
    }
    (w, h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a4_at_768_tokens() {
        let (w, h) = render_size((595.0, 842.0), 602_112, &RenderLimits::default());
        assert!(u64::from(w) * u64::from(h) >= 602_112 * 5 / 4 - 2000);
        assert!((f64::from(w) / f64::from(h) - 595.0 / 842.0).abs() < 0.005);
    }

    #[test]
    fn degenerate_sizes_do_not_panic() {
        let l = RenderLimits::default();
        for s in [(0.0, 0.0), (f32::NAN, 1.0), (-5.0, 100.0), (f32::INFINITY, 1.0), (1e-30, 1e30)] {
            let (w, h) = render_size(s, 602_112, &l);
            assert!(w >= 1 && h >= 1 && w <= MAX_SIDE_PX && h <= MAX_SIDE_PX);
        }
    }

    #[test]
    fn max_pixels_caps() {
        let l = RenderLimits { max_pixels: 1_000_000, ..RenderLimits::default() };
        let (w, h) = render_size((8400.0, 8400.0), 602_112, &l);
        assert!(u64::from(w) * u64::from(h) <= 1_000_000);
        assert!(w >= 999);
    }
}
