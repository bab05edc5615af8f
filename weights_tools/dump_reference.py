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
"""
import argparse
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_np  # noqa: E402


class Recorder:
    def __init__(self, out_dir):
        self.out_dir = out_dir
        self.count = 0
        os.makedirs(out_dir, exist_ok=True)

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
    # modules (the lifter's are handled in main, an hourglass's input mean by the caller).
    state = {k: torch.from_numpy(np.array(v)) for k, v in tensors.items()
             if not k.startswith(("optim.", "norm."))}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [m for m in missing if not m.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise SystemExit(f"{path}: missing {missing}, unexpected {unexpected}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("input")
    ap.add_argument("out_dir")
    ap.add_argument("--attributes")
    a = ap.parse_args()
    tensors, meta = safetensors_np.load(a.model, with_metadata=True)
    kind, config = meta.get("kind"), json.loads(meta.get("config", "{}"))
    x = np.load(a.input).astype(np.float32)
    rec = Recorder(a.out_dir)
    torch.set_grad_enabled(False)
    if kind == "hourglass":
        import reference_hourglass as ref
        model = ref.HourglassNet(config)
        load_state(model, tensors, a.model)
        model.eval()
        attach_hooks(model, rec)
        out = model(torch.from_numpy(x))
        rec.save("softargmax", ref.soft_argmax(out["heatmaps"][-1], model.config["softargmax_beta"]))
    elif kind == "lifter":
        import reference_lifter as ref
        model = ref.build(config)
        load_state(model, tensors, a.model)
        model.eval()
        n = x.shape[0]
        norm = {k: tensors[k] for k in ("norm.input.mean", "norm.input.std",
                                        "norm.output.mean", "norm.output.std")}
        xin = (x.reshape(n, -1) - norm["norm.input.mean"]) / norm["norm.input.std"]
        if model.config["use_attributes"]:
            attr = np.load(a.attributes)
            if np.issubdtype(attr.dtype, np.integer):
                attr = np.eye(3, dtype=np.float32)[attr]
            xin = np.concatenate([xin, attr.reshape(n, 27).astype(np.float32)], axis=1)
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
    else:
        raise SystemExit(f"{a.model}: unknown model kind {kind!r}")
    print(f"wrote {rec.count} tensors to {a.out_dir}")


if __name__ == "__main__":
    main()
