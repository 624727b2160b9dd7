#!/usr/bin/env python3
"""Build assets/story.mp4 (and assets/story.labels.json): the whole-story demo clip.

A shopper arrives at the mirror, swipes through outfits, gives a thumbs up, holds still for
the photo countdown and leaves. 640x480, 16 fps, H.264 yuv420p, about 19.4 s:

  0.0  - 2.0 s    the empty room of assets/demo.mp4 (its first frame)
  2.0  - 3.0 s    the shopper slides in from the left, slowing down (as in demo.mp4)
  3.0  - 3.5 s    standing at the mirror (the excerpt's first frame)
  3.5  - 11.0 s   the excerpt: 0.0 - 7.5 s of the sense clip, five open-hand swipes
                  (three left to right, two right to left in the image) and a thumbs up
  11.0 - 15.0 s   holding still for the photo (the excerpt's last, hands-down frames
                  played back and forth)
  15.0 - 16.0 s   the shopper slides out to the right, speeding up (as in demo.mp4)
  16.0 - 19.375 s the empty room

The shopper is quic/sense's `sense_reactive_gesture_test_1.mp4` (MIT, (c) 2020 Twenty Billion
Neurons GmbH): frames 0-119 (0.0 - 7.44 s), cut before its thumbs down. The room is the first
frame of assets/demo.mp4 (public domain, made by make_demo_clip.py). The shopper's frame slides
over the room as a whole, with its own background: a camera cannot see a person without the
room behind them, and cutting the man out of his room frame by frame would smear his hands.

Labels: the excerpt's gestures from ../shared/footage/labels/sense_reactive_gesture_test_1.json,
moved by the excerpt's start; presence spans the frames in which the whole shopper frame is in.

Reproducible: only the Python standard library and Debian's ffmpeg (libx264, threads=1,
bitexact flags), so the same inputs give the same bytes.

Usage:
  make_story_clip.py [--sense PATH] [--sense-labels PATH] [--out assets/story.mp4]
"""
import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
FOOTAGE = os.path.join(HERE, "..", "..", "shared", "footage")
W, H, FPS = 640, 480, 16
# The inputs this clip was made from (../shared/footage/SHA256SUMS, assets/README.md).
SENSE_SHA256 = "4aa4073e4fc214707542eb7adb86b1df184316280c1bc2abc8b146bd81e31629"
DEMO_SHA256 = "b686eae843668091a619947cca4d75a73809c213e0e678e1d84308aa74acc53a"
EMPTY_BEFORE, ARRIVE, SETTLE = 32, 16, 8      # frames: 2.0 s, 1.0 s, 0.5 s
EXCERPT_END = 120                             # sense frames 0..119 (its thumbs down starts at 120)
POSE_FRAMES = (116, 119)                      # hands-down frames played back and forth
POSE, LEAVE, EMPTY_AFTER = 64, 16, 54         # 4.0 s, 1.0 s, 3.375 s


def check_sha256(path, expected):
    with open(path, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    if sha != expected:
        sys.exit(f"{path}: sha256 {sha}, expected {expected}")


def ffmpeg():
    path = shutil.which("ffmpeg")
    if not path:
        sys.exit("ffmpeg not found: apt-get install -y ffmpeg")
    return path


def decode(path, frames=None):
    """Frames of `path` as raw RGB24 bytes, W x H."""
    cmd = [ffmpeg(), "-nostdin", "-v", "error", "-i", path]
    if frames is not None:
        cmd += ["-frames:v", str(frames)]
    cmd += ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{W}x{H}", "-"]
    raw = subprocess.run(cmd, check=True, capture_output=True).stdout
    size = W * H * 3
    if len(raw) % size:
        sys.exit(f"{path}: decoded {len(raw)} bytes, not whole {W}x{H} frames")
    return [raw[i:i + size] for i in range(0, len(raw), size)]


def rows(frame):
    return [frame[y * W * 3:(y + 1) * W * 3] for y in range(H)]


def slide(room, shopper, left):
    """`shopper` with its left edge at column `left` (may be off-frame) over `room`."""
    out = []
    for r, s in zip(rows(room), rows(shopper)):
        if left <= 0:
            cut = -left * 3
            out.append(s[cut:] + r[len(s) - cut:])
        else:
            cut = left * 3
            out.append(r[:cut] + s[:len(s) - cut])
    return b"".join(out)


def encode(frames, out):
    cmd = [ffmpeg(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
           "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{W}x{H}", "-framerate", str(FPS), "-i", "-",
           "-sws_flags", "bicubic+accurate_rnd+full_chroma_int+bitexact",
           "-vf", "scale=out_color_matrix=bt601:out_range=tv,format=yuv420p",
           "-c:v", "libx264", "-preset", "medium", "-crf", "20", "-g", str(2 * FPS),
           "-threads", "1", "-x264-params", "threads=1:lookahead-threads=1:sliced-threads=0",
           "-colorspace", "smpte170m", "-color_primaries", "smpte170m", "-color_trc", "smpte170m",
           "-color_range", "tv",
           "-fflags", "+bitexact", "-flags", "+bitexact", "-map_metadata", "-1",
           "-movflags", "+faststart", "-an", out]
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE)
    for f in frames:
        p.stdin.write(f)
    p.stdin.close()
    if p.wait() != 0:
        sys.exit("ffmpeg failed")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sense", default=os.path.join(FOOTAGE, "sense_reactive_gesture_test_1.mp4"))
    ap.add_argument("--sense-labels",
                    default=os.path.join(FOOTAGE, "labels", "sense_reactive_gesture_test_1.json"))
    ap.add_argument("--demo", default=os.path.join(HERE, "demo.mp4"))
    ap.add_argument("--out", default=os.path.join(HERE, "story.mp4"))
    a = ap.parse_args()

    check_sha256(a.sense, SENSE_SHA256)
    check_sha256(a.demo, DEMO_SHA256)
    room = decode(a.demo, frames=1)[0]
    sense = decode(a.sense)
    if len(sense) < EXCERPT_END:
        sys.exit(f"{a.sense}: {len(sense)} frames, expected at least {EXCERPT_END}")

    frames = [room] * EMPTY_BEFORE
    for i in range(ARRIVE):
        u = (i + 1) / ARRIVE
        p = 1.0 - (1.0 - u) ** 2                      # decelerate into place
        frames.append(slide(room, sense[0], round(-W + W * p)))
    frames += [sense[0]] * SETTLE
    excerpt_start = len(frames)
    frames += sense[:EXCERPT_END]
    lo, hi = POSE_FRAMES
    bounce = list(range(hi, lo, -1)) + list(range(lo, hi))   # 119..117, 116..118, ...
    frames += [sense[bounce[i % len(bounce)]] for i in range(POSE)]
    last = frames[-1]
    for i in range(LEAVE):
        u = (i + 1) / LEAVE
        frames.append(slide(room, last, round(W * u * u)))   # accelerate out
    frames += [room] * EMPTY_AFTER
    encode(frames, a.out)

    with open(a.sense_labels) as f:
        sense_labels = json.load(f)
    offset = excerpt_start / FPS
    excerpt_end_s = EXCERPT_END / FPS
    gestures = [dict(g, start=round(g["start"] + offset, 3), end=round(g["end"] + offset, 3))
                for g in sense_labels["gestures"] if g["end"] <= excerpt_end_s]
    first_in = (EMPTY_BEFORE + ARRIVE - 1) / FPS                     # the last arrival frame is fully in
    last_in = (excerpt_start + EXCERPT_END + POSE - 1) / FPS
    labels = {
        "clip": os.path.basename(a.out),
        "source": ("assets/make_story_clip.py: frames 0-119 of quic/sense "
                   "sense_reactive_gesture_test_1.mp4 between the empty room of assets/demo.mp4"),
        "license": "MIT (c) 2020 Twenty Billion Neurons GmbH (the shopper); public domain (the room)",
        "scene": ("empty room; a seated shopper slides in from the left, swipes five times, gives a "
                  "thumbs up, holds still, slides out to the right; empty room; 640x480, 16 fps"),
        "presence": [[round(first_in, 3), round(last_in, 3)]],
        "visitors_distinct": True,
        "gestures": gestures,
        "gestures_complete": True,
        "tolerance_s": 0.5,
        "notes": (f"{len(frames)} frames; frame i is at i/{FPS} s. The excerpt starts at "
                  f"{offset} s (sense labels moved by that much); the shopper is fully in from "
                  f"{round(first_in, 3)} s to {round(last_in, 3)} s and fully out from "
                  f"{round((len(frames) - EMPTY_AFTER) / FPS, 3)} s."),
    }
    lab_path = os.path.splitext(a.out)[0] + ".labels.json"
    with open(lab_path, "w") as f:
        json.dump(labels, f, indent=1)
        f.write("\n")
    with open(a.out, "rb") as f:
        data = f.read()
    print(f"wrote {a.out} ({len(frames)} frames, {len(data)} bytes, "
          f"sha256 {hashlib.sha256(data).hexdigest()}) and {lab_path}")


if __name__ == "__main__":
    main()
