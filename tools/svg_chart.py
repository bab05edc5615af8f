#!/usr/bin/env python3
"""Library module of tools/plot_runs.py and tools/plot_eval.py: what their SVG
charts share (colours, axis ticks, labels, the atomic write). Not a command.
"""
import argparse
import math
import os
import sys
import tempfile
from xml.sax.saxutils import escape

# Okabe-Ito: tells lines and bars apart for colour-blind readers too.
COLOURS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442"]


class Bad(Exception):
    """A user error: the message names the file, option or field at fault."""


def nice_ticks(lo, hi, want=6):
    """Round tick values (1, 2 or 5 x 10^k apart) covering [lo, hi]."""
    if hi <= lo:
        lo, hi = lo - 1, hi + 1
    raw = (hi - lo) / want
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.floor(lo / step) * step
    ticks = []
    t = first
    while t <= hi + step * 1e-9:
        ticks.append(round(t, 12))
        t += step
    if ticks[-1] < hi:
        ticks.append(round(t, 12))
    return ticks


def fmt(v):
    return f"{v:g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.1e}"


def text_width(s):
    """Rough width in px of s at 12 px sans-serif (~7 px a character)."""
    return 7 * len(s)


def labels_for(inputs, label_args, default_name):
    """Legend names: --label INPUT=NAME where given, else default_name(input)."""
    labels = {}
    for item in label_args:
        if "=" not in item:
            raise Bad(f"--label {item!r}: expected INPUT=NAME")
        k, v = item.split("=", 1)
        labels[os.path.normpath(k)] = v
    unused = set(labels) - {os.path.normpath(i) for i in inputs}
    if unused:
        raise Bad(f"--label names inputs that are not plotted: {', '.join(sorted(unused))}")
    return [labels.get(os.path.normpath(i)) or default_name(i) for i in inputs]


def chart_args(doc, inputs, metavar, inputs_help, label_help):
    """The command line both tools share: the inputs, --out, --label, --title."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0], epilog=doc.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(inputs, nargs="+", metavar=metavar, help=inputs_help)
    ap.add_argument("--out", required=True, help="the SVG file to write")
    ap.add_argument("--label", action="append", default=[], metavar=f"{metavar}=NAME",
                    help=label_help)
    ap.add_argument("--title", default=None)
    return ap


def svg_start(width, height, title, title_x):
    """The opening lines of a chart: the element, a white page, the title."""
    return [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
            f'<rect width="{width}" height="{height}" fill="white"/>',
            f'<text x="{title_x}" y="24" font-size="14" font-weight="bold">{escape(title)}</text>']


def write_svg(path, svg):
    """Writes svg to path through a temporary file and a rename, with the
    permissions the umask gives (mkstemp's are 0600)."""
    if not path.endswith(".svg"):
        raise Bad(f"--out {path}: expected a file name ending in .svg")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise Bad(f"--out {path}: folder {folder} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=".svg_chart.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(svg)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


if __name__ == "__main__":
    if sys.argv[1:] in ([], ["-h"], ["--help"]):
        print("usage: svg_chart.py is a library module of tools/plot_runs.py and "
              "tools/plot_eval.py; it runs nothing")
        sys.exit(0)
    print(f"svg_chart.py: unknown arguments {' '.join(sys.argv[1:])} (a library module, "
          "see --help)", file=sys.stderr)
    sys.exit(2)
