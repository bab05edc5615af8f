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

--config is checked as the engine's config parser checks it (key names, types,
ranges: HourglassConfig / LifterConfig, docs/models.md), so a file this writes
loads in `dofpose forward`; a config the engine would refuse is an error naming
the key (exit 2), and nothing is written.
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


PROG = os.path.basename(sys.argv[0]) or "make_random_model.py"


class ConfigError(ValueError):
    """A --config the engine would refuse; the message names the field."""


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)


def _check_types(kind, config, defaults):
    """Each key has the JSON type of its default (as the engine's from_json_string)."""
    for key, default in defaults.items():
        v = config[key]
        if isinstance(default, bool):
            ok, what = isinstance(v, bool), "true or false"
        elif isinstance(default, int):
            ok, what = _is_int(v), "an integer"
        elif isinstance(default, float):
            ok, what = _is_number(v), "a finite number"
        elif isinstance(default, str):
            ok, what = isinstance(v, str), "a string"
        else:
            continue  # groups: checked in validate_lifter
        if not ok:
            raise ConfigError(f"{kind} config: '{key}' must be {what}, got {json.dumps(v)}")


def validate_hourglass(c):
    """HourglassConfig::validate (engine/src/nn/hourglass.cpp)."""
    _check_types("hourglass", c, HOURGLASS_DEFAULTS)

    def need(ok, field, why):
        if not ok:
            raise ConfigError(f"hourglass config: '{field}' {why}")

    need(c["stacks"] >= 1, "stacks", f"must be >= 1, got {c['stacks']}")
    need(c["blocks"] >= 1, "blocks", f"must be >= 1, got {c['blocks']}")
    need(c["num_feats"] >= 2 and c["num_feats"] % 2 == 0, "num_feats",
         f"must be even and >= 2 (bottleneck planes are num_feats / 2), got {c['num_feats']}")
    need(c["num_joints"] >= 1, "num_joints", f"must be >= 1, got {c['num_joints']}")
    need(1 <= c["depth"] <= 8, "depth", f"must be in [1, 8], got {c['depth']}")
    need(c["stem_channels"] >= 1, "stem_channels", f"must be >= 1, got {c['stem_channels']}")
    need(c["stem_layout"] in ("newell", "pytorch-pose"), "stem_layout",
         f"must be \"newell\" or \"pytorch-pose\", got {json.dumps(c['stem_layout'])}")
    multiple = 4 << c["depth"]  # stride-4 stem, then depth halvings
    need(c["input_size"] >= multiple and c["input_size"] % multiple == 0, "input_size",
         f"must be a positive multiple of 4 * 2^depth = {multiple}, got {c['input_size']}")
    if c["attribute_head"]:
        h = c["input_size"] // 4
        while h > 8 and h % 2 == 0:
            h //= 2
        need(h == 8, "input_size", "must give heatmaps of 8 * 2^k pixels for the attribute head "
             f"(it pools to 8x8), got heatmaps of {c['input_size'] // 4}")
        need(c["num_attribute_joints"] >= 1, "num_attribute_joints",
             f"must be >= 1, got {c['num_attribute_joints']}")
        need(c["attribute_classes"] >= 2, "attribute_classes",
             f"must be >= 2, got {c['attribute_classes']}")
        need(c["attribute_channels"] >= 1, "attribute_channels",
             f"must be >= 1, got {c['attribute_channels']}")
    if c["domain_head"]:
        need(c["domain_hidden"] >= 1, "domain_hidden", f"must be >= 1, got {c['domain_hidden']}")
    need(c["softargmax_beta"] > 0, "softargmax_beta",
         f"must be finite and > 0, got {c['softargmax_beta']}")


def validate_lifter(c):
    """LifterConfig::from_json_string + validate (engine/src/nn/lifter.cpp)."""
    _check_types("lifter", c, LIFTER_DEFAULTS)

    def need(ok, field, why):
        if not ok:
            raise ConfigError(f"lifter config: '{field}' {why}")

    need(c["kind"] in ("martinez", "progressive", "two_block"), "kind",
         f"must be \"martinez\", \"progressive\" or \"two_block\", got {json.dumps(c['kind'])}")
    need(c["num_joints_in"] in (16, 17), "num_joints_in",
         f"must be 16 or 17, got {c['num_joints_in']}")
    need(c["attribute_encoding"] == "onehot", "attribute_encoding",
         f"must be \"onehot\", got {json.dumps(c['attribute_encoding'])}")
    need(c["width"] >= 1, "width", f"must be >= 1, got {c['width']}")
    need(c["blocks"] >= 0, "blocks", f"must be >= 0, got {c['blocks']}")
    need(0 <= c["dropout"] < 1, "dropout", f"must be in [0, 1), got {c['dropout']}")
    need(c["max_norm"] >= 0, "max_norm", f"must be >= 0 (0 = off), got {c['max_norm']}")
    need(c["bn_eps"] > 0, "bn_eps", f"must be > 0, got {c['bn_eps']}")
    need(0 <= c["bn_momentum"] <= 1, "bn_momentum", f"must be in [0, 1], got {c['bn_momentum']}")
    seen = [0] * 17
    for g in ("torso", "proximal", "distal"):
        joints = c["groups"][g]
        need(isinstance(joints, list) and all(_is_int(j) for j in joints), f"groups.{g}",
             f"must be a list of integers, got {json.dumps(joints)}")
        for j in joints:
            need(0 <= j < 17, f"groups.{g}", f"entry {j} is not an H36M-17 index (0..16)")
            seen[j] += 1
    for j, n in enumerate(seen):
        need(n == 1, "groups", f"must partition 0..16; joint {j} appears {n} times")
    need(0 in c["groups"]["torso"], "groups.torso", "must hold the pelvis (0)")


class _ShapeBuilder(Builder):
    """A Builder that allocates nothing: every tensor is a read-only broadcast zero."""

    def __init__(self):
        super().__init__(0, False)

    def uniform(self, bound, shape):
        return np.broadcast_to(np.float32(0), shape)


def expected_shapes(kind, config):
    """{tensor name: shape} of a model file of `kind` ("hourglass" or "lifter") with the
    full, validated `config` (optimizer state aside): what the engine's loader requires."""
    b = _ShapeBuilder()
    (hourglass if kind == "hourglass" else lifter)(b, config)
    return {k: tuple(v.shape) for k, v in b.tensors.items()}


def check_model_tensors(path, kind, config, shapes):
    """Raises ConfigError when the tensors {name: shape} of file `path` are not those its
    config describes, naming the first offending tensor, as the engine's loaders do (a lifter
    may hold nothing else but optim.* state; an hourglass may hold other tensors)."""
    want = expected_shapes(kind, config)
    for name, shape in want.items():
        if name not in shapes:
            raise ConfigError(f"{path} lacks tensor '{name}' (expected shape {list(shape)}) "
                              "that its config needs")
        if tuple(shapes[name]) != shape:
            raise ConfigError(f"{path}: tensor '{name}' has shape {list(shapes[name])}, its "
                              f"config expects {list(shape)}")
    if kind == "hourglass":
        return  # HourglassNet::load reads its own tensors and ignores others (norm.input.mean)
    for name in shapes:  # load_module refuses extra tensors, optimizer state aside
        if name not in want and not name.startswith("optim."):
            raise ConfigError(f"{path} holds tensor '{name}' that a {kind} of its config does "
                              "not have (another architecture or config?)")


def reject_constant(name):
    raise ConfigError(f"{name} is not JSON (the engine's parser refuses it)")


def make_config(kind, text):
    """The default config of `kind` updated with the JSON object `text`, validated."""
    try:
        overrides = json.loads(text, parse_constant=reject_constant)
    except json.JSONDecodeError as e:
        raise ConfigError(f"not valid JSON: {e}") from None
    if not isinstance(overrides, dict):
        raise ConfigError(f"expected a JSON object such as '{{\"stacks\": 1}}', got {text!r}")
    defaults = HOURGLASS_DEFAULTS if kind == "hourglass" else LIFTER_DEFAULTS
    config = json.loads(json.dumps(defaults))
    for k, v in overrides.items():
        if k not in config:
            raise ConfigError(f"unknown {kind} config key {k!r} (known: {', '.join(sorted(config))})")
        if k == "groups":
            if not isinstance(v, dict):
                raise ConfigError(f"lifter config: 'groups' must be an object with torso, "
                                  f"proximal and/or distal, got {json.dumps(v)}")
            for g in v:
                if g not in config["groups"]:
                    raise ConfigError(f"lifter config: unknown joint group {g!r} "
                                      "(expected torso, proximal, distal)")
            config["groups"].update(v)
        else:
            config[k] = v
    (validate_hourglass if kind == "hourglass" else validate_lifter)(config)
    return config


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("kind", choices=["hourglass", "lifter"])
    ap.add_argument("output", help="the .safetensors file to write (atomically)")
    ap.add_argument("--config", default="{}",
                    help="JSON object of config overrides (keys and limits: docs/models.md)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--random-bn", action="store_true", help="random BatchNorm affine and statistics")
    a = ap.parse_args()
    try:
        config = make_config(a.kind, a.config)
    except ConfigError as e:
        ap.error(f"--config: {e}")
    if os.path.isdir(a.output):
        ap.error(f"output {a.output} is a folder; give a file name")
    b = Builder(a.seed, a.random_bn)
    try:
        (hourglass if a.kind == "hourglass" else lifter)(b, config)
    except (MemoryError, OverflowError, ValueError) as e:  # numpy refusing a huge shape
        print(f"{PROG}: error: --config {a.config}: the {a.kind} is too large to build "
              f"in memory ({type(e).__name__}: {e})", file=sys.stderr)
        return 2
    try:
        safetensors_np.save(a.output, b.tensors,
                            {"format_version": "1", "kind": a.kind, "config": json.dumps(config)})
    except OSError as e:
        print(f"{PROG}: error: cannot write {a.output}: {e.strerror or e}", file=sys.stderr)
        return 2
    n = sum(v.size for k, v in b.tensors.items()
            if not k.endswith(("running_mean", "running_var")) and not k.startswith("norm."))
    print(f"wrote {a.output}: {a.kind}, {len(b.tensors)} tensors, {n} parameters")
    return 0


if __name__ == "__main__":
    sys.exit(main())
