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

PROG = "h36m_import.py"
REPO_ROOT = os.path.dirname(HERE)
FORMAT_VERSION = "1"
# Chosen by tools/attribute_threshold.py on S1,S5,S6,S7,S8 (docs/attributes.md).
DEFAULT_THRESHOLD_MM = 70.0
DEFAULT_SPLITS = {"train": H.TRAIN_SUBJECTS, "test": H.TEST_SUBJECTS}


class ToolError(Exception):
    """Bad input: main() prints it as `h36m_import.py: error: ...` and exits 2."""


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
    """(sequence generator function, cameras per subject, subject file path function,
    subjects present, sequence names function)."""
    if args.layout == "npz":
        cameras = H.load_cameras_json(os.path.join(args.data, "cameras.json"))
        args.cameras_from_h5 = add_cameras_from_h5(args.data, cameras)
        return (lambda s, acts: H.read_npz_subject(args.data, s, acts), cameras,
                lambda s: os.path.join(args.data, f"{s}.npz"), H.npz_subjects(args.data),
                lambda s: H.npz_sequence_names(os.path.join(args.data, f"{s}.npz")))
    root = H.original_root(args.data)
    cameras = H.load_cameras_h5(os.path.join(root, "cameras.h5"))
    return (lambda s, acts: H.read_original_subject(args.data, s, acts), cameras,
            lambda s: os.path.join(root, s, "MyPoses", "3D_positions"),
            sorted(H.original_subjects(args.data), key=H.subject_sort_key),
            lambda s: H.original_sequence_names(args.data, s))


def resolve_splits(args, subject_path, available):
    """[(split name, [subjects])]: explicit --subjects must exist (matched case-insensitively:
    s1 is S1); default ones may be absent."""
    names = [s for s in args.split.split(",") if s] if args.split else None
    if args.subjects:
        requested = [s for s in args.subjects.split(",") if s.strip()]
        if not requested:
            raise ToolError(f"--subjects {args.subjects!r} names no subject "
                            f"(available: {', '.join(available) or 'none'})")
        try:
            subjects = H.resolve_subjects(requested, available, subject_path)
        except ValueError as e:
            raise ToolError(f"--subjects: {e}") from None
        if names is None:
            train = [s for s in subjects if s in H.TRAIN_SUBJECTS]
            test = [s for s in subjects if s in H.TEST_SUBJECTS]
            other = [s for s in subjects if s not in train and s not in test]
            if not other and not test:
                names = ["train"]
            elif not other and not train:
                names = ["test"]
            elif other:
                raise ToolError(f"--subjects: {','.join(other)} belong to neither the training "
                                f"({','.join(H.TRAIN_SUBJECTS)}) nor the test "
                                f"({','.join(H.TEST_SUBJECTS)}) split; name the output with "
                                f"--split NAME")
            else:
                raise ToolError(f"--subjects mixes training ({','.join(train)}) and test "
                                f"({','.join(test)}) subjects; name the output with --split NAME")
        if len(names) != 1:
            raise ToolError(f"with --subjects, --split must be one name, got {args.split!r}")
        return [(names[0], subjects)]
    out = []
    for name in names or ["train", "test"]:
        if name not in DEFAULT_SPLITS:
            raise ToolError(f"unknown split {name!r} (train, test, or give --subjects)")
        present = [s for s in DEFAULT_SPLITS[name] if os.path.exists(subject_path(s))]
        for s in DEFAULT_SPLITS[name]:
            if s not in present:
                print(f"note: split {name}: subject {s} skipped, {subject_path(s)} not found",
                      file=sys.stderr)
        if not present:
            raise ToolError(f"split {name}: none of {', '.join(DEFAULT_SPLITS[name])} found")
        out.append((name, present))
    return out


def import_split(split, subjects, args, read_subject, cameras, sequence_names):
    """Builds the tensors and metadata of one split, streaming one subject at a time."""
    actions_filter = [a for a in args.actions.split(",") if a] if args.actions else None
    if actions_filter:
        try:
            H.check_actions(actions_filter, [n for s in subjects for n in sequence_names(s)],
                            f"subject{'s' if len(subjects) > 1 else ''} {','.join(subjects)}")
        except ValueError as e:
            raise ToolError(f"--actions: {e}") from None
    # Pass 1: the selected sequences' lengths, for the progress bar and the name lists.
    plan = {}
    for s in subjects:
        if s not in cameras:
            raise ToolError(f"no cameras for subject {s} in the camera file")
        if s in getattr(args, "cameras_from_h5", ()):
            print(f"note: subject {s}: cameras from original/cameras.h5 (not in cameras.json)",
                  file=sys.stderr)
        missing = [c for c in H.CAMERA_IDS if c not in cameras[s]]
        if missing:
            raise ToolError(f"subject {s}: cameras {missing} missing from the camera file")
        plan[s] = [(q.name, len(q.truncated(args.max_frames).frames))
                   for q in read_subject(s, actions_filter)]
    seq_names = sorted({name for seqs in plan.values() for name, _ in seqs})
    action_names = sorted({H.canonical_action(n) for n in seq_names})
    total = len(H.CAMERA_IDS) * sum(n for seqs in plan.values() for _, n in seqs)
    if total == 0:
        raise ToolError(f"split {split}: no frames selected (subjects {subjects}, "
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
                raise ToolError(f"{s} '{seq.name}': non-finite 3D coordinates")
            for ci, cid in enumerate(H.CAMERA_IDS):
                cam = cameras[s][cid]
                xc = cam.world_to_camera(seq.pos3d)  # float64
                if (xc[..., 2] <= 0).any():
                    raise ToolError(f"{s} '{seq.name}' camera {cid}: a joint is behind "
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


def inside_repository(path):
    """True when path (which need not exist yet) is the repository or lies inside it, except
    under a top-level build*/ folder: git ignores those (.gitignore), so data written there
    cannot be committed (docs/results.md imports into build-data/h36m)."""
    real, repo = os.path.realpath(path), os.path.realpath(REPO_ROOT)
    if os.path.commonpath([real, repo]) != repo:
        return False
    parts = os.path.relpath(real, repo).split(os.sep)
    return not (len(parts) >= 2 and parts[0].startswith("build"))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="shared/data/h36m (the .npz files and cameras.json)")
    ap.add_argument("--out", default=os.path.expanduser("~/.cache/dofpose/h36m"),
                    help="output folder, outside the repository (inside it only under a git-ignored "
                         "build*/ folder such as build-data/h36m; anywhere else in it is refused); "
                         "gets <split>.safetensors (default ~/.cache/dofpose/h36m)")
    ap.add_argument("--split", default=None,
                    help="train, test or train,test (default both); with --subjects: the file name")
    ap.add_argument("--subjects", default=None, help="comma-separated, e.g. S1,S5 (must be in --data; case-insensitive)")
    ap.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD_MM,
                    help=f"on-plane threshold in mm (default {DEFAULT_THRESHOLD_MM:g})")
    ap.add_argument("--actions", default=None,
                    help="comma-separated actions or sequences (Walking takes Walking and Walking 1)")
    ap.add_argument("--max-frames", type=int, default=None,
                    help="keep the first N (10 Hz) frames of each sequence")
    ap.add_argument("--layout", choices=("npz", "original"), default="npz",
                    help="npz: <subject>.npz + cameras.json; original: MyPoses/StackedHourglass h5")
    args = ap.parse_args(argv)
    try:
        return run(args)
    except ToolError as e:
        msg = str(e)
    except (ValueError, OSError) as e:  # unreadable or malformed source files (h36m_lib)
        msg = f"{e}" if isinstance(e, ValueError) else f"{e.filename or ''}: {e.strerror or e}"
    print(f"{PROG}: error: {msg}", file=sys.stderr)
    return 2


def run(args):
    if inside_repository(args.out):
        raise ToolError(f"--out {args.out} is inside the repository ({os.path.realpath(REPO_ROOT)}), "
                        f"where Human3.6M data must not go: give a folder outside it (default "
                        f"~/.cache/dofpose/h36m) or under a git-ignored build*/ folder of it "
                        f"(e.g. build-data/h36m)")
    if not (args.threshold >= 0 and np.isfinite(args.threshold)):
        raise ToolError(f"--threshold {args.threshold} must be finite and >= 0")
    if args.max_frames is not None and args.max_frames < 1:
        raise ToolError("--max-frames must be >= 1")
    if not os.path.isdir(args.data):
        raise ToolError(f"--data {args.data} is not a folder")
    if args.layout == "npz" and not os.path.isfile(os.path.join(args.data, "cameras.json")):
        raise ToolError(f"missing {os.path.join(args.data, 'cameras.json')}")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise ToolError(f"--out {args.out} exists and is not a folder")
    read_subject, cameras, subject_path, available, sequence_names = source_reader(args)
    splits = resolve_splits(args, subject_path, available)
    for split, subjects in splits:
        t0 = time.monotonic()
        tensors, metadata = import_split(split, subjects, args, read_subject, cameras,
                                         sequence_names)
        os.makedirs(args.out, exist_ok=True)
        path = os.path.join(args.out, f"{split}.safetensors")
        safetensors_np.save(path, tensors, metadata)
        m = tensors["frame"].shape[0]
        print(f"{path}: {m} camera-frames ({m // len(H.CAMERA_IDS)} poses x "
              f"{len(H.CAMERA_IDS)} cameras), subjects {','.join(subjects)}, "
              f"{len(json.loads(metadata['actions']))} actions, "
              f"{os.path.getsize(path) / 1e6:.1f} MB, {time.monotonic() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
