#!/usr/bin/env python3
"""Print the criterion results of `benches/framers.rs` and `benches/tracker.rs` as Markdown
tables, with Tendril's figure over its `tokio_util` counterpart measured in the same run.

    python3 benches/summary.py [target/criterion]

Reads each benchmark's median from `<dir>/<group>/<function>/<size>/new/estimates.json`.
"""

import json
import pathlib
import sys

# Tendril subject -> the baseline it is compared with.
BASELINE = {
    "line": "tokio_lines",
    "line_slices": "tokio_lines",
    "delimiter": "tokio_any_delimiter",
    "delimiter_slices": "tokio_any_delimiter",
    "line_borrowed": "tokio_lines",
    "delimiter_borrowed": "tokio_any_delimiter",
    "length_u32be": "tokio_length_delimited",
    "identity": "tokio_bytes",
}
SIZES = ["16B", "64B", "1KiB", "64KiB"]


def load(root):
    """{(group, function, mode, size): (per_second, unit)}"""
    results = {}
    for bench in root.rglob("new/benchmark.json"):
        meta = json.loads(bench.read_text())
        estimates = json.loads((bench.parent / "estimates.json").read_text())
        ns = estimates["median"]["point_estimate"]
        throughput = meta.get("throughput") or {}
        if "Elements" in throughput:
            amount, unit = throughput["Elements"], "elements"
        elif "Bytes" in throughput:
            amount, unit = throughput["Bytes"], "bytes"
        else:
            amount, unit = 1, "iterations"
        function, _, mode = meta["function_id"].partition("/")
        size = meta.get("value_str") or ""
        results[(meta["group_id"], function, mode, size)] = (amount / ns * 1e9, unit)
    return results


def size_bytes(label):
    """`512B` -> 512, `2KiB` -> 2048."""
    digits = int("".join(c for c in label if c.isdigit()) or 0)
    return digits * 1024 if label.endswith("KiB") else digits


def fmt(rate, unit):
    if unit == "bytes":
        return f"{rate / 2**30:,.2f}"
    return f"{rate / 1e6:,.1f}"


def table(results, group, mode, title):
    rows = sorted({f for (g, f, m, _) in results if g == group and m == mode})
    if not rows:
        return
    unit = next(u for (g, f, m, _), (_, u) in results.items() if g == group and m == mode)
    what = "GiB/s of wire bytes" if unit == "bytes" else "millions of frames/s"
    print(f"### {title} — `{group}` ({what})\n")
    print("| | " + " | ".join(SIZES) + " |")
    print("| --- |" + " ---: |" * len(SIZES))
    for f in rows:
        cells = []
        for size in SIZES:
            got = results.get((group, f, mode, size))
            if got is None:
                cells.append("–")
                continue
            cell = fmt(*got)
            base = results.get((group, BASELINE.get(f, ""), mode, size))
            if base:
                cell += f" ({got[0] / base[0]:.2f}×)"
            cells.append(cell)
        name = f if f.startswith(("tokio", "memchr")) else f"**{f}**"
        print(f"| {name} | " + " | ".join(cells) + " |")
    print()


def goals(results):
    """The issue's core goals, measured / goal."""

    def rate(group, function, mode, size):
        got = results.get((group, function, mode, size))
        return got[0] if got else None

    def ratio(a, b):
        return f"{a / b:.2f}×" if a and b else "–"

    rows = []
    lines = rate("decode_frames", "tokio_lines", "prefilled", "64B")
    for f in ("line", "line_slices"):
        rows.append((f"`{f}` decode, 64 B, vs LinesCodec", ratio(rate("decode_frames", f, "prefilled", "64B"), lines), "≥ 2×"))
    scan = rate("decode_frames", "memchr_scan_lines", "prefilled", "1KiB")
    for f in ("line", "line_slices"):
        rows.append((f"`{f}` decode, 1 KiB, vs a memchr scan", ratio(rate("decode_frames", f, "prefilled", "1KiB"), scan), "≥ 0.5×"))
    for size in ("16B", "64B", "1KiB"):
        rows.append((
            f"`length_u32be` decode, {size}, vs LengthDelimitedCodec",
            ratio(rate("decode_frames", "length_u32be", "prefilled", size), rate("decode_frames", "tokio_length_delimited", "prefilled", size)),
            "≥ 1.5×",
        ))
    for bench in ("echo_datagram", "echo_batch32"):
        got = rate("tracker", bench, "100000_peers", "")
        rows.append((f"tracker `{bench}`, 100k peers", f"{got / 1e6:.2f} M/s" if got else "–", "≥ 5 M/s"))
    print("### Goals\n")
    print("| figure | measured | goal |")
    print("| --- | ---: | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()


def main():
    root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/criterion")
    results = load(root)
    if not results:
        sys.exit(f"no criterion results under {root}")
    print("Figures are criterion's medians; in brackets, Tendril over its `tokio_util` baseline.\n")
    goals(results)
    table(results, "decode_frames", "prefilled", "Decode, pre-filled buffer")
    table(results, "decode", "prefilled", "Decode, pre-filled buffer")
    table(results, "decode", "reads4k", "Decode, 4 KiB reads")
    table(results, "decode", "per_read", "Decode, one frame per read")
    table(results, "encode_frames", "", "Encode")
    table(results, "encode", "", "Encode")
    sends = sorted(
        {(f, s) for (g, f, _, s) in results if g == "send_frames"},
        key=lambda fs: (fs[0], size_bytes(fs[1])),
    )
    if sends:
        print("### Encode + vectored write — send_frames (millions of frames/s)\n")
        print("| | size | frames/s |")
        print("| --- | --- | ---: |")
        for f, s in sends:
            key = next(k for k in results if k[0] == "send_frames" and k[1] == f and k[3] == s)
            print(f"| {f} | {s} | {fmt(*results[key])} |")
        print()
    tracker = sorted(
        (k for k in results if k[0] == "tracker"),
        key=lambda k: (k[1], int(k[2].split("_")[0])),
    )
    if tracker:
        print("### Tracker (echoed datagrams per second, one core)\n")
        print("| benchmark | peers | datagrams/s | per datagram |")
        print("| --- | ---: | ---: | ---: |")
        for key in tracker:
            rate, _ = results[key]
            peers = int(key[2].split("_")[0])
            print(f"| {key[1]} | {peers:,} | {rate / 1e6:.2f} M | {1e9 / rate:.0f} ns |")
        print()


if __name__ == "__main__":
    main()
