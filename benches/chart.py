#!/usr/bin/env python3
"""Draw Tendril's figures as ratios against their baselines, one bar each, with its goal marked:
the chart at the top of BENCHMARKS.md. `benches/compare.sh` runs it after every comparison.

    python3 benches/chart.py CRITERION_DIR SOCKET_TABLE OUT.svg

- CRITERION_DIR: criterion's results (`target/criterion`): the framers against their
  `tokio_util` codecs, decode and encode at 16 B - 64 KiB, and the tracker against its goal.
- SOCKET_TABLE: what `drivers/tokio/benches/socket.rs` printed (its Markdown table): TCP and UDP
  echo against plain Tokio, and both as a share of the physical limit (goal 0.9x).

A bar at 1.0x equals its baseline (or, for the tracker, its goal); the scale is logarithmic, so
0.5x and 2x are as far from 1x. The goal of each figure is the black tick across its bar. Plain
SVG, no plotting library needed.
"""

import math
import pathlib
import re
import sys
from xml.sax.saxutils import escape

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import summary  # noqa: E402  (the criterion loader, shared with the tables)

SIZES = ["16B", "64B", "1KiB", "64KiB"]
SHOWN = {"16B": "16 B", "64B": "64 B", "1KiB": "1 KiB", "64KiB": "64 KiB"}
# (label, Tendril subject, tokio-util baseline, group, mode, goal as a ratio)
FRAMER_FIGURES = [
    ("Line decode", "line", "tokio_lines", "decode_frames", "prefilled", 1.0),
    ("Line decode, in place", "line_slices", "tokio_lines", "decode_frames", "prefilled", 1.0),
    ("LengthPrefixed decode", "length_u32be", "tokio_length_delimited", "decode_frames", "prefilled", 1.5),
    ("Line encode", "line", "tokio_lines", "encode_frames", "", 1.0),
    ("Line encode, borrowed", "line_borrowed", "tokio_lines", "encode_frames", "", 1.0),
    ("Delimiter encode", "delimiter", "tokio_any_delimiter", "encode_frames", "", 1.0),
    ("Delimiter encode, borrowed", "delimiter_borrowed", "tokio_any_delimiter", "encode_frames", "", 1.0),
    ("LengthPrefixed encode", "length_u32be", "tokio_length_delimited", "encode_frames", "", 1.0),
    ("Identity encode", "identity", "tokio_bytes", "encode_frames", "", 1.0),
]
# The 64 B line decode has its own, higher goal.
SPECIAL_GOALS = {("Line decode", "64B"): 2.0, ("Line decode, in place", "64B"): 2.0}
TRACKER_GOAL = 5e6  # echoed datagrams/s at 100k peers


def framer_bars(results):
    bars = []
    for label, subject, baseline, group, mode, goal in FRAMER_FIGURES:
        for size in SIZES:
            ours = results.get((group, subject, mode, size))
            theirs = results.get((group, baseline, mode, size))
            if ours and theirs:
                bars.append((f"{label}, {SHOWN[size]}",
                             ours[0] / theirs[0], SPECIAL_GOALS.get((label, size), goal),
                             "vs tokio-util"))
    for bench in ("echo_datagram", "echo_batch32"):
        got = results.get(("tracker", bench, "100000_peers", ""))
        if got:
            bars.append((f"tracker {bench}, 100k peers ({got[0] / 1e6:.2f} M/s)",
                         got[0] / TRACKER_GOAL, 1.0, "vs the 5 M/s goal"))
    return bars


def socket_bars(table):
    """Rows `| figure | tendril | plain tokio | 1.23× |` of the socket bench."""
    bars = []
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4:
            continue
        match = re.fullmatch(r"([0-9.]+)×", cells[3])
        if not match:
            continue
        label = cells[0].replace(", tendril-", ", ")
        ratio = float(match.group(1))
        if label.endswith(", of the limit"):
            bars.append((label[: -len(", of the limit")], ratio, 0.9, "vs the physical limit"))
            continue
        if label.endswith("(own process)"):
            # The drivers side by side, over tendril-tokio: io_uring's goal is 1.2x from 64
            # connections and at 1,000 UDP sockets, no slower at one.
            label = label[: -len(" (own process)")]
            if label.endswith(", tokio"):
                continue  # the baseline itself
            goal = 1.0
            if "uring" in label and any(n in label for n in (" 64 conn", " 1000 conn", " 1000 client")):
                goal = 1.2
            bars.append((label, ratio, goal, "vs tendril-tokio"))
            continue
        # Memory: lower is better, so the bar shows plain Tokio over Tendril.
        if label.startswith("resident memory"):
            driver = label.rsplit(", ", 1)[-1]
            label, ratio = f"idle TCP connection memory (plain / {driver})", 1 / ratio
        bars.append((label, ratio, 1.0, "vs plain Tokio"))
    return bars


def svg(bars):
    """Horizontal bars on a log scale (ratios run from 0.1x to 100x), 1.0x dashed."""
    row, left, width, right = 22, 560, 440, 70
    top = 46
    height = top + row * len(bars) + 40
    lo, hi = 0.1, max(4.0, max(r for _, r, _, _ in bars) * 1.3)
    span = math.log(hi) - math.log(lo)
    x = lambda ratio: left + width * (math.log(min(max(ratio, lo), hi)) - math.log(lo)) / span  # noqa: E731
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + right}" height="{height}" '
        'font-family="sans-serif" font-size="12">',
        '<rect width="100%" height="100%" fill="white"/>',
        '<text x="10" y="20" font-size="14" font-weight="bold">Tendril over its baseline, log scale '
        '(1× = as fast; black ticks: the goals; green: goal met, red: missed)</text>',
    ]
    tick = 0.125
    while tick <= hi:
        shown = f"{tick:g}×"
        out.append(f'<line x1="{x(tick):.1f}" y1="{top - 8}" x2="{x(tick):.1f}" '
                   f'y2="{height - 30}" stroke="#e4e4e4"/>')
        out.append(f'<text x="{x(tick):.1f}" y="{height - 14}" text-anchor="middle">{shown}</text>')
        tick *= 2
    out.append(f'<line x1="{x(1):.1f}" y1="{top - 8}" x2="{x(1):.1f}" y2="{height - 30}" '
               'stroke="#888" stroke-dasharray="4 3"/>')
    for i, (label, ratio, goal, against) in enumerate(bars):
        y = top + i * row
        colour = "#3a7d44" if ratio >= goal else "#c0392b"
        out.append(f'<text x="{left - 8}" y="{y + 14}" text-anchor="end">'
                   f'{escape(label)} <tspan fill="#777">{escape(against)}</tspan></text>')
        out.append(f'<rect x="{left}" y="{y + 3}" width="{x(ratio) - left:.1f}" height="{row - 7}" '
                   f'fill="{colour}"/>')
        out.append(f'<line x1="{x(goal):.1f}" y1="{y}" x2="{x(goal):.1f}" y2="{y + row - 1}" '
                   'stroke="black" stroke-width="2"/>')
        out.append(f'<text x="{x(ratio) + 4:.1f}" y="{y + 14}">{ratio:.2f}×</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    results = summary.load(pathlib.Path(sys.argv[1]))
    bars = framer_bars(results) + socket_bars(pathlib.Path(sys.argv[2]).read_text())
    if not bars:
        sys.exit("nothing to draw: no criterion results and no socket table")
    pathlib.Path(sys.argv[3]).write_text(svg(bars))
    print(f"wrote {sys.argv[3]}: {len(bars)} bars")


if __name__ == "__main__":
    main()
