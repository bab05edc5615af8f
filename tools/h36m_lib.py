"""Human3.6M helpers shared by the dataset tools (numpy only, h5py for the original layout).

Mirrors the C++ engine exactly (see docs/geometry.md):
  - camera model: engine/src/camera.cpp (X_cam = R (X - T), radial + tangential distortion);
  - torso plane and attribute labels: engine/src/torso_plane.cpp (total-least-squares plane
    through shoulders, hips and pelvis; normal oriented by up x left_to_right; labels
    0 front / 1 back / 2 on-plane with |d| <= threshold on-plane);
  - attribute joint order: kAttributeJoints in engine/include/dofpose/skeleton.h;
  - action names: canonical_action in engine/src/metrics.cpp ("Walking 1" -> "Walking").
Readers for both source layouts: the per-subject .npz archives with cameras.json, and the
original public layout (MyPoses/3D_positions/*.h5, StackedHourglass/*.h5, cameras.h5).
"""
import glob
import json
import os
import re

import numpy as np

# ---- constants shared with the C++ engine

NUM_JOINTS = 17  # H36M-17
NUM_SH_JOINTS = 16  # MPII-16 (stacked-hourglass detections)
# The four Human3.6M cameras, in the order of cameras.h5 (camera1..camera4).
CAMERA_IDS = ("54138969", "55011271", "58860488", "60457274")
# H36M-17 indices (skeleton.h, namespace h36m).
PELVIS, R_HIP, R_KNEE, R_ANKLE, L_HIP, L_KNEE, L_ANKLE = 0, 1, 2, 3, 4, 5, 6
SPINE, THORAX, NECK_NOSE, HEAD = 7, 8, 9, 10
L_SHOULDER, L_ELBOW, L_WRIST, R_SHOULDER, R_ELBOW, R_WRIST = 11, 12, 13, 14, 15, 16
# kAttributeJoints: the 9 joints whose side of the torso plane is predicted, in this order.
ATTRIBUTE_JOINTS = (L_ELBOW, R_ELBOW, L_WRIST, R_WRIST, L_KNEE, R_KNEE, L_ANKLE, R_ANKLE, HEAD)
ATTRIBUTE_NAMES = ("left elbow", "right elbow", "left wrist", "right wrist", "left knee",
                   "right knee", "left ankle", "right ankle", "head")
# kTorsoPlaneJoints.
TORSO_PLANE_JOINTS = (L_SHOULDER, R_SHOULDER, R_HIP, L_HIP, PELVIS)
FRONT, BACK, ON_PLANE = 0, 1, 2
SIDE_NAMES = ("front", "back", "on-plane")
# The 17 joints of H36M-17 among the 32 of the original files.
H36M32_TO_17 = (0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25, 26, 27)
# The .npz files and the paper's protocol keep every 5th frame of the 50 Hz originals.
SUBSAMPLE = 5
TRAIN_SUBJECTS = ("S1", "S5", "S6", "S7", "S8")
TEST_SUBJECTS = ("S9", "S11")
# Image sizes, which cameras.h5 does not store (they match cameras.json).
IMAGE_SIZE = {"54138969": (1000, 1002), "55011271": (1000, 1000),
              "58860488": (1000, 1000), "60457274": (1000, 1002)}


def canonical_action(name):
    """'Walking 1' -> 'Walking': strips a trailing ' <digits>' (as the C++ canonical_action)."""
    m = re.match(r"^(.+) [0-9]+$", name)
    return m.group(1) if m else name


# ---- camera model


class Camera:
    """One calibrated camera: R (3x3 world->camera), T (centre, world mm), f, c, k (3), p (2)."""

    FIELDS = ("R_world_to_cam", "T_world_mm", "f_px", "c_px", "k_radial", "p_tangential",
              "width", "height")

    def __init__(self, cam_id, R, T, f, c, k, p, width, height):
        self.id = str(cam_id)
        self.R = np.asarray(R, dtype=np.float64).reshape(3, 3)
        self.T = np.asarray(T, dtype=np.float64).reshape(3)
        self.f = np.asarray(f, dtype=np.float64).reshape(2)
        self.c = np.asarray(c, dtype=np.float64).reshape(2)
        self.k = np.asarray(k, dtype=np.float64).reshape(3)
        self.p = np.asarray(p, dtype=np.float64).reshape(2)
        self.width, self.height = int(width), int(height)
        if not np.allclose(self.R @ self.R.T, np.eye(3), atol=1e-4):
            raise ValueError(f"camera {self.id}: R_world_to_cam is not a rotation matrix")

    @classmethod
    def from_json(cls, cam_id, d, where=""):
        missing = [f for f in cls.FIELDS if f not in d]
        if missing:
            raise ValueError(f"{where} camera {cam_id}: missing fields {missing}")
        return cls(cam_id, d["R_world_to_cam"], d["T_world_mm"], d["f_px"], d["c_px"],
                   d["k_radial"], d["p_tangential"], d["width"], d["height"])

    def to_json(self):
        return {"R_world_to_cam": self.R.tolist(), "T_world_mm": self.T.tolist(),
                "f_px": self.f.tolist(), "c_px": self.c.tolist(), "k_radial": self.k.tolist(),
                "p_tangential": self.p.tolist(), "width": self.width, "height": self.height}

    def world_to_camera(self, x_world):
        """X_cam = R (X_world - T); any leading shape, last axis 3; float64."""
        x = np.asarray(x_world, dtype=np.float64)
        return (x - self.T) @ self.R.T

    def camera_to_pixels(self, x_cam, distort=True):
        """Pixels of camera-frame points (camera_to_pixels in camera.cpp); float64."""
        x = np.asarray(x_cam, dtype=np.float64)
        u = x[..., 0] / x[..., 2]
        v = x[..., 1] / x[..., 2]
        if distort:
            k1, k2, k3 = self.k
            p1, p2 = self.p
            r2 = u * u + v * v
            radial = 1.0 + k1 * r2 + k2 * r2 * r2 + k3 * r2 * r2 * r2
            tan = p1 * v + p2 * u
            u, v = u * (radial + tan) + p2 * r2, v * (radial + tan) + p1 * r2
        return np.stack([self.f[0] * u + self.c[0], self.f[1] * v + self.c[1]], axis=-1)


def load_cameras_json(path):
    """{subject: {camera id: Camera}} from shared/data/h36m/cameras.json."""
    with open(path) as f:
        raw = json.load(f)
    return {s: {cid: Camera.from_json(cid, d, f"{path} subject {s}") for cid, d in cams.items()}
            for s, cams in raw.items()}


def load_cameras_h5(path):
    """{subject: {camera id: Camera}} from the original cameras.h5.

    Groups subject<k>/camera<i> hold R (the TRANSPOSE of R_world_to_cam, as Matlab wrote it),
    T (3,1), f, c, k, p and Name (the camera id as character codes).
    """
    import h5py
    out = {}
    with h5py.File(path, "r") as f:
        for sname in f:
            m = re.match(r"^subject([0-9]+)$", sname)
            if not m:
                continue  # e.g. "3dtest"
            cams = {}
            for i in range(1, 5):
                g = f[f"{sname}/camera{i}"]
                cid = "".join(chr(int(x)) for x in np.asarray(g["Name"]).ravel())
                w, h = IMAGE_SIZE.get(cid, (1000, 1000))
                cams[cid] = Camera(cid, np.asarray(g["R"]).T, np.asarray(g["T"]).ravel(),
                                   np.asarray(g["f"]).ravel(), np.asarray(g["c"]).ravel(),
                                   np.asarray(g["k"]).ravel(), np.asarray(g["p"]).ravel(), w, h)
            out["S" + m.group(1)] = cams
    return out


# ---- torso plane and attributes


def fit_torso_plane(poses):
    """Total-least-squares plane of the 5 torso joints for poses [..., 17, 3].

    Returns (centroid [..., 3], unit normal [..., 3]) in float64, the normal pointing to the
    front of the body (fit_torso_plane in torso_plane.cpp).
    """
    p = np.asarray(poses, dtype=np.float64)
    pts = p[..., TORSO_PLANE_JOINTS, :]
    centroid = pts.mean(axis=-2)
    d = pts - centroid[..., None, :]
    scatter = np.einsum("...ji,...jk->...ik", d, d)
    _, vecs = np.linalg.eigh(scatter)  # ascending eigenvalues
    normal = vecs[..., :, 0]
    up = p[..., THORAX, :] - p[..., PELVIS, :]
    left_to_right = (p[..., R_HIP, :] - p[..., L_HIP, :]) + (p[..., R_SHOULDER, :] - p[..., L_SHOULDER, :])
    forward = np.cross(up, left_to_right)
    sign = np.where(np.einsum("...i,...i->...", normal, forward) < 0, -1.0, 1.0)
    return centroid, normal * sign[..., None]


def attribute_distances(poses):
    """Signed distances (mm, positive in front) of the 9 attribute joints: [..., 9] float64."""
    p = np.asarray(poses, dtype=np.float64)
    centroid, normal = fit_torso_plane(p)
    rel = p[..., ATTRIBUTE_JOINTS, :] - centroid[..., None, :]
    return np.einsum("...ai,...i->...a", rel, normal)


def classify_distances(distances, threshold_mm):
    """0 front (d > t), 1 back (d < -t), 2 on-plane (|d| <= t), as uint8."""
    if not (threshold_mm >= 0 and np.isfinite(threshold_mm)):
        raise ValueError(f"threshold {threshold_mm} mm must be finite and >= 0")
    d = np.asarray(distances)
    out = np.full(d.shape, ON_PLANE, dtype=np.uint8)
    out[d > threshold_mm] = FRONT
    out[d < -threshold_mm] = BACK
    return out


def attribute_labels(poses, threshold_mm):
    """Labels [..., 9] uint8 of poses [..., 17, 3] (torso_attribute_labels in C++)."""
    return classify_distances(attribute_distances(poses), threshold_mm)


def class_balance(distances, thresholds_mm):
    """For each threshold: counts [9 joints, 3 sides] of the distances [N, 9]."""
    d = np.asarray(distances).reshape(-1, len(ATTRIBUTE_JOINTS))
    out = []
    for t in thresholds_mm:
        lab = classify_distances(d, t)
        out.append(np.stack([(lab == s).sum(axis=0) for s in (FRONT, BACK, ON_PLANE)], axis=1))
    return out


# ---- source readers


class Sequence:
    """One recorded sequence of one subject: world poses at 10 Hz and the detections per camera."""

    def __init__(self, subject, name, pos3d, frames, sh2d):
        self.subject = subject
        self.name = name
        self.action = canonical_action(name)
        self.pos3d = pos3d  # float32 [N, 17, 3], world mm
        self.frames = frames  # int32 [N], index in the 50 Hz original
        self.sh2d = sh2d  # {camera id: float32 [N, 16, 2]}

    def truncated(self, max_frames):
        if max_frames is None or max_frames >= len(self.frames):
            return self
        n = max_frames
        return Sequence(self.subject, self.name, self.pos3d[:n], self.frames[:n],
                        {c: v[:n] for c, v in self.sh2d.items()})


def action_selected(seq_name, actions):
    """True when no filter is given, or the sequence or its canonical action is listed."""
    return not actions or seq_name in actions or canonical_action(seq_name) in actions


def subject_sort_key(name):
    m = re.match(r"^S([0-9]+)$", name)
    return (0, int(m.group(1)), name) if m else (1, 0, name)


def npz_subjects(data_dir):
    """The subjects that have a <subject>.npz in data_dir (S1, S5, ... in numeric order)."""
    try:
        files = os.listdir(data_dir)
    except OSError:
        return []
    names = [f[:-4] for f in files if re.match(r"^S[0-9]+\.npz$", f)
             and os.path.isfile(os.path.join(data_dir, f))]
    return sorted(names, key=subject_sort_key)


def resolve_subjects(requested, available, where):
    """Canonical names of the requested subjects ("s1" is S1; a bare "1" is not).

    Raises ValueError naming the first unknown or repeated one and listing `available`
    (`where(subject)` says where it was looked for).
    """
    by_upper = {s.upper(): s for s in available}
    out = []
    for r in requested:
        s = by_upper.get(r.strip().upper())
        if s is None:
            have = ", ".join(available) if available else "none"
            raise ValueError(f"unknown subject {r} ({where(r)} not found; available: {have})")
        if s in out:
            raise ValueError(f"subject {s} is listed twice")
        out.append(s)
    return out


def check_actions(requested, sequence_names, where):
    """Raises ValueError naming each requested action or sequence that none of
    `sequence_names` matches (action_selected's rule), listing the actions there are."""
    known = set(sequence_names) | {canonical_action(n) for n in sequence_names}
    unknown = [a for a in requested if a not in known]
    if unknown:
        actions = sorted({canonical_action(n) for n in sequence_names})
        raise ValueError(f"unknown action{'s' if len(unknown) > 1 else ''} "
                         f"{', '.join(repr(a) for a in unknown)} in {where} (actions there, "
                         f"case-sensitive: {', '.join(actions)}; a sequence name such as "
                         f"'Walking 1' works too)")


def original_sequence_names(data_dir, subject):
    """The sequence names of a subject in the original layout (from its pose file names)."""
    pose_dir = os.path.join(original_root(data_dir), subject, "MyPoses", "3D_positions")
    return sorted(os.path.basename(p)[:-3].replace("_", " ")
                  for p in glob.glob(os.path.join(pose_dir, "*.h5")))


def npz_sequence_names(path):
    with np.load(path) as z:
        return sorted({k.split("/")[0] for k in z.files})


def read_npz_subject(data_dir, subject, actions=None):
    """Yields the Sequences of shared/data/h36m/<subject>.npz (sorted by name)."""
    path = os.path.join(data_dir, f"{subject}.npz")
    with np.load(path) as z:
        names = sorted({k.split("/")[0] for k in z.files})
        for name in names:
            if not action_selected(name, actions):
                continue
            pos3d = np.asarray(z[f"{name}/pos3d"], dtype=np.float32)
            frames = np.asarray(z[f"{name}/frames"], dtype=np.int32)
            n = pos3d.shape[0]
            if pos3d.shape != (n, NUM_JOINTS, 3) or frames.shape != (n,):
                raise ValueError(f"{path}: {name}: pos3d {pos3d.shape} / frames {frames.shape}, "
                                 f"expected (N,17,3) / (N,)")
            sh2d = {}
            for cid in CAMERA_IDS:
                key = f"{name}/sh2d/{cid}"
                if key not in z.files:
                    raise ValueError(f"{path}: missing {key}")
                sh = np.asarray(z[key], dtype=np.float32)
                if sh.shape != (n, NUM_SH_JOINTS, 2):
                    raise ValueError(f"{path}: {key} has shape {sh.shape}, expected ({n},16,2)")
                sh2d[cid] = sh
            yield Sequence(subject, name, pos3d, frames, sh2d)


def original_root(data_dir):
    """The folder with cameras.h5 of the original layout: data_dir itself or data_dir/original."""
    for d in (data_dir, os.path.join(data_dir, "original")):
        if os.path.isfile(os.path.join(d, "cameras.h5")):
            return d
    raise FileNotFoundError(f"no cameras.h5 in {data_dir} or {os.path.join(data_dir, 'original')} "
                            f"(the original layout)")


def _sh_file(root, subject, seq_name, cid):
    """The stacked-hourglass file of a sequence; public copies name some sequences differently."""
    d = os.path.join(root, subject, "StackedHourglass")
    variants = [seq_name, seq_name.replace(" ", "_"),
                seq_name.replace("Photo", "TakingPhoto").replace("WalkDog", "WalkingDog")]
    for v in variants:
        p = os.path.join(d, f"{v}.{cid}.h5")
        if os.path.isfile(p):
            return p
    raise FileNotFoundError(f"no stacked-hourglass file for {subject} '{seq_name}' camera {cid} "
                            f"in {d} (tried {', '.join(repr(v) for v in variants)})")


def original_subjects(data_dir):
    root = original_root(data_dir)
    return sorted(os.path.basename(p) for p in glob.glob(os.path.join(root, "S*"))
                  if os.path.isdir(os.path.join(p, "MyPoses", "3D_positions")))


def read_original_subject(data_dir, subject, actions=None):
    """Yields the Sequences of the original layout: 32-joint 50 Hz poses -> H36M-17 at 10 Hz."""
    import h5py
    root = original_root(data_dir)
    pose_dir = os.path.join(root, subject, "MyPoses", "3D_positions")
    files = sorted(glob.glob(os.path.join(pose_dir, "*.h5")))
    if not files:
        raise FileNotFoundError(f"no pose files {pose_dir}/*.h5")
    for path in files:
        name = os.path.basename(path)[:-3].replace("_", " ")
        if not action_selected(name, actions):
            continue
        with h5py.File(path, "r") as f:
            raw = np.asarray(f["3D_positions"], dtype=np.float64)  # (96, N): joint-major columns
        if raw.ndim != 2 or raw.shape[0] != 96:
            raise ValueError(f"{path}: 3D_positions has shape {raw.shape}, expected (96, N)")
        full = raw.T.reshape(-1, 32, 3)
        keep = np.arange(0, full.shape[0], SUBSAMPLE)
        pos3d = full[keep][:, H36M32_TO_17].astype(np.float32)
        sh2d = {}
        for cid in CAMERA_IDS:
            shp = _sh_file(root, subject, name, cid)
            with h5py.File(shp, "r") as f:
                sh = np.asarray(f["poses"], dtype=np.float32)
            if sh.ndim != 3 or sh.shape[1:] != (NUM_SH_JOINTS, 2):
                raise ValueError(f"{shp}: poses has shape {sh.shape}, expected (N,16,2)")
            if sh.shape[0] != full.shape[0]:
                raise ValueError(f"{shp}: {sh.shape[0]} frames, but {path} has {full.shape[0]}")
            sh2d[cid] = sh[keep]
        yield Sequence(subject, name, pos3d, keep.astype(np.int32), sh2d)


if __name__ == "__main__":
    import argparse
    parser = argparse.ArgumentParser(
        prog="h36m_lib.py", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="This is a library module, not a command: import it from Python "
               "(sys.path.insert(0, 'tools'); import h36m_lib as H). The commands that use it "
               "are tools/h36m_import.py and tools/attribute_threshold.py (docs/data.md, "
               "docs/attributes.md).",
    )
    parser.parse_args()  # --help prints the text below; anything else is a usage error
    parser.print_help()
