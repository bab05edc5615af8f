#!/usr/bin/env python3
"""Write a dofpose model file with random weights, numpy only (no torch).

For trying `dofpose forward` (timings, --dump, shapes) without a trained model:

    make_random_model.py hourglass OUT.safetensors [--config '{"stacks": 1}'] [--seed 0] [--random-bn]
    make_random_model.py lifter OUT.safetensors [--config '{"kind": "martinez"}'] ...

The tensor names and shapes are those of weights_tools/reference_hourglass.py
and reference_lifter.py (= the C++ networks); the config is the default of
each kind updated with --config. Conv/Linear weights and biases are uniform in
+-1/sqrt(fan_in) (PyTorch's default); BatchNorm is the identity (weight 1,
bias 0, running mean 0, var 1) unless --random-bn draws weight, bias and the
running statistics too, which makes layer-by-layer comparisons more telling.
Lifter normalisation statistics are mean 0, std 1.
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_np  # noqa: E402

# Mirrors DEFAULT_CONFIG of reference_hourglass.py / HourglassConfig (kept here: that module needs torch).
HOURGLASS_DEFAULTS = {
    "stacks": 2, "blocks": 1, "num_feats": 256, "num_joints": 16, "input_size": 256,
    "depth": 4, "stem_channels": 64, "attribute_head": True, "num_attribute_joints": 9,
    "attribute_classes": 3, "attribute_channels": 32, "domain_head": True,
    "domain_hidden": 64, "grl_lambda": 1.0, "softargmax_beta": 1.0, "stem_layout": "newell",
}
# Mirrors DEFAULT_CONFIG of reference_lifter.py / LifterConfig.
LIFTER_DEFAULTS = {
    "kind": "progressive", "num_joints_in": 16, "use_attributes": False,
    "attribute_encoding": "onehot", "width": 1024, "blocks": 2, "dropout": 0.5,
    "max_norm": 1.0, "bn_momentum": 0.1, "bn_eps": 1e-5,
    "groups": {"torso": [0, 1, 4, 7, 8, 9, 11, 14], "proximal": [10, 12, 15, 2, 5],
               "distal": [13, 16, 3, 6]},
}


class Builder:
    def __init__(self, seed, random_bn):
        self.rng = np.random.default_rng(seed)
        self.random_bn = random_bn
        self.tensors = {}

    def uniform(self, bound, shape):
        return self.rng.uniform(-bound, bound, size=shape).astype(np.float32)

    def conv(self, name, cin, cout, k):
        bound = 1.0 / np.sqrt(cin * k * k)
        self.tensors[name + ".weight"] = self.uniform(bound, (cout, cin, k, k))
        self.tensors[name + ".bias"] = self.uniform(bound, (cout,))

    def linear(self, name, fin, fout):
        bound = 1.0 / np.sqrt(fin)
        self.tensors[name + ".weight"] = self.uniform(bound, (fout, fin))
        self.tensors[name + ".bias"] = self.uniform(bound, (fout,))

    def bn(self, name, c):
        t = self.tensors
        if self.random_bn:
            t[name + ".weight"] = self.rng.uniform(0.5, 1.5, c).astype(np.float32)
            t[name + ".bias"] = self.uniform(0.5, (c,))
            t[name + ".running_mean"] = self.uniform(0.5, (c,))
            t[name + ".running_var"] = self.rng.uniform(0.5, 2.0, c).astype(np.float32)
        else:
            t[name + ".weight"] = np.ones(c, np.float32)
            t[name + ".bias"] = np.zeros(c, np.float32)
            t[name + ".running_mean"] = np.zeros(c, np.float32)
            t[name + ".running_var"] = np.ones(c, np.float32)


def hourglass(b, c):
    def bottleneck(p, inplanes, planes):
        b.bn(p + "bn1", inplanes)
        b.conv(p + "conv1", inplanes, planes, 1)
        b.bn(p + "bn2", planes)
        b.conv(p + "conv2", planes, planes, 3)
        b.bn(p + "bn3", planes)
        b.conv(p + "conv3", planes, 2 * planes, 1)
        if inplanes != 2 * planes:
            b.conv(p + "downsample.0", inplanes, 2 * planes, 1)

    def residuals(p, inplanes, planes, blocks):
        bottleneck(p + "0.", inplanes, planes)
        for i in range(1, blocks):
            bottleneck(f"{p}{i}.", 2 * planes, planes)

    stem, feats, joints = c["stem_channels"], c["num_feats"], c["num_joints"]
    b.conv("conv1", 3, stem, 7)
    b.bn("bn1", stem)
    residuals("layer1.", stem, stem, 1)
    # stem_layout (HourglassConfig): pytorch-pose builds layer2 after its inplanes grew to
    # 2 * stem, so layer2 widens to 4 * stem and layer3 starts there.
    mid = (4 if c["stem_layout"] == "pytorch-pose" else 2) * stem
    residuals("layer2.", 2 * stem, mid // 2, 1)
    residuals("layer3.", mid, feats // 2, 1)
    for s in range(c["stacks"]):
        for level in range(c["depth"]):
            for branch in range(4 if level == 0 else 3):
                residuals(f"hg.{s}.hg.{level}.{branch}.", feats, feats // 2, c["blocks"])
        residuals(f"res.{s}.", feats, feats // 2, c["blocks"])
        b.conv(f"fc.{s}.0", feats, feats, 1)
        b.bn(f"fc.{s}.1", feats)
        b.conv(f"score.{s}", feats, joints, 1)
        if s + 1 < c["stacks"]:
            b.conv(f"fc_.{s}", feats, feats, 1)
            b.conv(f"score_.{s}", joints, feats, 1)
    if c["attribute_head"]:
        ch = c["attribute_channels"]
        b.conv("attr.conv", feats + joints, ch, 1)
        b.bn("attr.bn", ch)
        b.linear("attr.fc", ch * 8 * 8, c["num_attribute_joints"] * c["attribute_classes"])
    if c["domain_head"]:
        b.linear("domain.fc1", feats, c["domain_hidden"])
        b.linear("domain.fc2", c["domain_hidden"], 2)


def lifter(b, c):
    g = c["groups"]
    t, p, d = ([j for j in g[k] if j != 0] for k in ("torso", "proximal", "distal"))
    if c["kind"] == "martinez":
        slots = [("regressor", list(range(1, 17)), [])]
    elif c["kind"] == "progressive":
        slots = [("block1.torso", t, []), ("block1.proximal", p, [0]), ("block1.distal", d, [0, 1]),
                 ("block2.torso", t, [1, 2]), ("block2.proximal", p, [3, 2]),
                 ("block2.distal", d, [3, 4])]
    elif c["kind"] == "two_block":
        slots = [(n, j, []) for n, j in (("block1.torso", t), ("block1.proximal", p),
                                         ("block1.distal", d), ("block2.torso", t),
                                         ("block2.proximal", p), ("block2.distal", d))]
    else:
        raise SystemExit(f"unknown lifter kind {c['kind']!r}")
    x_dim = 2 * c["num_joints_in"] + (27 if c["use_attributes"] else 0)
    w = c["width"]
    for name, joints, sources in slots:
        n_in = x_dim + sum(3 * len(slots[s][1]) for s in sources)
        b.linear(name + ".input_layer", n_in, w)
        b.bn(name + ".input_bn", w)
        for i in range(c["blocks"]):
            p_ = f"{name}.blocks.{i}."
            b.linear(p_ + "linear1", w, w)
            b.bn(p_ + "bn1", w)
            b.linear(p_ + "linear2", w, w)
            b.bn(p_ + "bn2", w)
        b.linear(name + ".output_layer", w, 3 * len(joints))
    b.tensors["norm.input.mean"] = np.zeros(2 * c["num_joints_in"], np.float32)
    b.tensors["norm.input.std"] = np.ones(2 * c["num_joints_in"], np.float32)
    b.tensors["norm.output.mean"] = np.zeros(51, np.float32)
    b.tensors["norm.output.std"] = np.ones(51, np.float32)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("kind", choices=["hourglass", "lifter"])
    ap.add_argument("output")
    ap.add_argument("--config", default="{}", help="JSON object of config overrides")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--random-bn", action="store_true", help="random BatchNorm affine and statistics")
    a = ap.parse_args()
    overrides = json.loads(a.config)
    defaults = HOURGLASS_DEFAULTS if a.kind == "hourglass" else LIFTER_DEFAULTS
    config = json.loads(json.dumps(defaults))
    for k, v in overrides.items():
        if k not in config:
            raise SystemExit(f"unknown {a.kind} config key {k!r}")
        if k == "groups":
            config["groups"].update(v)
        else:
            config[k] = v
    b = Builder(a.seed, a.random_bn)
    (hourglass if a.kind == "hourglass" else lifter)(b, config)
    safetensors_np.save(a.output, b.tensors,
                        {"format_version": "1", "kind": a.kind, "config": json.dumps(config)})
    n = sum(v.size for k, v in b.tensors.items()
            if not k.endswith(("running_mean", "running_var")) and not k.startswith("norm."))
    print(f"wrote {a.output}: {a.kind}, {len(b.tensors)} tensors, {n} parameters")


if __name__ == "__main__":
    main()
