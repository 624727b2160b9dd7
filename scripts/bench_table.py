#!/usr/bin/env python3
"""The table of scripts/bench-vs-mediapipe.sh: medians over rounds, mirrorsight against MediaPipe.

Reads one JSON object a line (from `mirrorsight bench --json` and scripts/bench_mediapipe.py),
groups them by clip and runner, and prints a Markdown table of medians with the ratios the
issue's goal is stated in (frames/s: mirrorsight / MediaPipe; CPU per frame: mirrorsight /
MediaPipe), followed by mirrorsight's share of each stage.
"""

import argparse
import json
import os
import statistics
import sys
from collections import defaultdict


def median(runs, key):
    values = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(values) if values else float("nan")


def spread(runs, key):
    values = [r[key] for r in runs if r.get(key) is not None]
    return (min(values), max(values)) if values else (float("nan"), float("nan"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results")
    parser.add_argument("--machine", default="unknown")
    parser.add_argument("--load", default="unknown")
    parser.add_argument("--command", default="")
    args = parser.parse_args()

    runs = defaultdict(list)
    with open(args.results, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                run = json.loads(line)
            except json.JSONDecodeError as e:
                sys.exit(f"bench_table: line {n} is not JSON ({e}): {line[:80]}")
            runs[(os.path.basename(run["clip"]), run["runner"])].append(run)

    clips = sorted({clip for clip, _ in runs}, key=lambda c: c)
    print(f"machine: {args.machine}; load average at the end: {args.load}")
    if args.command:
        print(f"command: {args.command}")
    print()
    print(
        "| clip | runs | mirrorsight fps | MediaPipe fps | fps ratio | CPU ms/frame, mirrorsight vs MediaPipe"
        " | CPU ratio | p50 / p95 ms per frame, mirrorsight | p50 / p95 ms, MediaPipe | peak RSS MiB, mirrorsight vs MediaPipe |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for clip in clips:
        ours = runs.get((clip, "mirrorsight"), [])
        theirs = runs.get((clip, "mediapipe"), [])
        if not ours or not theirs:
            print(f"| {clip} | missing a runner's results | | | | | | | | |")
            continue
        first = ours[0]
        fps_o, fps_t = median(ours, "fps"), median(theirs, "fps")
        cpu_o, cpu_t = median(ours, "cpu_ms_per_frame"), median(theirs, "cpu_ms_per_frame")
        lo, hi = spread(ours, "fps")
        lo_t, hi_t = spread(theirs, "fps")
        print(
            f"| {clip} ({first['width']}×{first['height']}, {first['frames']} frames)"
            f" | {len(ours)} + {len(theirs)}"
            f" | {fps_o:.1f} ({lo:.1f}–{hi:.1f})"
            f" | {fps_t:.1f} ({lo_t:.1f}–{hi_t:.1f})"
            f" | **{fps_o / fps_t:.2f}×**"
            f" | {cpu_o:.1f} vs {cpu_t:.1f}"
            f" | **{cpu_o / cpu_t:.2f}×**"
            f" | {median(ours, 'frame_p50_ms'):.1f} / {median(ours, 'frame_p95_ms'):.1f}"
            f" | {median(theirs, 'frame_p50_ms'):.1f} / {median(theirs, 'frame_p95_ms'):.1f}"
            f" | {median(ours, 'peak_rss_mib'):.0f} vs {median(theirs, 'peak_rss_mib'):.0f} |"
        )
    print()
    print("goal (issue #13): fps ratio ≥ 2.00× and CPU ratio ≤ 0.60× on every clip")

    print()
    print("mirrorsight, share of the CPU-bound work per stage (median over rounds):")
    print()
    print("| clip | " + " | ".join(stage_names(runs)) + " |")
    print("| --- |" + " --- |" * len(stage_names(runs)))
    for clip in clips:
        ours = runs.get((clip, "mirrorsight"), [])
        if not ours:
            continue
        cells = []
        for name in stage_names(runs):
            shares = [
                s["share"] for r in ours for s in r.get("stages", []) if s["name"] == name
            ]
            ms = [
                s["ms_per_frame"] for r in ours for s in r.get("stages", []) if s["name"] == name
            ]
            cells.append(
                f"{100 * statistics.median(shares):.0f} % ({statistics.median(ms):.1f} ms/frame)"
                if shares
                else "–"
            )
        print(f"| {clip} | " + " | ".join(cells) + " |")


def stage_names(runs):
    names = []
    for (_, runner), rs in runs.items():
        if runner != "mirrorsight":
            continue
        for r in rs:
            for s in r.get("stages", []):
                if s["name"] not in names:
                    names.append(s["name"])
    return names


if __name__ == "__main__":
    main()
