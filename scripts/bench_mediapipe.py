#!/usr/bin/env python3
"""MediaPipe's side of scripts/bench-vs-mediapipe.sh: one clip, one fresh process, one JSON line.

What runs is the anchor the issue names: the legacy solutions Hands (model_complexity 0, two
hands) and Pose (model_complexity 0) in video mode, both `process()`ed on every RGB frame.
Decoding and the BGR->RGB conversion happen outside the timed region (MediaPipe is given its
best case); only the two `process()` calls are timed, in wall time and in process CPU time
(`time.process_time()`, every thread of the process: MediaPipe's graph threads and TFLite's).
Frames are decoded one at a time, so peak RSS is the models' and the graph's, not a frame cache.
"""

import argparse
import json
import resource
import statistics
import sys
import time


def quantile(sorted_values, q):
    """The q-quantile by nearest rank (matches how `mirrorsight bench` reports p50/p95)."""
    if not sorted_values:
        return 0.0
    rank = max(1, int(-(-q * len(sorted_values) // 1)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clip")
    args = parser.parse_args()

    import cv2
    import mediapipe as mp

    capture = cv2.VideoCapture(args.clip)
    if not capture.isOpened():
        sys.exit(f"bench_mediapipe: cannot open {args.clip}")
    hands = mp.solutions.hands.Hands(
        static_image_mode=False, model_complexity=0, max_num_hands=2
    )
    pose = mp.solutions.pose.Pose(static_image_mode=False, model_complexity=0)

    per_frame_s = []
    cpu_s = 0.0
    wall_s = 0.0
    hands_seen = 0
    poses_seen = 0
    width = height = 0
    while True:
        ok, bgr = capture.read()
        if not ok:
            break
        height, width = bgr.shape[:2]
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        rgb.flags.writeable = False
        cpu0 = time.process_time()
        wall0 = time.perf_counter()
        hand_result = hands.process(rgb)
        pose_result = pose.process(rgb)
        wall1 = time.perf_counter()
        cpu1 = time.process_time()
        per_frame_s.append(wall1 - wall0)
        wall_s += wall1 - wall0
        cpu_s += cpu1 - cpu0
        hands_seen += hand_result.multi_hand_landmarks is not None
        poses_seen += pose_result.pose_landmarks is not None
    hands.close()
    pose.close()
    frames = len(per_frame_s)
    if frames == 0:
        sys.exit(f"bench_mediapipe: {args.clip} has no decodable frame")
    ordered = sorted(per_frame_s)
    print(
        json.dumps(
            {
                "runner": "mediapipe",
                "version": mp.__version__,
                "clip": args.clip,
                "width": width,
                "height": height,
                "frames": frames,
                "wall_s": wall_s,
                "fps": frames / wall_s,
                "cpu_s": cpu_s,
                "cpu_ms_per_frame": 1000.0 * cpu_s / frames,
                "frame_p50_ms": 1000.0 * quantile(ordered, 0.5),
                "frame_p95_ms": 1000.0 * quantile(ordered, 0.95),
                "frame_mean_ms": 1000.0 * statistics.fmean(per_frame_s),
                # ru_maxrss is in KiB on Linux.
                "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
                "frames_with_hands": hands_seen,
                "frames_with_pose": poses_seen,
            }
        )
    )


if __name__ == "__main__":
    main()
