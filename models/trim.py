#!/usr/bin/env python3
"""Cut the heads the daemon never reads out of a converted model (models/convert.sh, step 3b).

ONNX Runtime runs every node of a graph on every call, also those that only feed outputs
nobody asked for. pose_landmark_lite computes a 256x256 segmentation mask and 64x64x39
heatmaps next to its landmarks; the daemon reads only the landmarks and the pose flag, and
the two unused heads cost more than half of the model's time (measured in models/README.md).
This keeps exactly the nodes the kept outputs depend on (onnx.utils.Extractor), so the kept
outputs are the same numbers as the full model's, and rewrites the model's manifest entry:
sha256 and outputs as ONNX Runtime reports them, plus a "trimmed" record (the outputs
removed, the full model's sha256, the onnx version). verify.py then checks the kept outputs
against TFLite as before.

Idempotent: trimming a trimmed model to the same outputs gives the same bytes, and the
"trimmed" record keeps the first full model's facts.

Usage: trim.py --models models/ NAME=OUTPUT,OUTPUT [NAME=...]
"""
import argparse
import hashlib
import json
import os
import sys

import onnx
import onnx.utils


def sha256_file(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default=os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("keep", nargs="+", help="NAME=OUTPUT,OUTPUT: the outputs of model NAME to keep")
    a = ap.parse_args()

    import onnxruntime as ort

    manifest_path = os.path.join(a.models, "manifest.json")
    with open(manifest_path) as f:
        manifest = json.load(f)
    by_name = {m["name"]: m for m in manifest["models"]}
    for spec in a.keep:
        name, _, outputs = spec.partition("=")
        keep = [o for o in outputs.split(",") if o]
        entry = by_name.get(name)
        if entry is None or not keep:
            sys.exit(f"trim.py: {spec!r}: want NAME=OUTPUT,... with NAME in manifest.json")
        path = os.path.join(a.models, entry["file"])
        model = onnx.load(path)
        present = [o.name for o in model.graph.output]
        missing = [o for o in keep if o not in present]
        if missing:
            sys.exit(f"trim.py: {name} has no output {missing} (it has {present})")
        full_sha = sha256_file(path)
        inputs = [i.name for i in model.graph.input]
        trimmed = onnx.utils.Extractor(model).extract_model(inputs, keep)
        # The extracted graph is named after the cut; keep the source's name and metadata.
        trimmed.graph.name = model.graph.name
        trimmed.producer_name, trimmed.producer_version = model.producer_name, model.producer_version
        del trimmed.metadata_props[:]
        trimmed.metadata_props.extend(model.metadata_props)
        onnx.checker.check_model(trimmed)
        onnx.save(trimmed, path)

        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        dtype = {"tensor(float)": "float32"}
        removed = [o for o in present if o not in keep]
        record = entry.get("trimmed") or {"removed_outputs": [], "untrimmed_sha256": full_sha}
        record["removed_outputs"] = sorted(set(record["removed_outputs"]) | set(removed))
        record["tool"] = f"models/trim.py (onnx {onnx.__version__}, onnx.utils.Extractor)"
        entry["sha256"] = sha256_file(path)
        entry["outputs"] = [
            {"name": o.name, "shape": list(o.shape), "dtype": dtype[o.type]} for o in sess.get_outputs()
        ]
        entry["trimmed"] = record
        print(f"trim: {name}: kept {keep}, removed {record['removed_outputs']}, "
              f"nodes {len(model.graph.node)} -> {len(trimmed.graph.node)}")
    with open(manifest_path, "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
