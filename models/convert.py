#!/usr/bin/env python3
"""Convert MediaPipe's TFLite models (from registry packages) to the ONNX files in models/.

Maintainer's step, run through models/convert.sh, which prepares the venv
(tensorflow-cpu, tf2onnx, onnxruntime) and downloads the two source packages:

  * PyPI  mediapipe==0.10.21 wheel (pip download --no-deps)
  * npm   @mediapipe/pose@0.5.1675469404 (npm pack)

Steps: extract the .tflite files and check their sha256, rewrite
pose_detection.tflite with dense weights (it stores sparse fp16 weights that are
expanded at run time by DENSIFY ops, which tf2onnx cannot convert), convert each
model with `python -m tf2onnx.convert --tflite X --output Y --opset 13`, and
write models/manifest.json from what onnxruntime reports.

Usage: convert.py --src DIR_WITH_PACKAGES --work WORKDIR --out models/
"""
import argparse
import hashlib
import json
import os
import subprocess
import sys
import tarfile
import zipfile

import numpy as np

MP_VERSION = "0.10.21"
MP_WHEEL = f"mediapipe-{MP_VERSION}-cp311-cp311-manylinux_2_28_x86_64.whl"
NPM_POSE_VERSION = "0.5.1675469404"
NPM_POSE_TGZ = f"mediapipe-pose-{NPM_POSE_VERSION}.tgz"
SCHEMA_IN_WHEEL = "mediapipe/tasks/metadata/schema_py_generated.py"
OPSET = 13

# name, package, version, archive, path inside the archive, sha256 of that .tflite,
# what the daemon uses it for.
MODELS = [
    ("pose_detection", "pypi:mediapipe", MP_VERSION, MP_WHEEL,
     "mediapipe/modules/pose_detection/pose_detection.tflite",
     "9ba9dd3d42efaaba86b4ff0122b06f29c4122e756b329d89dca1e297fd8f866c"),
    ("face_detection_short_range", "pypi:mediapipe", MP_VERSION, MP_WHEEL,
     "mediapipe/modules/face_detection/face_detection_short_range.tflite",
     "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8"),
    ("palm_detection_lite", "pypi:mediapipe", MP_VERSION, MP_WHEEL,
     "mediapipe/modules/palm_detection/palm_detection_lite.tflite",
     "e9a4aaddf90dda56a87235303cf00e4c2d3fb28725f68fd88772997dac905c18"),
    ("palm_detection_full", "pypi:mediapipe", MP_VERSION, MP_WHEEL,
     "mediapipe/modules/palm_detection/palm_detection_full.tflite",
     "1b14e9422c6ad006cde6581a46c8b90dd573c07ab7f3934b5589e7cea3f89a54"),
    ("hand_landmark_lite", "pypi:mediapipe", MP_VERSION, MP_WHEEL,
     "mediapipe/modules/hand_landmark/hand_landmark_lite.tflite",
     "048edd3645c9bf7397d19a9f6e3a42957d6e414c9bea6598030a2e9b624156e6"),
    ("hand_landmark_full", "pypi:mediapipe", MP_VERSION, MP_WHEEL,
     "mediapipe/modules/hand_landmark/hand_landmark_full.tflite",
     "11c272b891e1a99ab034208e23937a8008388cf11ed2a9d776ed3d01d0ba00e3"),
    ("pose_landmark_lite", "npm:@mediapipe/pose", NPM_POSE_VERSION, NPM_POSE_TGZ,
     "package/pose_landmark_lite.tflite",
     "f17bfbecadb61c3be1baa8b8d851cc6619c870a87167b32848ad20db306b9d61"),
]
LICENSE = "Apache-2.0"


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def extract(archive, member, dest):
    if archive.endswith(".whl"):
        with zipfile.ZipFile(archive) as z, open(dest, "wb") as out:
            out.write(z.read(member))
    else:
        with tarfile.open(archive, "r:gz") as t, open(dest, "wb") as out:
            out.write(t.extractfile(member).read())


# ---------------------------------------------------------------- densify
def _sparse_to_dense(values, shape, sp, schema):
    """Expand a TFLite sparse tensor (SparsityParameters) to a dense array.

    Port of tflite::internal::sparsity::FormatConverter::Populate: levels are the
    dims in traversal order (original dims, then block dims); DENSE levels
    enumerate 0..dense_size, SPARSE_CSR levels take their indices from
    array_segments / array_indices."""
    shape = [int(x) for x in shape]
    rank = len(shape)
    trav = [int(x) for x in sp.traversalOrder]
    block_map = [int(x) for x in (sp.blockMap if sp.blockMap is not None else [])]
    dims = sp.dimMetadata
    nlev = len(trav)
    block_size = [int(dims[trav.index(rank + b)].denseSize) for b in range(len(block_map))] \
        if block_map else []
    fmt, dense_size, segs, idxs = [], [], [], []
    for d in dims:
        fmt.append(d.format)
        dense_size.append(int(d.denseSize))
        segs.append(None if d.arraySegments is None else np.asarray(d.arraySegments.values, np.int64))
        idxs.append(None if d.arrayIndices is None else np.asarray(d.arrayIndices.values, np.int64))

    # Enumerate all stored elements level by level: rows of `coords` are
    # (indices per level), `prev` is the position within the current level.
    coords = np.zeros((1, 0), np.int64)
    prev = np.zeros(1, np.int64)
    for lev in range(nlev):
        if fmt[lev] == schema.DimensionType.DENSE:
            n = dense_size[lev]
            rep = np.repeat(np.arange(len(prev)), n)
            i = np.tile(np.arange(n, dtype=np.int64), len(prev))
            coords = np.concatenate([coords[rep], i[:, None]], axis=1)
            prev = prev[rep] * n + i
        else:
            s, ix = segs[lev], idxs[lev]
            starts, ends = s[prev], s[prev + 1]
            counts = ends - starts
            rep = np.repeat(np.arange(len(prev)), counts)
            pos = np.concatenate([np.arange(a, b) for a, b in zip(starts, ends)]) \
                if len(prev) else np.zeros(0, np.int64)
            pos = pos.astype(np.int64)
            coords = np.concatenate([coords[rep], ix[pos][:, None]], axis=1)
            prev = pos
    if coords.shape[0] != len(values):
        raise ValueError(f"sparse tensor: {coords.shape[0]} positions but {len(values)} values")
    orig = np.zeros((coords.shape[0], rank), np.int64)
    for i in range(rank):
        orig[:, trav[i]] = coords[:, i]
    for i in range(rank, nlev):
        b = trav[i] - rank
        od = block_map[b]
        orig[:, od] = orig[:, od] * block_size[b] + coords[:, i]
    dense = np.zeros(shape, values.dtype)
    dense[tuple(orig.T)] = values
    return dense


def densify(src, dst, schema):
    """Rewrite `src` with every DENSIFY op folded into a dense constant."""
    buf = open(src, "rb").read()
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(buf, 0))
    code_of = lambda c: max(c.builtinCode, c.deprecatedBuiltinCode)
    dens_codes = {i for i, c in enumerate(model.operatorCodes)
                  if code_of(c) == schema.BuiltinOperator.DENSIFY}
    np_type = {schema.TensorType.FLOAT32: np.float32, schema.TensorType.FLOAT16: np.float16,
               schema.TensorType.INT8: np.int8, schema.TensorType.UINT8: np.uint8,
               schema.TensorType.INT32: np.int32}
    folded = 0
    for sg in model.subgraphs:
        drop_tensors = set()
        keep_ops = []
        for op in sg.operators:
            if op.opcodeIndex not in dens_codes:
                keep_ops.append(op)
                continue
            tin, tout = sg.tensors[op.inputs[0]], sg.tensors[op.outputs[0]]
            dt = np_type[tin.type]
            values = np.frombuffer(bytes(bytearray(model.buffers[tin.buffer].data)), dt)
            dense = _sparse_to_dense(values, tin.shape, tin.sparsity, schema)
            assert list(tout.shape) == list(tin.shape) and tout.type == tin.type
            assert model.buffers[tout.buffer].data is None or len(model.buffers[tout.buffer].data) == 0
            model.buffers[tout.buffer].data = np.frombuffer(dense.astype(dt).tobytes(), np.uint8)
            model.buffers[tin.buffer].data = None  # the sparse bytes are no longer needed
            drop_tensors.add(op.inputs[0])
            folded += 1
        # The sparse tensors must not be used by anything else.
        for op in keep_ops:
            assert not drop_tensors.intersection(op.inputs), "sparse tensor used by a non-DENSIFY op"
        remap, new_tensors = {}, []
        for i, t in enumerate(sg.tensors):
            if i not in drop_tensors:
                remap[i] = len(new_tensors)
                new_tensors.append(t)
        fix = lambda seq: [remap[i] if i >= 0 else i for i in seq]
        for op in keep_ops:
            op.inputs = fix(op.inputs)
            op.outputs = fix(op.outputs)
            if op.intermediates is not None:
                op.intermediates = fix(op.intermediates)
        sg.inputs, sg.outputs = fix(sg.inputs), fix(sg.outputs)
        sg.tensors, sg.operators = new_tensors, keep_ops
    if model.signatureDefs:
        for sd in model.signatureDefs:
            raise NotImplementedError("signature defs would need their tensor indices remapped")
    # Drop the DENSIFY operator code and renumber the ops' opcode indices.
    old_codes = model.operatorCodes
    keep_codes = [i for i in range(len(old_codes)) if i not in dens_codes]
    cmap = {old: new for new, old in enumerate(keep_codes)}
    model.operatorCodes = [old_codes[i] for i in keep_codes]
    for sg in model.subgraphs:
        for op in sg.operators:
            op.opcodeIndex = cmap[op.opcodeIndex]
    b = schema.flatbuffers.Builder(len(buf) * 2)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    with open(dst, "wb") as f:
        f.write(b.Output())
    return folded


def load_schema(wheel, work):
    """Import the TFLite flatbuffer schema (object API) shipped in the mediapipe wheel."""
    d = os.path.join(work, "schema")
    os.makedirs(d, exist_ok=True)
    extract(wheel, SCHEMA_IN_WHEEL, os.path.join(d, "schema_py_generated.py"))
    sys.path.insert(0, d)
    import schema_py_generated as schema  # noqa: E402
    import flatbuffers  # noqa: E402
    schema.flatbuffers = flatbuffers
    return schema


def check_same_outputs(a, b):
    """The densified model must compute bit-identical results to the original."""
    import tensorflow as tf
    rng = np.random.default_rng(0)
    ia = tf.lite.Interpreter(model_path=a, num_threads=1)
    ib = tf.lite.Interpreter(model_path=b, num_threads=1)
    for it in (ia, ib):
        it.allocate_tensors()
    x = rng.uniform(-1, 1, ia.get_input_details()[0]["shape"]).astype(np.float32)
    outs = []
    for it in (ia, ib):
        it.set_tensor(it.get_input_details()[0]["index"], x)
        it.invoke()
        outs.append({d["name"]: it.get_tensor(d["index"]) for d in it.get_output_details()})
    for k in outs[0]:
        diff = float(np.max(np.abs(outs[0][k] - outs[1][k])))
        print(f"  densified vs sparse {k}: max abs diff {diff:g}")
        assert diff == 0.0, "densified model differs from the original"


# ---------------------------------------------------------------- determinism
def canonicalize(model):
    """Give every internal tensor, node and initializer a name derived from its
    position in the graph.

    tf2onnx numbers the names it invents (const_fold_opt__858, Relu6__57_min__269,
    ...) from a counter whose value depends on set/dict iteration order, so two
    runs give different names (and different bytes) for the same graph. The node
    order itself is stable, so renaming by position makes the output reproducible.
    Graph input and output names (from the TFLite model) are kept."""
    g = model.graph
    keep = {v.name for v in g.input} | {v.name for v in g.output}
    inits = {i.name: i for i in g.initializer}
    ren, order = {}, []
    for k, n in enumerate(g.node):
        for x in n.input:
            if x in inits and x not in ren:
                ren[x] = f"const_{len(order)}"
                order.append(inits[x])
        for j, o in enumerate(n.output):
            if o and o not in keep:
                ren[o] = f"{n.op_type.lower()}_{k}" + (f"_{j}" if j else "")
        n.name = f"{n.op_type.lower()}_{k}"
    for n in g.node:
        n.input[:] = [ren.get(x, x) for x in n.input]
        n.output[:] = [ren.get(x, x) for x in n.output]
    assert len(order) == len(g.initializer), "unused or duplicate initializers"
    for i in order:
        i.name = ren[i.name]
    del g.initializer[:]
    g.initializer.extend(order)
    vis = [v for v in g.value_info]
    for v in vis:
        v.name = ren.get(v.name, v.name)
    del g.value_info[:]
    g.value_info.extend(sorted(vis, key=lambda v: v.name))
    return model


# ---------------------------------------------------------------- manifest
def ort_io(path):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    dtypes = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
              "tensor(int32)": "int32", "tensor(int64)": "int64", "tensor(uint8)": "uint8",
              "tensor(int8)": "int8", "tensor(bool)": "bool"}
    conv = lambda a: {"name": a.name, "shape": list(a.shape), "dtype": dtypes[a.type]}
    return [conv(a) for a in s.get_inputs()], [conv(a) for a in s.get_outputs()]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", required=True, help="folder holding the downloaded wheel and npm tgz")
    ap.add_argument("--work", required=True, help="scratch folder")
    ap.add_argument("--out", required=True, help="models/ folder")
    ap.add_argument("--only", nargs="*", help="convert only these models")
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    schema = load_schema(os.path.join(a.src, MP_WHEEL), a.work)
    entries = []
    for name, pkg, ver, archive, member, want_sha in MODELS:
        if a.only and name not in a.only:
            continue
        print(f"== {name}")
        tfl = os.path.join(a.work, name + ".tflite")
        extract(os.path.join(a.src, archive), member, tfl)
        sha = sha256_file(tfl)
        if want_sha and sha != want_sha:
            sys.exit(f"{name}: sha256 of {member} is {sha}, expected {want_sha}")
        print(f"  source {pkg}=={ver} {member} sha256 {sha}")
        conv_in = tfl
        if name == "pose_detection":
            conv_in = os.path.join(a.work, name + ".dense.tflite")
            n = densify(tfl, conv_in, schema)
            print(f"  folded {n} DENSIFY ops -> {conv_in}")
            check_same_outputs(tfl, conv_in)
        onnx_path = os.path.join(a.out, name + ".onnx")
        tmp = os.path.join(a.work, name + ".onnx")
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONHASHSEED="0")
        subprocess.run([sys.executable, "-m", "tf2onnx.convert", "--tflite", conv_in,
                        "--output", tmp, "--opset", str(OPSET)],
                       check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        import onnx
        m = canonicalize(onnx.load(tmp))
        # tf2onnx writes the (machine-specific) input path here; name the source instead.
        m.graph.doc_string = f"converted from {pkg}=={ver} {member} by models/convert.py (tf2onnx, opset {OPSET})"
        onnx.checker.check_model(m)
        with open(onnx_path, "wb") as f:
            f.write(m.SerializeToString())
        size = os.path.getsize(onnx_path)
        assert size < 20 * 1024 * 1024, f"{onnx_path} is {size} bytes"
        inputs, outputs = ort_io(onnx_path)
        entries.append({
            "name": name,
            "file": name + ".onnx",
            "sha256": sha256_file(onnx_path),
            "inputs": inputs,
            "outputs": outputs,
            "source": {"package": pkg, "version": ver, "path": member, "sha256": sha},
            "license": LICENSE,
        })
        print(f"  -> {onnx_path} ({size} bytes) sha256 {entries[-1]['sha256']}")
    if not a.only:
        with open(os.path.join(a.out, "manifest.json"), "w") as f:
            json.dump({"models": entries}, f, indent=1)
            f.write("\n")
        print("wrote", os.path.join(a.out, "manifest.json"))


if __name__ == "__main__":
    main()
