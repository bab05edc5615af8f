#!/usr/bin/env python3
"""Writes the fixtures of tests/test_convert.cpp (needs torch; run by hand, commit outputs):

  convert_pytorch_pose.pth            pytorch-pose checkpoint ({epoch, arch, perf, state_dict
                                      with `module.` keys, optimizer}) of a small twin of
                                      bearpaw's HourglassNet below: its own stem (layer2 with a
                                      downsample, layer3 without), i.e. stem_layout "pytorch-pose"
  convert_pytorch_pose_io.safetensors its input x [2,3,16,16] and PyTorch's eval-mode heatmaps
  convert_stacked_hourglass.pt        princeton-vl pytorch_stacked_hourglass layout (keys
                                      model.module.pre/hgs/features/outs/merge_*), small widths,
                                      legacy (torch < 1.6) format
  convert_stacked_hourglass_io.safetensors  input (NCHW; the PyTorch model took NHWC) + heatmaps
  convert_tensors_zip.pt / _legacy.pt tricky tensors (views, strides, dtypes, nesting) in the
                                      ZIP and the legacy (torch < 1.6) format
  convert_tensors_expected.safetensors  their values
  convert_with_args.pth               {state_dict, args: argparse.Namespace} (refused unless
                                      --ignore-key args)
  convert_reference_hourglass.pth     torch.save(state_dict) of weights_tools/reference_hourglass.py
                                      (1 stack, attribute and domain heads, input 32)
  convert_reference_hourglass_io.safetensors  its input x and eval-mode heatmaps.{s},
                                      attributes, domain
  convert_reference_lifter.pth        {state_dict, config} of weights_tools/reference_lifter.py
                                      (progressive, attributes on, norm.* statistics)
  convert_reference_lifter_io.safetensors  raw 2D input pose2d [N,32] (pixels), attributes
                                      [N,27], normalised input x, per block the network's
                                      normalised output pose{b} and de-normalised pose3d{b} (mm)

    /usr/bin/python3 tests/make_converter_fixtures.py
"""
import argparse
import io
import json
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "weights_tools"))
import reference_hourglass as ref  # noqa: E402  (checked against the bearpaw twin)
import safetensors_np  # noqa: E402

OUT = os.path.join(HERE, "fixtures")


def randomise_batchnorms(model, gen):
    """Default BN is the identity in eval mode; random statistics make the test meaningful."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(1 + 0.2 * (torch.rand(n, generator=gen) - 0.5))
                m.bias.copy_(0.2 * (torch.rand(n, generator=gen) - 0.5))
                m.running_mean.copy_(0.2 * (torch.rand(n, generator=gen) - 0.5))
                m.running_var.copy_(0.8 + 0.4 * torch.rand(n, generator=gen))
                m.num_batches_tracked.fill_(7)


def _content(obj, storages):
    """A comparable description of a checkpoint: structure, tensor dtypes, shapes, strides,
    offsets and values, and which tensors share a storage (numbered by first use)."""
    if isinstance(obj, torch.Tensor):
        key = obj.untyped_storage().data_ptr() if hasattr(obj, "untyped_storage") \
            else obj.storage().data_ptr()
        return ("tensor", str(obj.dtype), tuple(obj.shape), obj.stride(), obj.storage_offset(),
                storages.setdefault(key, len(storages)), obj.detach().float().tolist())
    if isinstance(obj, dict):
        return ("dict", type(obj).__name__, [(k, _content(v, storages)) for k, v in obj.items()])
    if isinstance(obj, (list, tuple)):
        return (type(obj).__name__, [_content(v, storages) for v in obj])
    return ("value", repr(obj))


def save_legacy(obj, path):
    """torch.save in the legacy format, keeping an existing file of the same content: its
    storage keys are memory addresses (torch/serialization.py, _legacy_save), so every run
    writes different bytes for the same checkpoint."""
    if os.path.exists(path):
        old = torch.load(path)
        buf = io.BytesIO()
        torch.save(obj, buf, _use_new_zipfile_serialization=False)
        buf.seek(0)
        if _content(old, {}) == _content(torch.load(buf), {}):
            return
    torch.save(obj, path, _use_new_zipfile_serialization=False)


def one_training_step(model, x, heatmaps_of):
    """So that the checkpoint's optimizer entry holds real state tensors (of the first
    parameters only: every tensor costs ~200 bytes of ZIP overhead in the fixture)."""
    opt = torch.optim.RMSprop(list(model.parameters())[:4], lr=1e-4)
    model.train()
    loss = sum(h.pow(2).mean() for h in heatmaps_of(model(x)))
    opt.zero_grad()
    loss.backward()
    opt.step()
    return opt


# ---- a small twin of bearpaw/pytorch-pose pose/models/hourglass.py, written from its source:
# same classes, same `self.inplanes` bookkeeping in _make_residual, so the same state_dict keys
# and shapes. Independent of weights_tools/reference_hourglass.py on purpose: the test checks
# that the engine's stem_layout "pytorch-pose" computes what pytorch-pose computes. Its
# hard-coded inplanes 64, num_feats 128 and depth 4 are arguments here (small fixture).

class BearpawBottleneck(nn.Module):
    expansion = 2

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=1, bias=True)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=True)
        self.bn3 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 2, kernel_size=1, bias=True)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        residual = x
        out = self.conv1(self.relu(self.bn1(x)))
        out = self.conv2(self.relu(self.bn2(out)))
        out = self.conv3(self.relu(self.bn3(out)))
        if self.downsample is not None:
            residual = self.downsample(x)
        out += residual
        return out


class BearpawHourglass(nn.Module):
    def __init__(self, block, num_blocks, planes, depth):
        super().__init__()
        self.depth = depth
        hg = []
        for i in range(depth):
            res = [self._make_residual(block, num_blocks, planes) for _ in range(3)]
            if i == 0:
                res.append(self._make_residual(block, num_blocks, planes))
            hg.append(nn.ModuleList(res))
        self.hg = nn.ModuleList(hg)

    @staticmethod
    def _make_residual(block, num_blocks, planes):
        return nn.Sequential(*[block(planes * block.expansion, planes) for _ in range(num_blocks)])

    def _hour_glass_forward(self, n, x):
        up1 = self.hg[n - 1][0](x)
        low1 = self.hg[n - 1][1](F.max_pool2d(x, 2, stride=2))
        low2 = self._hour_glass_forward(n - 1, low1) if n > 1 else self.hg[n - 1][3](low1)
        low3 = self.hg[n - 1][2](low2)
        return up1 + F.interpolate(low3, scale_factor=2)

    def forward(self, x):
        return self._hour_glass_forward(self.depth, x)


class BearpawHourglassNet(nn.Module):
    def __init__(self, block, num_stacks, num_blocks, num_classes, inplanes, num_feats, depth):
        super().__init__()
        self.inplanes = inplanes
        self.num_feats = num_feats
        self.num_stacks = num_stacks
        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=True)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_residual(block, self.inplanes, 1)
        self.layer2 = self._make_residual(block, self.inplanes, 1)  # inplanes is 2x by now
        self.layer3 = self._make_residual(block, self.num_feats, 1)
        self.maxpool = nn.MaxPool2d(2, stride=2)
        ch = self.num_feats * block.expansion
        hg, res, fc, score, fc_, score_ = [], [], [], [], [], []
        for i in range(num_stacks):
            hg.append(BearpawHourglass(block, num_blocks, self.num_feats, depth))
            res.append(self._make_residual(block, self.num_feats, num_blocks))
            fc.append(self._make_fc(ch, ch))
            score.append(nn.Conv2d(ch, num_classes, kernel_size=1, bias=True))
            if i < num_stacks - 1:
                fc_.append(nn.Conv2d(ch, ch, kernel_size=1, bias=True))
                score_.append(nn.Conv2d(num_classes, ch, kernel_size=1, bias=True))
        self.hg = nn.ModuleList(hg)
        self.res = nn.ModuleList(res)
        self.fc = nn.ModuleList(fc)
        self.score = nn.ModuleList(score)
        self.fc_ = nn.ModuleList(fc_)
        self.score_ = nn.ModuleList(score_)

    def _make_residual(self, block, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * block.expansion,
                                                 kernel_size=1, stride=stride, bias=True))
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def _make_fc(self, inplanes, outplanes):
        bn = nn.BatchNorm2d(inplanes)
        conv = nn.Conv2d(inplanes, outplanes, kernel_size=1, bias=True)
        return nn.Sequential(conv, bn, self.relu)

    def forward(self, x):
        out = []
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer1(x)
        x = self.maxpool(x)
        x = self.layer2(x)
        x = self.layer3(x)
        for i in range(self.num_stacks):
            y = self.fc[i](self.res[i](self.hg[i](x)))
            score = self.score[i](y)
            out.append(score)
            if i < self.num_stacks - 1:
                x = x + self.fc_[i](y) + self.score_[i](score)
        return out


def make_pytorch_pose(gen):
    torch.manual_seed(1)
    # inplanes 2, num_feats 4 (engine: stem_channels 2, num_feats 8): like the released models,
    # num_feats = 4 x stem, so layer2 has a downsample and layer3 none.
    model = BearpawHourglassNet(BearpawBottleneck, num_stacks=2, num_blocks=1, num_classes=3,
                                inplanes=2, num_feats=4, depth=1)
    assert "layer2.0.downsample.0.weight" in model.state_dict()
    assert "layer3.0.downsample.0.weight" not in model.state_dict()
    x = torch.rand(2, 3, 16, 16, generator=gen) - 0.44
    opt = one_training_step(model, x, lambda out: out)
    randomise_batchnorms(model, gen)
    model.eval()
    with torch.no_grad():
        heat = model(x)
    sd = {"module." + k: v for k, v in model.state_dict().items()}
    torch.save({"epoch": 3, "arch": "hg", "perf": torch.tensor(0.5), "best_acc": 0.25,
                "state_dict": sd, "optimizer": opt.state_dict()},
               os.path.join(OUT, "convert_pytorch_pose.pth"))
    io = {"x": x.numpy()}
    io.update({"heatmaps.%d" % i: h.numpy() for i, h in enumerate(heat)})
    config = {"stacks": 2, "blocks": 1, "num_feats": 8, "num_joints": 3, "input_size": 16,
              "depth": 1, "stem_channels": 2, "stem_layout": "pytorch-pose",
              "attribute_head": False, "domain_head": False}
    # The engine's twin must compute the same function (checked here, before writing).
    twin = ref.HourglassNet(config)
    twin.load_state_dict(model.state_dict())
    twin.eval()
    with torch.no_grad():
        for a, b in zip(twin(x)["heatmaps"], heat):
            assert torch.allclose(a, b, atol=1e-6), "reference_hourglass.py differs from bearpaw"
    safetensors_np.save(os.path.join(OUT, "convert_pytorch_pose_io.safetensors"), io,
                        {"config": str(config)})


# ---- a small twin of princeton-vl pytorch_stacked_hourglass models/{layers,posenet}.py,
# written from its documented structure: same module names, so the same state_dict keys.

class Conv(nn.Module):
    def __init__(self, cin, cout, k=3, stride=1, bn=False, relu=True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, padding=(k - 1) // 2, bias=True)
        self.relu = nn.ReLU() if relu else None
        self.bn = nn.BatchNorm2d(cout) if bn else None

    def forward(self, x):
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return self.relu(x) if self.relu is not None else x


class Residual(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        mid = cout // 2
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), Conv(cin, mid, 1, relu=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(mid), Conv(mid, mid, 3, relu=False)
        self.bn3, self.conv3 = nn.BatchNorm2d(mid), Conv(mid, cout, 1, relu=False)
        self.skip_layer = Conv(cin, cout, 1, relu=False)  # always built, used when cin != cout
        self.need_skip = cin != cout

    def forward(self, x):
        skip = self.skip_layer(x) if self.need_skip else x
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        out = self.conv3(F.relu(self.bn3(out)))
        return out + skip


class Hourglass(nn.Module):
    def __init__(self, n, f):
        super().__init__()
        self.up1 = Residual(f, f)
        self.pool1 = nn.MaxPool2d(2, 2)
        self.low1 = Residual(f, f)
        self.low2 = Hourglass(n - 1, f) if n > 1 else Residual(f, f)
        self.low3 = Residual(f, f)

    def forward(self, x):
        low = self.low3(self.low2(self.low1(self.pool1(x))))
        return self.up1(x) + F.interpolate(low, scale_factor=2, mode="nearest")


class Merge(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = Conv(cin, cout, 1, relu=False, bn=False)

    def forward(self, x):
        return self.conv(x)


class PoseNet(nn.Module):
    def __init__(self, nstack, inp_dim, oup_dim, stem=64, depth=4):
        super().__init__()
        self.nstack = nstack
        self.pre = nn.Sequential(Conv(3, stem, 7, 2, bn=True, relu=True), Residual(stem, 2 * stem),
                                 nn.MaxPool2d(2, 2), Residual(2 * stem, 2 * stem),
                                 Residual(2 * stem, inp_dim))
        self.hgs = nn.ModuleList([nn.Sequential(Hourglass(depth, inp_dim)) for _ in range(nstack)])
        self.features = nn.ModuleList([nn.Sequential(Residual(inp_dim, inp_dim),
                                                     Conv(inp_dim, inp_dim, 1, bn=True, relu=True))
                                       for _ in range(nstack)])
        self.outs = nn.ModuleList([Conv(inp_dim, oup_dim, 1, relu=False, bn=False)
                                   for _ in range(nstack)])
        self.merge_features = nn.ModuleList([Merge(inp_dim, inp_dim) for _ in range(nstack - 1)])
        self.merge_preds = nn.ModuleList([Merge(oup_dim, inp_dim) for _ in range(nstack - 1)])

    def forward(self, imgs):
        x = self.pre(imgs.permute(0, 3, 1, 2))  # NHWC in [0,1]
        preds = []
        for i in range(self.nstack):
            feature = self.features[i](self.hgs[i](x))
            p = self.outs[i](feature)
            preds.append(p)
            if i < self.nstack - 1:
                x = x + self.merge_preds[i](p) + self.merge_features[i](feature)
        return torch.stack(preds, 1)


class Trainer(nn.Module):
    """princeton-vl's task/pose.py wraps DataParallel(PoseNet) as `model`."""

    def __init__(self, net):
        super().__init__()
        self.model = nn.DataParallel(net)


def make_stacked_hourglass(gen):
    torch.manual_seed(3)
    net = PoseNet(nstack=2, inp_dim=8, oup_dim=3, stem=4, depth=2)
    x = torch.rand(2, 16, 16, 3, generator=gen)
    opt = one_training_step(net, x, lambda out: [out[:, i] for i in range(out.shape[1])])
    randomise_batchnorms(net, gen)
    net.eval()
    with torch.no_grad():
        out = net(x)
    trainer = Trainer(net)
    # princeton-vl's released checkpoints predate PyTorch 1.6: the legacy format.
    save_legacy({"state_dict": trainer.state_dict(), "optimizer": opt.state_dict(), "epoch": 5},
                os.path.join(OUT, "convert_stacked_hourglass.pt"))
    io = {"x": x.permute(0, 3, 1, 2).contiguous().numpy()}
    io.update({"heatmaps.%d" % i: out[:, i].numpy() for i in range(out.shape[1])})
    safetensors_np.save(os.path.join(OUT, "convert_stacked_hourglass_io.safetensors"), io, {})


def make_tensors():
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6) / 8
    shared = torch.arange(10, dtype=torch.int64)
    obj = {
        "transposed": base.t(),                     # non-contiguous strides
        "slice": base[1:3, 2:5],                    # storage offset + strides
        "shared_a": shared[2:6], "shared_b": shared,  # one storage, two tensors
        "half": torch.tensor([1.5, -2.25, 65504.0], dtype=torch.float16),
        "bf16": torch.tensor([1.0, -3.5, 0.015625], dtype=torch.bfloat16),
        "double": torch.tensor([[1e-300, 2.5]], dtype=torch.float64),
        "int32": torch.tensor([-7, 9], dtype=torch.int32),
        "uint8": torch.tensor([0, 255], dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "scalar": torch.tensor(3.25),
        "empty": torch.zeros(0, 3),
        "param": nn.Parameter(torch.ones(2, 2) * 0.5),
        "nested": {"list": [torch.tensor([1.0]), 2, "three"], "tuple": (4.0, None, True), 5: "int key"},
        "numpy": np.float64(0.125),
    }
    torch.save(obj, os.path.join(OUT, "convert_tensors_zip.pt"))
    save_legacy(obj, os.path.join(OUT, "convert_tensors_legacy.pt"))
    expected = {k: (v.detach().float() if v.dtype == torch.bfloat16 else v.detach()).numpy()
                for k, v in obj.items() if isinstance(v, torch.Tensor)}
    expected["nested.list.0"] = obj["nested"]["list"][0].numpy()
    safetensors_np.save(os.path.join(OUT, "convert_tensors_expected.safetensors"), expected, {})
    # A checkpoint that also pickles an object the safe loader must refuse to build.
    torch.save({"state_dict": {"w": torch.ones(2)}, "args": argparse.Namespace(lr=0.1)},
               os.path.join(OUT, "convert_with_args.pth"))


# ---- dofpose's own PyTorch twins (--from reference). Own generators and seeds, made after
# the fixtures above, so those stay byte-identical.

def make_reference_hourglass():
    torch.manual_seed(11)
    gen = torch.Generator().manual_seed(2031)
    # Input 32 -> 8x8 heatmaps, the smallest the attribute head takes (it pools to 8x8);
    # attribute_channels and domain_hidden differ from the defaults: inferred from the tensors.
    # One stack (the two-stack wiring is checked by the fixtures above): every tensor costs
    # ~350 bytes of ZIP and pickle overhead.
    config = {"stacks": 1, "blocks": 1, "num_feats": 4, "num_joints": 3, "input_size": 32,
              "depth": 1, "stem_channels": 2, "attribute_head": True, "attribute_channels": 1,
              "domain_head": True, "domain_hidden": 5}
    model = ref.HourglassNet(config)
    randomise_batchnorms(model, gen)
    model.eval()
    x = torch.rand(1, 3, 32, 32, generator=gen)
    with torch.no_grad():
        out = model(x)
    # The plain form: no config, so input_size comes from --config.
    torch.save(model.state_dict(), os.path.join(OUT, "convert_reference_hourglass.pth"))
    io = {"x": x.numpy(), "attributes": out["attributes"].numpy(), "domain": out["domain"].numpy()}
    io.update({"heatmaps.%d" % i: h.numpy() for i, h in enumerate(out["heatmaps"])})
    safetensors_np.save(os.path.join(OUT, "convert_reference_hourglass_io.safetensors"), io, {})


def make_reference_lifter():
    import reference_lifter  # noqa: E402  (weights_tools is on sys.path)
    torch.manual_seed(12)
    gen = torch.Generator().manual_seed(2032)
    # blocks 0 (no residual blocks, which only repeat the names test_lifter checks): the six
    # regressors' tensors already cost ~35 KB of ZIP overhead.
    config = {"kind": "progressive", "num_joints_in": 16, "use_attributes": True, "width": 6,
              "blocks": 0, "dropout": 0.25}
    model = reference_lifter.build(config)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm1d):
                n = m.num_features
                m.weight.copy_(1 + 0.4 * (torch.rand(n, generator=gen) - 0.5))
                m.bias.copy_(0.4 * (torch.rand(n, generator=gen) - 0.5))
                m.running_mean.copy_(0.4 * (torch.rand(n, generator=gen) - 0.5))
                m.running_var.copy_(0.6 + 0.8 * torch.rand(n, generator=gen))
                m.num_batches_tracked.fill_(9)
        # Statistics as Lifter::fit_normalisation leaves them: 2D in pixels, 3D in mm, the
        # pelvis (output joint 0) mean 0 std 1.
        model.norm.input.mean.copy_(500 + 100 * torch.randn(32, generator=gen))
        model.norm.input.std.copy_(50 + 100 * torch.rand(32, generator=gen))
        model.norm.output.mean.copy_(200 * torch.randn(51, generator=gen))
        model.norm.output.std.copy_(100 + 300 * torch.rand(51, generator=gen))
        model.norm.output.mean[:3] = 0
        model.norm.output.std[:3] = 1
    model.eval()
    n = 3
    pose2d = model.norm.input.mean + model.norm.input.std * torch.randn(n, 32, generator=gen)
    labels = torch.randint(0, 3, (n, 9), generator=gen)
    attributes = F.one_hot(labels, 3).reshape(n, 27).float()
    # The reference model takes the normalised input and returns normalised poses; the
    # statistics are buffers it carries for the caller (the engine's Model applies them).
    x = torch.cat([(pose2d - model.norm.input.mean) / model.norm.input.std, attributes], dim=1)
    with torch.no_grad():
        poses = model(x)
    torch.save({"state_dict": model.state_dict(), "config": model.config},
               os.path.join(OUT, "convert_reference_lifter.pth"))
    io = {"pose2d": pose2d.numpy(), "attributes": attributes.numpy(), "x": x.numpy()}
    for b, p in enumerate(poses):
        mm = p * model.norm.output.std + model.norm.output.mean
        mm[:, :3] = 0  # the pelvis is the origin
        io["pose%d" % (b + 1)] = p.numpy()
        io["pose3d%d" % (b + 1)] = mm.numpy()
    safetensors_np.save(os.path.join(OUT, "convert_reference_lifter_io.safetensors"), io,
                        {"config": json.dumps(model.config)})


def main():
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(2024)
    make_pytorch_pose(gen)
    make_stacked_hourglass(gen)
    make_tensors()
    make_reference_hourglass()
    make_reference_lifter()
    total = sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT) if f.startswith("convert_"))
    print("convert_* fixtures: %d bytes" % total)


if __name__ == "__main__":
    main()
