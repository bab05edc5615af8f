#!/usr/bin/env python3
"""PyTorch reference of the dofpose stacked hourglass (engine/src/nn/hourglass.cpp).

The backbone is the pre-activation stacked hourglass of Newell et al. (ECCV
2016) with the module names of the `pytorch-pose` repository (bearpaw/pytorch-pose,
pose/models/hourglass.py), so its state_dict keys are the same:

    conv1, bn1, layer1, layer2, layer3             stem (7x7/2 conv, 3 residuals, maxpool)
    hg.{s}.hg.{level}.{branch}.{block}.*           hourglass; level 0 is the innermost one,
                                                   branch 0 up1, 1 low1, 2 low3, 3 bottom (level 0)
    res.{s}.{block}.*, fc.{s}.0 (conv) fc.{s}.1 (bn), score.{s}
    fc_.{s}, score_.{s}                            re-injection, all stacks but the last

The stem has two layouts (config "stem_layout", same keys, different shapes):
    "newell" (default)  Newell's original: layer2 Bottleneck(2s -> 2s), layer3
                        Bottleneck(2s -> num_feats) with a downsample (s = stem_channels)
    "pytorch-pose"      bearpaw's models (its `self.inplanes` has already grown to 2s when
                        layer2 is made): layer2 Bottleneck(2s -> 4s) with a downsample,
                        layer3 Bottleneck(4s -> num_feats), downsample iff 4s != num_feats
pytorch-pose's own models are the special case stem_layout="pytorch-pose",
stem_channels=64, num_feats=256 (its `num_feats` = 128 is our num_feats / 2),
depth=4, both heads off. A pytorch-pose checkpoint loads into that config after
stripping nn.DataParallel's "module." prefix and dropping num_batches_tracked
(weights_tools/convert.py --from pytorch-pose does both and sets stem_layout).

dofpose adds two optional heads on the last stack (see docs/models.md):
    attr.conv/attr.bn/attr.fc    attribute logits [N, num_attribute_joints, attribute_classes]
    domain.fc1/domain.fc2        domain logits [N, 2] behind a gradient reversal layer
"""
import json

import torch
import torch.nn as nn
import torch.nn.functional as F

DEFAULT_CONFIG = {
    "stacks": 2,
    "blocks": 1,
    "num_feats": 256,
    "num_joints": 16,
    "input_size": 256,
    "depth": 4,
    "stem_channels": 64,
    "stem_layout": "newell",
    "attribute_head": True,
    "num_attribute_joints": 9,
    "attribute_classes": 3,
    "attribute_channels": 32,
    "domain_head": True,
    "domain_hidden": 64,
    "grl_lambda": 1.0,
    "softargmax_beta": 1.0,
}


STEM_LAYOUTS = ("newell", "pytorch-pose")


def stem_mid_channels(cfg):
    """Channels between layer2 and layer3 (see the module docstring)."""
    stem = cfg["stem_channels"]
    return 4 * stem if cfg["stem_layout"] == "pytorch-pose" else 2 * stem


def make_config(overrides=None):
    cfg = dict(DEFAULT_CONFIG)
    for key, value in (overrides or {}).items():
        if key not in cfg:
            raise KeyError(f"unknown hourglass config key '{key}'")
        cfg[key] = value
    if cfg["stem_layout"] not in STEM_LAYOUTS:
        raise ValueError(f"stem_layout must be one of {STEM_LAYOUTS}, got {cfg['stem_layout']!r}")
    return cfg


class Bottleneck(nn.Module):
    """Pre-activation residual: BN-ReLU-conv1x1, BN-ReLU-conv3x3, BN-ReLU-conv1x1 (+ skip)."""
    expansion = 2

    def __init__(self, inplanes, planes):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=1, bias=True)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, padding=1, bias=True)
        self.bn3 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 2, kernel_size=1, bias=True)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if inplanes != planes * 2:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes * 2, kernel_size=1, bias=True))

    def forward(self, x):
        out = self.conv1(self.relu(self.bn1(x)))
        out = self.conv2(self.relu(self.bn2(out)))
        out = self.conv3(self.relu(self.bn3(out)))
        return out + (x if self.downsample is None else self.downsample(x))


def residuals(inplanes, planes, blocks):
    layers = [Bottleneck(inplanes, planes)]
    layers += [Bottleneck(planes * 2, planes) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


class Hourglass(nn.Module):
    def __init__(self, blocks, feats, depth):
        super().__init__()
        self.depth = depth
        levels = []
        for level in range(depth):
            branches = 4 if level == 0 else 3
            levels.append(nn.ModuleList(
                [residuals(feats, feats // 2, blocks) for _ in range(branches)]))
        self.hg = nn.ModuleList(levels)

    def _forward(self, n, x):
        level = self.hg[n - 1]
        up1 = level[0](x)
        low1 = level[1](F.max_pool2d(x, 2, stride=2))
        low2 = self._forward(n - 1, low1) if n > 1 else level[3](low1)
        low3 = level[2](low2)
        return up1 + F.interpolate(low3, scale_factor=2, mode="nearest")

    def forward(self, x):
        return self._forward(self.depth, x)


class GradReverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, lam):
        ctx.lam = lam
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.lam * grad, None


class AttributeHead(nn.Module):
    """cat(features, heatmaps) -> 1x1 conv -> BN -> ReLU -> maxpool to 8x8 -> Linear."""

    def __init__(self, feats, joints, channels, attr_joints, classes):
        super().__init__()
        self.attr_joints, self.classes = attr_joints, classes
        self.conv = nn.Conv2d(feats + joints, channels, kernel_size=1, bias=True)
        self.bn = nn.BatchNorm2d(channels)
        self.fc = nn.Linear(channels * 8 * 8, attr_joints * classes)

    def forward(self, feats, heat):
        x = F.relu(self.bn(self.conv(torch.cat([feats, heat], dim=1))))
        while x.shape[-1] > 8:
            x = F.max_pool2d(x, 2, stride=2)
        return self.fc(torch.flatten(x, 1)).view(-1, self.attr_joints, self.classes)


class DomainHead(nn.Module):
    """GRL -> global average pool -> Linear(feats, hidden) -> ReLU -> Linear(hidden, 2)."""

    def __init__(self, feats, hidden, lam):
        super().__init__()
        self.lam = lam
        self.fc1 = nn.Linear(feats, hidden)
        self.fc2 = nn.Linear(hidden, 2)

    def forward(self, feats):
        x = GradReverse.apply(feats, self.lam).mean(dim=(2, 3))
        return self.fc2(F.relu(self.fc1(x)))


class HourglassNet(nn.Module):
    def __init__(self, config=None):
        super().__init__()
        cfg = make_config(config)
        self.config = cfg
        stem, feats, joints = cfg["stem_channels"], cfg["num_feats"], cfg["num_joints"]
        self.num_stacks = cfg["stacks"]
        self.conv1 = nn.Conv2d(3, stem, kernel_size=7, stride=2, padding=3, bias=True)
        self.bn1 = nn.BatchNorm2d(stem)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = residuals(stem, stem, 1)
        mid = stem_mid_channels(cfg)
        self.layer2 = residuals(stem * 2, mid // 2, 1)
        self.layer3 = residuals(mid, feats // 2, 1)
        self.maxpool = nn.MaxPool2d(2, stride=2)
        hg, res, fc, score, fc_, score_ = [], [], [], [], [], []
        for i in range(self.num_stacks):
            hg.append(Hourglass(cfg["blocks"], feats, cfg["depth"]))
            res.append(residuals(feats, feats // 2, cfg["blocks"]))
            fc.append(nn.Sequential(nn.Conv2d(feats, feats, kernel_size=1, bias=True),
                                    nn.BatchNorm2d(feats), self.relu))
            score.append(nn.Conv2d(feats, joints, kernel_size=1, bias=True))
            if i < self.num_stacks - 1:
                fc_.append(nn.Conv2d(feats, feats, kernel_size=1, bias=True))
                score_.append(nn.Conv2d(joints, feats, kernel_size=1, bias=True))
        self.hg = nn.ModuleList(hg)
        self.res = nn.ModuleList(res)
        self.fc = nn.ModuleList(fc)
        self.score = nn.ModuleList(score)
        self.fc_ = nn.ModuleList(fc_)
        self.score_ = nn.ModuleList(score_)
        if cfg["attribute_head"]:
            self.attr = AttributeHead(feats, joints, cfg["attribute_channels"],
                                      cfg["num_attribute_joints"], cfg["attribute_classes"])
        if cfg["domain_head"]:
            self.domain = DomainHead(feats, cfg["domain_hidden"], cfg["grl_lambda"])

    def forward(self, x):
        """Returns {"heatmaps": [per stack], "attributes": [N,A,C] or None, "domain": [N,2] or None}."""
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer1(x)
        x = self.maxpool(x)
        x = self.layer3(self.layer2(x))
        heatmaps = []
        for i in range(self.num_stacks):
            y = self.fc[i](self.res[i](self.hg[i](x)))
            score = self.score[i](y)
            heatmaps.append(score)
            if i < self.num_stacks - 1:
                x = x + self.fc_[i](y) + self.score_[i](score)
        out = {"heatmaps": heatmaps, "attributes": None, "domain": None}
        if self.config["attribute_head"]:
            out["attributes"] = self.attr(y, score)
        if self.config["domain_head"]:
            out["domain"] = self.domain(y)
        return out


def soft_argmax(heat, beta=1.0):
    """heat [N,J,H,W] -> coords [N,J,2] (x, y in heatmap pixels), as ops::softargmax_forward."""
    n, j, h, w = heat.shape
    prob = torch.softmax(beta * heat.reshape(n, j, h * w), dim=-1).reshape(n, j, h, w)
    xs = torch.arange(w, dtype=heat.dtype, device=heat.device)
    ys = torch.arange(h, dtype=heat.dtype, device=heat.device)
    return torch.stack([(prob.sum(2) * xs).sum(-1), (prob.sum(3) * ys).sum(-1)], dim=-1)


def heatmap_loss(heatmaps, target):
    """Sum over stacks of the mean squared error (ops::heatmap_mse_forward without weights)."""
    return sum(F.mse_loss(h, target) for h in heatmaps)


def state_dict_for_engine(model):
    """The state_dict without num_batches_tracked (the engine keeps no step counter)."""
    return {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}


if __name__ == "__main__":
    import argparse
    argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run as a script (no arguments), it builds the default config and prints it "
               "and the parameter count. Imported, it is the model: "
               "`import reference_hourglass as ref; net = ref.HourglassNet({\"stacks\": 1})`."
    ).parse_args()
    m = HourglassNet()
    n_params = sum(p.numel() for p in m.parameters())
    print(json.dumps(m.config))
    print("parameters:", n_params)
