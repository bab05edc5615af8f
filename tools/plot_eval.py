#!/usr/bin/env python3
"""Per-action or per-joint errors of `dofpose eval --json` results as one SVG bar chart.

    python3 tools/plot_eval.py EVAL.json [EVAL.json ...] --out errors.svg
                               [--by action|joint] [--metric mpjpe|p_mpjpe]
                               [--label EVAL.json=NAME ...] [--title TEXT]

One group of horizontal bars per action (or joint group), one bar per model,
each bar labelled with its value; the last group is the average over actions
(the protocol's number). --by joint plots the per-joint-group MPJPE (protocol 1,
the only metric `eval` reports per joint). The SVG is written to a temporary
file and renamed, so a failed run leaves nothing behind. Example (docs/results.md):

    python3 tools/plot_eval.py build-data/runs/table6_long/{martinez,progressive}_sh/eval_S9.json \\
        --out per_action.svg
"""
import json
import math
import os
import sys
from xml.sax.saxutils import escape

from svg_chart import (COLOURS, Bad, chart_args, fmt, labels_for, nice_ticks, svg_start,
                       text_width, write_svg)

METRIC_NAMES = {"mpjpe": "MPJPE (protocol 1), mm", "p_mpjpe": "P-MPJPE (protocol 2), mm"}
BAR, GAP, TOP, BOTTOM, PLOT_W = 12, 10, 40, 50, 460


def read_eval(path, by, metric):
    """{category: value} of one eval JSON, in the file's order, average last."""
    try:
        with open(path) as f:
            ev = json.load(f)
    except FileNotFoundError:
        raise Bad(f"{path}: no such file (expected the output of dofpose eval --json)")
    except (OSError, json.JSONDecodeError) as e:
        raise Bad(f"{path}: not readable JSON ({e}); expected the output of dofpose eval --json")
    if not isinstance(ev, dict):
        raise Bad(f"{path}: expected a JSON object (dofpose eval --json), got {type(ev).__name__}")
    key = "per_action" if by == "action" else "per_joint"
    table = ev.get(key)
    if not isinstance(table, dict) or not table:
        raise Bad(f"{path}: no '{key}' object (expected the output of dofpose eval --json)")
    out = {}
    for name, v in table.items():
        value = v.get(metric) if by == "action" and isinstance(v, dict) else v
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            field = f"{key}.{name}.{metric}" if by == "action" else f"{key}.{name}"
            raise Bad(f"{path}: {field} = {value!r} is not a finite number")
        out[name] = float(value)
    if by == "action":
        avg = ev.get(metric)
        if not isinstance(avg, (int, float)) or not math.isfinite(avg):
            raise Bad(f"{path}: '{metric}' = {avg!r} is not a finite number")
        out["Average"] = float(avg)
    return out


def render(models, by, metric, title):
    cats = list(models[0][1])
    left = 20 + max(text_width(c) for c in cats)
    group_h = len(models) * BAR + GAP
    ph = len(cats) * group_h
    legend_h = 20 * len(models)
    H = TOP + legend_h + ph + BOTTOM
    W = left + PLOT_W + 60
    top = TOP + legend_h
    vmax = max(v for _, vals in models for v in vals.values())
    ticks = nice_ticks(0, vmax, want=5)

    def px(v):
        return left + v / ticks[-1] * PLOT_W

    out = svg_start(W, H, title, 10)
    for i, (name, _) in enumerate(models):
        y = TOP + i * 20
        out.append(f'<rect x="{left}" y="{y}" width="20" height="{BAR}" fill="{COLOURS[i % len(COLOURS)]}"/>')
        out.append(f'<text x="{left + 26}" y="{y + 10}">{escape(name)}</text>')
    for t in ticks:
        x = px(t)
        out.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + ph}" stroke="#ddd"/>')
        out.append(f'<text x="{x:.1f}" y="{top + ph + 16}" text-anchor="middle">{fmt(t)}</text>')
    out.append(f'<text x="{left + PLOT_W / 2:.1f}" y="{H - 12}" text-anchor="middle">'
               f'{escape(METRIC_NAMES[metric])}</text>')
    for g, cat in enumerate(cats):
        y0 = top + g * group_h
        weight = ' font-weight="bold"' if cat == "Average" else ""
        out.append(f'<text x="{left - 8}" y="{y0 + len(models) * BAR / 2 + 4:.1f}" '
                   f'text-anchor="end"{weight}>{escape(cat)}</text>')
        for i, (name, vals) in enumerate(models):
            v = vals[cat]
            y = y0 + i * BAR
            out.append(f'<rect data-model="{escape(name)}" data-category="{escape(cat)}" '
                       f'x="{left}" y="{y}" width="{px(v) - left:.1f}" height="{BAR - 1}" '
                       f'fill="{COLOURS[i % len(COLOURS)]}"/>')
            out.append(f'<text x="{px(v) + 4:.1f}" y="{y + BAR - 2}" font-size="10">{v:.1f}</text>')
    out.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + ph}" stroke="#444"/>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main(argv=None):
    ap = chart_args(__doc__, "evals", "EVAL.json", "output of dofpose eval --json",
                    "legend name of a model (default: the folder holding its JSON)")
    ap.add_argument("--by", default="action", choices=["action", "joint"])
    ap.add_argument("--metric", default="mpjpe", choices=sorted(METRIC_NAMES))
    a = ap.parse_args(argv)
    try:
        if a.by == "joint" and a.metric != "mpjpe":
            raise Bad("--by joint: dofpose eval reports joints in MPJPE only (--metric mpjpe)")
        names = labels_for(a.evals, a.label,
                           lambda p: os.path.basename(os.path.dirname(os.path.abspath(p))))
        models = [(n, read_eval(p, a.by, a.metric)) for n, p in zip(names, a.evals)]
        first = models[0][1]
        for p, (_, vals) in zip(a.evals[1:], models[1:]):
            if set(vals) != set(first):
                raise Bad(f"{p}: its {a.by}s ({', '.join(vals)}) differ from those of "
                          f"{a.evals[0]} ({', '.join(first)})")
        what = "Per action" if a.by == "action" else "Per joint group"
        svg = render(models, a.by, a.metric, a.title or f"{what}: {METRIC_NAMES[a.metric]}")
        write_svg(a.out, svg)
    except Bad as e:
        print(f"plot_eval.py: {e}", file=sys.stderr)
        return 2
    print(f"{a.out}: {len(models)} models, {a.metric} by {a.by}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
