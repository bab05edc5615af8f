#!/usr/bin/env python3
"""Lists the tensors of a dofpose weights (safetensors) file.

    python3 weights_tools/inspect_weights.py FILE [--json]

Prints the header length, where the data section starts and whether it is
64-byte aligned, the metadata, then one line per tensor: name, dtype, shape,
data offsets, byte length and whether it is aligned to its element size.
The file is validated as by the C++ reader (except that dtypes dofpose does
not read, such as F64, are listed and flagged). Exit status 1 on invalid files.
"""
import sys
import os

# This file is named like the standard library's `inspect`: drop its own
# folder from the module path before importing anything that may need the
# real one (numpy does), then load the sibling module explicitly.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402


def _load_sibling():
    spec = importlib.util.spec_from_file_location("safetensors_np", os.path.join(_HERE, "safetensors_np.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", help="weights file (.safetensors)")
    parser.add_argument("--json", action="store_true", help="print the layout as JSON")
    args = parser.parse_args(argv)
    st = _load_sibling()
    try:
        h = st.read_header(args.file)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    item_size = {name: st.np.dtype(t).itemsize for name, t in st.DTYPES.items()}
    rows = []
    for e in h.entries:
        rows.append({
            "name": e.name, "dtype": e.dtype, "shape": list(e.shape),
            "data_offsets": [e.begin, e.end], "bytes": e.end - e.begin,
            "aligned": (h.data_start + e.begin) % item_size[e.dtype] == 0,
            "dofpose_dtype": e.dtype in st.DOFPOSE_DTYPES,
        })
    if args.json:
        print(json.dumps({"header_len": h.header_len, "data_start": h.data_start,
                          "data_size": h.data_size, "metadata": h.metadata, "tensors": rows},
                         indent=2, ensure_ascii=False))
        return 0
    aligned = "64-byte aligned" if h.data_start % st.ALIGN == 0 else "NOT 64-byte aligned"
    print(f"{args.file}")
    print(f"  header: {h.header_len} bytes; data: {h.data_size} bytes from file offset "
          f"{h.data_start} ({aligned}); {len(rows)} tensors")
    used = sum(r["bytes"] for r in rows)
    if used != h.data_size:
        print(f"  note: tensors cover {used} of {h.data_size} data bytes "
              "(gaps or trailing bytes; the safetensors reference reader rejects this)")
    if h.metadata:
        print("  metadata:")
        for k in sorted(h.metadata):
            v = h.metadata[k]
            shown = v if len(v) <= 100 else v[:97] + "..."
            print(f"    {k} = {shown}")
    if rows:
        width = max(len(r["name"]) for r in rows)
        print(f"  {'name':<{width}}  dtype  {'shape':<20} {'data_offsets':<24} {'bytes':>12}")
        for r in rows:
            flags = ("" if r["aligned"] else "  UNALIGNED") + ("" if r["dofpose_dtype"] else "  (dtype not read by dofpose)")
            shape = "[" + ",".join(str(s) for s in r["shape"]) + "]"
            offsets = f"[{r['data_offsets'][0]},{r['data_offsets'][1]}]"
            print(f"  {r['name']:<{width}}  {r['dtype']:<5}  {shape:<20} {offsets:<24} {r['bytes']:>12}{flags}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:  # e.g. piped into `head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
