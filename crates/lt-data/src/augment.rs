//! Per-example transforms: augmentation and per-channel normalization, fused into one pass that
//! reads `u8` CHW pixels and writes normalized `f32` CHW values straight into the batch buffer.
//!
//! The randomness comes in as an [`Rng`] already keyed by `(seed, epoch, example)` (see
//! [`crate::DataOrder::augment_rng`]); a transform never holds state between examples.

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::rng::Rng;
use crate::source::ImageView;

/// What is done to each example before normalization.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Augment {
    /// Nothing (MNIST, Fashion-MNIST, and every test split of same-sized images).
    None,
    /// Zero-pad by `pad` on every side, take a random `size`×`size` crop, flip horizontally with
    /// probability 1/2 (CIFAR-10 training, as in torchvision's `RandomCrop(32, 4)` + `RandomHorizontalFlip`).
    PadCropFlip {
        /// Padding on each side, in pixels.
        pad: u32,
        /// Output side, in pixels.
        size: u32,
    },
    /// torchvision's `RandomResizedCrop(size)` (area fraction 0.08..1, aspect ratio 3/4..4/3, bilinear)
    /// followed by a horizontal flip with probability 1/2 (ImageNet training).
    RandomResizedCropFlip {
        /// Output side, in pixels.
        size: u32,
    },
    /// Resize so the shorter side is `resize`, then take the central `crop`×`crop` (ImageNet evaluation).
    ResizeCenterCrop {
        /// Shorter side after resizing.
        resize: u32,
        /// Output side.
        crop: u32,
    },
}

impl Augment {
    /// The (height, width) this transform produces from an input of `height`×`width`.
    pub fn output_hw(&self, height: u32, width: u32) -> (u32, u32) {
        match *self {
            Augment::None => (height, width),
            Augment::PadCropFlip { size, .. } | Augment::RandomResizedCropFlip { size } => (size, size),
            Augment::ResizeCenterCrop { crop, .. } => (crop, crop),
        }
    }

    /// Whether this transform draws randomness (and so differs between data orders).
    pub fn is_random(&self) -> bool {
        matches!(self, Augment::PadCropFlip { .. } | Augment::RandomResizedCropFlip { .. })
    }
}

/// Per-channel normalization `(x / 255 - mean) / std`, stored as one multiply-add per value.
#[derive(Debug, Clone, PartialEq)]
pub struct Normalize {
    scale: Vec<f32>,
    bias: Vec<f32>,
}

impl Normalize {
    /// Normalization with per-channel `mean` and `std` in `[0, 1]` pixel units.
    pub fn new(mean: &[f32], std: &[f32]) -> Result<Self, Error> {
        if mean.len() != std.len() || mean.is_empty() {
            return Err(Error::Config(format!(
                "normalization needs one mean and one std per channel, got {} means and {} stds",
                mean.len(),
                std.len()
            )));
        }
        if let Some(s) = std.iter().find(|s| !(**s > 0.0 && s.is_finite())) {
            return Err(Error::Config(format!("normalization std must be positive and finite, got {s}")));
        }
        let scale = std.iter().map(|s| 1.0 / (255.0 * s)).collect();
        let bias = mean.iter().zip(std).map(|(m, s)| -m / s).collect();
        Ok(Normalize { scale, bias })
    }

    /// No normalization: values are `x / 255`.
    pub fn unit(channels: usize) -> Self {
        Normalize { scale: vec![1.0 / 255.0; channels], bias: vec![0.0; channels] }
    }

    /// Number of channels.
    pub fn channels(&self) -> usize {
        self.scale.len()
    }

    #[inline]
    fn apply(&self, c: usize, v: f32) -> f32 {
        v.mul_add(self.scale[c], self.bias[c])
    }
}

/// An augmentation plus a normalization: the whole per-example transform.
#[derive(Debug, Clone, PartialEq)]
pub struct Transform {
    /// The augmentation.
    pub augment: Augment,
    /// The normalization.
    pub normalize: Normalize,
}

impl Transform {
    /// Writes the transformed `image` into `out` (length channels × output height × output width).
    pub fn apply(&self, image: &ImageView<'_>, rng: &mut Rng, out: &mut [f32]) -> Result<(), Error> {
        let (c, h, w) = (image.channels as usize, image.height as usize, image.width as usize);
        if c != self.normalize.channels() {
            return Err(Error::Config(format!(
                "an image has {c} channels but the normalization has {}",
                self.normalize.channels()
            )));
        }
        let (oh, ow) = self.augment.output_hw(image.height, image.width);
        let (oh, ow) = (oh as usize, ow as usize);
        debug_assert_eq!(out.len(), c * oh * ow);
        match self.augment {
            Augment::None => {
                for ch in 0..c {
                    let src = &image.data[ch * h * w..(ch + 1) * h * w];
                    for (o, &p) in out[ch * h * w..(ch + 1) * h * w].iter_mut().zip(src) {
                        *o = self.normalize.apply(ch, p as f32);
                    }
                }
            }
            Augment::PadCropFlip { pad, size } => {
                let pad = pad as i64;
                let dy = rng.range_inclusive(0, h as i64 + 2 * pad - size as i64) - pad;
                let dx = rng.range_inclusive(0, w as i64 + 2 * pad - size as i64) - pad;
                let flip = rng.coin();
                pad_crop_flip(image, dy, dx, flip, &self.normalize, out, oh, ow);
            }
            Augment::RandomResizedCropFlip { .. } => {
                let region = random_resized_crop_region(h as f64, w as f64, rng);
                let flip = rng.coin();
                resample(image, region, flip, &self.normalize, out, oh, ow);
            }
            Augment::ResizeCenterCrop { resize, crop } => {
                let s = resize as f64 / h.min(w) as f64;
                let (rh, rw) = (h as f64 * s, w as f64 * s);
                let side = crop as f64 / s;
                let region = Region {
                    y: ((rh - crop as f64) / 2.0).max(0.0) / s,
                    x: ((rw - crop as f64) / 2.0).max(0.0) / s,
                    h: side.min(h as f64),
                    w: side.min(w as f64),
                };
                resample(image, region, false, &self.normalize, out, oh, ow);
            }
        }
        Ok(())
    }
}

/// Copies a shifted, possibly mirrored window; pixels outside the image read as 0 before normalization.
#[allow(clippy::too_many_arguments)]
fn pad_crop_flip(
    image: &ImageView<'_>,
    dy: i64,
    dx: i64,
    flip: bool,
    norm: &Normalize,
    out: &mut [f32],
    oh: usize,
    ow: usize,
) {
    let (c, h, w) = (image.channels as usize, image.height as i64, image.width as i64);
    for ch in 0..c {
        let src = &image.data[ch * (h * w) as usize..(ch + 1) * (h * w) as usize];
        let zero = norm.apply(ch, 0.0);
        for y in 0..oh {
            let sy = y as i64 + dy;
            let row = &mut out[(ch * oh + y) * ow..(ch * oh + y + 1) * ow];
            if sy < 0 || sy >= h {
                row.fill(zero);
                continue;
            }
            let src_row = &src[(sy * w) as usize..((sy + 1) * w) as usize];
            for (x, o) in row.iter_mut().enumerate() {
                let cx = if flip { ow - 1 - x } else { x };
                let sx = cx as i64 + dx;
                *o = if sx < 0 || sx >= w { zero } else { norm.apply(ch, src_row[sx as usize] as f32) };
            }
        }
    }
}

/// A rectangle of the source image, in (fractional) pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Region {
    y: f64,
    x: f64,
    h: f64,
    w: f64,
}

/// torchvision's `RandomResizedCrop.get_params`, scale (0.08, 1), ratio (3/4, 4/3).
fn random_resized_crop_region(h: f64, w: f64, rng: &mut Rng) -> Region {
    let area = h * w;
    let (log_lo, log_hi) = ((3.0f64 / 4.0).ln(), (4.0f64 / 3.0).ln());
    for _ in 0..10 {
        let target = area * (0.08 + rng.unit() * (1.0 - 0.08));
        let ratio = (log_lo + rng.unit() * (log_hi - log_lo)).exp();
        let cw = (target * ratio).sqrt().round();
        let ch = (target / ratio).sqrt().round();
        if cw >= 1.0 && ch >= 1.0 && cw <= w && ch <= h {
            let y = rng.range_inclusive(0, (h - ch) as i64) as f64;
            let x = rng.range_inclusive(0, (w - cw) as i64) as f64;
            return Region { y, x, h: ch, w: cw };
        }
    }
    // Fallback: a central crop with the ratio clamped into range.
    let in_ratio = w / h;
    let (ch, cw) = if in_ratio < 3.0 / 4.0 {
        ((w / (3.0 / 4.0)).round(), w)
    } else if in_ratio > 4.0 / 3.0 {
        (h, (h * 4.0 / 3.0).round())
    } else {
        (h, w)
    };
    Region { y: ((h - ch) / 2.0).floor(), x: ((w - cw) / 2.0).floor(), h: ch, w: cw }
}

/// Bilinear resampling of `region` onto an `oh`×`ow` grid (pixel centers aligned, edges clamped).
fn resample(image: &ImageView<'_>, r: Region, flip: bool, norm: &Normalize, out: &mut [f32], oh: usize, ow: usize) {
    let (c, h, w) = (image.channels as usize, image.height as usize, image.width as usize);
    let (sy, sx) = (r.h / oh as f64, r.w / ow as f64);
    let taps = |o: usize, scale: f64, origin: f64, len: usize| {
        let p = (origin + (o as f64 + 0.5) * scale - 0.5).clamp(0.0, (len - 1) as f64);
        let i0 = p.floor() as usize;
        let i1 = (i0 + 1).min(len - 1);
        (i0, i1, (p - i0 as f64) as f32)
    };
    let xs: Vec<_> = (0..ow).map(|x| taps(if flip { ow - 1 - x } else { x }, sx, r.x, w)).collect();
    for y in 0..oh {
        let (y0, y1, fy) = taps(y, sy, r.y, h);
        for ch in 0..c {
            let plane = &image.data[ch * h * w..(ch + 1) * h * w];
            let (row0, row1) = (&plane[y0 * w..(y0 + 1) * w], &plane[y1 * w..(y1 + 1) * w]);
            let dst = &mut out[(ch * oh + y) * ow..(ch * oh + y + 1) * ow];
            for (o, &(x0, x1, fx)) in dst.iter_mut().zip(&xs) {
                let top = row0[x0] as f32 + (row0[x1] as f32 - row0[x0] as f32) * fx;
                let bottom = row1[x0] as f32 + (row1[x1] as f32 - row1[x0] as f32) * fx;
                *o = norm.apply(ch, top + (bottom - top) * fy);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;
    use proptest::prelude::*;

    fn view(data: &[u8], c: u32, h: u32, w: u32) -> ImageView<'_> {
        ImageView { data, channels: c, height: h, width: w }
    }

    fn ramp(c: u32, h: u32, w: u32) -> Vec<u8> {
        (0..c * h * w).map(|i| (i % 251) as u8 + 1).collect()
    }

    #[test]
    fn none_normalizes_exactly() {
        let t = Transform { augment: Augment::None, normalize: Normalize::new(&[0.5], &[0.25]).unwrap() };
        let img = [0u8, 255, 51];
        let mut out = [0f32; 3];
        t.apply(&view(&img, 1, 1, 3), &mut Rng::new(0), &mut out).unwrap();
        for (o, e) in out.iter().zip([-2.0f32, 2.0, -1.2]) {
            assert!((o - e).abs() < 1e-6, "{out:?}");
        }
    }

    proptest! {
        /// Every output pixel of pad-crop-flip is either padding or a source pixel whose position
        /// stays inside the padded frame; a crop never reads outside the image.
        #[test]
        fn crops_stay_in_bounds(seed: u64, h in 1u32..40, w in 1u32..40, pad in 0u32..6) {
            let size = h.min(w);
            let img = ramp(3, h, w);
            let t = Transform { augment: Augment::PadCropFlip { pad, size }, normalize: Normalize::unit(3) };
            let mut out = vec![0f32; (3 * size * size) as usize];
            t.apply(&view(&img, 3, h, w), &mut Rng::new(seed), &mut out).unwrap();
            let zeros = out.iter().filter(|v| **v == 0.0).count();
            // At most `pad` rows and `pad` columns of padding can show in a crop.
            let max_pad = (pad.min(size) * size * 2) as usize * 3;
            prop_assert!(zeros <= max_pad, "{} zeros", zeros);
            prop_assert!(out.iter().all(|v| (0.0..=1.0).contains(v)));
        }

        #[test]
        fn flip_twice_is_identity(h in 1u32..20, w in 1u32..20) {
            let img = ramp(2, h, w);
            let mut once = vec![0f32; (2 * h * w) as usize];
            pad_crop_flip(&view(&img, 2, h, w), 0, 0, true, &Normalize::unit(2), &mut once, h as usize, w as usize);
            let flipped: Vec<u8> = once.iter().map(|v| (v * 255.0).round() as u8).collect();
            let mut twice = vec![0f32; (2 * h * w) as usize];
            pad_crop_flip(&view(&flipped, 2, h, w), 0, 0, true, &Normalize::unit(2), &mut twice, h as usize, w as usize);
            let back: Vec<u8> = twice.iter().map(|v| (v * 255.0).round() as u8).collect();
            prop_assert_eq!(back, img);
        }

        #[test]
        fn random_resized_crop_regions_are_inside(seed: u64, h in 1u32..600, w in 1u32..600) {
            let r = random_resized_crop_region(h as f64, w as f64, &mut Rng::new(seed));
            prop_assert!(r.y >= 0.0 && r.x >= 0.0 && r.h >= 1.0 && r.w >= 1.0);
            prop_assert!(r.y + r.h <= h as f64 + 1e-9 && r.x + r.w <= w as f64 + 1e-9, "{:?} in {}x{}", r, h, w);
        }

        #[test]
        fn resampling_is_bounded_by_source_range(seed: u64, h in 2u32..64, w in 2u32..64) {
            let img = ramp(3, h, w);
            for augment in [Augment::RandomResizedCropFlip { size: 24 }, Augment::ResizeCenterCrop { resize: 28, crop: 24 }] {
                let t = Transform { augment, normalize: Normalize::unit(3) };
                let mut out = vec![0f32; 3 * 24 * 24];
                t.apply(&view(&img, 3, h, w), &mut Rng::new(seed), &mut out).unwrap();
                let (lo, hi) = (*img.iter().min().unwrap() as f32 / 255.0, *img.iter().max().unwrap() as f32 / 255.0);
                prop_assert!(out.iter().all(|v| *v >= lo - 1e-6 && *v <= hi + 1e-6));
            }
        }
    }

    #[test]
    fn pad_crop_without_shift_is_the_image() {
        let img = ramp(3, 4, 4);
        let mut out = vec![0f32; 48];
        pad_crop_flip(&view(&img, 3, 4, 4), 0, 0, false, &Normalize::unit(3), &mut out, 4, 4);
        let back: Vec<u8> = out.iter().map(|v| (v * 255.0).round() as u8).collect();
        assert_eq!(back, img);
    }

    #[test]
    fn shifted_crop_moves_pixels_and_pads_with_zero() {
        // 1 channel 3x3, shift down-right by one: the first row and column are padding.
        let img = [1u8, 2, 3, 4, 5, 6, 7, 8, 9];
        let mut out = vec![0f32; 9];
        pad_crop_flip(&view(&img, 1, 3, 3), -1, -1, false, &Normalize::unit(1), &mut out, 3, 3);
        let back: Vec<u8> = out.iter().map(|v| (v * 255.0).round() as u8).collect();
        assert_eq!(back, [0, 0, 0, 0, 1, 2, 0, 4, 5]);
    }

    #[test]
    fn resize_center_crop_of_an_exact_size_is_the_center() {
        // Shorter side already equals `resize`: the result is the central window, unresampled.
        let img = ramp(1, 6, 8);
        let t = Transform { augment: Augment::ResizeCenterCrop { resize: 6, crop: 4 }, normalize: Normalize::unit(1) };
        let mut out = vec![0f32; 16];
        t.apply(&view(&img, 1, 6, 8), &mut Rng::new(0), &mut out).unwrap();
        let back: Vec<u8> = out.iter().map(|v| (v * 255.0).round() as u8).collect();
        let expect: Vec<u8> = (1..5).flat_map(|y| (2..6).map(move |x| (y, x))).map(|(y, x)| img[y * 8 + x]).collect();
        assert_eq!(back, expect);
    }

    #[test]
    fn bad_normalization_is_refused() {
        assert!(Normalize::new(&[0.1, 0.2], &[0.3]).is_err());
        assert!(Normalize::new(&[0.1], &[0.0]).is_err());
    }
}
