#!/usr/bin/env python3
"""Reference decoder for models/pose_detection.onnx (MediaPipe's pose detector).

The Rust implementation is checked against this file, so it spells out every step
of MediaPipe's own pose_detection_cpu graph, in the same order:

1. Letterbox (ImageToTensorCalculator, keep_aspect_ratio, BORDER_ZERO): scale the
   RGB frame by s = 224 / max(w, h) (bilinear), paste it centred on a black
   224x224 canvas, map pixel values v (0..255) to v / 127.5 - 1, so the black
   border is -1.0. Tensor: 1x224x224x3 float32, NHWC, RGB.
2. Run the model: outputs `Identity` 1x2254x12 (box + keypoint regressors) and
   `Identity_1` 1x2254x1 (score logits).
3. SSD anchors (SsdAnchorsCalculator): num_layers 5, strides 8,16,32,32,32,
   input 224x224, anchor offset 0.5, aspect ratio 1.0 plus the interpolated one
   (2 anchors per layer and location), consecutive layers with the same stride
   share a feature map, fixed_anchor_size (w = h = 1). Feature maps 28x28x2,
   14x14x2, 7x7x6 -> 1568 + 392 + 294 = 2254 anchors, ordered y, x, anchor.
   Anchor centre = ((x + 0.5) / fw, (y + 0.5) / fh).
4. Decode (TensorsToDetectionsCalculator, reverse_output_order -> x before y):
   row r = [cx, cy, w, h, k0x, k0y, k1x, k1y, k2x, k2y, k3x, k3y] in input pixels,
   cx_n = r[0] / 224 + anchor_cx, cy_n = r[1] / 224 + anchor_cy,
   w_n = r[2] / 224, h_n = r[3] / 224, k_n = r[4+2i] / 224 + anchor_cx (y alike);
   score = sigmoid(clip(logit, -100, 100)); keep score >= 0.5 (min_score_thresh).
5. Weighted NMS (NonMaxSuppressionCalculator, WEIGHTED, IoU, min_suppression
   0.3), on the letterboxed coordinates: sort by score; the best remaining
   detection and every remaining one with IoU > 0.3 with it (itself included)
   form a cluster; the output keeps the best one's score, and its box corners
   (xmin, ymin, xmax, ymax) and keypoints become the score-weighted means over the
   cluster; repeat on the rest.
6. Remove the letterbox (DetectionLetterboxRemovalCalculator):
   x' = (x - pad_left) / (1 - pad_left - pad_right), y alike, w' = w / (1 -
   pad_left - pad_right), h alike; pads are fractions of the 224 canvas.

Keypoints: 0 hip centre, 1 a point above the head (hip -> kp1 is the radius of a
circle that encloses the body), 2 shoulder centre, 3 a point above the head for the
upper body circle.

Usage:
  reference.py IMAGE...                      decode still images
  reference.py --video CLIP --times 3 10 30  decode the frames nearest those times
  reference.py --video CLIP --every-frame    one JSON line per frame (max score too)
Prints JSON lines: {"source", "t", "max_score", "detections": [{"score", "box":
[xmin, ymin, w, h], "keypoints": [[x, y] x 4]}]} in normalized image coordinates.
"""
import argparse
import json
import math
import os
import sys

import numpy as np

INPUT = 224
STRIDES = (8, 16, 32, 32, 32)
NUM_KEYPOINTS = 4
MIN_SCORE = 0.5
NMS_IOU = 0.3
SCORE_CLIP = 100.0
HERE = os.path.dirname(os.path.abspath(__file__))


def ssd_anchors(input_size=INPUT, strides=STRIDES, offset=0.5, per_layer=2):
    """(N, 2) anchor centres in [0, 1], MediaPipe's order (y, x, anchor)."""
    out = []
    i = 0
    while i < len(strides):
        j, n = i, 0
        while j < len(strides) and strides[j] == strides[i]:
            n += per_layer  # aspect ratio 1.0 + the interpolated-scale anchor
            j += 1
        fm = math.ceil(input_size / strides[i])
        for y in range(fm):
            for x in range(fm):
                for _ in range(n):
                    out.append(((x + offset) / fm, (y + offset) / fm))
        i = j
    return np.asarray(out, np.float32)


ANCHORS = ssd_anchors()
assert ANCHORS.shape == (2254, 2)


def letterbox(rgb):
    """RGB uint8 HxWx3 -> (1x224x224x3 float32 in [-1, 1], (pad_l, pad_t, pad_r, pad_b))."""
    import cv2
    h, w = rgb.shape[:2]
    s = INPUT / max(w, h)
    nw, nh = max(1, round(w * s)), max(1, round(h * s))
    resized = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_LINEAR)
    canvas = np.zeros((INPUT, INPUT, 3), np.uint8)
    x0, y0 = (INPUT - nw) // 2, (INPUT - nh) // 2
    canvas[y0:y0 + nh, x0:x0 + nw] = resized
    x = canvas.astype(np.float32) / 127.5 - 1.0
    pads = (x0 / INPUT, y0 / INPUT, (INPUT - nw - x0) / INPUT, (INPUT - nh - y0) / INPUT)
    return x[None], pads


def decode(regressors, logits, min_score=MIN_SCORE):
    """Raw outputs (2254x12, 2254) -> (list of detections in letterboxed coords, max score)."""
    scores = 1.0 / (1.0 + np.exp(-np.clip(logits.astype(np.float64), -SCORE_CLIP, SCORE_CLIP)))
    r = regressors.astype(np.float64) / INPUT
    cx = r[:, 0] + ANCHORS[:, 0]
    cy = r[:, 1] + ANCHORS[:, 1]
    w, h = r[:, 2], r[:, 3]
    kps = r[:, 4:4 + 2 * NUM_KEYPOINTS].reshape(-1, NUM_KEYPOINTS, 2) + ANCHORS[:, None, :]
    dets = []
    for i in np.nonzero(scores >= min_score)[0]:
        dets.append({"score": float(scores[i]),
                     "xmin": cx[i] - w[i] / 2, "ymin": cy[i] - h[i] / 2,
                     "xmax": cx[i] + w[i] / 2, "ymax": cy[i] + h[i] / 2,
                     "kps": kps[i].copy()})
    return dets, float(scores.max())


def iou(a, b):
    ix = max(0.0, min(a["xmax"], b["xmax"]) - max(a["xmin"], b["xmin"]))
    iy = max(0.0, min(a["ymax"], b["ymax"]) - max(a["ymin"], b["ymin"]))
    inter = ix * iy
    union = ((a["xmax"] - a["xmin"]) * (a["ymax"] - a["ymin"]) +
             (b["xmax"] - b["xmin"]) * (b["ymax"] - b["ymin"]) - inter)
    return inter / union if union > 0 else 0.0


def weighted_nms(dets, thresh=NMS_IOU):
    rest = sorted(dets, key=lambda d: -d["score"])  # stable: ties keep anchor order
    out = []
    while rest:
        best = rest[0]
        cluster = [d for d in rest if iou(d, best) > thresh]
        rest = [d for d in rest if not iou(d, best) > thresh]
        tot = sum(d["score"] for d in cluster)
        m = {"score": best["score"]}
        for k in ("xmin", "ymin", "xmax", "ymax"):
            m[k] = sum(d[k] * d["score"] for d in cluster) / tot
        m["kps"] = sum(d["kps"] * d["score"] for d in cluster) / tot
        out.append(m)
    return out


def unletterbox(d, pads):
    pl, pt, pr, pb = pads
    sx, sy = 1.0 - pl - pr, 1.0 - pt - pb
    xmin, ymin = (d["xmin"] - pl) / sx, (d["ymin"] - pt) / sy
    w, h = (d["xmax"] - d["xmin"]) / sx, (d["ymax"] - d["ymin"]) / sy
    kps = [[(x - pl) / sx, (y - pt) / sy] for x, y in d["kps"]]
    return {"score": round(d["score"], 4),
            "box": [round(v, 4) for v in (xmin, ymin, w, h)],
            "keypoints": [[round(x, 4), round(y, 4)] for x, y in kps]}


class PoseDetector:
    def __init__(self, model=os.path.join(HERE, "pose_detection.onnx"), threads=1):
        import onnxruntime as ort
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
        names = [o.name for o in self.sess.get_outputs()]
        assert names == ["Identity", "Identity_1"], names

    def __call__(self, rgb, min_score=MIN_SCORE):
        x, pads = letterbox(rgb)
        reg, logit = self.sess.run(None, {"input_1": x})
        dets, max_score = decode(reg[0], logit[0, :, 0], min_score)
        return [unletterbox(d, pads) for d in weighted_nms(dets)], max_score


def video_frames(path, times=None):
    """Yield (t, rgb) for every frame, or for the frames nearest `times` (seconds)."""
    import cv2
    cap = cv2.VideoCapture(path)
    fps = cap.get(cv2.CAP_PROP_FPS)
    want = None if times is None else {int(round(t * fps)): t for t in times}
    i = 0
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        if want is None or i in want:
            yield i / fps, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            if want is not None:
                del want[i]
                if not want:
                    break
        i += 1
    cap.release()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("images", nargs="*")
    ap.add_argument("--video")
    ap.add_argument("--times", nargs="*", type=float)
    ap.add_argument("--every-frame", action="store_true")
    ap.add_argument("--model", default=os.path.join(HERE, "pose_detection.onnx"))
    ap.add_argument("--min-score", type=float, default=MIN_SCORE)
    a = ap.parse_args()
    det = PoseDetector(a.model)
    out = sys.stdout
    if a.video:
        if not a.times and not a.every_frame:
            ap.error("--video needs --times or --every-frame")
        for t, rgb in video_frames(a.video, None if a.every_frame else a.times):
            dets, ms = det(rgb, a.min_score)
            out.write(json.dumps({"source": os.path.basename(a.video), "t": round(t, 3),
                                  "max_score": round(ms, 4), "detections": dets}) + "\n")
    import cv2
    for p in a.images:
        bgr = cv2.imread(p, cv2.IMREAD_COLOR)
        if bgr is None:
            sys.exit(f"cannot read {p}")
        dets, ms = det(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), a.min_score)
        out.write(json.dumps({"source": os.path.basename(p), "t": None,
                              "max_score": round(ms, 4), "detections": dets}) + "\n")


if __name__ == "__main__":
    main()
