#!/usr/bin/env python3
"""Check every ONNX file in models/ against its source .tflite model.

Runs the TFLite interpreter (tensorflow's tf.lite.Interpreter) and onnxruntime on
the same real photographs and compares every output tensor (matched by name).
Also checks manifest.json against the files (sha256, input/output names, shapes
and dtypes as onnxruntime reports them, in session order).

Images: scikit-image's bundled `astronaut` photo (no download), plus, when the
folder exists, the stills in ../shared/footage (read in place, never copied).

Usage: verify.py --models models/ --tflite WORKDIR_WITH_TFLITES [--tol 1e-4]
Pass criterion per output, worst case over all images: max abs diff (ONNX vs
TFLite default kernels) <= tol * max(1, max|output|), or <= 2 x the largest
difference between TFLite's own XNNPACK and builtin kernels on those images (the
float rounding noise TFLite itself shows; only the segmentation logits of the untrimmed
pose_landmark_lite, values up to ~1000, needed that second clause). Outputs trim.py cut
out (the manifest's "trimmed" record) are not compared; every other one is.
Exit code 1 if any output differs by more than the tolerance.
"""
import argparse
import glob
import hashlib
import json
import os
import sys

import numpy as np

# input value range per model (MediaPipe's own preprocessing settings)
RANGE = {
    "pose_detection": (-1.0, 1.0),
    "face_detection_short_range": (-1.0, 1.0),
    "palm_detection_lite": (0.0, 1.0),
    "palm_detection_full": (0.0, 1.0),
    "hand_landmark_lite": (0.0, 1.0),
    "hand_landmark_full": (0.0, 1.0),
    "pose_landmark_lite": (0.0, 1.0),
}


def load_images():
    from skimage import data
    imgs = [("skimage:astronaut", data.astronaut())]
    here = os.path.dirname(os.path.abspath(__file__))
    footage = os.path.normpath(os.path.join(here, "..", "..", "shared", "footage"))
    if os.path.isdir(footage):
        from PIL import Image
        for p in sorted(glob.glob(os.path.join(footage, "*.jpg")) + glob.glob(os.path.join(footage, "*.png"))):
            imgs.append(("footage:" + os.path.basename(p), np.asarray(Image.open(p).convert("RGB"))))
    return imgs


def prep(img, size, lo, hi):
    """Centre square crop, resize to the model input, scale to [lo, hi]."""
    from PIL import Image
    h, w = img.shape[:2]
    s = min(h, w)
    y0, x0 = (h - s) // 2, (w - s) // 2
    crop = Image.fromarray(img[y0:y0 + s, x0:x0 + s]).resize((size[1], size[0]), Image.BILINEAR)
    x = np.asarray(crop, np.float32) / 255.0
    return (x * (hi - lo) + lo)[None]


def sha256_file(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default=os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--tflite", required=True, help="folder with the source <name>.tflite files")
    ap.add_argument("--tol", type=float, default=1e-4,
                    help="max abs diff allowed, scaled by max(1, max|tflite output|) for large-valued outputs; "
                         "an output also passes if the diff is at most twice the largest difference "
                         "between TFLite's own two CPU kernel sets (XNNPACK and builtin)")
    a = ap.parse_args()

    import onnxruntime as ort
    import tensorflow as tf

    manifest = json.load(open(os.path.join(a.models, "manifest.json")))
    imgs = load_images()
    ok = True
    for m in manifest["models"]:
        name = m["name"]
        onnx_path = os.path.join(a.models, m["file"])
        if sha256_file(onnx_path) != m["sha256"]:
            print(f"FAIL {name}: sha256 differs from manifest"); ok = False
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        sess = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
        io = lambda xs: [(x.name, list(x.shape), x.type) for x in xs]
        dt = {"float32": "tensor(float)"}
        man = lambda xs: [(x["name"], x["shape"], dt[x["dtype"]]) for x in xs]
        if io(sess.get_inputs()) != man(m["inputs"]) or io(sess.get_outputs()) != man(m["outputs"]):
            print(f"FAIL {name}: inputs/outputs differ from manifest"); ok = False

        tfl = os.path.join(a.tflite, name + ".tflite")
        it = tf.lite.Interpreter(model_path=tfl, num_threads=1)  # default kernels (XNNPACK)
        it.allocate_tensors()
        # TFLite's reference (builtin) kernels: how far TFLite disagrees with itself
        it2 = tf.lite.Interpreter(model_path=tfl, num_threads=1, experimental_op_resolver_type=
                                  tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        it2.allocate_tensors()
        tin = it.get_input_details()[0]
        tout = {d["name"]: d for d in it.get_output_details()}
        onames = [o.name for o in sess.get_outputs()]
        # Heads trim.py cut out are not in the ONNX model; every other output must be.
        for k in (m.get("trimmed") or {}).get("removed_outputs", []):
            tout.pop(k, None)
        if sorted(tout) != sorted(onames):
            print(f"FAIL {name}: tflite outputs {sorted(tout)} vs onnx {onames}"); ok = False
            continue
        lo, hi = RANGE[name]
        worst = {k: (0.0, 0.0, 0.0) for k in onames}
        for iname, img in imgs:
            x = prep(img, tin["shape"][1:3], lo, hi)
            it.set_tensor(tin["index"], x)
            it.invoke()
            ref = {k: it.get_tensor(d["index"]) for k, d in tout.items()}
            it2.set_tensor(tin["index"], x)
            it2.invoke()
            ref2 = {d["name"]: it2.get_tensor(d["index"]) for d in it2.get_output_details()}
            got = dict(zip(onames, sess.run(None, {sess.get_inputs()[0].name: x})))
            for k in onames:
                if ref[k].shape != got[k].shape:
                    print(f"FAIL {name} {k}: shape {got[k].shape} vs tflite {ref[k].shape}"); ok = False
                    continue
                d = float(np.max(np.abs(ref[k] - got[k])))
                self_d = float(np.max(np.abs(ref[k] - ref2[k])))
                scale = max(1.0, float(np.max(np.abs(ref[k]))))
                worst[k] = (max(worst[k][0], d), max(worst[k][1], scale), max(worst[k][2], self_d))
        for k in onames:
            d, scale, self_d = worst[k]
            bad = d > max(a.tol * scale, 2.0 * self_d)
            ok = ok and not bad
            print(f"{'FAIL ' if bad else ''}{name:27s} {k:14s} onnx-tflite {d:.2e}  "
                  f"tflite xnnpack-builtin {self_d:.2e}  max|value| {scale:8.3g}")
    print("verify:", "OK" if ok else "FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
