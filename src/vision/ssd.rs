//! MediaPipe's single-shot detectors (pose, face, palm): anchors, box decoding and weighted
//! non-maximum suppression.

use super::tensor::Roi;

/// How one SSD model lays out its anchors and outputs.
#[derive(Debug, Clone)]
pub struct SsdSpec {
    pub input_size: usize,
    /// Feature-map strides, one per layer; consecutive equal strides share a grid.
    pub strides: &'static [usize],
    pub keypoints: usize,
    pub min_score: f32,
    pub nms_iou: f32,
}

/// A detection in image pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    pub score: f32,
    /// xmin, ymin, xmax, ymax in image pixels (unrotated: the ROIs we feed are upright).
    pub bbox: [f32; 4],
    pub keypoints: Vec<[f32; 2]>,
}

/// Anchor centres in normalised input coordinates (fixed anchor size 1, offset 0.5, two
/// anchors per layer: aspect ratio 1 plus the interpolated scale).
pub fn anchors(spec: &SsdSpec) -> Vec<[f32; 2]> {
    let mut out = Vec::new();
    let mut layer = 0;
    while layer < spec.strides.len() {
        let stride = spec.strides[layer];
        let mut per_cell = 0;
        while layer < spec.strides.len() && spec.strides[layer] == stride {
            per_cell += 2;
            layer += 1;
        }
        let cells = spec.input_size.div_ceil(stride);
        for y in 0..cells {
            for x in 0..cells {
                let c = [
                    (x as f32 + 0.5) / cells as f32,
                    (y as f32 + 0.5) / cells as f32,
                ];
                out.extend(std::iter::repeat_n(c, per_cell));
            }
        }
    }
    out
}

/// Decodes raw regressors (`anchors × (4 + 2·keypoints)`) and score logits into detections in
/// image pixels, via the ROI the input tensor was sampled from.
pub fn decode(
    spec: &SsdSpec,
    anchors: &[[f32; 2]],
    boxes: &[f32],
    scores: &[f32],
    roi: &Roi,
) -> Vec<Detection> {
    let stride = 4 + 2 * spec.keypoints;
    let size = spec.input_size as f32;
    let mut found = Vec::new();
    for (i, anchor) in anchors.iter().enumerate() {
        let Some(&logit) = scores.get(i) else { break };
        let score = sigmoid(logit.clamp(-100.0, 100.0));
        if score < spec.min_score {
            continue;
        }
        let Some(r) = boxes.get(i * stride..(i + 1) * stride) else {
            break;
        };
        let cx = r[0] / size + anchor[0];
        let cy = r[1] / size + anchor[1];
        let (w, h) = (r[2] / size, r[3] / size);
        let a = roi.to_image(cx - w / 2.0, cy - h / 2.0);
        let b = roi.to_image(cx + w / 2.0, cy + h / 2.0);
        let keypoints = (0..spec.keypoints)
            .map(|k| {
                roi.to_image(
                    r[4 + 2 * k] / size + anchor[0],
                    r[5 + 2 * k] / size + anchor[1],
                )
            })
            .collect();
        found.push(Detection {
            score,
            bbox: [
                a[0].min(b[0]),
                a[1].min(b[1]),
                a[0].max(b[0]),
                a[1].max(b[1]),
            ],
            keypoints,
        });
    }
    weighted_nms(found, spec.nms_iou)
}

/// MediaPipe's weighted NMS: each cluster of overlapping boxes becomes one detection whose
/// geometry is the score-weighted mean of the cluster and whose score is the best one.
pub fn weighted_nms(mut dets: Vec<Detection>, iou_threshold: f32) -> Vec<Detection> {
    dets.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut out = Vec::new();
    while !dets.is_empty() {
        let top = dets[0].bbox;
        let (cluster, rest): (Vec<_>, Vec<_>) = dets
            .into_iter()
            .partition(|d| iou(&top, &d.bbox) > iou_threshold);
        dets = rest;
        let total: f32 = cluster.iter().map(|d| d.score).sum();
        let mut merged = cluster[0].clone();
        merged.bbox = [0.0; 4];
        merged.keypoints.iter_mut().for_each(|k| *k = [0.0; 2]);
        for d in &cluster {
            let w = d.score / total;
            for (m, v) in merged.bbox.iter_mut().zip(d.bbox) {
                *m += v * w;
            }
            for (m, v) in merged.keypoints.iter_mut().zip(&d.keypoints) {
                m[0] += v[0] * w;
                m[1] += v[1] * w;
            }
        }
        out.push(merged);
    }
    out
}

pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let ix = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let iy = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = ix * iy;
    let union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
    if union > 0.0 { inter / union } else { 0.0 }
}

#[inline]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(input: usize, strides: &'static [usize]) -> SsdSpec {
        SsdSpec {
            input_size: input,
            strides,
            keypoints: 1,
            min_score: 0.5,
            nms_iou: 0.3,
        }
    }

    #[test]
    fn anchor_counts_match_mediapipe_models() {
        assert_eq!(anchors(&spec(224, &[8, 16, 32, 32, 32])).len(), 2254);
        assert_eq!(anchors(&spec(192, &[8, 16, 16, 16])).len(), 2016);
        assert_eq!(anchors(&spec(128, &[8, 16, 16, 16])).len(), 896);
    }

    #[test]
    fn decode_maps_through_the_letterbox() {
        let s = spec(100, &[50]);
        let a = anchors(&s); // 2×2 cells, 2 per cell
        assert_eq!(a.len(), 8);
        let mut boxes = vec![0f32; 8 * 6];
        let mut scores = vec![-10f32; 8];
        // Anchor 4 sits at (0.25, 0.75): shift it +10 px in x, 20×40 px box, keypoint at the centre.
        boxes[4 * 6..5 * 6].copy_from_slice(&[10.0, 0.0, 20.0, 40.0, 10.0, 0.0]);
        scores[4] = 5.0;
        // A 200×100 image letterboxed into a 200×200 square: normalised y 0.75 → 150 - 50 = 100 px.
        let roi = Roi {
            cx: 100.0,
            cy: 50.0,
            width: 200.0,
            height: 200.0,
            rotation: 0.0,
        };
        let d = decode(&s, &a, &boxes, &scores, &roi);
        assert_eq!(d.len(), 1);
        let [x0, y0, x1, y1] = d[0].bbox;
        assert!(
            (x0 - 50.0).abs() < 1e-3 && (x1 - 90.0).abs() < 1e-3,
            "{:?}",
            d[0].bbox
        );
        assert!(
            (y0 - 60.0).abs() < 1e-3 && (y1 - 140.0).abs() < 1e-3,
            "{:?}",
            d[0].bbox
        );
        assert!(
            (d[0].keypoints[0][0] - 70.0).abs() < 1e-3
                && (d[0].keypoints[0][1] - 100.0).abs() < 1e-3
        );
        assert!((d[0].score - sigmoid(5.0)).abs() < 1e-6);
    }

    #[test]
    fn weighted_nms_merges_overlaps_and_keeps_separate_boxes() {
        let det = |score, x: f32| Detection {
            score,
            bbox: [x, 0.0, x + 10.0, 10.0],
            keypoints: vec![[x, 0.0]],
        };
        let out = weighted_nms(vec![det(0.6, 1.0), det(0.9, 0.0), det(0.8, 50.0)], 0.3);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].score, 0.9);
        let expect = 0.6 / 1.5;
        assert!((out[0].bbox[0] - expect).abs() < 1e-5, "{:?}", out[0]);
        assert_eq!(out[1].bbox[0], 50.0);
    }
}
