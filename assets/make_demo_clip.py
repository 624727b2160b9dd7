#!/usr/bin/env python3
"""Build assets/demo.mp4 (and assets/demo.labels.json) deterministically.

A person walks up to the mirror, stays, and leaves, in front of a plain indoor
wall: 640x480, 15 fps, 13.6 s (204 frames), H.264 yuv420p.

  0.0 - 2.5 s   empty room
  2.5 - 3.5 s   the person slides in from the left (decelerating)
  3.5 - 9.5 s   the person stands at the mirror, small sideways sway (+-10 px)
  9.5 - 10.5 s  the person slides out to the right (accelerating)
  10.5 - 13.6 s empty room

The person is the `astronaut` photo (Eileen Collins, NASA, public domain) that
ships inside the scikit-image wheel (skimage/data/astronaut.png, no download),
cut out with OpenCV's GrabCut from a hand-drawn outline (seeded RNG), scaled to
440 px tall (92 % of the frame height, head at the top, cut by the frame bottom
as a person standing close to the mirror would be). The background is drawn from
a seeded numpy RandomState (legacy generator: stable across numpy versions).

Reproducible: same bytes from the same versions (models/requirements-convert.txt
for numpy/opencv/scikit-image, Debian's ffmpeg/libx264): frames are piped raw to
ffmpeg with libx264 threads=1 and -fflags/-flags +bitexact.

Needs: the maintainer venv made by models/convert.sh (numpy, opencv-python-headless,
scikit-image, onnxruntime for --check) and ffmpeg from apt (`apt-get install -y ffmpeg`).

Usage:
  make_demo_clip.py                 write assets/demo.mp4 and assets/demo.labels.json
  make_demo_clip.py --check         also decode the mp4 and run models/reference.py's
                                    pose detector on every frame; fail unless every
                                    fully-in frame scores > 0.5 and every empty frame
                                    stays <= 0.3; print the per-second max score
  make_demo_clip.py --preview DIR   also write a few frames as PNG
"""
import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
W, H, FPS = 640, 480, 15
N_FRAMES = 204                       # 13.6 s
T_ENTER, T_IN, T_LEAVE, T_OUT = 2.5, 3.5, 9.5, 10.5
PERSON_H = 440                       # px from the top of the hair to the frame bottom
SWAY_PX, SWAY_PERIOD = 10.0, 2.4
ASTRONAUT_SHA256 = "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5"

# Outline of the person (hair, neck ring, suit, the helmet held at her side) in
# the 512x512 photo, clockwise from the top of the hair. GrabCut refines it.
OUTLINE = [(225, 14), (262, 20), (285, 38), (298, 62), (302, 90), (297, 112), (288, 128),
           (282, 150), (285, 168), (300, 185), (308, 215), (315, 250), (345, 280), (360, 315),
           (364, 345), (390, 340), (440, 344), (480, 368), (498, 405), (508, 460), (511, 511),
           (20, 511), (19, 440), (22, 370), (33, 312), (48, 268), (68, 235), (100, 218),
           (117, 190), (128, 162), (160, 140), (165, 122), (155, 100), (152, 72), (160, 45),
           (180, 25)]


def load_astronaut():
    import skimage
    from skimage import data
    path = os.path.join(os.path.dirname(skimage.__file__), "data", "astronaut.png")
    with open(path, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    if sha != ASTRONAUT_SHA256:
        sys.exit(f"{path}: sha256 {sha}, expected {ASTRONAUT_SHA256} (scikit-image 0.26.0)")
    return data.astronaut()  # reads the bundled file (checked above), never downloads


def cut_out(rgb):
    """RGBA float32 (alpha in 0..1) of the person, cropped to the outline's box."""
    import cv2
    cv2.setRNGSeed(12345)
    cv2.setNumThreads(1)
    poly = np.array(OUTLINE, np.int32)
    inside = np.zeros(rgb.shape[:2], np.uint8)
    cv2.fillPoly(inside, [poly], 1)
    k = lambda r: cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    sure_fg = cv2.erode(inside, k(22))
    maybe = cv2.dilate(inside, k(6))
    mask = np.full(rgb.shape[:2], cv2.GC_BGD, np.uint8)
    mask[maybe > 0] = cv2.GC_PR_BGD
    mask[inside > 0] = cv2.GC_PR_FGD
    mask[sure_fg > 0] = cv2.GC_FGD
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    cv2.grabCut(bgr, mask, None, bgd, fgd, 5, cv2.GC_INIT_WITH_MASK)
    fg = ((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)).astype(np.uint8)
    fg = cv2.morphologyEx(fg, cv2.MORPH_OPEN, k(2))
    fg = cv2.morphologyEx(fg, cv2.MORPH_CLOSE, k(4))
    n, lab, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
    big = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    fg = (lab == big).astype(np.uint8)
    # fill holes (e.g. dark visor reflections GrabCut may drop)
    holes = fg.copy()
    ff = np.zeros((fg.shape[0] + 2, fg.shape[1] + 2), np.uint8)
    cv2.floodFill(holes, ff, (0, 0), 1)
    fg = fg | (1 - holes)
    alpha = cv2.GaussianBlur(fg.astype(np.float32), (0, 0), 1.2)
    alpha[-3:, :] = fg[-3:, :]  # keep the bottom cut hard: it sits on the frame edge
    ys, xs = np.nonzero(fg)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    y1 = rgb.shape[0]
    rgba = np.dstack([rgb.astype(np.float32), alpha * 255.0])[y0:y1, x0:x1]
    return rgba


def scale_person(rgba):
    import cv2
    s = PERSON_H / rgba.shape[0]
    w = int(round(rgba.shape[1] * s))
    out = cv2.resize(rgba, (w, PERSON_H), interpolation=cv2.INTER_AREA)
    rgb = np.clip(out[..., :3], 0, 255)
    a = np.clip(out[..., 3:] / 255.0, 0, 1)
    return rgb, a


def background():
    """Plain, slightly textured indoor wall with a skirting board and a wooden floor."""
    import cv2
    rs = np.random.RandomState(20240611)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    wall = np.empty((H, W, 3), np.float32)
    wall[:] = (198, 190, 176)
    low = cv2.resize(rs.rand(9, 12).astype(np.float32), (W, H), interpolation=cv2.INTER_CUBIC)
    light = 1.0 + 0.06 * np.exp(-(((xx - 200) / 330) ** 2 + ((yy - 120) / 260) ** 2)) - 0.05 * yy / H
    grain = rs.rand(H, W).astype(np.float32) - 0.5
    wall = wall * light[..., None] + (low[..., None] - 0.5) * 10.0 + grain[..., None] * 5.0
    img = wall
    floor_y, board_h = 396, 10
    img[floor_y - board_h:floor_y] = np.array([228, 224, 216], np.float32) + grain[floor_y - board_h:floor_y, :, None] * 3
    img[floor_y - board_h] -= 25  # top edge shadow of the skirting board
    # floor: planks running away from the camera, lighter far away
    fh = H - floor_y
    fy = yy[floor_y:] - floor_y
    fx = xx[floor_y:]
    persp = (fx - W / 2) / (0.55 + 0.45 * fy / fh)  # converge towards a vanishing point
    plank = np.floor(persp / 38.0).astype(np.int64)
    tones = rs.rand(64).astype(np.float32)
    tone = tones[(plank + 32) % 64]
    base = np.array([150, 108, 72], np.float32)
    streak = cv2.resize(rs.rand(fh, 40).astype(np.float32), (W, fh), interpolation=cv2.INTER_LINEAR)
    floor = base * (0.82 + 0.25 * tone[..., None] - 0.12 * (fy / fh)[..., None]) + (streak[..., None] - 0.5) * 10
    seam = np.abs(persp / 38.0 - np.round(persp / 38.0)) * 38.0 < 0.8
    floor[seam] *= 0.8
    img[floor_y:] = floor
    return np.clip(img, 0, 255)


def person_x(t, pw):
    """Left edge (px, may be off-frame) of the person at time t, or None when out of frame."""
    centre = (W - pw) / 2.0
    start, end = -float(pw), float(W)  # right edge at 0 / left edge at W: invisible
    if t < T_ENTER or t >= T_OUT:
        return None
    if t < T_IN:
        u = (t - T_ENTER) / (T_IN - T_ENTER)
        p = 1.0 - (1.0 - u) ** 2          # decelerate into place
        return start + (centre - start) * p
    if t < T_LEAVE:
        return centre + SWAY_PX * np.sin(2 * np.pi * (t - T_IN) / SWAY_PERIOD)
    u = (t - T_LEAVE) / (T_OUT - T_LEAVE)
    return centre + (end - centre) * u * u  # accelerate out


def render(bg, prgb, pa, t):
    frame = bg.copy()
    ph, pw = pa.shape[:2]
    x = person_x(t, pw)
    state = "out"
    if x is not None:
        xi = int(round(x))
        y0 = H - ph
        a0, a1 = max(0, -xi), min(pw, W - xi)
        if a1 > a0:
            sl = frame[y0:H, xi + a0:xi + a1]
            a = pa[:, a0:a1]
            frame[y0:H, xi + a0:xi + a1] = sl * (1 - a) + prgb[:, a0:a1] * a
            vis = pa[:, a0:a1].sum() / pa.sum()
            state = "in" if vis > 0.999 else "partial"
    return np.clip(np.round(frame), 0, 255).astype(np.uint8), state


def encode(frames, out):
    ff = shutil.which("ffmpeg")
    if not ff:
        sys.exit("ffmpeg not found: apt-get install -y ffmpeg")
    cmd = [ff, "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
           "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{W}x{H}", "-framerate", str(FPS), "-i", "-",
           "-sws_flags", "bicubic+accurate_rnd+full_chroma_int+bitexact",
           "-vf", "scale=out_color_matrix=bt601:out_range=tv,format=yuv420p",
           "-c:v", "libx264", "-preset", "medium", "-crf", "26", "-g", str(2 * FPS),
           "-threads", "1", "-x264-params", "threads=1:lookahead-threads=1:sliced-threads=0",
           "-colorspace", "smpte170m", "-color_primaries", "smpte170m", "-color_trc", "smpte170m",
           "-color_range", "tv",
           "-fflags", "+bitexact", "-flags", "+bitexact", "-map_metadata", "-1",
           "-movflags", "+faststart", "-an", out]
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE)
    for f in frames:
        p.stdin.write(f.tobytes())
    p.stdin.close()
    if p.wait() != 0:
        sys.exit("ffmpeg failed")


def check(mp4, states):
    sys.path.insert(0, os.path.join(HERE, "..", "models"))
    import reference as R
    det = R.PoseDetector(threads=1)
    rows = []
    for i, (t, rgb) in enumerate(R.video_frames(mp4)):
        dets, ms = det(rgb)
        best = dets[0]["score"] if dets else 0.0
        rows.append((i, t, states[i], best, ms, dets))
    assert len(rows) == len(states), f"decoded {len(rows)} frames, rendered {len(states)}"
    ok = True
    for i, t, st, best, ms, _ in rows:
        if st == "in" and best <= 0.5:
            print(f"FAIL frame {i} t={t:.3f}: person fully in, best detection {best:.3f}"); ok = False
        if st == "out" and ms > 0.3:
            print(f"FAIL frame {i} t={t:.3f}: empty frame, max score {ms:.3f}"); ok = False
    print("second | frames (out/partial/in) | max score | min score of the best detection in fully-in frames")
    for s in range(int(np.ceil(N_FRAMES / FPS))):
        r = [x for x in rows if s <= x[1] < s + 1]
        cnt = {k: sum(1 for x in r if x[2] == k) for k in ("out", "partial", "in")}
        ins = [x[3] for x in r if x[2] == "in"]
        print(f"{s:2d}-{s + 1:<2d} | {cnt['out']:2d}/{cnt['partial']:2d}/{cnt['in']:2d} | "
              f"{max(x[4] for x in r):.3f} | {min(ins):.3f}" if ins else
              f"{s:2d}-{s + 1:<2d} | {cnt['out']:2d}/{cnt['partial']:2d}/{cnt['in']:2d} | "
              f"{max(x[4] for x in r):.3f} | -")
    boxes = [x[5][0] for x in rows if x[2] == "in" and x[5]]
    print("fully-in frames: keypoint 0 (hip centre) y range",
          f"{min(b['keypoints'][0][1] for b in boxes):.3f}..{max(b['keypoints'][0][1] for b in boxes):.3f},",
          "keypoint 2 (shoulder centre) y range",
          f"{min(b['keypoints'][2][1] for b in boxes):.3f}..{max(b['keypoints'][2][1] for b in boxes):.3f}")
    print("check:", "OK" if ok else "FAILED")
    return ok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(HERE, "demo.mp4"))
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--preview")
    a = ap.parse_args()

    prgb, pa = scale_person(cut_out(load_astronaut()))
    bg = background()
    frames, states = [], []
    for i in range(N_FRAMES):
        f, st = render(bg, prgb, pa, i / FPS)
        frames.append(f)
        states.append(st)
    encode(frames, a.out)

    times = [i / FPS for i in range(N_FRAMES)]
    fin = [t for t, s in zip(times, states) if s == "in"]
    vis = [t for t, s in zip(times, states) if s != "out"]
    dur = N_FRAMES / FPS
    labels = {
        "clip": os.path.basename(a.out),
        "source": "generated by assets/make_demo_clip.py from scikit-image 0.26.0 data.astronaut()",
        "license": "public domain (NASA photograph, via scikit-image)",
        "scene": ("plain indoor wall and wooden floor, camera at the mirror; one person (head and "
                  "upper body, about 92% of the frame height) slides in from the left, stands with "
                  "a small sway, slides out to the right; 640x480, 15 fps"),
        "presence": [[round(fin[0], 3), round(fin[-1], 3)]],
        "visitors_distinct": True,
        "gestures": [],
        "gestures_complete": True,
        "tolerance_s": 0.5,
        "notes": (f"presence = first..last frame in which the whole person is inside the frame "
                  f"(standing at the mirror with a small sway from {T_IN} s to {T_LEAVE} s). Fully out of the frame: "
                  f"0.0-{round(vis[0] - 1 / FPS, 3)} s and {round(vis[-1] + 1 / FPS, 3)}-{round(dur, 3)} s "
                  f"(frames at {round(vis[0], 3)}..{round(vis[-1], 3)} s show at least part of the person). "
                  f"{N_FRAMES} frames; frame i is at i/{FPS} s."),
    }
    lab_path = os.path.splitext(a.out)[0] + ".labels.json"
    with open(lab_path, "w") as f:
        json.dump(labels, f, indent=1)
        f.write("\n")
    with open(a.out, "rb") as f:
        data = f.read()
    print(f"wrote {a.out} ({len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()}) and {lab_path}")
    print("presence", labels["presence"], "|", labels["notes"])

    if a.preview:
        import cv2
        os.makedirs(a.preview, exist_ok=True)
        for t in (1.0, 2.8, 3.2, 5.0, 9.0, 10.0, 12.0):
            i = int(round(t * FPS))
            cv2.imwrite(os.path.join(a.preview, f"frame_{i:03d}.png"), cv2.cvtColor(frames[i], cv2.COLOR_RGB2BGR))
    if a.check and not check(a.out, states):
        sys.exit(1)


if __name__ == "__main__":
    main()
