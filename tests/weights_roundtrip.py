#!/usr/bin/env python3
"""Cross-language check for tests/test_weights.cpp (C++ -> Python -> C++).

    weights_roundtrip.py DIR

Reads DIR/cpp.safetensors (written by the C++ WeightsWriter), checks every
tensor value, dtype, shape and the metadata against the formulas below (the
C++ test uses the same ones), then writes with numpy only:

  DIR/py.safetensors         transformed values (floats * 2, ints + 1,
                             u8 -> 255 - v) plus "py.extra", metadata +
                             written_by=python (safetensors_np.save)
  DIR/py_same.safetensors    the same content re-saved: must be byte-identical
                             to cpp.safetensors (same layout rules)
  DIR/reference.safetensors  written by hand with struct+json exactly as the
                             safetensors Rust/Python library lays files out:
                             "__metadata__" first, tensors sorted by dtype
                             (descending, in the library's dtype order) then
                             name, compact JSON padded with spaces to a
                             multiple of 8 bytes, data back to back
  DIR/unpadded.safetensors   written by hand with no padding at all and
                             tensors deliberately misaligned (a 3-byte U8
                             first): valid safetensors, must still be read

Exits 1 with a message on the first mismatch.
"""
import json
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.append(os.path.join(HERE, "..", "weights_tools"))
import numpy as np  # noqa: E402
import safetensors_np as st  # noqa: E402


def float_values(n):
    i = np.arange(n, dtype=np.int64)
    return (((i * 37) % 101 - 50) * 0.125).astype(np.float32)


def i32_values(n):
    i = np.arange(n, dtype=np.int64)
    return ((i * 7919) % 100003 - 50000).astype(np.int32)


def u8_values(n):
    i = np.arange(n, dtype=np.int64)
    return ((i * 13) % 256).astype(np.uint8)


# name -> (dtype, shape, values generator); mirrors kRoundTrip in test_weights.cpp.
EXPECTED = {
    "f32.5d": ("F32", (2, 1, 3, 2, 2), float_values),
    "f32.scalar": ("F32", (), float_values),
    "f32.empty": ("F32", (0, 3), float_values),
    "f16.w": ("F16", (3, 5), float_values),
    "bf16.w": ("BF16", (4, 3), float_values),
    "i32.idx": ("I32", (7,), i32_values),
    "u8.mask": ("U8", (5,), u8_values),
}
EXPECTED_METADATA = {
    "format_version": "1",
    "kind": "roundtrip-test",
    "config": '{"layers":[1,2],"name":"\u00fcn\u00ef\u20acode"}',
    "unicode": "\u00fcn\u00ef\u20acode \u2713",
}


def fail(msg):
    print(f"weights_roundtrip.py: {msg}", file=sys.stderr)
    sys.exit(1)


def as_float(dtype, arr):
    return st.bf16_to_f32(arr) if dtype == "BF16" else arr.astype(np.float32)


def check_cpp_file(path):
    tensors, meta = st.load(path, with_metadata=True)
    if set(tensors) != set(EXPECTED):
        fail(f"{path}: tensors {sorted(tensors)}, expected {sorted(EXPECTED)}")
    header = st.read_header(path)
    kinds = {e.name: e.dtype for e in header.entries}
    for name, (dtype, shape, gen) in EXPECTED.items():
        arr = tensors[name]
        if kinds[name] != dtype:
            fail(f"{path}: tensor '{name}' has dtype {kinds[name]}, expected {dtype}")
        if arr.shape != shape:
            fail(f"{path}: tensor '{name}' has shape {arr.shape}, expected {shape}")
        n = int(np.prod(shape)) if shape else 1
        want = gen(n).reshape(shape)
        got = as_float(dtype, arr) if dtype in ("F32", "F16", "BF16") else arr
        if not np.array_equal(got, want):
            fail(f"{path}: tensor '{name}' values {got.ravel()[:8]} ..., expected {want.ravel()[:8]} ...")
    if meta != EXPECTED_METADATA:
        fail(f"{path}: metadata {meta!r}, expected {EXPECTED_METADATA!r}")
    if header.data_start % 64:
        fail(f"{path}: data section starts at {header.data_start}, not a multiple of 64")
    return tensors, meta


def write_python_file(path, tensors, meta):
    out = {}
    for name, (dtype, shape, _) in EXPECTED.items():
        arr = tensors[name]
        if dtype == "BF16":
            out[name] = st.as_bf16(st.bf16_to_f32(arr) * 2)
        elif dtype in ("F32", "F16"):
            out[name] = (arr * 2).astype(arr.dtype)
        elif dtype == "I32":
            out[name] = arr + np.int32(1)
        else:
            out[name] = (255 - arr).astype(np.uint8)
    out["py.extra"] = np.array([[1.5, -2.0], [3.0, 4.0]], dtype=np.float32)
    st.save(path, out, dict(meta, written_by="python"))


def resave_same(path, tensors, meta):
    same = {name: (st.bf16_bits(arr) if EXPECTED[name][0] == "BF16" else arr)
            for name, arr in tensors.items()}
    st.save(path, same, meta)


# Rank of each dtype in the safetensors library's Dtype enum (it sorts by it).
RUST_DTYPE_ORDER = ["BOOL", "U8", "I8", "I16", "U16", "F16", "BF16", "I32", "U32", "F32",
                    "F64", "I64", "U64"]


def reference_tensors():
    return {
        "ref.f32": ("F32", (2, 3), (np.arange(6, dtype=np.float32) * 0.5 - 1).tobytes()),
        "ref.i32": ("I32", (3,), np.array([-7, 0, 2147483647], dtype="<i4").tobytes()),
        "ref.bf16": ("BF16", (3,), st.f32_to_bf16(np.array([1.0, -2.5, 0.375], np.float32)).astype("<u2").tobytes()),
        "ref.f16": ("F16", (2,), np.array([65504.0, -0.0009765625], dtype="<f2").tobytes()),
        "ref.u8": ("U8", (3,), bytes([0, 128, 255])),
    }


def write_by_hand(path, ordered, metadata, pad_to):
    """Header with "__metadata__" first then `ordered` [(name, dtype, shape, bytes)]."""
    parts = ['"__metadata__":' + json.dumps(metadata, separators=(",", ":"))]
    offset = 0
    for name, dtype, shape, data in ordered:
        parts.append(json.dumps(name) + ":" + json.dumps(
            {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(data)]},
            separators=(",", ":")))
        offset += len(data)
    header = ("{" + ",".join(parts) + "}").encode("utf-8")
    if pad_to:
        header += b" " * ((-len(header)) % pad_to)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header)))
        f.write(header)
        for _, _, _, data in ordered:
            f.write(data)
    return 8 + len(header)


def write_reference(path):
    tensors = reference_tensors()
    ordered = sorted(((n,) + v for n, v in tensors.items()),
                     key=lambda t: (-RUST_DTYPE_ORDER.index(t[1]), t[0]))
    write_by_hand(path, ordered, {"format_version": "1", "kind": "reference"}, pad_to=8)


def write_unpadded(path):
    ordered = [
        ("odd.u8", "U8", (3,), bytes([1, 2, 3])),
        ("odd.f32", "F32", (2,), np.array([0.25, -8.0], dtype="<f4").tobytes()),
        ("odd.f16", "F16", (3,), np.array([1.0, 0.5, -3.0], dtype="<f2").tobytes()),
    ]
    # Grow a metadata value until the F32 tensor (3 bytes into the data) is
    # misaligned in the file, so the reader's unaligned path is exercised.
    filler = ""
    while True:
        data_start = write_by_hand(path, ordered, {"filler": filler}, pad_to=0)
        if (data_start + 3) % 4 != 0:
            return
        filler += "x"


def check_with_reference_library(path):
    """When the real safetensors package (and torch, for BF16) is installed, it
    must open the C++ file too. Optional: neither is a test dependency."""
    try:
        from safetensors.torch import load_file
    except ImportError:
        print("weights_roundtrip.py: safetensors/torch not installed, reference-library check skipped")
        return
    loaded = load_file(path)
    for name, (dtype, shape, gen) in EXPECTED.items():
        t = loaded[name]
        n = int(np.prod(shape)) if shape else 1
        got = t.numpy() if dtype in ("I32", "U8") else t.float().numpy()
        if tuple(t.shape) != shape or not np.array_equal(got, gen(n).reshape(shape)):
            fail(f"{path}: the safetensors library reads tensor '{name}' differently")
    print("weights_roundtrip.py: the safetensors library reads the C++ file")


def main():
    if len(sys.argv) != 2:
        fail("usage: weights_roundtrip.py DIR")
    directory = sys.argv[1]
    tensors, meta = check_cpp_file(os.path.join(directory, "cpp.safetensors"))
    write_python_file(os.path.join(directory, "py.safetensors"), tensors, meta)
    resave_same(os.path.join(directory, "py_same.safetensors"), tensors, meta)
    write_reference(os.path.join(directory, "reference.safetensors"))
    write_unpadded(os.path.join(directory, "unpadded.safetensors"))
    # Our own reader must accept both hand-written files too.
    for name in ("reference.safetensors", "unpadded.safetensors"):
        st.load(os.path.join(directory, name))
    check_with_reference_library(os.path.join(directory, "cpp.safetensors"))
    print("weights_roundtrip.py: ok")


if __name__ == "__main__":
    main()
