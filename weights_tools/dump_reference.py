#!/usr/bin/env python3
"""Dump every layer output of the PyTorch reference model, named like `dofpose forward --dump`.

    dump_reference.py MODEL.safetensors INPUT.npy OUT_DIR [--attributes A.npy]

Builds the PyTorch twin of the model file (weights_tools/reference_hourglass.py
or reference_lifter.py, from the file's metadata kind/config), loads its
weights, runs it in eval mode on the input exactly as `dofpose forward` does
(lifters: normalised with the stored statistics, outputs de-normalised), and
writes the output of every module call as OUT_DIR/<index>_<module name>.npy
via forward hooks. Module names are named_modules() names = the dofpose layer
names; a module used in several places (the hourglass's shared nn.ReLU) is
named after the parent that calls it. Dropout (identity in eval) is skipped.
The engine also traces ops that are not PyTorch modules (pooling, upsampling
and adds inside the hourglass, the attribute head's ReLU, ...): those exist
in the dofpose dump only. Compare with compare_dumps.py, which pairs files by
name (and occurrence), not by index.

Bad input (an unreadable or mismatched model file, an input whose shape the
model does not take, attributes missing or not allowed) is an error naming the
file and what was expected (exit 2). The dump is written to a temporary folder
beside OUT_DIR and renamed at the end, so a failed run leaves nothing behind;
an existing OUT_DIR is replaced only when it is empty or holds a dump.
"""
import argparse
import os
import re
import shutil
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_random_model  # noqa: E402  (the engine's config rules and tensor shapes)
import safetensors_np  # noqa: E402

PROG = "dump_reference.py"
DUMP_FILE = re.compile(r"^\d+_.+\.npy$")
torch = None  # imported in main(), so --help and input errors work without it


class ToolError(Exception):
    """Bad input: main() prints it as `dump_reference.py: error: ...` and exits 2."""


class Recorder:
    def __init__(self, out_dir):
        self.out_dir = out_dir
        self.count = 0

    def save(self, name, tensor):
        arr = tensor.detach().float().cpu().contiguous().numpy()
        np.save(os.path.join(self.out_dir, f"{self.count:03d}_{name}.npy"), arr)
        self.count += 1


def attach_hooks(model, rec):
    names = {}
    for name, m in model.named_modules(remove_duplicate=False):
        names.setdefault(id(m), []).append(name)
    stack = []

    def pick(m):
        candidates = names[id(m)]
        if len(candidates) == 1:
            return candidates[0]
        parent = stack[-1] if stack else ""
        for c in candidates:  # the name under the module that is calling it
            if (c.rsplit(".", 1)[0] if "." in c else "") == parent:
                return c
        return candidates[0]

    def pre(m, inputs):
        stack.append(pick(m))

    def post(m, inputs, output):
        name = stack.pop()
        if name and torch.is_tensor(output) and not isinstance(m, torch.nn.Dropout):
            rec.save(name, output)  # saved now: an in-place ReLU may change it later

    for m in {id(m): m for m in model.modules()}.values():
        m.register_forward_pre_hook(pre)
        m.register_forward_hook(post)


def load_state(model, tensors, path):
    # optim.* is optimizer state; norm.* are input/output statistics applied outside the
    # modules (the lifter's are handled in dump(), an hourglass's input mean by the caller),
    # loaded only where the model keeps them as buffers (the lifter's `norm` module).
    own = model.state_dict()
    state = {k: torch.from_numpy(np.array(v)) for k, v in tensors.items()
             if not k.startswith("optim.") and (not k.startswith("norm.") or k in own)}
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # size mismatches (read_model checks shapes first)
        raise ToolError(f"{path}: {e}") from None
    missing = [m for m in missing if not m.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ToolError(f"{path}: missing {missing}, unexpected {unexpected}")


def read_model(path):
    """(tensors, kind, full config) of a model file, checked as the engine's loader does."""
    if not os.path.isfile(path):
        raise ToolError(f"MODEL {path}: no such file")
    try:
        tensors, meta = safetensors_np.load(path, with_metadata=True)
    except ValueError as e:  # names the file and the problem
        raise ToolError(f"MODEL: not a readable weights file: {e}") from None
    kind = meta.get("kind")
    if kind not in ("hourglass", "lifter"):
        raise ToolError(f"{path}: metadata kind is {kind!r}, expected 'hourglass' or 'lifter'")
    if meta.get("format_version") != "1":
        raise ToolError(f"{path}: metadata format_version is {meta.get('format_version')!r}, "
                        "expected '1'")
    if "config" not in meta:
        raise ToolError(f"{path}: metadata has no 'config'")
    try:
        config = make_random_model.make_config(kind, meta["config"])
    except make_random_model.ConfigError as e:
        raise ToolError(f"{path}: metadata config: {e}") from None
    try:
        make_random_model.check_model_tensors(path, kind, config,
                                              {k: v.shape for k, v in tensors.items()})
    except make_random_model.ConfigError as e:
        raise ToolError(str(e)) from None
    return tensors, kind, config


def read_npy(path, what):
    if not os.path.isfile(path):
        raise ToolError(f"{what} {path}: no such file")
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise ToolError(f"{what} {path}: not a readable .npy array ({e})") from None


def read_input(path, kind, config):
    """The model input as float32, shape-checked like `dofpose forward --input`."""
    x = read_npy(path, "INPUT")
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise ToolError(f"INPUT {path} has dtype {x.dtype}, expected float32")
    x = x.astype(np.float32)
    if kind == "hourglass":
        size = config["input_size"]
        if x.ndim != 4 or x.shape[1:] != (3, size, size):
            raise ToolError(f"INPUT {path} has shape {list(x.shape)}, expected images "
                            f"[N,3,{size},{size}] (NCHW, config input_size {size})")
    else:
        j = config["num_joints_in"]
        if not (x.ndim == 3 and x.shape[1:] == (j, 2)) and not (x.ndim == 2 and x.shape[1] == 2 * j):
            raise ToolError(f"INPUT {path} has shape {list(x.shape)}, expected 2D joints "
                            f"[N,{j},2] or [N,{2 * j}] (config num_joints_in {j})")
    if x.shape[0] < 1:
        raise ToolError(f"INPUT {path} holds no sample (shape {list(x.shape)})")
    if not np.isfinite(x).all():
        raise ToolError(f"INPUT {path} has a non-finite value; inputs must be finite")
    return x


def read_attributes(path, kind, config, n):
    """Attribute inputs [n, 27] (one-hot labels or probabilities), or None."""
    uses = kind == "lifter" and config["use_attributes"]
    if path is None:
        if uses:
            raise ToolError("--attributes is required: the lifter's config has use_attributes "
                            "true ([N,9] labels 0/1/2, or probabilities [N,9,3] / [N,27])")
        return None
    if not uses:
        raise ToolError(f"--attributes {path} is not allowed: only a lifter with "
                        "use_attributes true takes attributes")
    attr = read_npy(path, "--attributes")
    if np.issubdtype(attr.dtype, np.integer):
        if attr.shape != (n, 9):
            raise ToolError(f"--attributes {path} holds integer labels of shape "
                            f"{list(attr.shape)}, expected [{n},9] (0 front, 1 back, 2 on-plane)")
        if ((attr < 0) | (attr > 2)).any():
            raise ToolError(f"--attributes {path}: labels must be 0 (front), 1 (back) or "
                            "2 (on-plane)")
        attr = np.eye(3, dtype=np.float32)[attr]
    elif np.issubdtype(attr.dtype, np.floating):
        if attr.shape not in ((n, 9, 3), (n, 27)):
            raise ToolError(f"--attributes {path} has shape {list(attr.shape)}, expected "
                            f"probabilities [{n},9,3] or [{n},27]")
        if not np.isfinite(attr).all():
            raise ToolError(f"--attributes {path} has a non-finite value")
    else:
        raise ToolError(f"--attributes {path} has dtype {attr.dtype}, expected integer labels "
                        "or float32 probabilities")
    return attr.reshape(n, 27).astype(np.float32)


def prepare_out_dir(out_dir):
    """Refuses an OUT_DIR that holds anything but an earlier dump; returns the temporary
    folder to write into (beside it, so the final rename stays on one file system) and the
    parent folders this call created."""
    if os.path.exists(out_dir):
        if not os.path.isdir(out_dir):
            raise ToolError(f"OUT_DIR {out_dir} exists and is not a folder")
        other = [f for f in os.listdir(out_dir) if not DUMP_FILE.match(f)]
        if other:
            raise ToolError(f"OUT_DIR {out_dir} holds files that are not a layer dump "
                            f"({', '.join(sorted(other)[:3])}{' ...' if len(other) > 3 else ''}); "
                            "give a new or empty folder")
    parent = os.path.dirname(os.path.abspath(out_dir))
    created = []
    p = parent
    while not os.path.exists(p):
        created.append(p)
        p = os.path.dirname(p)
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as e:
        raise ToolError(f"OUT_DIR {out_dir}: cannot create {parent}: {e.strerror or e}") from None
    try:
        tmp = tempfile.mkdtemp(prefix=os.path.basename(os.path.abspath(out_dir)) + ".tmp.",
                               dir=parent)
    except OSError as e:
        remove_dirs(created)
        raise ToolError(f"OUT_DIR {out_dir}: cannot write in {parent}: {e.strerror or e}") from None
    return tmp, created


def remove_dirs(created):
    for d in created:  # deepest first
        try:
            os.rmdir(d)
        except OSError:
            pass


def publish(tmp, out_dir):
    """Moves the finished dump into place, replacing an earlier dump or an empty folder."""
    old = None
    if os.path.exists(out_dir):
        old = tempfile.mkdtemp(prefix=os.path.basename(os.path.abspath(out_dir)) + ".old.",
                               dir=os.path.dirname(os.path.abspath(out_dir)))
        os.rmdir(old)
        os.rename(out_dir, old)
    os.rename(tmp, out_dir)
    if old:
        shutil.rmtree(old, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", metavar="MODEL", help="a dofpose hourglass or lifter file")
    ap.add_argument("input", metavar="INPUT", help="the .npy input, as for dofpose forward --input")
    ap.add_argument("out_dir", metavar="OUT_DIR", help="folder to write (new, empty, or an earlier dump)")
    ap.add_argument("--attributes", help="lifters with use_attributes: [N,9] labels or [N,9,3] / [N,27] probabilities")
    a = ap.parse_args()
    try:
        return run(a)
    except ToolError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2


def run(a):
    global torch
    tensors, kind, config = read_model(a.model)
    x = read_input(a.input, kind, config)
    attr = read_attributes(a.attributes, kind, config, x.shape[0])
    try:
        import torch
    except ImportError as e:
        raise ToolError(f"needs PyTorch (import torch failed: {e})") from None
    tmp, created = prepare_out_dir(a.out_dir)
    try:
        rec = dump(Recorder(tmp), tensors, kind, config, x, attr, a.model)
        publish(tmp, a.out_dir)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        remove_dirs(created)
        if isinstance(e, (OSError, RuntimeError)) and not isinstance(e, ToolError):
            raise ToolError(f"writing the dump to {a.out_dir}: {type(e).__name__}: {e}") from None
        raise
    print(f"wrote {rec.count} tensors to {a.out_dir}")
    return 0


def dump(rec, tensors, kind, config, x, attr, model_path):
    torch.set_grad_enabled(False)
    if kind == "hourglass":
        import reference_hourglass as ref
        model = ref.HourglassNet(config)
        load_state(model, tensors, model_path)
        model.eval()
        attach_hooks(model, rec)
        out = model(torch.from_numpy(x))
        rec.save("softargmax", ref.soft_argmax(out["heatmaps"][-1], model.config["softargmax_beta"]))
    elif kind == "lifter":
        import reference_lifter as ref
        model = ref.build(config)
        load_state(model, tensors, model_path)
        model.eval()
        n = x.shape[0]
        norm = {k: tensors[k] for k in ("norm.input.mean", "norm.input.std",
                                        "norm.output.mean", "norm.output.std")}
        xin = (x.reshape(n, -1) - norm["norm.input.mean"]) / norm["norm.input.std"]
        if model.config["use_attributes"]:
            xin = np.concatenate([xin, attr], axis=1)
        xin = torch.from_numpy(xin.astype(np.float32))
        rec.save("norm.input", xin)
        attach_hooks(model, rec)
        poses = model(xin)
        for b, p in enumerate(poses):
            rec.save(f"pose.block{b + 1}", p)
        for b, p in enumerate(poses):
            y = p.numpy() * norm["norm.output.std"] + norm["norm.output.mean"]
            y[:, :3] = 0
            rec.save(f"norm.output.block{b + 1}", torch.from_numpy(y))
    return rec


if __name__ == "__main__":
    sys.exit(main())
