#!/usr/bin/env python3
"""Writes the lifter and optimizer fixtures that tests/test_lifter.cpp and
tests/test_optimizer.cpp compare the engine against (PyTorch reference:
weights_tools/reference_lifter.py, torch.optim).

Per lifter kind K in (martinez, progressive, two_block), small configs:
  lifter_K_model.safetensors  the weights exactly as nn::save_lifter writes them
                              (loaded with nn::load_lifter), random BN statistics;
  lifter_K_case.safetensors   fixture-loader format (tests/fixture_loader.h),
                              cases "train" (batch statistics, dropout 0) and
                              "infer": x, target, pose<b> per block, loss, dx,
                              grad/<param> for every parameter; "train" also
                              holds after/<buffer>, the BN running statistics
                              after its forward.
lifter_optim.safetensors: RMSprop / Adam runs of three steps on fixed gradients
(params after each step) and a clip_grad_norm case.

Run:  /usr/bin/python3 tests/make_lifter_fixtures.py [output_dir]
Deterministic (fixed seeds, one thread).
"""
import copy
import json
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "weights_tools"))
import reference_lifter as ref  # noqa: E402
import safetensors_np  # noqa: E402

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

BATCH = 5
CONFIGS = {
    "martinez": {"kind": "martinez", "num_joints_in": 17, "use_attributes": False,
                 "width": 16, "blocks": 2, "dropout": 0.0},
    "progressive": {"kind": "progressive", "num_joints_in": 16, "use_attributes": True,
                    "width": 8, "blocks": 1, "dropout": 0.0},
    "two_block": {"kind": "two_block", "num_joints_in": 16, "use_attributes": False,
                  "width": 8, "blocks": 1, "dropout": 0.0},
}


def np32(t):
    return t.detach().cpu().contiguous().numpy().astype(np.float32)


def randomise(model, gen):
    """Non-trivial BN affine parameters, running statistics and normalisation buffers."""
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            if name.endswith("running_mean") or name.endswith(".mean"):
                t.copy_(0.2 * torch.randn(t.shape, generator=gen))
            elif name.endswith("running_var") or name.endswith(".std"):
                t.copy_(0.5 + torch.rand(t.shape, generator=gen))
            elif ".bn" in name or "input_bn" in name:
                base = 1.0 if name.endswith("weight") else 0.0
                t.copy_(base + 0.2 * torch.randn(t.shape, generator=gen))


def run_case(model, x, target, train):
    model.train(train)
    model.zero_grad()
    xl = x.clone().requires_grad_(True)
    poses = model(xl)
    loss = ref.loss_l1(poses, target)
    loss.backward()
    out = {"x": np32(x), "target": np32(target), "loss": np.array([loss.item()], np.float32),
           "dx": np32(xl.grad)}
    for b, p in enumerate(poses):
        out[f"pose{b + 1}"] = np32(p)
    for name, p in model.named_parameters():
        out[f"grad/{name}"] = np32(p.grad)
    return out


def make_lifter(kind, out_dir, seed):
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = ref.build(CONFIGS[kind])
    randomise(model, gen)
    ref.save_dofpose(model, os.path.join(out_dir, f"lifter_{kind}_model.safetensors"))

    n_in = ref.input_dim(model.config)
    x = torch.randn(BATCH, n_in, generator=gen)
    if model.config["use_attributes"]:
        labels = torch.randint(0, 3, (BATCH, 9), generator=gen)
        x[:, n_in - 27:] = torch.nn.functional.one_hot(labels, 3).reshape(BATCH, 27).float()
    target = torch.randn(BATCH, 51, generator=gen)
    target[:, :3] = 0  # the pelvis is the origin

    tensors, cases = {}, []
    infer_model = copy.deepcopy(model)  # before training-mode statistics updates
    for case, m, train in (("train", model, True), ("infer", infer_model, False)):
        cases.append({"name": case, "train": train, "blocks": m.num_blocks})
        for k, v in run_case(m, x, target, train).items():
            tensors[f"{case}/{k}"] = v
    for name, v in ref.dofpose_state(model).items():
        if "running" in name:
            tensors[f"train/after/{name}"] = v
    safetensors_np.save(os.path.join(out_dir, f"lifter_{kind}_case.safetensors"), tensors,
                        {"family": f"lifter_{kind}", "cases": json.dumps(cases),
                         "generator": "tests/make_lifter_fixtures.py", "torch": torch.__version__})


def make_optim(out_dir):
    gen = torch.Generator().manual_seed(7)
    shapes = [(4, 3), (5,)]
    specs = [
        {"name": "rmsprop", "type": "rmsprop", "lr": 1e-2, "alpha": 0.99, "eps": 1e-8,
         "weight_decay": 0.0, "momentum": 0.0},
        {"name": "rmsprop_momentum_wd", "type": "rmsprop", "lr": 1e-3, "alpha": 0.9, "eps": 1e-6,
         "weight_decay": 1e-2, "momentum": 0.9},
        {"name": "adam", "type": "adam", "lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8,
         "weight_decay": 0.0},
        {"name": "adam_wd", "type": "adam", "lr": 5e-2, "beta1": 0.8, "beta2": 0.99, "eps": 1e-6,
         "weight_decay": 1e-2},
    ]
    tensors, cases = {}, []
    steps = 3
    for spec in specs:
        params = [torch.randn(s, generator=gen).requires_grad_(True) for s in shapes]
        for i, p in enumerate(params):
            tensors[f"{spec['name']}/p{i}.init"] = np32(p)
        if spec["type"] == "rmsprop":
            opt = torch.optim.RMSprop(params, lr=spec["lr"], alpha=spec["alpha"], eps=spec["eps"],
                                      weight_decay=spec["weight_decay"], momentum=spec["momentum"])
        else:
            opt = torch.optim.Adam(params, lr=spec["lr"], betas=(spec["beta1"], spec["beta2"]),
                                   eps=spec["eps"], weight_decay=spec["weight_decay"])
        for s in range(steps):
            for i, p in enumerate(params):
                p.grad = torch.randn(p.shape, generator=gen)
                tensors[f"{spec['name']}/p{i}.grad{s}"] = np32(p.grad)
            opt.step()
            for i, p in enumerate(params):
                tensors[f"{spec['name']}/p{i}.after{s}"] = np32(p)
        cases.append(dict(spec, steps=steps, params=len(shapes)))
    # clip_grad_norm: once clipping, once below the threshold.
    for name, max_norm, scale in (("clip", 1.0, 1.0), ("noclip", 100.0, 1.0)):
        params = [torch.zeros(s, requires_grad=True) for s in shapes]
        for i, p in enumerate(params):
            p.grad = scale * torch.randn(p.shape, generator=gen)
            tensors[f"{name}/p{i}.grad"] = np32(p.grad)
        total = torch.nn.utils.clip_grad_norm_(params, max_norm)
        for i, p in enumerate(params):
            tensors[f"{name}/p{i}.clipped"] = np32(p.grad)
        tensors[f"{name}/total_norm"] = np.array([float(total)], np.float32)
        cases.append({"name": name, "type": "clip", "max_norm": max_norm, "params": len(shapes)})
    safetensors_np.save(os.path.join(out_dir, "lifter_optim.safetensors"), tensors,
                        {"family": "lifter_optim", "cases": json.dumps(cases),
                         "generator": "tests/make_lifter_fixtures.py", "torch": torch.__version__})


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "fixtures")
    os.makedirs(out_dir, exist_ok=True)
    for seed, kind in enumerate(CONFIGS):
        make_lifter(kind, out_dir, 300 + seed)
    make_optim(out_dir)


if __name__ == "__main__":
    main()
