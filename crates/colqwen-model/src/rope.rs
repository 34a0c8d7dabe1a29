//! Positions and rotary tables, shared by the families: the (t, h, w) position streams of a packed batch
//! (`get_rope_index`, identical for Qwen2.5-VL and Qwen3-VL for still images), the language model's M-RoPE
//! tables (contiguous sections in Qwen2.5-VL, interleaved slots in Qwen3-VL) and the vision towers' 2D rotary
//! tables. Everything is computed on the host in f32 (as the reference does under autocast-off) and uploaded.

use candle_core::{DType, Device, Result, Tensor};

use crate::preprocess::ImageGrid;

/// M-RoPE positions `[3][L]` (t, h, w streams) of one document: text tokens advance all streams together; an
/// image group of `mh × mw` merged tokens gets `(s, s+r, s+c)`, after which the counter moves on by
/// `max(mh, mw)` (transformers' `get_rope_index`: Qwen2.5-VL and Qwen3-VL agree for images).
pub fn document_positions(ids: &[u32], image_token_id: u32, grids: &[ImageGrid], merge: usize) -> [Vec<u32>; 3] {
    let mut pos: [Vec<u32>; 3] = Default::default();
    let mut s = 0u32;
    let mut grids = grids.iter();
    let mut i = 0;
    while i < ids.len() {
        if ids[i] != image_token_id {
            for p in &mut pos {
                p.push(s);
            }
            s += 1;
            i += 1;
            continue;
        }
        let run = ids[i..].iter().take_while(|&&t| t == image_token_id).count();
        let g = grids.next().copied().unwrap_or(ImageGrid { t: 1, h: merge, w: run * merge });
        let (mh, mw) = (g.h / merge, g.w / merge);
        for t in 0..g.t {
            for r in 0..mh {
                for c in 0..mw {
                    pos[0].push(s + t as u32);
                    pos[1].push(s + r as u32);
                    pos[2].push(s + c as u32);
                }
            }
        }
        s += mh.max(mw) as u32;
        i += run;
    }
    pos
}

/// Query positions: `0..L` on all three streams (never shifted, since queries are not padded).
pub fn query_positions(len: usize) -> [Vec<u32>; 3] {
    let p: Vec<u32> = (0..len as u32).collect();
    [p.clone(), p.clone(), p]
}

/// `1 / θ^(i / dim)` for `i = 0, 2, …, dim − 2`, in f32 as the reference's `inv_freq` buffers.
pub(crate) fn inverse_frequencies(dim: usize, theta: f64) -> Vec<f32> {
    let theta = theta as f32;
    (0..dim).step_by(2).map(|i| 1.0f32 / theta.powf(i as f32 / dim as f32)).collect()
}

/// How the language model's frequency slots take their angle from the three position streams.
#[derive(Debug, Clone)]
pub(crate) struct MRope {
    inv_freq: Vec<f32>,
    /// The stream (0 = t, 1 = h, 2 = w) of each frequency slot.
    stream: Vec<usize>,
}

impl MRope {
    /// Qwen2.5-VL: slots `0..s0` from t, the next `s1` from h, the next `s2` from w.
    pub(crate) fn sectioned(rot_dim: usize, theta: f64, sections: &[usize]) -> Self {
        let stream = sections.iter().enumerate().flat_map(|(s, &len)| std::iter::repeat_n(s, len)).collect();
        Self { inv_freq: inverse_frequencies(rot_dim, theta), stream }
    }

    /// Qwen3-VL / Qwen3.5: slot `j` from h when `j ≡ 1 (mod 3)` and `j < 3·s1`, from w when `j ≡ 2 (mod 3)` and
    /// `j < 3·s2`, else from t (`Qwen3VLTextRotaryEmbedding.recomposition_frequencies`).
    pub(crate) fn interleaved(rot_dim: usize, theta: f64, sections: &[usize]) -> Self {
        let stream = (0..rot_dim / 2)
            .map(|j| match j % 3 {
                1 if j < 3 * sections[1] => 1,
                2 if j < 3 * sections[2] => 2,
                _ => 0,
            })
            .collect();
        Self { inv_freq: inverse_frequencies(rot_dim, theta), stream }
    }

    /// The rotated width (`head_dim`, or its rotated share).
    pub(crate) fn rot_dim(&self) -> usize {
        2 * self.inv_freq.len()
    }

    /// `cos`, `sin` `[N, rot_dim/2]` for positions `[3][N]`: computed in f32, cast to `dtype` (the reference casts
    /// them to the hidden states' dtype before rotating).
    pub(crate) fn tables(&self, positions: &[Vec<u32>; 3], dtype: DType, device: &Device) -> Result<(Tensor, Tensor)> {
        let n = positions[0].len();
        let half = self.inv_freq.len();
        let mut angles = Vec::with_capacity(n * half);
        #[allow(clippy::needless_range_loop)]
        for tok in 0..n {
            for (f, &s) in self.inv_freq.iter().zip(&self.stream) {
                // Each frequency reads its own position stream (`s`), so the token is an index, not an iterator.
                angles.push(positions[s][tok] as f32 * f);
            }
        }
        let theta = Tensor::from_vec(angles, (n, half), device)?;
        Ok((theta.cos()?.to_dtype(dtype)?, theta.sin()?.to_dtype(dtype)?))
    }
}

/// Patch-row `(h, w)` positions in the merge-block-major order of the preprocessing (rows of
/// `pixel_values`), images one after the other.
pub(crate) fn patch_positions(grids: &[ImageGrid], merge: usize) -> Vec<(usize, usize)> {
    let mut pos = Vec::new();
    for g in grids {
        for _ in 0..g.t {
            for bh in 0..g.h / merge {
                for bw in 0..g.w / merge {
                    for ih in 0..merge {
                        for iw in 0..merge {
                            pos.push((bh * merge + ih, bw * merge + iw));
                        }
                    }
                }
            }
        }
    }
    pos
}

/// The vision towers' 2D rotary: half of each head's rotated pairs turn with the patch row, half with its
/// column, at `head_dim/4` frequencies of base θ.
#[derive(Debug, Clone)]
pub(crate) struct VisionRope {
    inv_freq: Vec<f32>,
}

impl VisionRope {
    pub(crate) fn new(head_dim: usize, theta: f64) -> Self {
        Self { inv_freq: inverse_frequencies(head_dim / 2, theta) }
    }

    /// `cos`, `sin` `[N, head_dim/2]` in f32 for patches at `positions` (row angles, then column angles).
    pub(crate) fn tables(
        &self,
        positions: impl ExactSizeIterator<Item = (usize, usize)>,
        device: &Device,
    ) -> Result<(Tensor, Tensor)> {
        let n = positions.len();
        let nf = self.inv_freq.len();
        let mut angles = Vec::with_capacity(n * 2 * nf);
        for (h, w) in positions {
            angles.extend(self.inv_freq.iter().map(|f| h as f32 * f));
            angles.extend(self.inv_freq.iter().map(|f| w as f32 * f));
        }
        let theta = Tensor::from_vec(angles, (n, 2 * nf), device)?;
        Ok((theta.cos()?, theta.sin()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 1024×768 page (mh 24, mw 32): prefix 0..3, image t=4, h=4+r, w=4+c, suffix 36..42.
    #[test]
    fn document_positions_follow_get_rope_index() {
        let img = 9u32;
        let mut ids = vec![1, 2, 3, 4];
        ids.extend(std::iter::repeat_n(img, 768));
        ids.extend([5, 6, 7, 8, 9 + 1, 11, 12]);
        let p = document_positions(&ids, img, &[ImageGrid { t: 1, h: 48, w: 64 }], 2);
        assert_eq!(&p[0][..4], &[0, 1, 2, 3]);
        assert_eq!(p[0][4], 4);
        assert_eq!((p[1][4 + 33], p[2][4 + 33]), (4 + 1, 4 + 1));
        assert_eq!(&p[2][4 + 768..], &[36, 37, 38, 39, 40, 41, 42]);
        assert_eq!(p[0].len(), 779);
    }

    /// Qwen3-VL's [24, 20, 20] over 64 slots: t h w t h w … up to slot 59, then t for 60..63.
    #[test]
    fn interleaved_streams_alternate_then_fall_back_to_t() {
        let m = MRope::interleaved(128, 5e6, &[24, 20, 20]);
        assert_eq!(&m.stream[..6], &[0, 1, 2, 0, 1, 2]);
        assert_eq!(&m.stream[57..], &[0, 1, 2, 0, 0, 0, 0]);
        assert_eq!(m.stream.iter().filter(|&&s| s == 1).count(), 20);
        let q25 = MRope::sectioned(128, 1e6, &[16, 24, 24]);
        assert_eq!((q25.stream[15], q25.stream[16], q25.stream[40]), (0, 1, 2));
    }
}
