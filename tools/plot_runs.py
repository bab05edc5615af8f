#!/usr/bin/env python3
"""Training curves of `dofpose train` runs as one SVG line chart (no plotting library).

    python3 tools/plot_runs.py RUN [RUN ...] --out curves.svg [--metric val_mpjpe]
                               [--label RUN=NAME ...] [--title TEXT]

RUN is a run folder (its log.csv, one row per epoch: docs/training.md) or a
log.csv itself. One line per run, x = epoch, y = the metric: val_mpjpe (default),
val_pmpjpe, train_loss or lr. Each line ends in its last value. The SVG is
written to a temporary file and renamed, so a failed run leaves nothing behind.
Example (docs/results.md):

    python3 tools/plot_runs.py build-data/runs/table6_long/*_sh --out docs/img/table6_long_sh.svg
"""
import csv
import math
import os
import sys
from xml.sax.saxutils import escape

from svg_chart import (COLOURS, Bad, chart_args, fmt, labels_for, nice_ticks, svg_start,
                       text_width, write_svg)

METRICS = {
    "val_mpjpe": "validation MPJPE (mm)",
    "val_pmpjpe": "validation P-MPJPE (mm)",
    "train_loss": "training loss",
    "lr": "learning rate",
}
PLOT_W, H = 520, 440
LEFT, TOP, BOTTOM = 70, 40, 50


def read_run(path, metric):
    """[(epoch, value)] of one run; Bad names the file, row and field that is wrong."""
    log = os.path.join(path, "log.csv") if os.path.isdir(path) else path
    if not os.path.isfile(log):
        raise Bad(f"{path}: no log.csv (expected a run folder written by dofpose train, "
                  "or its log.csv)")
    with open(log, newline="") as f:
        rows = list(csv.DictReader(f))
        cols = rows[0].keys() if rows else []
    if not rows:
        raise Bad(f"{log}: no rows (expected a header and one row per epoch)")
    for need in ("epoch", metric):
        if need not in cols:
            raise Bad(f"{log}: no column '{need}' (columns: {', '.join(cols)})")
    points = []
    for i, row in enumerate(rows, start=2):
        text = (row[metric] or "").strip()
        if not text:  # validation off for this epoch
            continue
        try:
            x, y = float(row["epoch"]), float(text)
        except ValueError:
            raise Bad(f"{log} line {i}: epoch '{row['epoch']}' / {metric} '{text}' is not a number")
        if not (math.isfinite(x) and math.isfinite(y)):
            raise Bad(f"{log} line {i}: {metric} = {text} is not finite")
        points.append((x, y))
    if not points:
        raise Bad(f"{log}: no values of '{metric}' (was validation off?)")
    return points


def run_name(path):
    """A run's default legend name: its folder's name (also when given its log.csv)."""
    path = os.path.abspath(path)
    return os.path.basename(os.path.dirname(path) if os.path.isfile(path) else path)


def legend_value(metric, v):
    return f"{v:.1f}" if metric.startswith("val_") else f"{v:.4g}"


def render(runs, metric, title):
    xs = [x for _, pts in runs for x, _ in pts]
    ys = [y for _, pts in runs for _, y in pts]
    xt = nice_ticks(min(xs), max(xs)) if max(xs) - min(xs) > 10 else \
        list(range(int(math.floor(min(xs))), int(math.ceil(max(xs))) + 1))
    yt = nice_ticks(min(ys), max(ys))
    x0, x1, y0, y1 = xt[0], xt[-1], yt[0], yt[-1]
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    last = [legend_value(metric, pts[-1][1]) for _, pts in runs]
    # The legend sits right of the plot.
    legend_w = 50 + max(text_width(f"{name}: {v}") for (name, _), v in zip(runs, last))
    W = LEFT + PLOT_W + legend_w
    pw, ph = PLOT_W, H - TOP - BOTTOM

    def px(x):
        return LEFT + (x - x0) / (x1 - x0) * pw

    def py(y):
        return TOP + (1 - (y - y0) / (y1 - y0)) * ph

    out = svg_start(W, H, title, LEFT)
    for t in yt:
        y = py(t)
        out.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + pw}" y2="{y:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{fmt(t)}</text>')
    for t in xt:
        x = px(t)
        out.append(f'<line x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{TOP + ph}" stroke="#eee"/>')
        out.append(f'<text x="{x:.1f}" y="{TOP + ph + 18}" text-anchor="middle">{fmt(t)}</text>')
    out.append(f'<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>')
    out.append(f'<text x="{LEFT + pw / 2:.1f}" y="{H - 10}" text-anchor="middle">epoch</text>')
    out.append(f'<text transform="translate(16 {TOP + ph / 2:.1f}) rotate(-90)" '
               f'text-anchor="middle">{escape(METRICS[metric])}</text>')
    # Legend rows sorted by last value, best (lowest) first, so it reads as a ranking.
    order = sorted(range(len(runs)), key=lambda i: runs[i][1][-1][1])
    for rank, i in enumerate(order):
        name, pts = runs[i]
        c = COLOURS[i % len(COLOURS)]
        path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts)
        out.append(f'<polyline data-run="{escape(name)}" points="{path}" fill="none" '
                   f'stroke="{c}" stroke-width="2"/>')
        for x, y in pts:
            out.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="2.5" fill="{c}"/>')
        ly = TOP + 10 + rank * 20
        lx = LEFT + pw + 14
        out.append(f'<line x1="{lx}" y1="{ly}" x2="{lx + 20}" y2="{ly}" stroke="{c}" '
                   f'stroke-width="3"/>')
        out.append(f'<text x="{lx + 26}" y="{ly + 4}">{escape(name)}: {last[i]}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main(argv=None):
    ap = chart_args(__doc__, "runs", "RUN", "run folder or log.csv",
                    "legend name of a run (default: its folder's name)")
    ap.add_argument("--metric", default="val_mpjpe", choices=sorted(METRICS))
    a = ap.parse_args(argv)
    try:
        names = labels_for(a.runs, a.label, run_name)
        runs = [(name, read_run(r, a.metric)) for name, r in zip(names, a.runs)]
        svg = render(runs, a.metric, a.title or METRICS[a.metric] + " per epoch")
        write_svg(a.out, svg)
    except Bad as e:
        print(f"plot_runs.py: {e}", file=sys.stderr)
        return 2
    print(f"{a.out}: {len(runs)} runs, {a.metric}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
