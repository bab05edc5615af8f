#!/usr/bin/env python3
"""Compare two layer dumps (`dofpose forward --dump`, dump_reference.py) tensor by tensor.

    compare_dumps.py DIR_A DIR_B [--tol 1e-4]

Files are <index>_<name>.npy; they are paired by name, and a name that occurs
several times (a module called repeatedly) by its order of occurrence, so the
indices of the two dumps may differ. For each pair it prints the shape, the
max absolute difference and the max relative difference, relative to the
largest magnitude of B's tensor (elementwise ratios explode near zero).
Names found in one dump only are listed at the end. With --tol, exits 1 when
a pair's relative difference exceeds it or shapes differ; it always exits 1
when the dumps share no name. A missing or empty folder, or an unreadable .npy file, is
an error naming it (exit 2).
"""
import argparse
import os
import re
import sys

import numpy as np

PATTERN = re.compile(r"^(\d+)_(.+)\.npy$")


PROG = "compare_dumps.py"


class DumpError(Exception):
    """A dump folder or file that cannot be read; the message names it."""


def listing(d, arg):
    """{name: [paths in index order]}."""
    if not os.path.exists(d):
        raise DumpError(f"{arg} {d}: no such folder (expected a dump folder of "
                        "<index>_<name>.npy files)")
    if not os.path.isdir(d):
        raise DumpError(f"{arg} {d}: not a folder (expected a dump folder of "
                        "<index>_<name>.npy files)")
    items = []
    for f in os.listdir(d):
        m = PATTERN.match(f)
        if m:
            items.append((int(m.group(1)), m.group(2), os.path.join(d, f)))
    out = {}
    for _, name, path in sorted(items):
        out.setdefault(name, []).append(path)
    return out, [name for _, name, _ in sorted(items)]


def load(path):
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise DumpError(f"{path}: not a readable .npy array ({e})") from None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir_a", metavar="DIR_A", help="a dump folder (e.g. dofpose forward --dump)")
    ap.add_argument("dir_b", metavar="DIR_B", help="the reference dump folder (e.g. dump_reference.py)")
    ap.add_argument("--tol", type=float, default=None,
                    help="exit 1 when a tensor's max relative difference exceeds this")
    a = ap.parse_args()
    try:
        return compare(a)
    except DumpError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2


def compare(a):
    A, order = listing(a.dir_a, "DIR_A")
    B, _ = listing(a.dir_b, "DIR_B")
    if not order:
        raise DumpError(f"DIR_A {a.dir_a}: no <index>_<name>.npy files")
    if not B:
        raise DumpError(f"DIR_B {a.dir_b}: no <index>_<name>.npy files")
    seen = {}
    bad = 0
    compared = 0
    worst = (0.0, "")
    print(f"{'tensor':44s} {'shape':22s} {'max abs':>11s} {'max rel':>11s}")
    for name in order:
        k = seen.get(name, 0)
        seen[name] = k + 1
        if name not in B or k >= len(B[name]):
            continue
        x, y = load(A[name][k]), load(B[name][k])
        label = name if len(A[name]) == 1 else f"{name}#{k}"
        if x.shape != y.shape:
            print(f"{label:44s} shape {x.shape} vs {y.shape}  MISMATCH")
            bad += 1
            continue
        x, y = x.astype(np.float64), y.astype(np.float64)
        diff = float(np.max(np.abs(x - y))) if x.size else 0.0
        rel = diff / max(float(np.max(np.abs(y))) if y.size else 0.0, 1e-12)
        compared += 1
        flag = ""
        if a.tol is not None and rel > a.tol:
            flag = "  > tol"
            bad += 1
        if rel >= worst[0]:
            worst = (rel, label)
        print(f"{label:44s} {str(list(x.shape)):22s} {diff:11.3e} {rel:11.3e}{flag}")
    only_a = sorted(set(A) - set(B))
    only_b = sorted(set(B) - set(A))
    print(f"\n{compared} tensors compared; largest relative difference {worst[0]:.3e} ({worst[1]})")
    if only_a:
        print(f"only in {a.dir_a} ({len(only_a)}): " + ", ".join(only_a[:20]) + (" ..." if len(only_a) > 20 else ""))
    if only_b:
        print(f"only in {a.dir_b} ({len(only_b)}): " + ", ".join(only_b[:20]) + (" ..." if len(only_b) > 20 else ""))
    if compared == 0:
        print("no tensor names in common")
        return 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
