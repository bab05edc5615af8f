#!/usr/bin/env python3
"""Chooses the on-plane threshold of the torso-plane attributes from Human3.6M data.

For every pose of the given subjects (world coordinates; the labels do not depend on the
camera, so each pose counts once), computes the signed distances of the 9 attribute joints
to the torso plane (tools/h36m_lib.py, identical to engine/src/torso_plane.cpp), prints the
front / back / on-plane shares per joint and overall for thresholds 0, 10, ..., 150 mm, and
writes a histogram of the distances (PNG with matplotlib, else plain text).

Criterion (docs/attributes.md): the threshold whose overall label distribution has the
largest entropy, i.e. the three classes are as balanced as the data allow; ties go to the
smaller threshold.

    /usr/bin/python3 tools/attribute_threshold.py --data ../shared/data/h36m \
        --subjects S1,S5,S6,S7,S8 [--hist ~/.cache/dofpose/attribute_hist]
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import h36m_lib as H  # noqa: E402

THRESHOLDS_MM = list(range(0, 151, 10))
PROG = "attribute_threshold.py"


class ToolError(Exception):
    """Bad input: main() prints it as `attribute_threshold.py: error: ...` and exits 2."""


def entropy_bits(shares):
    s = np.asarray([x for x in shares if x > 0], dtype=np.float64)
    return float(-(s * np.log2(s)).sum())


def resolve_inputs(data_dir, subjects_arg, actions):
    """The canonical subject names (s1 is S1); unknown subjects or actions are ToolErrors."""
    if not os.path.isdir(data_dir):
        raise ToolError(f"--data {data_dir} is not a folder")
    available = H.npz_subjects(data_dir)
    requested = [s for s in subjects_arg.split(",") if s.strip()]
    if not requested:
        raise ToolError(f"--subjects {subjects_arg!r} names no subject "
                        f"(available: {', '.join(available) or 'none'})")
    try:
        subjects = H.resolve_subjects(requested, available,
                                      lambda s: os.path.join(data_dir, f"{s}.npz"))
    except ValueError as e:
        raise ToolError(f"--subjects: {e}") from None
    if actions:
        names = [n for s in subjects
                 for n in H.npz_sequence_names(os.path.join(data_dir, f"{s}.npz"))]
        try:
            H.check_actions(actions, names, f"subject{'s' if len(subjects) > 1 else ''} "
                                            f"{','.join(subjects)}")
        except ValueError as e:
            raise ToolError(f"--actions: {e}") from None
    return subjects


def collect_distances(data_dir, subjects, actions=None):
    out = []
    for s in subjects:
        path = os.path.join(data_dir, f"{s}.npz")
        if not os.path.isfile(path):
            raise ToolError(f"missing subject file {path}")
        for seq in H.read_npz_subject(data_dir, s, actions):
            out.append(H.attribute_distances(seq.pos3d))
    if not out:
        raise ToolError(f"no poses selected (subjects {','.join(subjects)}, actions {actions})")
    return np.concatenate(out, axis=0)


def balance_table(d):
    """Rows (threshold, per-joint shares [9,3], overall shares [3], entropy)."""
    rows = []
    for t, counts in zip(THRESHOLDS_MM, H.class_balance(d, THRESHOLDS_MM)):
        per_joint = counts / counts.sum(axis=1, keepdims=True)
        overall = counts.sum(axis=0) / counts.sum()
        rows.append((t, per_joint, overall, entropy_bits(overall)))
    return rows


def choose(rows):
    best = max(rows, key=lambda r: (round(r[3], 12), -r[0]))
    return best[0]


def print_tables(rows, n_poses):
    print(f"{n_poses} poses x 9 attribute joints = {n_poses * 9} labels")
    print("\noverall shares (front / back / on-plane) and entropy (bits, max log2(3) = 1.585):")
    print(f"{'t_mm':>5} {'front':>7} {'back':>7} {'on':>7} {'min':>7} {'entropy':>8}")
    for t, _, o, e in rows:
        print(f"{t:5d} {o[0]:7.3f} {o[1]:7.3f} {o[2]:7.3f} {o.min():7.3f} {e:8.4f}")
    print("\nper joint (front/back/on-plane, %):")
    head = " ".join(f"{n[:11]:>14}" for n in H.ATTRIBUTE_NAMES)
    print(f"{'t_mm':>5} {head}")
    for t, pj, _, _ in rows:
        cells = " ".join(f"{100 * a:4.0f}/{100 * b:3.0f}/{100 * c:3.0f}".rjust(14) for a, b, c in pj)
        print(f"{t:5d} {cells}")


def write_histogram(d, base, threshold):
    bins = np.arange(-600, 601, 20)
    clipped = np.clip(d, bins[0] + 1e-6, bins[-1] - 1e-6)
    os.makedirs(os.path.dirname(os.path.abspath(base)) or ".", exist_ok=True)
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        plt = None
    if plt is not None:
        fig, axes = plt.subplots(3, 3, figsize=(12, 9), sharex=True)
        for a, ax in enumerate(axes.ravel()):
            ax.hist(clipped[:, a], bins=bins, color="0.4")
            for x in (-threshold, threshold):
                ax.axvline(x, color="r", lw=0.8)
            ax.set_title(H.ATTRIBUTE_NAMES[a])
        fig.supxlabel("signed distance to the torso plane (mm, + = front)")
        fig.tight_layout()
        path = base + ".png"
        tmp = f"{path}.tmp.{os.getpid()}"
        try:
            fig.savefig(tmp, dpi=100, format="png")
            os.replace(tmp, path)
        finally:
            plt.close(fig)
            if os.path.exists(tmp):
                os.unlink(tmp)
        return path
    path = base + ".txt"
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        write_text_histogram(tmp, d, clipped, bins, threshold)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def write_text_histogram(path, d, clipped, bins, threshold):
    with open(path, "w") as f:
        f.write("signed distance to the torso plane (mm, + in front), 20 mm bins clipped to "
                f"[-600, 600]; '|' marks the bins holding the chosen threshold +-{threshold} mm\n")
        for a, name in enumerate(H.ATTRIBUTE_NAMES):
            counts, _ = np.histogram(clipped[:, a], bins=bins)
            f.write(f"\n== {name} (median {np.median(d[:, a]):.0f} mm)\n")
            scale = 60.0 / max(1, counts.max())
            for lo, c in zip(bins[:-1], counts):
                hit = lo < threshold <= lo + 20 or lo <= -threshold < lo + 20
                mark = "|" if hit else " "
                f.write(f"{lo:5d}..{lo + 20:<5d}{mark}{c:7d} {'#' * int(round(c * scale))}\n")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="folder with <subject>.npz (shared/data/h36m)")
    ap.add_argument("--subjects", default=",".join(H.TRAIN_SUBJECTS),
                    help="comma-separated, case-insensitive (default %(default)s)")
    ap.add_argument("--actions", default="",
                    help="comma-separated actions or sequences, e.g. Walking or 'Walking 1' "
                         "(default: all)")
    ap.add_argument("--hist", default=os.path.expanduser("~/.cache/dofpose/attribute_hist"),
                    help="histogram path without extension (.png or .txt is added)")
    args = ap.parse_args(argv)
    try:
        return run(args)
    except ToolError as e:
        msg = str(e)
    except ValueError as e:  # a malformed subject file (h36m_lib names it)
        msg = str(e)
    except OSError as e:
        msg = f"{e.filename or ''}: {e.strerror or e}"
    print(f"{PROG}: error: {msg}", file=sys.stderr)
    return 2


def run(args):
    actions = [a for a in args.actions.split(",") if a] or None
    subjects = resolve_inputs(args.data, args.subjects, actions)
    d = collect_distances(args.data, subjects, actions)
    rows = balance_table(d)
    print(f"subjects {','.join(subjects)}")
    print_tables(rows, d.shape[0])
    t = choose(rows)
    print(f"\nchosen threshold: {t} mm (largest entropy of the overall front/back/on-plane shares)")
    print("|d| quantiles over all labels (mm): "
          + ", ".join(f"p{q}={np.percentile(np.abs(d), q):.0f}" for q in (10, 25, 33, 50, 75, 90)))
    print(f"histogram: {write_histogram(d, args.hist, t)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
