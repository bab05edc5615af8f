#!/usr/bin/env python3
"""Markdown tables of the Table 6 runs (tools/run_table6.sh) for docs/results.md.

    python3 tools/table6_report.py [--runs build-data/runs/table6] > /tmp/table6.md

Reads each run's eval_S9.json (`dofpose eval --json`), log.csv and
train_seconds, and prints: the summary table (protocols 1 and 2, 3DPCK, AUC,
training time and throughput), the per-action MPJPE / P-MPJPE tables and the
per-joint-group table, one column per run. Runs without results are listed as
missing; nothing is invented.
"""
import argparse
import csv
import json
import os

RUNS = [
    ("martinez", "Martinez et al. baseline", "none"),
    ("two_block", "two-block, no dependencies", "none"),
    ("progressive", "progressive", "none"),
    ("progressive_attr_gt", "progressive + attributes (gt)", "gt"),
    ("progressive_attr_noisy", "progressive + attributes (noisy:0.84)", "noisy:0.84"),
]
GROUPS = ["hip", "spine", "thorax", "shoulder", "head", "elbow", "knee", "wrist", "ankle"]


def load(run_dir):
    path = os.path.join(run_dir, "eval_S9.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        ev = json.load(f)
    secs = None
    ts = os.path.join(run_dir, "train_seconds")
    if os.path.exists(ts):
        secs = float(open(ts).read().strip())
    log = []
    lp = os.path.join(run_dir, "log.csv")
    if os.path.exists(lp):
        with open(lp) as f:
            log = list(csv.DictReader(f))
    return {"eval": ev, "wall_s": secs, "log": log}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", default="build-data/runs/table6")
    args = ap.parse_args()
    cols = []
    for inp in ("sh", "gt"):
        for key, label, attrs in RUNS:
            name = f"{key}_{inp}"
            cols.append((name, label, inp, attrs, load(os.path.join(args.runs, name))))

    print("| run | input | eval attributes | MPJPE (P1) | P-MPJPE (P2) | 3DPCK@150 | AUC | "
          "training (wall) | samples/s | val MPJPE per epoch |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for name, label, inp, attrs, r in cols:
        if r is None:
            print(f"| {label} | {inp} | {attrs} | not run | | | | | | |")
            continue
        e = r["eval"]
        train_s = float(r["log"][-1]["seconds"]) if r["log"] else None
        sps = ""
        if r["log"] and train_s:
            steps = int(r["log"][-1]["step"])
            sps = f"{steps * 256 / train_s:.0f}"
        wall = f"{r['wall_s'] / 60:.1f} min" if r["wall_s"] else "?"
        curve = ", ".join(f"{float(row['val_mpjpe']):.1f}" for row in r["log"] if row["val_mpjpe"])
        print(f"| {label} | {inp} | {attrs} | **{e['mpjpe']:.1f}** | **{e['p_mpjpe']:.1f}** | "
              f"{100 * e['pck3d']:.1f}% | {100 * e['auc']:.1f}% | {wall} | {sps} | {curve} |")

    done = [c for c in cols if c[4] is not None]
    if not done:
        return
    actions = sorted(done[0][4]["eval"]["per_action"].keys())
    for proto, key in (("MPJPE (protocol 1)", "mpjpe"), ("P-MPJPE (protocol 2)", "p_mpjpe")):
        print(f"\nPer action, {proto}, mm:\n")
        print("| action | " + " | ".join(f"{c[0]}" for c in done) + " |")
        print("| --- |" + " ---: |" * len(done))
        for a in actions:
            print(f"| {a} | " + " | ".join(f"{c[4]['eval']['per_action'][a][key]:.1f}" for c in done) + " |")
        print("| **Average** | " + " | ".join(f"**{c[4]['eval'][key]:.1f}**" for c in done) + " |")
    print("\nPer joint group, MPJPE (protocol 1, mean over actions), mm:\n")
    print("| joint | " + " | ".join(c[0] for c in done) + " |")
    print("| --- |" + " ---: |" * len(done))
    for g in GROUPS:
        print(f"| {g} | " + " | ".join(f"{c[4]['eval']['per_joint'][g]:.1f}" for c in done) + " |")


if __name__ == "__main__":
    main()
