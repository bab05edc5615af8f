"""Read and write dofpose weights files (safetensors-compatible) with numpy only.

Layout: 8-byte little-endian header length N, N bytes of UTF-8 JSON header,
then the raw little-endian tensor data. The header maps each tensor name to
{"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to the data
section) and may hold "__metadata__": {str: str}. dofpose pads the header with
spaces so the data section starts at a multiple of 64 bytes, and orders
tensors by element size (largest first, then by name) so every tensor is
aligned to its element size. The header JSON is compact with sorted keys, so
this writer and the C++ WeightsWriter produce the same bytes for the same
content. See docs/weights-format.md.

    save(path, {name: ndarray}, metadata=None)      # atomic
    load(path, with_metadata=False) -> {name: ndarray} [, metadata]
    read_header(path) -> Header                      # layout only, no data

BF16 has no numpy type: load() returns BF16 tensors as uint16 bits (use
bf16_to_f32), and save() writes an array as BF16 when it is tagged with
as_bf16() (from float32 values) or bf16_bits() (from uint16 bits).
"""
import json
import os
import struct
import sys
import tempfile
from collections import namedtuple


import numpy as np

ALIGN = 64
MAX_HEADER_BYTES = 100_000_000  # the safetensors reference limit
# safetensors dtype name -> numpy dtype. BF16 is kept as raw uint16 bits.
DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": np.uint16,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8,
    "U8": np.uint8, "BOOL": np.bool_,
}
# The dtypes the dofpose C++ engine reads.
DOFPOSE_DTYPES = ("F32", "F16", "BF16", "I32", "U8")
NP_TO_NAME = {np.dtype(v): k for k, v in DTYPES.items() if k != "BF16"}

Entry = namedtuple("Entry", "name dtype shape begin end")
Header = namedtuple("Header", "header_len data_start data_size entries metadata")


class Bf16(np.ndarray):
    """Marks a uint16 array as bfloat16 bits for save()."""


def as_bf16(a):
    """Converts float32 values to bfloat16 bits (round to nearest even), tagged for save()."""
    return f32_to_bf16(a).view(Bf16)


def bf16_bits(bits):
    """Tags existing bfloat16 bits (uint16) for save()."""
    return np.asarray(bits, dtype=np.uint16).view(Bf16)


def f32_to_bf16(a):
    a = np.asarray(a, dtype=np.float32)
    bits = a.view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    out = rounded.astype(np.uint16)
    nan = np.isnan(a)
    # NaN stays a quiet NaN with its sign (as the C++ f32_to_bf16).
    out[nan] = ((bits[nan] >> 16) | 0x0040).astype(np.uint16)
    return out


def bf16_to_f32(bits):
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def _dtype_name(arr):
    if isinstance(arr, Bf16):
        return "BF16"
    name = NP_TO_NAME.get(np.asarray(arr).dtype)
    if name is None:
        raise ValueError(f"unsupported dtype {np.asarray(arr).dtype}")
    return name


def _header_bytes(header):
    text = json.dumps(header, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    hbytes = text.encode("utf-8")
    return hbytes + b" " * ((-(8 + len(hbytes))) % ALIGN)


def save(path, tensors, metadata=None):
    """Writes {name: ndarray} atomically (temporary file, fsync, then rename).

    metadata: dict of str -> str (values that are not strings are JSON-encoded).
    """
    items = []
    for name, arr in tensors.items():
        if not isinstance(name, str) or not name or name == "__metadata__":
            raise ValueError(f"invalid tensor name {name!r}")
        dname = _dtype_name(arr)
        a = np.asarray(arr)  # keeps 0-d arrays 0-d (np.ascontiguousarray would not)
        a = a.astype(a.dtype.newbyteorder("<"), order="C", copy=False)
        if not a.flags.c_contiguous:
            a = a.copy(order="C")
        items.append((name, dname, a))
    # Largest element size first: every tensor stays aligned to its element size.
    items.sort(key=lambda t: (-t[2].dtype.itemsize, t[0].encode("utf-8")))
    header = {}
    offset = 0
    for name, dname, a in items:
        header[name] = {"dtype": dname, "shape": [int(s) for s in a.shape],
                        "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
    if metadata:
        header["__metadata__"] = {str(k): (v if isinstance(v, str) else json.dumps(v))
                                  for k, v in metadata.items()}
    hbytes = _header_bytes(header)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".tmp.", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(struct.pack("<Q", len(hbytes)))
            f.write(hbytes)
            for _, _, a in items:
                f.write(a.tobytes())
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _parse_header(path, raw_prefix, file_size):
    """Validates the header as the C++ reader does (dtype set aside) and returns a Header."""
    if file_size < 8:
        raise ValueError(f"{path}: file is {file_size} bytes, shorter than the 8-byte header length")
    (n,) = struct.unpack("<Q", raw_prefix[:8])
    if n > MAX_HEADER_BYTES:
        raise ValueError(f"{path}: header length {n} exceeds the limit of {MAX_HEADER_BYTES} bytes")
    if 8 + n > file_size:
        raise ValueError(f"{path}: header length {n} exceeds the file size {file_size}")
    try:
        text = bytes(raw_prefix[8:8 + n]).decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: header is not valid UTF-8: {e}") from None

    def no_duplicates(pairs):
        keys = [k for k, _ in pairs]
        if len(set(keys)) != len(keys):
            dup = next(k for k in keys if keys.count(k) > 1)
            raise ValueError(f"{path}: header key {dup!r} appears twice in one object")
        return dict(pairs)

    try:
        header = json.loads(text, object_pairs_hook=no_duplicates)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: header is not valid JSON: {e}") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path}: header must be a JSON object")
    data_size = file_size - 8 - n
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise ValueError(f"{path}: __metadata__ must map strings to strings")
    entries = []
    for name, info in header.items():
        where = f"{path}: tensor {name!r}"
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise ValueError(f"{where}: expected exactly the fields dtype, shape, data_offsets")
        dname, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if dname not in DTYPES:
            raise ValueError(f"{where}: unknown dtype {dname!r}")

        def is_uint(v):
            return isinstance(v, int) and not isinstance(v, bool) and v >= 0

        if not isinstance(shape, list) or not all(is_uint(s) for s in shape):
            raise ValueError(f"{where}: shape must be a list of non-negative integers, found {shape!r}")
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(is_uint(o) for o in offsets)):
            raise ValueError(f"{where}: data_offsets must be [begin, end], found {offsets!r}")
        b, e = offsets
        count = int(np.prod(shape, dtype=object)) if shape else 1
        expected = count * np.dtype(DTYPES[dname]).itemsize
        if b > e or e > data_size or e - b != expected:
            raise ValueError(f"{where}: data_offsets [{b},{e}] do not fit {dname}{shape} "
                             f"({expected} bytes) in {data_size} data bytes")
        entries.append(Entry(name, dname, tuple(shape), b, e))
    entries.sort(key=lambda t: (t.begin, t.end, t.name))
    furthest = None
    for ent in entries:
        if ent.begin == ent.end:
            continue
        if furthest is not None and ent.begin < furthest.end:
            raise ValueError(f"{path}: tensor {ent.name!r} [{ent.begin},{ent.end}] overlaps "
                             f"tensor {furthest.name!r} [{furthest.begin},{furthest.end}]")
        if furthest is None or ent.end > furthest.end:
            furthest = ent
    return Header(n, 8 + n, data_size, entries, meta)


def read_header(path):
    """The validated layout of a file: header length, data start, entries (file order), metadata."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        prefix = f.read(8)
        if len(prefix) == 8:
            (n,) = struct.unpack("<Q", prefix)
            if n <= MAX_HEADER_BYTES and 8 + n <= size:
                prefix += f.read(n)
    return _parse_header(path, prefix, size)


def load(path, with_metadata=False):
    """Reads every tensor (BF16 as uint16 bits). Raises ValueError naming the problem."""
    with open(path, "rb") as f:
        raw = f.read()
    header = _parse_header(path, memoryview(raw), len(raw))
    data = memoryview(raw)[header.data_start:]
    out = {}
    for ent in sorted(header.entries, key=lambda t: t.name):
        dt = np.dtype(DTYPES[ent.dtype]).newbyteorder("<")
        arr = np.frombuffer(data[ent.begin:ent.end], dtype=dt).reshape(ent.shape)
        out[ent.name] = arr.astype(dt.newbyteorder("="))
    return (out, dict(header.metadata)) if with_metadata else out


if __name__ == "__main__":
    import argparse
    parser = argparse.ArgumentParser(
        prog="safetensors_np.py", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="This is a library module, not a command: import it from Python "
               "(sys.path.insert(0, 'weights_tools'); import safetensors_np). To look at a file "
               "from the shell use weights_tools/inspect_weights.py FILE. Format: "
               "docs/weights-format.md.",
    )
    parser.parse_args()  # --help prints the text below; anything else is a usage error
    parser.print_help()
