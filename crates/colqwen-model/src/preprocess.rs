//! Page image → `pixel_values`, exactly as the reference's default (torchvision) image processor does it
//! (fact sheet §2): `smart_resize` (§2.3), the ATen uint8 antialiased bicubic (§2.4), fused normalisation
//! (§2.5) and merge-block-major patchify (§2.6).
//!
//! The resampler is written by hand: no crate reproduces ATen's int16 fixed-point bicubic bit for bit
//! (Pillow-compatible crates differ by ±1 step, fact sheet §10 trap 1).

use image::RgbImage;

use crate::config::PreprocessorConfig;
use crate::error::{Error, Result};

/// Patch grid of one image: `(t, gh, gw)` = `image_grid_thw` (§2.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageGrid {
    /// Temporal patches (1 for a still image).
    pub t: usize,
    /// Patch rows `gh = H / 14`.
    pub h: usize,
    /// Patch columns `gw = W / 14`.
    pub w: usize,
}

impl ImageGrid {
    /// Patch rows `P = t·gh·gw`.
    pub fn patches(&self) -> usize {
        self.t * self.h * self.w
    }

    /// Visual tokens after the 2×2 merge: `T = P / 4`.
    pub fn tokens(&self, merge: usize) -> usize {
        self.patches() / (merge * merge)
    }
}

/// One preprocessed image: `pixel_values` `[P, 1176]` (row-major) and its grid.
#[derive(Debug, Clone)]
pub struct PixelValues {
    /// `[P, C·tps·ps·ps]` float32, row-major.
    pub data: Vec<f32>,
    /// Patch grid.
    pub grid: ImageGrid,
}

/// Target size `(H, W)` of fact sheet §2.3, with Python's float64 semantics (banker's rounding in step 2,
/// `h / β / factor` division order).
pub fn smart_resize(
    height: usize,
    width: usize,
    factor: usize,
    min_pixels: usize,
    max_pixels: usize,
) -> Result<(usize, usize)> {
    let image_err = |reason: String| Error::Image { width: width as u32, height: height as u32, reason };
    if height == 0 || width == 0 {
        return Err(image_err("the image is empty".into()));
    }
    let (h, w, f) = (height as f64, width as f64, factor as f64);
    let ratio = h.max(w) / h.min(w);
    if ratio > 200.0 {
        return Err(image_err(format!("aspect ratio {ratio:.1} is above the model's limit of 200")));
    }
    let mut h_bar = (h / f).round_ties_even() as usize * factor;
    let mut w_bar = (w / f).round_ties_even() as usize * factor;
    if h_bar * w_bar > max_pixels {
        let beta = ((height * width) as f64 / max_pixels as f64).sqrt();
        h_bar = factor.max((h / beta / f).floor() as usize * factor);
        w_bar = factor.max((w / beta / f).floor() as usize * factor);
    } else if h_bar * w_bar < min_pixels {
        let beta = (min_pixels as f64 / (height * width) as f64).sqrt();
        h_bar = (h * beta / f).ceil() as usize * factor;
        w_bar = (w * beta / f).ceil() as usize * factor;
    }
    Ok((h_bar, w_bar))
}

/// Filter taps of one axis in ATen's int16 fixed point (fact sheet §2.4 steps 1–3).
struct AxisTaps {
    /// Per output index: first input index and number of taps.
    bounds: Vec<(usize, usize)>,
    /// `out × ksize` int16 weights (zero-padded).
    weights: Vec<i16>,
    ksize: usize,
    precision: u32,
}

/// Keys cubic with a = −0.5, in the evaluation order of ATen's `cubic_convolution1/2`.
fn keys_cubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A
    } else {
        0.0
    }
}

impl AxisTaps {
    fn new(in_size: usize, out_size: usize) -> Self {
        let scale = in_size as f64 / out_size as f64;
        let support = if scale >= 1.0 { 2.0 * scale } else { 2.0 };
        let invscale = if scale >= 1.0 { 1.0 / scale } else { 1.0 };
        let ksize = support.ceil() as usize * 2 + 1;
        let mut bounds = Vec::with_capacity(out_size);
        let mut weights = vec![0f64; out_size * ksize];
        let mut wt_max = 0f64;
        for i in 0..out_size {
            let center = scale * (i as f64 + 0.5);
            // `as i64` truncates toward zero like the C++ static_cast.
            let xmin = ((center - support + 0.5) as i64).max(0);
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64);
            let xsize = (xmax - xmin).clamp(0, ksize as i64) as usize;
            let xmin = xmin as usize;
            let row = &mut weights[i * ksize..i * ksize + xsize];
            let mut total = 0f64;
            for (j, w) in row.iter_mut().enumerate() {
                *w = keys_cubic((j as f64 + xmin as f64 - center + 0.5) * invscale);
                total += *w;
            }
            if total != 0.0 {
                for w in row.iter_mut() {
                    *w /= total;
                    wt_max = wt_max.max(*w);
                }
            }
            bounds.push((xmin, xsize));
        }
        let mut precision = 0u32;
        while precision < 22 {
            let next = (0.5 + wt_max * (1u64 << (precision + 1)) as f64) as i64;
            if next >= 1 << 15 {
                break;
            }
            precision += 1;
        }
        let unit = (1u64 << precision) as f64;
        let weights = weights
            .iter()
            .map(|&w| {
                let v = w * unit;
                (if v < 0.0 { v - 0.5 } else { v + 0.5 }) as i16
            })
            .collect();
        Self { bounds, weights, ksize, precision }
    }

    /// One output sample from `taps` inputs read with `get(k)` (§2.4 step 4).
    #[inline]
    fn apply(&self, i: usize, get: impl Fn(usize) -> u8) -> u8 {
        let (xmin, xsize) = self.bounds[i];
        let w = &self.weights[i * self.ksize..i * self.ksize + xsize];
        let mut acc: i32 = 1 << (self.precision - 1);
        for (j, &k) in w.iter().enumerate() {
            acc += k as i32 * get(xmin + j) as i32;
        }
        (acc >> self.precision).clamp(0, 255) as u8
    }
}

/// ATen's CPU uint8 antialiased bicubic resize (`interpolate(mode="bicubic", antialias=True)`), horizontal
/// pass first, uint8 between passes, a pass skipped when its size is unchanged (§2.4).
pub fn resize_bicubic_antialias(src: &RgbImage, out_w: usize, out_h: usize) -> RgbImage {
    let (in_w, in_h) = (src.width() as usize, src.height() as usize);
    let mut cur = src.clone();
    if out_w != in_w {
        let taps = AxisTaps::new(in_w, out_w);
        let raw = cur.as_raw();
        let mut out = vec![0u8; out_w * in_h * 3];
        for y in 0..in_h {
            let row = &raw[y * in_w * 3..(y + 1) * in_w * 3];
            for x in 0..out_w {
                for c in 0..3 {
                    out[(y * out_w + x) * 3 + c] = taps.apply(x, |k| row[k * 3 + c]);
                }
            }
        }
        cur = RgbImage::from_raw(out_w as u32, in_h as u32, out).expect("buffer has w·h·3 bytes");
    }
    if out_h != in_h {
        let w = cur.width() as usize;
        let taps = AxisTaps::new(in_h, out_h);
        let raw = cur.as_raw();
        let mut out = vec![0u8; w * out_h * 3];
        for y in 0..out_h {
            for x in 0..w * 3 {
                out[y * w * 3 + x] = taps.apply(y, |k| raw[k * w * 3 + x]);
            }
        }
        cur = RgbImage::from_raw(w as u32, out_h as u32, out).expect("buffer has w·h·3 bytes");
    }
    cur
}

/// The processor of fact sheet §2: settings from `preprocessor_config.json` and the model config.
#[derive(Debug, Clone)]
pub struct Preprocessor {
    /// Minimum pixels (`size.shortest_edge`).
    pub min_pixels: usize,
    /// Pixel cap (`size.longest_edge`, or `max_visual_tokens · 28²`).
    pub max_pixels: usize,
    patch: usize,
    merge: usize,
    temporal: usize,
    /// `255·mean` in float32 (§2.5).
    mean: [f32; 3],
    /// `255·std` in float32 (§2.5).
    std: [f32; 3],
}

impl Preprocessor {
    /// From the preprocessor config; `max_visual_tokens` = N sets the cap to `N·28²` (colpali's
    /// `max_num_visual_tokens`, §2.3), so that no page yields more than N visual tokens.
    pub fn new(
        cfg: &PreprocessorConfig,
        patch: usize,
        merge: usize,
        temporal: usize,
        max_visual_tokens: Option<usize>,
    ) -> Self {
        let factor = patch * merge;
        let inv = (1.0 / cfg.rescale_factor) as f32;
        Self {
            min_pixels: cfg.min_pixels,
            max_pixels: max_visual_tokens.map_or(cfg.max_pixels, |n| n * factor * factor),
            patch,
            merge,
            temporal,
            mean: cfg.image_mean.map(|m| m * inv),
            std: cfg.image_std.map(|s| s * inv),
        }
    }

    /// Pixels per merged-token side (28).
    pub fn factor(&self) -> usize {
        self.patch * self.merge
    }

    /// Target `(width, height)` of an image of the given size.
    pub fn target_size(&self, width: usize, height: usize) -> Result<(usize, usize)> {
        let (h, w) = smart_resize(height, width, self.factor(), self.min_pixels, self.max_pixels)?;
        Ok((w, h))
    }

    /// Number of visual tokens `T` an image of this size becomes.
    pub fn visual_tokens(&self, width: usize, height: usize) -> Result<usize> {
        let (w, h) = self.target_size(width, height)?;
        Ok((w / self.factor()) * (h / self.factor()))
    }

    /// Resizes to the smart_resize target (no-op when already there, §10 trap 3).
    pub fn resize(&self, image: &RgbImage) -> Result<RgbImage> {
        let (w, h) = self.target_size(image.width() as usize, image.height() as usize)?;
        if (w, h) == (image.width() as usize, image.height() as usize) {
            return Ok(image.clone());
        }
        Ok(resize_bicubic_antialias(image, w, h))
    }

    /// Full §2 pipeline for one RGB image.
    pub fn preprocess(&self, image: &RgbImage) -> Result<PixelValues> {
        let resized = self.resize(image)?;
        Ok(self.patchify(&resized))
    }

    /// Normalise (§2.5: `(u8 − 255·mean) / (255·std)` in f32) and cut into patches in merge-block-major order
    /// (§2.6). `image` must already have sides that are multiples of 28.
    pub fn patchify(&self, image: &RgbImage) -> PixelValues {
        let (ps, m, tps) = (self.patch, self.merge, self.temporal);
        let (w, h) = (image.width() as usize, image.height() as usize);
        let (gh, gw) = (h / ps, w / ps);
        let (mh, mw) = (gh / m, gw / m);
        let raw = image.as_raw();
        let per_patch = 3 * tps * ps * ps;
        let mut data = vec![0f32; gh * gw * per_patch];
        let mut row = 0usize;
        for bh in 0..mh {
            for bw in 0..mw {
                for ih in 0..m {
                    for iw in 0..m {
                        let (y0, x0) = ((bh * m + ih) * ps, (bw * m + iw) * ps);
                        let out = &mut data[row * per_patch..(row + 1) * per_patch];
                        for c in 0..3 {
                            for dy in 0..ps {
                                for dx in 0..ps {
                                    let u = raw[((y0 + dy) * w + x0 + dx) * 3 + c] as f32;
                                    let v = (u - self.mean[c]) / self.std[c];
                                    for t in 0..tps {
                                        out[c * tps * ps * ps + t * ps * ps + dy * ps + dx] = v;
                                    }
                                }
                            }
                        }
                        row += 1;
                    }
                }
            }
        }
        PixelValues { data, grid: ImageGrid { t: 1, h: gh, w: gw } }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Worked examples of fact sheet §2.3 (min 3136, max 602112), `(w, h) → (W, H)`.
    #[test]
    fn smart_resize_matches_fact_sheet_examples() {
        let cases = [
            ((1024, 768), (896, 672)),
            ((1240, 1754), (644, 896)),
            ((2480, 3508), (644, 896)),
            ((1700, 2200), (672, 868)),
            ((595, 842), (588, 840)),
            ((128, 128), (140, 140)),
            ((64, 32), (84, 56)),
            ((42, 70), (56, 56)),
        ];
        for ((w, h), (ew, eh)) in cases {
            let (rh, rw) = smart_resize(h, w, 28, 3136, 602112).unwrap();
            assert_eq!((rw, rh), (ew, eh), "{w}x{h}");
        }
    }

    #[test]
    fn smart_resize_uses_bankers_rounding() {
        // 70/28 = 2.5 rounds to 2 (half-to-even), 98/28 = 3.5 to 4.
        assert_eq!(smart_resize(70, 98, 28, 0, 1 << 30).unwrap(), (56, 112));
    }

    #[test]
    fn smart_resize_refuses_extreme_aspect_ratio() {
        let err = smart_resize(10, 2010, 28, 3136, 602112).unwrap_err();
        assert!(err.to_string().contains("aspect ratio"), "{err}");
    }

    #[test]
    #[allow(clippy::excessive_precision)] // the fact sheet prints the f64 expansion of each f32
    fn fused_normalisation_constants_match_fact_sheet() {
        let cfg = PreprocessorConfig {
            min_pixels: 3136,
            max_pixels: 602112,
            image_mean: crate::config::CLIP_MEAN,
            image_std: crate::config::CLIP_STD,
            rescale_factor: 1.0 / 255.0,
        };
        let p = Preprocessor::new(&cfg, 14, 2, 2, None);
        assert_eq!(p.mean, [122.77094268798828f32, 116.74601745605469, 104.09373474121094]);
        assert_eq!(p.std, [68.50053405761719f32, 66.63216400146484, 70.32315826416016]);
        assert_eq!(Preprocessor::new(&cfg, 14, 2, 2, Some(768)).max_pixels, 602112);
    }

    #[test]
    fn identity_weights_reproduce_input() {
        // Same size on one axis: that pass is skipped, the other axis is resampled.
        let img = RgbImage::from_fn(40, 30, |x, y| image::Rgb([(x * 6) as u8, (y * 8) as u8, ((x + y) * 3) as u8]));
        let out = resize_bicubic_antialias(&img, 40, 30);
        assert_eq!(out, img);
        let down = resize_bicubic_antialias(&img, 20, 30);
        assert_eq!((down.width(), down.height()), (20, 30));
    }

    #[test]
    fn patch_order_is_merge_block_major() {
        let cfg = PreprocessorConfig {
            min_pixels: 0,
            max_pixels: 1 << 30,
            image_mean: [0.0; 3],
            image_std: [1.0 / 255.0; 3],
            rescale_factor: 1.0 / 255.0,
        };
        let p = Preprocessor::new(&cfg, 14, 2, 2, None);
        // 56×56 image: 4×4 patches, 2×2 merge blocks; pixel value = patch column + 10·patch row.
        let img = RgbImage::from_fn(56, 56, |x, y| {
            let v = (x / 14 + 10 * (y / 14)) as u8;
            image::Rgb([v, v, v])
        });
        let pv = p.patchify(&img);
        assert_eq!(pv.grid, ImageGrid { t: 1, h: 4, w: 4 });
        let first: Vec<f32> = (0..pv.grid.patches()).map(|r| pv.data[r * 1176]).collect();
        assert_eq!(first, [0., 1., 10., 11., 2., 3., 12., 13., 20., 21., 30., 31., 22., 23., 32., 33.]);
    }
}
