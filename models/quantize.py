#!/usr/bin/env python3
"""INT8 forms of the models (onnxruntime.precision = "int8"), run through models/convert.sh.

Static QDQ quantisation with ONNX Runtime's own tool: per-channel symmetric INT8 weights,
UINT8 activations, the output heads kept in FP32, ranges calibrated (MinMax) on the tensors the models are really given:
`mirrorsight bench CLIP --calibration-dump DIR` writes every Nth input of each model while it
replays the shared footage and the demo clip, so the pose landmark model is calibrated on body
crops, the hand models on hand crops, the detectors on whole frames.

For each model named on the command line: DIR/<model>/*.f32 (raw float32 NHWC) in sorted
order -> models/<name>.int8.onnx, and in models/manifest.json that model's "int8" entry: file,
sha256 and provenance (tool and version, settings, calibration clips with their sha256 and the
number of tensors). Models not named lose their "int8" entry (they run in FP32 under "int8").

Usage: quantize.py --models models/ --calibration DIR --clips CLIP... -- NAME...
"""
import argparse
import glob
import hashlib
import json
import os
import sys

import numpy as np
import onnx
import onnxruntime
from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                      QuantType, quantize_static)

# Which dump folder (the ImageModel's name in the daemon) feeds which model.
DUMP_FOLDER = {
    "pose_detection": "pose_detection",
    "pose_landmark_lite": "pose_landmark_lite",
    "palm_detection_lite": "palm_detection",
    "palm_detection_full": "palm_detection",
    "hand_landmark_lite": "hand_landmark",
    "hand_landmark_full": "hand_landmark",
}
# Operators an output reaches through without computing anything new: the output heads are
# followed back through them to the convolution or dense layer that makes each output.
PASS_THROUGH = {"Reshape", "Concat", "Transpose", "Identity", "Squeeze", "Unsqueeze", "Flatten",
                "Sigmoid", "Add", "Mul", "Div", "Sub", "Cast"}
# More calibration tensors than this per model add time, not accuracy: an even spread is kept.
MAX_SAMPLES = 300


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def output_heads(path):
    """The nodes that make the model's outputs: kept in FP32, since the detectors' box offsets
    (hundreds of pixels) and score logits (up to ±400) do not fit 256 steps, and the heads are
    a small share of the work."""
    graph = onnx.load(path).graph
    producer = {out: node for node in graph.node for out in node.output}
    heads, stack = set(), [o.name for o in graph.output]
    while stack:
        node = producer.get(stack.pop())
        if node is None or node.name in heads:
            continue
        heads.add(node.name)
        if node.op_type in PASS_THROUGH:
            stack.extend(node.input)
    return sorted(heads)


class Tensors(CalibrationDataReader):
    def __init__(self, files, input_name, shape):
        self.files = iter(files)
        self.input_name = input_name
        self.shape = shape

    def get_next(self):
        path = next(self.files, None)
        if path is None:
            return None
        return {self.input_name: np.fromfile(path, dtype="<f4").reshape(self.shape)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", required=True)
    ap.add_argument("--calibration", required=True, help="the --calibration-dump folder")
    ap.add_argument("--clips", nargs="+", required=True, help="the clips replayed into it")
    ap.add_argument("--every", type=int, required=True, help="the --calibration-every used")
    ap.add_argument("names", nargs="*")
    args = ap.parse_args()

    manifest_path = os.path.join(args.models, "manifest.json")
    with open(manifest_path) as f:
        manifest = json.load(f)
    by_name = {m["name"]: m for m in manifest["models"]}
    for name in args.names:
        if name not in by_name or name not in DUMP_FOLDER:
            sys.exit(f"quantize: no model {name} to quantise")

    clips = [{"file": os.path.basename(c), "sha256": sha256_file(c)} for c in args.clips]
    for spec in manifest["models"]:
        spec.pop("int8", None)
    for name in args.names:
        spec = by_name[name]
        folder = os.path.join(args.calibration, DUMP_FOLDER[name])
        files = sorted(glob.glob(os.path.join(folder, "*.f32")))
        if not files:
            sys.exit(f"quantize: no calibration tensors in {folder}")
        if len(files) > MAX_SAMPLES:
            step = len(files) / MAX_SAMPLES
            files = [files[int(i * step)] for i in range(MAX_SAMPLES)]
        shape = spec["inputs"][0]["shape"]
        src = os.path.join(args.models, spec["file"])
        out_file = spec["file"].replace(".onnx", ".int8.onnx")
        out = os.path.join(args.models, out_file)
        print(f"== int8 {name}: {len(files)} calibration tensors", flush=True)
        quantize_static(
            src, out, Tensors(files, spec["inputs"][0]["name"], shape),
            quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=output_heads(src))
        onnx.checker.check_model(out)
        spec["int8"] = {
            "file": out_file,
            "sha256": sha256_file(out),
            "quantization": {
                "tool": f"onnxruntime.quantization.quantize_static (onnxruntime {onnxruntime.__version__}, onnx {onnx.__version__})",
                "format": "QDQ",
                "weights": "int8, per channel",
                "activations": "uint8, per tensor",
                "kept_fp32": "the output heads (the layers that make each output)",
                "calibration": "MinMax",
                "calibration_tensors": len(files),
                "calibration_every": args.every,
                "calibration_clips": clips,
                "source_sha256": spec["sha256"],
            },
        }
    for spec in manifest["models"]:
        if "int8" not in spec:
            stale = os.path.join(args.models, spec["file"].replace(".onnx", ".int8.onnx"))
            if os.path.exists(stale):
                os.remove(stale)
    with open(manifest_path, "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
