#!/usr/bin/env python3
"""Imports Human3.6M into dofpose dataset files (one safetensors file per split).

Every (subject, sequence, camera, frame) becomes one row: the camera-frame 3D pose (mm,
absolute, not pelvis-centred), its projection with distortion, the stacked-hourglass
detections, the 9 torso-plane attribute labels, and indices into the metadata lists.
Format and protocol: docs/data.md; attributes and threshold: docs/attributes.md.

    /usr/bin/python3 tools/h36m_import.py --data ../shared/data/h36m --out ~/.cache/dofpose/h36m
    /usr/bin/python3 tools/h36m_import.py --data ../shared/data/h36m --out DIR \
        --split test --subjects S9 --actions Walking --max-frames 50 [--layout original]

Needs numpy (and h5py for --layout original). Files are written atomically.
"""
import argparse
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "weights_tools"))
import h36m_lib as H  # noqa: E402
import safetensors_np  # noqa: E402

FORMAT_VERSION = "1"
# Chosen by tools/attribute_threshold.py on S1,S5,S6,S7,S8 (docs/attributes.md).
DEFAULT_THRESHOLD_MM = 70.0
DEFAULT_SPLITS = {"train": H.TRAIN_SUBJECTS, "test": H.TEST_SUBJECTS}


class Progress:
    """A one-line text progress bar on stderr, counting camera-frames."""

    def __init__(self, total, label):
        self.total, self.label, self.done = max(1, total), label, 0
        self.start = self.last = time.monotonic()
        self.tty = sys.stderr.isatty()

    def add(self, n, what):
        self.done += n
        now = time.monotonic()
        if now - self.last >= 0.2 or self.done >= self.total:
            self.last = now
            frac = min(1.0, self.done / self.total)
            bar = "#" * int(30 * frac) + "-" * (30 - int(30 * frac))
            line = (f"{self.label} [{bar}] {self.done}/{self.total} camera-frames "
                    f"{100 * frac:5.1f}% {now - self.start:6.1f}s {what}")
            sys.stderr.write("\r" + line[:119].ljust(119))
            sys.stderr.flush()

    def finish(self):
        sys.stderr.write("\n")
        sys.stderr.flush()


def add_cameras_from_h5(data_dir, cameras):
    """Fills subjects that cameras.json lacks from the original cameras.h5 when it is there
    (it also calibrates S11, so an S11.npz added later imports without a new cameras.json).
    Returns the subjects added."""
    h5 = os.path.join(data_dir, "original", "cameras.h5")
    if not os.path.isfile(h5):
        return set()
    try:
        extra = H.load_cameras_h5(h5)
    except ImportError:
        return set()  # no h5py: cameras.json alone
    added = {s for s in extra if s not in cameras}
    cameras.update({s: extra[s] for s in added})
    return added


def source_reader(args):
    """(sequence generator function, cameras per subject, subject file path function)."""
    if args.layout == "npz":
        cameras = H.load_cameras_json(os.path.join(args.data, "cameras.json"))
        args.cameras_from_h5 = add_cameras_from_h5(args.data, cameras)
        return (lambda s, acts: H.read_npz_subject(args.data, s, acts), cameras,
                lambda s: os.path.join(args.data, f"{s}.npz"))
    root = H.original_root(args.data)
    cameras = H.load_cameras_h5(os.path.join(root, "cameras.h5"))
    return (lambda s, acts: H.read_original_subject(args.data, s, acts), cameras,
            lambda s: os.path.join(root, s, "MyPoses", "3D_positions"))


def resolve_splits(args, subject_path):
    """[(split name, [subjects])]: explicit --subjects must exist; default ones may be absent."""
    names = [s for s in args.split.split(",") if s] if args.split else None
    if args.subjects:
        subjects = [s for s in args.subjects.split(",") if s]
        if names is None:
            if all(s in H.TRAIN_SUBJECTS for s in subjects):
                names = ["train"]
            elif all(s in H.TEST_SUBJECTS for s in subjects):
                names = ["test"]
            else:
                raise SystemExit("error: --subjects mixes training and test subjects; name the "
                                 "output with --split NAME")
        if len(names) != 1:
            raise SystemExit(f"error: with --subjects, --split must be one name, got {args.split!r}")
        for s in subjects:
            if not os.path.exists(subject_path(s)):
                raise SystemExit(f"error: subject {s}: missing {subject_path(s)}")
        return [(names[0], subjects)]
    out = []
    for name in names or ["train", "test"]:
        if name not in DEFAULT_SPLITS:
            raise SystemExit(f"error: unknown split {name!r} (train, test, or give --subjects)")
        present = [s for s in DEFAULT_SPLITS[name] if os.path.exists(subject_path(s))]
        for s in DEFAULT_SPLITS[name]:
            if s not in present:
                print(f"note: split {name}: subject {s} skipped, {subject_path(s)} not found",
                      file=sys.stderr)
        if not present:
            raise SystemExit(f"error: split {name}: none of {', '.join(DEFAULT_SPLITS[name])} found")
        out.append((name, present))
    return out


def import_split(split, subjects, args, read_subject, cameras):
    """Builds the tensors and metadata of one split, streaming one subject at a time."""
    actions_filter = [a for a in args.actions.split(",") if a] if args.actions else None
    # Pass 1: the selected sequences' lengths, for the progress bar and the name lists.
    plan = {}
    for s in subjects:
        if s not in cameras:
            raise SystemExit(f"error: no cameras for subject {s} in the camera file")
        if s in getattr(args, "cameras_from_h5", ()):
            print(f"note: subject {s}: cameras from original/cameras.h5 (not in cameras.json)",
                  file=sys.stderr)
        missing = [c for c in H.CAMERA_IDS if c not in cameras[s]]
        if missing:
            raise SystemExit(f"error: subject {s}: cameras {missing} missing from the camera file")
        plan[s] = [(q.name, len(q.truncated(args.max_frames).frames))
                   for q in read_subject(s, actions_filter)]
    seq_names = sorted({name for seqs in plan.values() for name, _ in seqs})
    action_names = sorted({H.canonical_action(n) for n in seq_names})
    total = len(H.CAMERA_IDS) * sum(n for seqs in plan.values() for _, n in seqs)
    if total == 0:
        raise SystemExit(f"error: split {split}: no frames selected (subjects {subjects}, "
                         f"actions {actions_filter})")

    parts = {k: [] for k in ("pose3d_cam", "pose2d_gt", "pose2d_sh", "attributes", "subject",
                             "action", "sequence", "camera", "frame")}
    counts = {}
    bar = Progress(total, split)
    for si, s in enumerate(subjects):
        counts[s] = 0
        for seq in read_subject(s, actions_filter):
            seq = seq.truncated(args.max_frames)
            n = len(seq.frames)
            if n == 0:
                continue
            if not np.isfinite(seq.pos3d).all():
                raise SystemExit(f"error: {s} '{seq.name}': non-finite 3D coordinates")
            for ci, cid in enumerate(H.CAMERA_IDS):
                cam = cameras[s][cid]
                xc = cam.world_to_camera(seq.pos3d)  # float64
                if (xc[..., 2] <= 0).any():
                    raise SystemExit(f"error: {s} '{seq.name}' camera {cid}: a joint is behind "
                                     f"the camera")
                pose3d = xc.astype(np.float32)
                parts["pose3d_cam"].append(pose3d)
                parts["pose2d_gt"].append(cam.camera_to_pixels(xc).astype(np.float32))
                parts["pose2d_sh"].append(np.ascontiguousarray(seq.sh2d[cid], dtype=np.float32))
                # From the stored float32 coordinates: exactly what a reader of the file sees.
                parts["attributes"].append(H.attribute_labels(pose3d, args.threshold))
                parts["subject"].append(np.full(n, si, np.int32))
                parts["action"].append(np.full(n, action_names.index(seq.action), np.int32))
                parts["sequence"].append(np.full(n, seq_names.index(seq.name), np.int32))
                parts["camera"].append(np.full(n, ci, np.int32))
                parts["frame"].append(seq.frames.astype(np.int32))
                counts[s] += n
                bar.add(n, f"{s} {seq.name}")
    bar.finish()
    tensors = {k: np.concatenate(v, axis=0) for k, v in parts.items()}
    del parts
    cams_meta = {"ids": list(H.CAMERA_IDS),
                 "per_subject": {s: {c: cameras[s][c].to_json() for c in H.CAMERA_IDS}
                                 for s in subjects}}
    metadata = {
        "format_version": FORMAT_VERSION,
        "kind": "dataset",
        "dataset": "h36m",
        "split": split,
        "subjects": json.dumps(subjects),
        "actions": json.dumps(action_names),
        "sequences": json.dumps(seq_names),
        "cameras": json.dumps(cams_meta),
        "threshold_mm": repr(float(args.threshold)),
        "fps": "10",
        "layouts": json.dumps({"pose3d_cam": "h36m17", "pose2d_gt": "h36m17",
                               "pose2d_sh": "mpii16"}),
        "attribute_joints": json.dumps(list(H.ATTRIBUTE_NAMES)),
        "attribute_classes": json.dumps(list(H.SIDE_NAMES)),
        "source": json.dumps({"path": os.path.abspath(args.data), "layout": args.layout,
                              "actions_filter": actions_filter, "max_frames": args.max_frames}),
        "frames_per_subject": json.dumps(counts),
    }
    return tensors, metadata


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="shared/data/h36m (the .npz files and cameras.json)")
    ap.add_argument("--out", default=os.path.expanduser("~/.cache/dofpose/h36m"),
                    help="output folder (outside the repository); gets <split>.safetensors")
    ap.add_argument("--split", default=None,
                    help="train, test or train,test (default both); with --subjects: the file name")
    ap.add_argument("--subjects", default=None, help="comma-separated, e.g. S1,S5 (must exist)")
    ap.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD_MM,
                    help=f"on-plane threshold in mm (default {DEFAULT_THRESHOLD_MM:g})")
    ap.add_argument("--actions", default=None,
                    help="comma-separated actions or sequences (Walking takes Walking and Walking 1)")
    ap.add_argument("--max-frames", type=int, default=None,
                    help="keep the first N (10 Hz) frames of each sequence")
    ap.add_argument("--layout", choices=("npz", "original"), default="npz",
                    help="npz: <subject>.npz + cameras.json; original: MyPoses/StackedHourglass h5")
    args = ap.parse_args(argv)
    if not (args.threshold >= 0 and np.isfinite(args.threshold)):
        raise SystemExit(f"error: --threshold {args.threshold} must be finite and >= 0")
    if args.max_frames is not None and args.max_frames < 1:
        raise SystemExit("error: --max-frames must be >= 1")
    if not os.path.isdir(args.data):
        raise SystemExit(f"error: --data {args.data} is not a folder")
    if args.layout == "npz" and not os.path.isfile(os.path.join(args.data, "cameras.json")):
        raise SystemExit(f"error: missing {os.path.join(args.data, 'cameras.json')}")
    read_subject, cameras, subject_path = source_reader(args)
    splits = resolve_splits(args, subject_path)
    os.makedirs(args.out, exist_ok=True)
    for split, subjects in splits:
        t0 = time.monotonic()
        tensors, metadata = import_split(split, subjects, args, read_subject, cameras)
        path = os.path.join(args.out, f"{split}.safetensors")
        safetensors_np.save(path, tensors, metadata)
        m = tensors["frame"].shape[0]
        print(f"{path}: {m} camera-frames ({m // len(H.CAMERA_IDS)} poses x "
              f"{len(H.CAMERA_IDS)} cameras), subjects {','.join(subjects)}, "
              f"{len(json.loads(metadata['actions']))} actions, "
              f"{os.path.getsize(path) / 1e6:.1f} MB, {time.monotonic() - t0:.1f} s")


if __name__ == "__main__":
    main()
