#!/usr/bin/env python3
"""PyTorch reference of the dofpose lifters (engine/include/dofpose/nn/lifter.h).

The three architectures — "martinez", "progressive" and "two_block" — built from
the same JSON config as the C++ LifterConfig, with state_dict names identical
to the engine's parameter and buffer names (except BatchNorm's
num_batches_tracked, which dofpose does not keep: dofpose_state() drops it).
Used by tests/make_lifter_fixtures.py and to convert trained torch weights:

    model = build(config_dict)
    save_dofpose(model, "lifter.safetensors")     # loadable by nn::load_lifter
    model = load_dofpose("lifter.safetensors")

Conventions (see docs/models.md, "Lifters"): inputs normalised [N, 2*J_in (+27)],
outputs normalised [N, 51] = 17 H36M joints x 3, the pelvis (joint 0) is the
constant 0; progressive / two_block return two poses (block I, block II).
"""
import json
import os
import sys

import numpy as np
import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_np  # noqa: E402

DEFAULT_CONFIG = {
    "kind": "progressive", "num_joints_in": 16, "use_attributes": False,
    "attribute_encoding": "onehot", "width": 1024, "blocks": 2, "dropout": 0.5,
    "max_norm": 1.0, "bn_momentum": 0.1, "bn_eps": 1e-5,
    "groups": {"torso": [0, 1, 4, 7, 8, 9, 11, 14], "proximal": [10, 12, 15, 2, 5],
               "distal": [13, 16, 3, 6]},
}
NUM_JOINTS = 17
ATTRIBUTE_INPUTS = 27


def full_config(config):
    c = json.loads(json.dumps(DEFAULT_CONFIG))
    for k, v in config.items():
        if k == "groups":
            c["groups"].update(v)
        else:
            c[k] = v
    return c


def input_dim(c):
    return 2 * c["num_joints_in"] + (ATTRIBUTE_INPUTS if c["use_attributes"] else 0)


class ResidualBlock(nn.Module):
    def __init__(self, width, dropout, momentum, eps):
        super().__init__()
        self.linear1 = nn.Linear(width, width)
        self.bn1 = nn.BatchNorm1d(width, eps=eps, momentum=momentum)
        self.linear2 = nn.Linear(width, width)
        self.bn2 = nn.BatchNorm1d(width, eps=eps, momentum=momentum)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        h = self.drop(torch.relu(self.bn1(self.linear1(x))))
        h = self.drop(torch.relu(self.bn2(self.linear2(h))))
        return x + h


class Regressor(nn.Module):
    def __init__(self, n_in, n_out, c):
        super().__init__()
        w = c["width"]
        self.input_layer = nn.Linear(n_in, w)
        self.input_bn = nn.BatchNorm1d(w, eps=c["bn_eps"], momentum=c["bn_momentum"])
        self.drop = nn.Dropout(c["dropout"])
        self.blocks = nn.ModuleList(
            ResidualBlock(w, c["dropout"], c["bn_momentum"], c["bn_eps"]) for _ in range(c["blocks"]))
        self.output_layer = nn.Linear(w, n_out)

    def forward(self, x):
        h = self.drop(torch.relu(self.input_bn(self.input_layer(x))))
        for b in self.blocks:
            h = b(h)
        return self.output_layer(h)


class NormStats(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.register_buffer("mean", torch.zeros(n))
        self.register_buffer("std", torch.ones(n))


class Normalisation(nn.Module):
    def __init__(self, n_in, n_out):
        super().__init__()
        self.input = NormStats(n_in)
        self.output = NormStats(n_out)


class Lifter(nn.Module):
    """Regressors in the engine's order; each has (name, joints, sources, block)."""

    def __init__(self, config):
        super().__init__()
        c = full_config(config)
        self.config = c
        g = c["groups"]
        t, p, d = ([j for j in g[k] if j != 0] for k in ("torso", "proximal", "distal"))
        kind = c["kind"]
        if kind == "martinez":
            slots = [("regressor", list(range(1, NUM_JOINTS)), [], 0)]
        elif kind == "progressive":
            slots = [("block1.torso", t, [], 0), ("block1.proximal", p, [0], 0),
                     ("block1.distal", d, [0, 1], 0), ("block2.torso", t, [1, 2], 1),
                     ("block2.proximal", p, [3, 2], 1), ("block2.distal", d, [3, 4], 1)]
        elif kind == "two_block":
            slots = [("block1.torso", t, [], 0), ("block1.proximal", p, [], 0),
                     ("block1.distal", d, [], 0), ("block2.torso", t, [], 1),
                     ("block2.proximal", p, [], 1), ("block2.distal", d, [], 1)]
        else:
            raise ValueError(f"unknown lifter kind {kind!r}")
        self.slots = slots
        self.num_blocks = 1 + max(s[3] for s in slots)
        # Nested containers so the state_dict names read "block1.torso.input_layer.weight".
        self.nets = []
        for name, joints, sources, _ in slots:
            n_in = input_dim(c) + sum(3 * len(slots[s][1]) for s in sources)
            net = Regressor(n_in, 3 * len(joints), c)
            parent = self
            parts = name.split(".")
            for part in parts[:-1]:
                if not hasattr(parent, part):
                    parent.add_module(part, nn.Module())
                parent = getattr(parent, part)
            parent.add_module(parts[-1], net)
            self.nets.append(net)
        self.norm = Normalisation(2 * c["num_joints_in"], 3 * NUM_JOINTS)

    def forward(self, x):
        outs = []
        for (name, joints, sources, block), net in zip(self.slots, self.nets):
            inp = torch.cat([x] + [outs[s] for s in sources], dim=1) if sources else x
            outs.append(net(inp))
        poses = []
        for b in range(self.num_blocks):
            pose = x.new_zeros(x.shape[0], NUM_JOINTS, 3)
            for (name, joints, sources, block), out in zip(self.slots, outs):
                if block == b:
                    pose[:, joints, :] = out.view(x.shape[0], len(joints), 3)
            poses.append(pose.reshape(x.shape[0], 3 * NUM_JOINTS))
        return poses


def build(config):
    return Lifter(config)


def loss_l1(poses, target):
    """The engine's lifter_l1_loss: mean absolute error summed over the blocks."""
    return sum((p - target).abs().mean() for p in poses)


def apply_max_norm(model, max_norm):
    """Row max-norm of every Linear weight, as nn::apply_max_norm."""
    if max_norm <= 0:
        return
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Linear):
                m.weight.copy_(torch.renorm(m.weight, 2, 0, max_norm))


def dofpose_state(model):
    """The state_dict as float32 numpy arrays, without num_batches_tracked."""
    return {k: v.detach().cpu().float().contiguous().numpy()
            for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}


def metadata(model):
    return {"format_version": "1", "kind": "lifter", "config": json.dumps(model.config)}


def save_dofpose(model, path):
    safetensors_np.save(path, dofpose_state(model), metadata(model))


def load_dofpose(path):
    tensors, meta = safetensors_np.load(path, with_metadata=True)
    if meta.get("kind") != "lifter":
        raise ValueError(f"{path}: kind is {meta.get('kind')!r}, expected 'lifter'")
    model = build(json.loads(meta["config"]))
    state = {k: torch.from_numpy(np.array(v)) for k, v in tensors.items() if not k.startswith("optim.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [m for m in missing if not m.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ValueError(f"{path}: missing {missing}, unexpected {unexpected}")
    return model


if __name__ == "__main__":
    import argparse
    argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run as a script (no arguments), it prints the parameter count and FLOPs per "
               "pose of each kind's default config, with and without attributes."
    ).parse_args()
    # Parameter counts and FLOPs of the default configs.
    for kind in ("martinez", "progressive", "two_block"):
        for attrs in (False, True):
            m = build({"kind": kind, "use_attributes": attrs})
            n = sum(p.numel() for p in m.parameters())
            flops = sum(2 * l.in_features * l.out_features + l.out_features
                        for l in m.modules() if isinstance(l, nn.Linear))
            print(f"{kind:12s} attributes={attrs!s:5s} params={n:>10,d} flops/pose={flops:>12,d}")
