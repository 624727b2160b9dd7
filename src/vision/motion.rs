//! A cheap "did anything change?" signal that decides how often the detector must run.
//!
//! A 32×24 grey thumbnail (each cell the mean of a 4×4 grid of samples) costs a few
//! microseconds per frame; its mean absolute difference to the previous frame's thumbnail
//! separates a still scene from someone moving.

use mirrorsight_core::observation::MotionGrid;

use crate::frame::RgbImage;

const W: usize = 32;
const H: usize = 24;
const SAMPLES: usize = 4;

#[derive(Debug, Default)]
pub struct MotionGate {
    previous: Option<Vec<f32>>,
    current: Vec<f32>,
    /// Per-cell absolute change of the latest update.
    diffs: Vec<f32>,
}

impl MotionGate {
    /// Per-cell absolute grey-level change (0..255) since the previous frame; 0 for the first.
    pub fn update(&mut self, image: &RgbImage) -> MotionGrid {
        thumbnail(image, &mut self.current);
        self.diffs.clear();
        match &self.previous {
            Some(prev) => self
                .diffs
                .extend(prev.iter().zip(&self.current).map(|(a, b)| (a - b).abs())),
            None => self.diffs.resize(W * H, 0.0),
        }
        match &mut self.previous {
            Some(prev) => std::mem::swap(prev, &mut self.current),
            None => self.previous = Some(self.current.clone()),
        }
        MotionGrid {
            columns: W,
            rows: H,
            change: self.diffs.clone(),
        }
    }
}

fn thumbnail(image: &RgbImage, out: &mut Vec<f32>) {
    out.clear();
    let (iw, ih) = (image.width as usize, image.height as usize);
    for cy in 0..H {
        for cx in 0..W {
            let mut sum = 0u32;
            for sy in 0..SAMPLES {
                let y = ((cy * SAMPLES + sy) * 2 + 1) * ih / (H * SAMPLES * 2);
                for sx in 0..SAMPLES {
                    let x = ((cx * SAMPLES + sx) * 2 + 1) * iw / (W * SAMPLES * 2);
                    let i = (y * iw + x) * 3;
                    // Integer luma (BT.601) is plenty for a change detector.
                    sum += (image.data[i] as u32 * 77
                        + image.data[i + 1] as u32 * 150
                        + image.data[i + 2] as u32 * 29)
                        >> 8;
                }
            }
            out.push(sum as f32 / (SAMPLES * SAMPLES) as f32);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn still_scene_is_zero_and_a_change_is_not() {
        let mut gate = MotionGate::default();
        let grey = RgbImage::filled(64, 48, [100, 100, 100]);
        assert_eq!(gate.update(&grey).mean(), 0.0);
        assert_eq!(gate.update(&grey).mean(), 0.0);
        let mut moved = grey.clone();
        for y in 0..24 {
            for x in 0..32 {
                let i = (y * 64 + x) * 3;
                moved.data[i..i + 3].copy_from_slice(&[200, 200, 200]);
            }
        }
        let grid = gate.update(&moved);
        let d = grid.mean();
        assert!(
            (d - 25.0).abs() < 1.0,
            "a quarter of the frame changed by 100: {d}"
        );
        assert!((grid.change_in([0.0, 0.0, 0.49, 0.49]) - 100.0).abs() < 1.0);
        assert_eq!(grid.change_in([0.6, 0.6, 1.0, 1.0]), 0.0);
    }
}
