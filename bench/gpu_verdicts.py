#!/usr/bin/env python3
"""Reads dofpose_bench's JSON output (--benchmark_out=F --benchmark_out_format=json)
and prints, for every switch that is off by default until a GPU has run it,
the benchmark pairs that decide whether to turn it on: default path vs
candidate, time and speed-up. tests/gpu_session.sh runs it after the kernel
benchmarks; correctness comes from dofpose_cuda_tests in the same session
(a candidate is only worth its speed-up if its test case passed).

  python3 bench/gpu_verdicts.py bench.json

Pairs (row names as Google Benchmark prints them, '*' = any value):
  stem kernel       BM_cuda_conv2d_forward .../mode:0 vs .../mode:3   (set_stem_path)
  multi-stage TF32  BM_cuda_conv2d_forward .../mode:1 vs .../mode:2   (set_tile_pipeline)
  multi-stage FP16  BM_cuda_conv2d_forward .../mode:4 vs .../mode:5   (set_tile_pipeline)
  TF32 mma.sync     BM_cuda_conv2d_forward .../mode:1 vs .../mode:6   (set_tile_pipeline + set_tf32_mma)
  fused bottleneck convs, BM_cuda_fused_bottleneck_conv .../math:1 vs :3 (TF32 WMMA multi-stage),
                    :1 vs :4 (TF32 mma.sync), :2 vs :5 (FP16 mma.sync; conv1 with its prologue)
  cluster lifter    BM_cuda_persistent_lifter .../launch:0 vs :1       (set_mlp_launch Cluster)
  prefetch lifter   BM_cuda_persistent_lifter .../launch:0 vs :2       (set_mlp_launch Prefetch)
  fused BN/ReLU/DO  BM_cuda_bn_relu_dropout_train .../fused:0 vs :1    (on by default; measured)
  16-bit tensors    BM_cuda_fused_bottleneck_conv .../math:2 (FP16 math on float32 tensors) vs
                    BM_cuda_fused_bottleneck_conv16 .../act:1 (F16 tensors; opt-in, --activations f16)
"""
import json
import re
import sys

SWITCHES = [
    ("stem kernel (set_stem_path)", "BM_cuda_conv2d_forward", "mode", "0", "3"),
    ("multi-stage TF32 (set_tile_pipeline)", "BM_cuda_conv2d_forward", "mode", "1", "2"),
    ("multi-stage FP16 mma.sync (set_tile_pipeline)", "BM_cuda_conv2d_forward", "mode", "4", "5"),
    ("multi-stage TF32 mma.sync (set_tile_pipeline + set_tf32_mma)", "BM_cuda_conv2d_forward", "mode", "1", "6"),
    ("fused bottleneck convs, TF32 multi-stage WMMA", "BM_cuda_fused_bottleneck_conv", "math", "1", "3"),
    ("fused bottleneck convs, TF32 multi-stage mma.sync", "BM_cuda_fused_bottleneck_conv", "math", "1", "4"),
    ("fused bottleneck convs, FP16 multi-stage mma.sync", "BM_cuda_fused_bottleneck_conv", "math", "2", "5"),
    ("one-cluster lifter (set_mlp_launch Cluster)", "BM_cuda_persistent_lifter", "launch", "0", "1"),
    ("prefetching lifter (set_mlp_launch Prefetch)", "BM_cuda_persistent_lifter", "launch", "0", "2"),
    ("fused BN->ReLU->Dropout (training)", "BM_cuda_bn_relu_dropout_train", "fused", "0", "1"),
    # A candidate in another benchmark: (..., candidate benchmark, candidate argument).
    ("16-bit activation tensors, F16 (--activations f16)", "BM_cuda_fused_bottleneck_conv", "math", "2",
     "1", "BM_cuda_fused_bottleneck_conv16", "act"),
]


def read_benchmarks(text):
    """The "benchmarks" list of a Google Benchmark JSON file. A run cut off by
    its time limit leaves the file unfinished (no closing brackets, maybe half
    an entry): then every complete entry before the cut is kept."""
    try:
        return json.loads(text).get("benchmarks", [])
    except ValueError:
        pass
    start = text.find('"benchmarks"')
    start = text.find("[", start) if start >= 0 else -1
    if start < 0:
        raise ValueError("no \"benchmarks\" list")
    decoder, entries, i = json.JSONDecoder(), [], start + 1
    while True:
        while i < len(text) and text[i] in " \t\r\n,":
            i += 1
        if i >= len(text) or text[i] != "{":
            break
        try:
            entry, i = decoder.raw_decode(text, i)
        except ValueError:
            break  # the half-written last entry
        entries.append(entry)
    print(f"gpu_verdicts: the benchmark file is unfinished (cut off?); using its {len(entries)} "
          "complete entries", file=sys.stderr)
    return entries


def load_rows(path):
    """name -> real time in microseconds (manual-time rows report CUDA-event time)."""
    with open(path) as f:
        benchmarks = read_benchmarks(f.read())
    scale = {"ns": 1e-3, "us": 1.0, "ms": 1e3, "s": 1e6}
    rows = {}
    for b in benchmarks:
        if b.get("run_type") == "aggregate" and b.get("aggregate_name") != "median":
            continue
        if "error_occurred" in b and b["error_occurred"]:
            continue
        name = b.get("run_name", b["name"])
        rows[name] = float(b["real_time"]) * scale.get(b.get("time_unit", "ns"), 1e-3)
    return rows


def pairs(rows, bench, arg, base, cand, cand_bench=None, cand_arg=None):
    """(shape label, base us, candidate us) for every row of `bench` with arg == base
    whose twin with arg == cand exists (the twin in cand_bench with cand_arg
    when given: the same shape arguments, the switch named differently)."""
    pat = re.compile(r"(^|/)%s:%s(/|$)" % (re.escape(arg), re.escape(base)))
    cand_bench, cand_arg = cand_bench or bench, cand_arg or arg
    out = []
    for name, t in sorted(rows.items()):
        if not name.startswith(bench + "/") or not pat.search(name):
            continue
        twin = cand_bench + pat.sub(lambda m: "%s%s:%s%s" % (m.group(1), cand_arg, cand, m.group(2)),
                                    name[len(bench):])
        if twin in rows:
            label = pat.sub(lambda m: m.group(1) + m.group(2), name[len(bench) + 1:]).strip("/")
            out.append((label.replace("//", "/"), t, rows[twin]))
    return out


def main():
    if len(sys.argv) != 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if len(sys.argv) == 2 else 2
    try:
        rows = load_rows(sys.argv[1])
    except (OSError, ValueError, KeyError) as e:
        print(f"gpu_verdicts: cannot read benchmark JSON '{sys.argv[1]}': {e}", file=sys.stderr)
        return 1
    for title, bench, arg, base, cand, *other in SWITCHES:
        found = pairs(rows, bench, arg, base, cand, *other)
        target = f"{other[0]} {other[1]}:{cand}" if other else f"{arg}:{cand}"
        print(f"{title}: {bench} {arg}:{base} -> {target}")
        if not found:
            print("  no pairs in this run")
            continue
        for label, tb, tc in found:
            verdict = "faster" if tc < tb * 0.97 else ("slower" if tc > tb * 1.03 else "same")
            print(f"  {label:40s} {tb:10.2f} us -> {tc:10.2f} us  x{tb / tc:5.2f}  {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
