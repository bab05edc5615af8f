#!/usr/bin/env python3
"""Totals of emulator memory-profile reports (bench/emu_memory_profile.sh, or
DOFPOSE_EMU_MEMORY=report.md with a CUDA-emulator binary): launches and global
load / store sectors summed over the kernels (requests x sectors per request),
and the kernels that move the most.

  python3 bench/emu_profile_totals.py REPORT.md [REPORT.md ...] [--top N]
"""
import argparse
import sys


def count(text):
    """'4948k' -> 4948000.0, '1.2M' -> 1200000.0, '-' -> 0."""
    text = text.strip()
    if text in ("", "-"):
        return 0.0
    scale = {"k": 1e3, "M": 1e6}.get(text[-1])
    return float(text[:-1]) * scale if scale else float(text)


def per_request(cell):
    """'4.3 (3.2)' -> 4.3 (actual sectors per request)."""
    return count(cell.split()[0]) if cell.strip() != "-" else 0.0


def kernels(path):
    """kernel -> (launches, load sectors, store sectors) from the report's first table."""
    rows = {}
    with open(path) as f:
        for line in f:
            if not line.startswith("| `"):
                continue
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) < 10:  # the per-source-line table has fewer columns
                continue
            rows[cells[0]] = (count(cells[1]), count(cells[2]) * per_request(cells[3]),
                              count(cells[4]) * per_request(cells[5]))
    if not rows:
        raise ValueError(f"{path}: no kernel table")
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("reports", nargs="+")
    ap.add_argument("--top", type=int, default=5, help="kernels listed per report (default 5)")
    args = ap.parse_args()
    for path in args.reports:
        try:
            rows = kernels(path)
        except (OSError, ValueError) as e:
            print(f"emu_profile_totals: {e}", file=sys.stderr)
            return 1
        launches = sum(r[0] for r in rows.values())
        load = sum(r[1] for r in rows.values())
        store = sum(r[2] for r in rows.values())
        print(f"{path}: {launches:.0f} launches, global sectors {load / 1e6:.2f}M load + "
              f"{store / 1e6:.2f}M store = {(load + store) / 1e6:.2f}M")
        for name, (n, ld, st) in sorted(rows.items(), key=lambda kv: -(kv[1][1] + kv[1][2]))[:args.top]:
            print(f"  {name}: {n:.0f} launches, {ld / 1e6:.2f}M load, {st / 1e6:.2f}M store")
    return 0


if __name__ == "__main__":
    sys.exit(main())
