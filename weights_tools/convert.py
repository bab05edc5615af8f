#!/usr/bin/env python3
"""Convert PyTorch checkpoints into dofpose weights files (numpy only, no torch).

    python3 weights_tools/convert.py --from pytorch-pose      IN.pth OUT.safetensors
    python3 weights_tools/convert.py --from stacked-hourglass IN.pt  OUT.safetensors
    python3 weights_tools/convert.py --from reference         IN.pth OUT.safetensors
        [--config JSON]      config keys to set (those the tensors cannot tell, e.g.
                             {"input_size": 128}); a key contradicting the tensors is an error
        [--mean R,G,B]       pytorch-pose only: the RGB mean ([0,1]) subtracted from images
                             (default: pytorch-pose's MPII mean 0.4404,0.4440,0.4327)
        [--ignore-key KEY]   drop a top-level checkpoint entry that holds objects the safe
                             loader refuses to construct (e.g. `args`); repeatable

Layouts, key mappings and input conventions: docs/converters.md. The checkpoint
is read by weights_tools/torch_pickle.py, which never executes code from it.
The output holds every tensor of the engine model under its state_dict name
(float32) and the metadata kind, format_version "1", config (JSON as the C++
HourglassConfig::to_json_string / LifterConfig writes it), source and
input_normalisation. Every expected tensor must be present with its shape and
every checkpoint tensor must be used: nothing is dropped silently.
"""
import argparse
import json
import os
import re
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_np  # noqa: E402
import torch_pickle  # noqa: E402

PYTORCH_POSE_MPII_MEAN = (0.4404, 0.4440, 0.4327)

# HourglassConfig defaults (engine/include/dofpose/nn/hourglass.h).
HOURGLASS_DEFAULTS = {
    "stacks": 2, "blocks": 1, "num_feats": 256, "num_joints": 16, "input_size": 256,
    "depth": 4, "stem_channels": 64, "stem_layout": "newell", "attribute_head": True,
    "num_attribute_joints": 9, "attribute_classes": 3, "attribute_channels": 32,
    "domain_head": True, "domain_hidden": 64, "grl_lambda": 1.0, "softargmax_beta": 1.0,
}
HOURGLASS_FLOAT_KEYS = ("grl_lambda", "softargmax_beta")


class ConvertError(Exception):
    pass


def hourglass_config_json(cfg):
    """The string HourglassConfig::to_json_string writes: nlohmann::json objects
    keep their keys sorted, dump() is compact, floats are float32 values."""
    out = {}
    for k in HOURGLASS_DEFAULTS:
        v = cfg[k]
        out[k] = float(np.float32(v)) if k in HOURGLASS_FLOAT_KEYS else v
    return json.dumps(out, sort_keys=True, separators=(",", ":"))


# ----------------------------------------------------------------- engine layout

def _bn(p, c):
    return [(p + "weight", (c,)), (p + "bias", (c,)), (p + "running_mean", (c,)),
            (p + "running_var", (c,))]


def _conv(p, cin, cout, k):
    return [(p + "weight", (cout, cin, k, k)), (p + "bias", (cout,))]


def _bottleneck(p, inplanes, planes):
    out = _bn(p + "bn1.", inplanes) + _conv(p + "conv1.", inplanes, planes, 1)
    out += _bn(p + "bn2.", planes) + _conv(p + "conv2.", planes, planes, 3)
    out += _bn(p + "bn3.", planes) + _conv(p + "conv3.", planes, 2 * planes, 1)
    if inplanes != 2 * planes:
        out += _conv(p + "downsample.0.", inplanes, 2 * planes, 1)
    return out


def _residuals(p, inplanes, planes, blocks):
    out = _bottleneck(p + "0.", inplanes, planes)
    for i in range(1, blocks):
        out += _bottleneck("%s%d." % (p, i), 2 * planes, planes)
    return out


STEM_LAYOUTS = ("newell", "pytorch-pose")


def stem_mid_channels(c):
    """Channels between layer2 and layer3 (HourglassConfig::stem_layout): pytorch-pose makes
    layer2 after its `self.inplanes` has grown to 2 * stem, so layer2 widens to 4 * stem."""
    return (4 if c["stem_layout"] == "pytorch-pose" else 2) * c["stem_channels"]


def hourglass_layout(c):
    """[(name, shape)] of HourglassNet::collect for config c (engine/src/nn/hourglass.cpp)."""
    stem, feats, joints, blocks = c["stem_channels"], c["num_feats"], c["num_joints"], c["blocks"]
    if c["stem_layout"] not in STEM_LAYOUTS:
        raise ConvertError("stem_layout must be one of %s, got %r"
                           % (", ".join(STEM_LAYOUTS), c["stem_layout"]))
    mid = stem_mid_channels(c)
    out = _conv("conv1.", 3, stem, 7) + _bn("bn1.", stem)
    out += _residuals("layer1.", stem, stem, 1)
    out += _residuals("layer2.", 2 * stem, mid // 2, 1)
    out += _residuals("layer3.", mid, feats // 2, 1)
    S = c["stacks"]
    for s in range(S):
        for level in range(c["depth"]):
            for b in range(4 if level == 0 else 3):
                out += _residuals("hg.%d.hg.%d.%d." % (s, level, b), feats, feats // 2, blocks)
    for s in range(S):
        out += _residuals("res.%d." % s, feats, feats // 2, blocks)
    for s in range(S):
        out += _conv("fc.%d.0." % s, feats, feats, 1) + _bn("fc.%d.1." % s, feats)
    for s in range(S):
        out += _conv("score.%d." % s, feats, joints, 1)
    for s in range(S - 1):
        out += _conv("fc_.%d." % s, feats, feats, 1)
    for s in range(S - 1):
        out += _conv("score_.%d." % s, joints, feats, 1)
    if c["attribute_head"]:
        ch = c["attribute_channels"]
        out += _conv("attr.conv.", feats + joints, ch, 1) + _bn("attr.bn.", ch)
        n = c["num_attribute_joints"] * c["attribute_classes"]
        out += [("attr.fc.weight", (n, ch * 64)), ("attr.fc.bias", (n,))]
    if c["domain_head"]:
        h = c["domain_hidden"]
        out += [("domain.fc1.weight", (h, feats)), ("domain.fc1.bias", (h,)),
                ("domain.fc2.weight", (2, h)), ("domain.fc2.bias", (2,))]
    return out


# ----------------------------------------------------------------- checkpoint access

def find_state_dict(ckpt, path):
    """The tensor dict inside a checkpoint: ckpt['state_dict'], ckpt['model'], or ckpt itself."""
    if not isinstance(ckpt, dict):
        raise ConvertError("%s holds a %s, expected a dict (a state_dict or a checkpoint with "
                           "'state_dict')" % (path, type(ckpt).__name__))
    for key in ("state_dict", "model_state_dict", "model"):
        if key in ckpt and isinstance(ckpt[key], dict):
            return ckpt[key]
    if ckpt and all(isinstance(v, np.ndarray) for v in ckpt.values()):
        return ckpt
    raise ConvertError("%s: no 'state_dict' entry and not a plain state_dict either (top-level "
                       "keys: %s)" % (path, ", ".join(map(str, list(ckpt)[:12]))))


def strip_prefixes(sd, prefixes):
    """Removes DataParallel's `module.` (and a trainer's `model.`) in front of every key;
    drops num_batches_tracked (the engine keeps no BN step counter)."""
    out = {}
    for k, v in sd.items():
        if not isinstance(k, str):
            raise ConvertError("state_dict key %r is not a string" % (k,))
        changed = True
        while changed:
            changed = False
            for p in prefixes:
                if k.startswith(p):
                    k, changed = k[len(p):], True
        if k.endswith("num_batches_tracked"):
            continue
        if not isinstance(v, np.ndarray):
            raise ConvertError("state_dict entry '%s' is a %s, expected a tensor" % (k, type(v).__name__))
        out[k] = v
    return out


def count_indexed(sd, pattern):
    """1 + the largest {i} for which some key matches pattern % i (0 if none)."""
    rx = re.compile(pattern)
    found = [int(m.group(1)) for m in (rx.match(k) for k in sd) if m]
    return max(found) + 1 if found else 0


def shape_of(sd, key, what):
    if key not in sd:
        raise ConvertError("expected tensor '%s' (%s) is missing" % (key, what))
    return sd[key].shape


def apply_overrides(cfg, inferred_keys, overrides):
    for k, v in overrides.items():
        if k not in HOURGLASS_DEFAULTS:
            raise ConvertError("--config: unknown hourglass config key '%s'" % k)
        if k in inferred_keys and cfg[k] != v:
            raise ConvertError("--config: %s=%r contradicts the checkpoint's tensors (%r)"
                               % (k, v, cfg[k]))
        cfg[k] = v
    return cfg


def check_against_layout(sd, cfg, source):
    """Every engine tensor present with its shape, no checkpoint tensor left over."""
    layout = hourglass_layout(cfg)
    expected = dict(layout)
    problems = []
    for name, shape in layout:
        if name not in sd:
            problems.append("missing '%s' %s" % (name, list(shape)))
        elif tuple(sd[name].shape) != tuple(shape):
            problems.append("'%s' is %s, the engine expects %s"
                            % (name, list(sd[name].shape), list(shape)))
    extra = [k for k in sd if k not in expected]
    problems += ["unexpected tensor '%s' %s" % (k, list(sd[k].shape)) for k in extra]
    if problems:
        shown = problems[:12] + (["... %d more" % (len(problems) - 12)] if len(problems) > 12 else [])
        raise ConvertError("%s checkpoint does not fit the engine's HourglassNet with config %s:\n  %s"
                           % (source, hourglass_config_json(cfg), "\n  ".join(shown)))
    return [(name, sd[name]) for name, _ in layout]


def infer_hourglass_config(sd, overrides, source):
    """Config of an engine-layout (pytorch-pose names) state_dict from its shapes."""
    cfg = dict(HOURGLASS_DEFAULTS)
    cfg["stem_channels"] = shape_of(sd, "conv1.weight", "stem convolution")[0]
    bearpaw = detect_bearpaw_stem(sd, cfg["stem_channels"])
    cfg["stem_layout"] = "pytorch-pose" if bearpaw else "newell"
    cfg["stacks"] = count_indexed(sd, r"score\.(\d+)\.weight$")
    if cfg["stacks"] == 0:
        raise ConvertError("no 'score.{s}.weight' tensors: not a stacked hourglass state_dict "
                           "(keys start with: %s)" % ", ".join(sorted(sd)[:8]))
    score = shape_of(sd, "score.0.weight", "stack 0 heatmap convolution")
    cfg["num_joints"], cfg["num_feats"] = score[0], score[1]
    cfg["blocks"] = count_indexed(sd, r"res\.0\.(\d+)\.bn1\.weight$")
    cfg["depth"] = count_indexed(sd, r"hg\.0\.hg\.(\d+)\.0\.")
    inferred = ["stem_channels", "stem_layout", "stacks", "num_joints", "num_feats", "blocks",
                "depth", "attribute_head", "domain_head"]
    cfg["attribute_head"] = "attr.conv.weight" in sd
    if cfg["attribute_head"]:
        cfg["attribute_channels"] = sd["attr.conv.weight"].shape[0]
        inferred.append("attribute_channels")
    cfg["domain_head"] = "domain.fc1.weight" in sd
    if cfg["domain_head"]:
        cfg["domain_hidden"] = sd["domain.fc1.weight"].shape[0]
        inferred.append("domain_hidden")
    cfg = apply_overrides(cfg, inferred, overrides)
    if cfg["attribute_head"]:
        n = shape_of(sd, "attr.fc.bias", "attribute logits")[0]
        if n != cfg["num_attribute_joints"] * cfg["attribute_classes"]:
            raise ConvertError("attr.fc has %d outputs, not num_attribute_joints x attribute_classes"
                               " = %d: pass both with --config" % (n, cfg["num_attribute_joints"] *
                                                                   cfg["attribute_classes"]))
    return cfg


# ----------------------------------------------------------------- sources

def detect_bearpaw_stem(sd, stem):
    """True for pytorch-pose's own stem (config stem_layout "pytorch-pose"): layer2 =
    Bottleneck(2*stem, width 2*stem) with a downsample to 4*stem, layer3 =
    Bottleneck(4*stem, num_feats/2) -- its `self.inplanes` has already grown when layer2 is
    made. Newell's stem ("newell") has layer2 = Bottleneck(2*stem, width stem), no downsample.
    Decided by the width alone: princeton-vl checkpoints carry an unused layer2 skip layer.
    A layer2 fitting neither is left to check_against_layout to report."""
    w = sd.get("layer2.0.conv1.weight")
    return w is not None and len(w.shape) == 4 and w.shape[0] == 2 * stem


def convert_pytorch_pose(ckpt, args):
    sd = strip_prefixes(find_state_dict(ckpt, args.input), ["module."])
    overrides = dict(args.config)
    cfg = infer_hourglass_config(sd, overrides, "pytorch-pose")
    tensors = check_against_layout(sd, cfg, "pytorch-pose")
    mean = args.mean if args.mean is not None else PYTORCH_POSE_MPII_MEAN
    extra = [("norm.input.mean", np.asarray(mean, dtype=np.float32))]
    norm = ("pytorch-pose: RGB image scaled to [0,1], then the per-channel dataset mean "
            "norm.input.mean (R,G,B) subtracted (no division by std); NCHW")
    return "hourglass", hourglass_config_json(cfg), tensors + extra, norm


STACKED_HG_RESIDUAL = {"bn1.": "bn1.", "bn2.": "bn2.", "bn3.": "bn3.", "conv1.conv.": "conv1.",
                       "conv2.conv.": "conv2.", "conv3.conv.": "conv3.",
                       "skip_layer.conv.": "downsample.0."}


def _map_residual(rest, dst_prefix):
    for src, dst in STACKED_HG_RESIDUAL.items():
        if rest.startswith(src):
            return dst_prefix + dst + rest[len(src):]
    return None


def stacked_hourglass_depth(sd):
    depths = set()
    for k in sd:
        m = re.match(r"hgs\.0\.0\.((?:low2\.)*)(.*)$", k)
        if m and m.group(2).split(".")[0] not in ("up1", "low1", "low3"):
            depths.add(m.group(1).count("low2."))
    if len(depths) != 1:
        raise ConvertError("cannot tell the hourglass depth from the hgs.0.0.low2... keys "
                           "(innermost residual found at nesting levels %s)" % sorted(depths))
    return depths.pop()


def rename_stacked_hourglass(sd, depth):
    """princeton-vl names -> engine names (docs/converters.md has the table)."""
    out, unmapped = {}, []
    fixed = {"pre.0.conv.": "conv1.", "pre.0.bn.": "bn1."}
    residual_prefixes = {"pre.1.": "layer1.0.", "pre.3.": "layer2.0.", "pre.4.": "layer3.0."}
    for k, v in sd.items():
        new = None
        for src, dst in fixed.items():
            if k.startswith(src):
                new = dst + k[len(src):]
        for src, dst in residual_prefixes.items():
            if k.startswith(src):
                new = _map_residual(k[len(src):], dst)
        m = re.match(r"hgs\.(\d+)\.0\.((?:low2\.)*)(.*)$", k)
        if m:
            s, hops, rest = m.group(1), m.group(2).count("low2."), m.group(3)
            head = rest.split(".")[0]
            if head in ("up1", "low1", "low3"):
                level, branch = depth - 1 - hops, {"up1": 0, "low1": 1, "low3": 2}[head]
                rest = rest[len(head) + 1:]
            else:
                level, branch = 0, 3
            new = _map_residual(rest, "hg.%s.hg.%d.%d.0." % (s, level, branch))
        m = re.match(r"features\.(\d+)\.(0\.|1\.conv\.|1\.bn\.)(.*)$", k)
        if m:
            s, part, rest = m.groups()
            if part == "0.":
                new = _map_residual(rest, "res.%s.0." % s)
            else:
                new = ("fc.%s.0." if part == "1.conv." else "fc.%s.1.") % s + rest
        m = re.match(r"outs\.(\d+)\.conv\.(.*)$", k)
        if m:
            new = "score.%s.%s" % m.groups()
        m = re.match(r"merge_(features|preds)\.(\d+)\.conv\.conv\.(.*)$", k)
        if m:
            new = "%s.%s.%s" % ("fc_" if m.group(1) == "features" else "score_", m.group(2), m.group(3))
        if new is None:
            unmapped.append(k)
        else:
            out[new] = v
    if unmapped:
        raise ConvertError("stacked-hourglass: tensors with no engine counterpart: %s"
                           % ", ".join(unmapped[:12]))
    return out


def convert_stacked_hourglass(ckpt, args):
    sd = strip_prefixes(find_state_dict(ckpt, args.input), ["model.", "module."])
    if "pre.0.conv.weight" not in sd:
        raise ConvertError("stacked-hourglass: no 'pre.0.conv.weight': not a princeton-vl "
                           "pytorch_stacked_hourglass PoseNet (keys start with: %s)"
                           % ", ".join(sorted(sd)[:8]))
    depth = stacked_hourglass_depth(sd)
    # Hourglass(increase > 0) widens the lower branches (Residual(f, f + increase)); the
    # engine keeps num_feats channels at every level.
    up1 = sd.get("hgs.0.0.up1.conv3.conv.weight")
    low1 = sd.get("hgs.0.0.low1.conv3.conv.weight")
    if up1 is not None and low1 is not None and up1.shape[0] != low1.shape[0]:
        raise ConvertError("stacked-hourglass: the hourglass was built with increase=%d (lower "
                           "branches %d channels, upper %d); the engine keeps the same width at "
                           "every level and cannot represent it"
                           % (low1.shape[0] - up1.shape[0], low1.shape[0], up1.shape[0]))
    in_ch = sd["pre.0.conv.weight"].shape[1]
    if in_ch != 3:
        raise ConvertError("stacked-hourglass: pre.0 takes %d input channels; the engine's conv1 "
                           "takes 3 (RGB)" % in_ch)
    renamed = rename_stacked_hourglass(sd, depth)
    # PoseNet's Residual always makes skip_layer and uses it only when in != out: drop the
    # unused ones, which are exactly those where the engine's Bottleneck has no downsample.
    cfg = infer_hourglass_config(renamed, dict(args.config), "stacked-hourglass")
    needed = {name for name, _ in hourglass_layout(cfg)}
    for k in [k for k in renamed if ".downsample.0." in k and k not in needed]:
        del renamed[k]
    tensors = check_against_layout(renamed, cfg, "stacked-hourglass")
    norm = ("stacked-hourglass (princeton-vl): RGB image scaled to [0,1], no mean or std; the "
            "PyTorch model takes NHWC and permutes, the engine takes NCHW")
    return "hourglass", hourglass_config_json(cfg), tensors, norm


def convert_reference(ckpt, args):
    sd_raw = find_state_dict(ckpt, args.input)
    sd = strip_prefixes(sd_raw, ["module."])
    config = {}
    if isinstance(ckpt, dict) and "config" in ckpt and ckpt is not sd_raw:
        config = ckpt["config"]
        if isinstance(config, str):
            config = json.loads(config)
        if not isinstance(config, dict):
            raise ConvertError("checkpoint 'config' is a %s, expected a dict or JSON object"
                               % type(config).__name__)
    config = dict(config, **args.config)
    if "conv1.weight" in sd and any(k.startswith("score.") for k in sd):
        cfg = infer_hourglass_config(sd, config, "reference hourglass")
        tensors = check_against_layout(sd, cfg, "reference hourglass")
        norm = "as trained: dofpose feeds the hourglass NCHW RGB images in [0,1] unless noted"
        return "hourglass", hourglass_config_json(cfg), tensors, norm
    if any(k.startswith(("regressor.", "block1.", "norm.")) for k in sd):
        if not config:
            raise ConvertError("reference lifter: its config (kind, joints, groups, ...) cannot be "
                               "read from the tensors; save {'state_dict': ..., 'config': ...} or "
                               "pass --config")
        # The C++ LifterConfig checks the keys; its load checks every tensor's name and shape.
        tensors = [(k, sd[k]) for k in sorted(sd)]
        norm = "lifter: the statistics norm.input.* / norm.output.* are stored in the model"
        return "lifter", json.dumps(config, sort_keys=True, separators=(",", ":")), tensors, norm
    raise ConvertError("reference: neither a reference hourglass (conv1, score.*) nor a reference "
                       "lifter (regressor.* / block1.* / norm.*) state_dict")


CONVERTERS = {
    "pytorch-pose": convert_pytorch_pose,
    "stacked-hourglass": convert_stacked_hourglass,
    "reference": convert_reference,
}


def parse_mean(text):
    try:
        vals = [float(v) for v in text.split(",")]
    except ValueError:
        vals = []
    if len(vals) != 3 or not all(np.isfinite(vals)):
        raise argparse.ArgumentTypeError("--mean takes three numbers R,G,B, got %r" % text)
    return vals


def parse_config(text):
    try:
        cfg = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError("--config is not valid JSON: %s" % e)
    if not isinstance(cfg, dict):
        raise argparse.ArgumentTypeError("--config must be a JSON object")
    return cfg


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--from", dest="source", required=True, choices=sorted(CONVERTERS))
    ap.add_argument("input")
    ap.add_argument("output")
    ap.add_argument("--config", type=parse_config, default={})
    ap.add_argument("--mean", type=parse_mean, default=None)
    ap.add_argument("--ignore-key", action="append", default=[])
    args = ap.parse_args(argv)
    if args.mean is not None and args.source != "pytorch-pose":
        ap.error("--mean applies to --from pytorch-pose only")
    try:
        ckpt = torch_pickle.load(args.input, ignore_keys=args.ignore_key)
        kind, config_json, tensors, norm = CONVERTERS[args.source](ckpt, args)
        out = {}
        for name, value in tensors:
            a = np.asarray(value)
            if a.dtype.kind == "f":
                a = a.astype(np.float32)
            elif a.dtype.kind in "iub":
                a = a.astype(np.float32)  # the engine's nets hold float32 tensors only
            else:
                raise ConvertError("tensor '%s' has unsupported dtype %s" % (name, a.dtype))
            out[name] = np.ascontiguousarray(a)
        metadata = {"kind": kind, "format_version": "1", "config": config_json,
                    "source": "%s:%s" % (args.source, os.path.basename(args.input)),
                    "input_normalisation": norm}
        safetensors_np.save(args.output, out, metadata)
    except (torch_pickle.CheckpointError, ConvertError) as e:
        print("convert.py: error: %s" % e, file=sys.stderr)
        return 2
    print("wrote %s: %s, %d tensors, config %s" % (args.output, kind, len(out), config_json))
    return 0


if __name__ == "__main__":
    sys.exit(main())
