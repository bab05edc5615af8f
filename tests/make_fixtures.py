#!/usr/bin/env python3
"""Writes the golden fixtures that tests/test_ops_golden.cpp and
tests/test_composite_bottleneck.cpp compare the CPU kernels against.

One safetensors file per op family in tests/fixtures/. Tensors are named
"<case>/<tensor>" and the per-case parameters are a JSON list in the metadata
key "cases" (each entry has at least "name"). Every op stores its inputs, the
random upstream gradient it was differentiated with ("dy", "dcoords" or the
scalar "dloss"), the PyTorch forward result and the gradients with respect to
every input and parameter.

Run:  /usr/bin/python3 tests/make_fixtures.py [output_dir] [family ...]
Deterministic (fixed seed per file, float32, single thread), so re-running it
reproduces the committed files byte for byte on the same torch version.
"""
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "weights_tools"))
import safetensors_np  # noqa: E402

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)


def np32(t):
    return t.detach().cpu().contiguous().numpy().astype(np.float32)


class FixtureFile:
    """Collects the cases of one op family and writes them as one file."""

    def __init__(self, family, seed):
        self.family = family
        self.tensors = {}
        self.cases = []
        # A seed per file: adding a case to one family does not change the others.
        self.gen = torch.Generator().manual_seed(seed)

    def randn(self, *shape, scale=1.0):
        return torch.randn(*shape, generator=self.gen, dtype=torch.float32) * scale

    def rand(self, *shape, lo=0.0, hi=1.0):
        return lo + (hi - lo) * torch.rand(*shape, generator=self.gen, dtype=torch.float32)

    def add(self, params, **tensors):
        name = params["name"]
        assert all(c["name"] != name for c in self.cases), name
        self.cases.append(params)
        for key, value in tensors.items():
            arr = value if isinstance(value, np.ndarray) else np32(value)
            self.tensors[f"{name}/{key}"] = arr

    def write(self, out_dir):
        path = os.path.join(out_dir, f"{self.family}.safetensors")
        safetensors_np.save(path, self.tensors,
                            {"family": self.family, "cases": json.dumps(self.cases),
                             "generator": "tests/make_fixtures.py",
                             "torch": torch.__version__})
        return path


def leaf(t):
    return t.clone().requires_grad_(True)


def scalar(v):
    return np.array([v], dtype=np.float32)


# ---------------------------------------------------------------- conv2d
def make_conv2d():
    f = FixtureFile("conv2d", 101)
    specs = [
        # name, N, C, H, W, K, R, S, stride, pad, groups, bias
        ("basic3x3", 1, 3, 7, 9, 5, 3, 3, 1, 1, 1, True),
        ("stride2_pad1_odd", 2, 5, 9, 8, 6, 3, 3, 2, 1, 1, True),
        ("pointwise1x1", 2, 12, 5, 5, 10, 1, 1, 1, 0, 1, True),
        ("k7_stride2_pad3", 1, 3, 15, 13, 4, 7, 7, 2, 3, 1, True),
        ("depthwise3x3", 2, 6, 7, 7, 6, 3, 3, 1, 1, 6, True),
        ("depthwise_stride2", 1, 5, 9, 10, 5, 3, 3, 2, 1, 5, True),
        ("groups2_nopad", 1, 4, 6, 5, 6, 3, 3, 1, 0, 2, True),
        ("groups2_stride2_nobias", 2, 6, 8, 7, 10, 3, 3, 2, 1, 2, False),
        ("rect_kernel_1x3", 2, 3, 5, 6, 4, 1, 3, 1, 0, 1, True),
        ("stride2_nopad_odd", 3, 7, 11, 9, 9, 3, 3, 2, 0, 1, False),
        # Enough channels and pixels for the long reductions of the weight gradient.
        ("wide_c16_k20", 2, 16, 12, 11, 20, 3, 3, 1, 1, 1, True),
    ]
    for name, N, C, H, W, K, R, S, stride, pad, groups, has_bias in specs:
        x = leaf(f.randn(N, C, H, W))
        w = leaf(f.randn(K, C // groups, R, S, scale=(1.0 / (C // groups * R * S)) ** 0.5))
        b = leaf(f.randn(K, scale=0.5)) if has_bias else None
        y = F.conv2d(x, w, b, stride=stride, padding=pad, groups=groups)
        dy = f.randn(*y.shape)
        y.backward(dy)
        params = dict(name=name, N=N, C=C, H=H, W=W, K=K, R=R, S=S, stride=stride, pad=pad,
                      groups=groups, bias=has_bias, P=y.shape[2], Q=y.shape[3])
        tensors = dict(x=x, weight=w, y=y, dy=dy, dx=x.grad, dweight=w.grad)
        if has_bias:
            tensors.update(bias=b, dbias=b.grad)
        f.add(params, **tensors)
    return f


# ---------------------------------------------------------------- linear
def make_linear():
    f = FixtureFile("linear", 102)
    for name, N, fin, fout in [("batch1", 1, 7, 5), ("odd", 4, 33, 17), ("wide", 3, 64, 10),
                               ("to_one", 5, 9, 1)]:
        x = leaf(f.randn(N, fin))
        w = leaf(f.randn(fout, fin, scale=fin ** -0.5))
        b = leaf(f.randn(fout, scale=0.5))
        y = F.linear(x, w, b)
        dy = f.randn(N, fout)
        y.backward(dy)
        f.add(dict(name=name, N=N, fin=fin, fout=fout), x=x, weight=w, bias=b, y=y, dy=dy,
              dx=x.grad, dweight=w.grad, dbias=b.grad)
    return f


# ---------------------------------------------------------------- batchnorm
def bn_inputs(f, N, C, spatial):
    """A BatchNorm case's inputs: x [N, C(, *spatial)] with an offset and scale per
    channel (so the statistics are not trivially 0/1), gamma, beta, running stats."""
    shape = (N, C) + (spatial or ())
    HW = int(np.prod(spatial)) if spatial else 1
    offset = f.randn(C, scale=2.0).view(1, C, *([1] * len(spatial or ())))
    x = leaf(f.randn(*shape) * 1.5 + offset)
    gamma = leaf(f.rand(C, lo=0.5, hi=1.5))
    beta = leaf(f.randn(C, scale=0.5))
    running_mean = f.randn(C, scale=0.5)
    running_var = f.rand(C, lo=0.5, hi=2.0)
    return shape, HW, x, gamma, beta, running_mean, running_var


def make_batchnorm():
    f = FixtureFile("batchnorm", 103)
    momentum, eps = 0.1, 1e-5
    specs = [
        # name, N, C, HW (spatial shape or None for BatchNorm1d), training
        ("train2d", 2, 5, (7, 9), True),
        ("train2d_batch1", 1, 3, (5, 5), True),
        ("train2d_c12", 3, 12, (4, 3), True),
        ("train1d", 8, 6, None, True),
        ("train1d_c17", 5, 17, None, True),
        ("eval2d", 2, 5, (6, 7), False),
        ("eval1d", 4, 9, None, False),
    ]
    for name, N, C, spatial, training in specs:
        shape, HW, x, gamma, beta, running_mean, running_var = bn_inputs(f, N, C, spatial)
        rm, rv = running_mean.clone(), running_var.clone()
        y = F.batch_norm(x, rm, rv, gamma, beta, training=training, momentum=momentum, eps=eps)
        dy = f.randn(*shape)
        y.backward(dy)
        f.add(dict(name=name, N=N, C=C, HW=HW, training=training, momentum=momentum, eps=eps),
              x=x, gamma=gamma, beta=beta, running_mean=running_mean, running_var=running_var,
              y=y, dy=dy, dx=x.grad, dgamma=gamma.grad, dbeta=beta.grad,
              running_mean_after=rm, running_var_after=rv)
    return f


# ---------------------------------------------------------------- activations
def away_from(x, points, margin):
    """Moves elements within `margin` of any kink point to point +- 2*margin."""
    for p in points:
        near = (x - p).abs() < margin
        x = torch.where(near, p + torch.sign(x - p + 1e-12) * 2 * margin, x)
    return x


def make_activation():
    f = FixtureFile("activation", 104)
    for op, fn, lo, hi in [("relu", F.relu, -3.0, 3.0), ("relu6", F.relu6, -2.0, 8.0)]:
        for name, shape in [("small", (37,)), ("nchw", (2, 3, 5, 7))]:
            x = leaf(away_from(f.rand(*shape, lo=lo, hi=hi), [0.0, 6.0], 1e-2))
            y = fn(x)
            dy = f.randn(*shape)
            y.backward(dy)
            f.add(dict(name=f"{op}_{name}", op=op, n=x.numel()), x=x, y=y, dy=dy, dx=x.grad)
    return f


# ---------------------------------------------------------------- add
def make_add():
    f = FixtureFile("add", 105)
    for name, n in [("n1", 1), ("n37", 37), ("n1000", 1000)]:
        a, b = leaf(f.randn(n)), leaf(f.randn(n))
        y = a + b
        dy = f.randn(n)
        y.backward(dy)
        f.add(dict(name=name, n=n), a=a, b=b, y=y, dy=dy, da=a.grad, db=b.grad)
    return f


# ---------------------------------------------------------------- maxpool 2x2
def make_maxpool():
    f = FixtureFile("maxpool", 106)
    for name, N, C, H, W in [("even", 1, 2, 8, 6), ("odd_hw", 2, 3, 7, 9), ("odd_c5", 1, 5, 5, 5),
                             ("tall", 2, 1, 11, 4)]:
        # A random permutation: no ties, so the argmax is unambiguous.
        n = N * C * H * W
        x = leaf((torch.randperm(n, generator=f.gen).float() / n - 0.5).view(N, C, H, W))
        y = F.max_pool2d(x, 2, 2)
        dy = f.randn(*y.shape)
        y.backward(dy)
        f.add(dict(name=name, N=N, C=C, H=H, W=W), x=x, y=y, dy=dy, dx=x.grad)
    return f


# ---------------------------------------------------------------- upsample nearest x2
def make_upsample():
    f = FixtureFile("upsample_nearest2x", 107)
    for name, N, C, H, W in [("square", 1, 2, 4, 4), ("odd", 2, 3, 5, 3), ("row", 1, 5, 1, 7)]:
        x = leaf(f.randn(N, C, H, W))
        y = F.interpolate(x, scale_factor=2, mode="nearest")
        dy = f.randn(*y.shape)
        y.backward(dy)
        f.add(dict(name=name, N=N, C=C, H=H, W=W), x=x, y=y, dy=dy, dx=x.grad)
    return f


# ---------------------------------------------------------------- bilinear
def asymmetric_resize(x, OH, OW):
    """TFLite/TF default bilinear (align_corners=0, half_pixel_centers=0), written
    as a differentiable gather so autograd gives its gradient:
    src = dst * in / out, i0 = floor(src), i1 = min(i0 + 1, in - 1), lambda = src - i0."""
    N, C, H, W = x.shape

    def axis(n_in, n_out):
        # float64 then float32 lambda: exact integer sources stay exact.
        src = np.arange(n_out, dtype=np.float64) * n_in / n_out
        i0 = np.floor(src).astype(np.int64)
        i0 = np.minimum(i0, n_in - 1)
        i1 = np.minimum(i0 + 1, n_in - 1)
        lam = (src - i0).astype(np.float32)
        return torch.from_numpy(i0), torch.from_numpy(i1), torch.from_numpy(lam)

    y0, y1, ly = axis(H, OH)
    x0, x1, lx = axis(W, OW)
    rows0 = x[:, :, y0, :]  # [N,C,OH,W]
    rows1 = x[:, :, y1, :]
    ly = ly.view(1, 1, OH, 1)
    lx = lx.view(1, 1, 1, OW)
    top = rows0[:, :, :, x0] * (1 - lx) + rows0[:, :, :, x1] * lx
    bottom = rows1[:, :, :, x0] * (1 - lx) + rows1[:, :, :, x1] * lx
    return top * (1 - ly) + bottom * ly


def make_bilinear():
    f = FixtureFile("bilinear", 108)
    sizes = [
        # name, N, C, H, W, OH, OW
        ("up2x", 1, 2, 4, 5, 8, 10),
        ("up_odd", 2, 3, 5, 3, 9, 7),
        ("down", 1, 2, 9, 11, 4, 6),
        ("down_odd", 2, 1, 13, 8, 5, 3),
        ("mixed", 1, 3, 6, 10, 11, 4),
        ("from1x1", 1, 2, 1, 1, 3, 4),
        ("same", 1, 2, 5, 6, 5, 6),
    ]
    for mode in ["AlignCorners", "HalfPixel", "Asymmetric"]:
        for name, N, C, H, W, OH, OW in sizes:
            x = leaf(f.randn(N, C, H, W))
            if mode == "Asymmetric":
                y = asymmetric_resize(x, OH, OW)
            else:
                y = F.interpolate(x, size=(OH, OW), mode="bilinear",
                                  align_corners=(mode == "AlignCorners"))
            dy = f.randn(*y.shape)
            y.backward(dy)
            f.add(dict(name=f"{mode}_{name}", mode=mode, N=N, C=C, H=H, W=W, OH=OH, OW=OW),
                  x=x, y=y, dy=dy, dx=x.grad)
    return f


def self_check_asymmetric():
    """The hand-written gather must reproduce known TF values: 2 -> 4 upsizing of
    [0, 1] gives sources 0, 0.5, 1, 1.5 -> [0, 0.5, 1, 1] (the last clamps)."""
    x = torch.tensor([[[[0.0, 1.0]]]])
    y = asymmetric_resize(x, 1, 4)
    assert torch.allclose(y.view(-1), torch.tensor([0.0, 0.5, 1.0, 1.0])), y
    # Equal sizes are the identity.
    z = torch.randn(1, 1, 3, 5)
    assert torch.equal(asymmetric_resize(z, 3, 5), z)


# ---------------------------------------------------------------- soft-argmax
def make_softargmax():
    f = FixtureFile("softargmax", 109)
    for name, NJ, H, W, beta in [("b1", 3, 8, 8, 1.0), ("b10_rect", 4, 6, 9, 10.0),
                                 ("b100_peaky", 2, 7, 5, 100.0), ("b0p5_single", 1, 5, 11, 0.5)]:
        heat = leaf(f.rand(NJ, H, W, lo=0.0, hi=1.0))
        prob = torch.softmax(beta * heat.view(NJ, H * W), dim=1)
        xs = torch.arange(W, dtype=torch.float32).repeat(H)
        ys = torch.arange(H, dtype=torch.float32).repeat_interleave(W)
        coords = torch.stack([(prob * xs).sum(1), (prob * ys).sum(1)], dim=1)  # [NJ,2] (x,y)
        dcoords = f.randn(NJ, 2)
        coords.backward(dcoords)
        f.add(dict(name=name, NJ=NJ, H=H, W=W, beta=beta), heat=heat, prob=prob, coords=coords,
              dcoords=dcoords, dheat=heat.grad)
    return f


# ---------------------------------------------------------------- gradient reversal
class GradReverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, lam):
        ctx.lam = lam
        return x.view_as(x).clone()

    @staticmethod
    def backward(ctx, g):
        return -ctx.lam * g, None


def make_grad_reverse():
    f = FixtureFile("grad_reverse", 110)
    for name, n, lam in [("lambda1", 17, 1.0), ("lambda0p3", 200, 0.3), ("lambda0", 5, 0.0)]:
        x = leaf(f.randn(n))
        y = GradReverse.apply(x, lam)
        dy = f.randn(n)
        y.backward(dy)
        f.add(dict(name=name, n=n, **{"lambda": lam}), x=x, y=y, dy=dy, dx=x.grad)
    return f


# ---------------------------------------------------------------- dropout
def dropout_uniform(seed, n):
    """numpy twin of cpu::dropout_uniform (splitmix64 output i of the stream `seed`, top 24 bits)."""
    with np.errstate(over="ignore"):
        i = np.arange(n, dtype=np.uint64)
        z = np.uint64(seed) + (i + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(40)).astype(np.float64) / 16777216.0


def make_dropout():
    # The mask comes from the documented hash (numpy above); PyTorch computes the
    # forward and backward from it, so a kernel that draws a different mask, or
    # scales differently, fails.
    f = FixtureFile("dropout", 115)
    for name, n, p, seed in [("p0p5", 1000, 0.5, 42), ("p0p1_odd", 777, 0.1, 7),
                             ("p0", 33, 0.0, 1), ("p0p9", 513, 0.9, 2**40 + 3)]:
        mask = torch.from_numpy((dropout_uniform(seed, n) >= p).astype(np.float32))
        x = leaf(f.randn(n))
        y = x * mask / (1.0 - p)
        dy = f.randn(n)
        y.backward(dy)
        f.add(dict(name=name, n=n, p=p, seed=seed), x=x, y=y, mask=mask, dy=dy, dx=x.grad)
    return f


def make_bn_relu_dropout():
    # The fused training activation of the lifters' MLP layers (BatchNorm ->
    # ReLU -> Dropout) and, with p = 0, the hourglass's BN -> ReLU pairs. The
    # dropout mask is the documented hash over x's flat (NCHW) index; "mask" is
    # the fused op's byte: 1 where the gradient passes (kept and z > 0).
    f = FixtureFile("bn_relu_dropout", 131)
    momentum, eps = 0.1, 1e-5
    specs = [
        # name, N, C, spatial (None: BatchNorm1d), p, seed
        ("mlp_p0p25", 16, 24, None, 0.25, 1234),
        ("mlp_c70_p0p5", 9, 70, None, 0.5, 99),  # two row-wise channel blocks
        ("conv_p0", 2, 5, (6, 7), 0.0, 0),
        ("conv_p0p1", 3, 4, (5, 3), 0.1, 2**33 + 5),
    ]
    for name, N, C, spatial, p, seed in specs:
        shape, HW, x, gamma, beta, running_mean, running_var = bn_inputs(f, N, C, spatial)
        rm, rv = running_mean.clone(), running_var.clone()
        z = F.batch_norm(x, rm, rv, gamma, beta, training=True, momentum=momentum, eps=eps)
        n = int(np.prod(shape))
        keep = torch.from_numpy((dropout_uniform(seed, n) >= p).astype(np.float32)).view(shape)
        y = F.relu(z) * keep / (1.0 - p)
        dy = f.randn(*shape)
        y.backward(dy)
        mask = keep * (z > 0).float()
        f.add(dict(name=name, N=N, C=C, HW=HW, p=p, seed=seed, momentum=momentum, eps=eps),
              x=x, gamma=gamma, beta=beta, running_mean=running_mean, running_var=running_var,
              y=y, mask=mask, dy=dy, dx=x.grad, dgamma=gamma.grad, dbeta=beta.grad,
              running_mean_after=rm, running_var_after=rv)
    return f


# ---------------------------------------------------------------- losses
def make_heatmap_mse():
    f = FixtureFile("heatmap_mse", 111)
    for name, NJ, HW, weighted, dloss in [("unweighted", 6, 64, False, 1.0),
                                          ("weighted", 5, 35, True, 1.0),
                                          ("weighted_zero_joint", 4, 48, True, 0.7),
                                          ("single", 1, 9, False, 2.5)]:
        pred = leaf(f.rand(NJ, HW))
        target = f.rand(NJ, HW)
        w = f.rand(NJ, lo=0.0, hi=2.0) if weighted else torch.ones(NJ)
        if name == "weighted_zero_joint":
            w[1] = 0.0  # an invisible joint contributes nothing
        loss = (w.view(NJ, 1) * (pred - target) ** 2).sum() / (NJ * HW)
        loss.backward(torch.tensor(dloss))
        tensors = dict(pred=pred, target=target, loss=scalar(loss.item()),
                       dloss=scalar(dloss), dpred=pred.grad)
        if weighted:
            tensors["joint_weight"] = w
        f.add(dict(name=name, NJ=NJ, HW=HW, weighted=weighted), **tensors)
    return f


def make_cross_entropy():
    f = FixtureFile("cross_entropy", 112)
    for name, N, T, C, ignore_frac, dloss in [("single_output", 4, 1, 5, 0.0, 1.0),
                                               ("multi_output", 3, 4, 7, 0.3, 1.0),
                                               ("many_ignored", 5, 3, 10, 0.6, 0.5),
                                               ("binary", 6, 2, 2, 0.2, 1.0)]:
        logits = leaf(f.randn(N, T, C, scale=2.0))
        labels = torch.randint(0, C, (N, T), generator=f.gen)
        ignore = torch.rand(N, T, generator=f.gen) < ignore_frac
        labels[ignore] = -1
        labels.view(-1)[0] = 0  # at least one labelled output
        loss = F.cross_entropy(logits.view(N * T, C), labels.view(-1), ignore_index=-1)
        loss.backward(torch.tensor(dloss))
        f.add(dict(name=name, N=N, T=T, C=C, labelled=int((labels >= 0).sum())),
              logits=logits, labels=labels.numpy().astype(np.int32), loss=scalar(loss.item()),
              dloss=scalar(dloss), dlogits=logits.grad)
    return f


def make_l1():
    f = FixtureFile("l1", 113)
    for name, n, dloss in [("n1", 1, 1.0), ("n50", 50, 1.0), ("n999", 999, 0.25)]:
        pred = leaf(f.randn(n))
        target = f.randn(n)
        # |pred - target| bounded away from 0: the sign is unambiguous.
        diff = away_from(pred.detach() - target, [0.0], 1e-3)
        pred = leaf(target + diff)
        loss = F.l1_loss(pred, target)
        loss.backward(torch.tensor(dloss))
        f.add(dict(name=name, n=n), pred=pred, target=target, loss=scalar(loss.item()),
              dloss=scalar(dloss), dpred=pred.grad)
    return f


# ---------------------------------------------------------------- composite
def make_bottleneck():
    """Pre-activation residual bottleneck, 6 -> 8 channels, mid 4:
    main = conv1x1(relu(bn3(conv3x3(relu(bn2(conv1x1(relu(bn1(x))))))))) (pad 1 on the 3x3),
    skip = conv1x1(x); out = main + skip. All BatchNorms in training mode."""
    f = FixtureFile("bottleneck", 114)
    N, Cin, Cmid, Cout, H, W = 2, 6, 4, 8, 9, 7
    momentum, eps = 0.1, 1e-5
    x = leaf(f.randn(N, Cin, H, W))

    def conv_params(k, c, r):
        return (leaf(f.randn(k, c, r, r, scale=(1.0 / (c * r * r)) ** 0.5)),
                leaf(f.randn(k, scale=0.2)))

    def bn_params(c):
        return leaf(f.rand(c, lo=0.5, hi=1.5)), leaf(f.randn(c, scale=0.3))

    g1, b1 = bn_params(Cin)
    w1, c1 = conv_params(Cmid, Cin, 1)
    g2, b2 = bn_params(Cmid)
    w2, c2 = conv_params(Cmid, Cmid, 3)
    g3, b3 = bn_params(Cmid)
    w3, c3 = conv_params(Cout, Cmid, 1)
    ws, cs = conv_params(Cout, Cin, 1)

    def bn(t, g, b):
        c = t.shape[1]
        return F.batch_norm(t, torch.zeros(c), torch.ones(c), g, b, training=True,
                            momentum=momentum, eps=eps)

    h = F.conv2d(F.relu(bn(x, g1, b1)), w1, c1)
    h = F.conv2d(F.relu(bn(h, g2, b2)), w2, c2, padding=1)
    h = F.conv2d(F.relu(bn(h, g3, b3)), w3, c3)
    y = h + F.conv2d(x, ws, cs)
    dy = f.randn(*y.shape)
    y.backward(dy)
    named = dict(x=x, bn1_gamma=g1, bn1_beta=b1, conv1_weight=w1, conv1_bias=c1,
                 bn2_gamma=g2, bn2_beta=b2, conv2_weight=w2, conv2_bias=c2,
                 bn3_gamma=g3, bn3_beta=b3, conv3_weight=w3, conv3_bias=c3,
                 skip_weight=ws, skip_bias=cs)
    tensors = dict(named)
    tensors.update({f"d{k}": v.grad for k, v in named.items()})
    tensors.update(y=y, dy=dy)
    f.add(dict(name="block", N=N, Cin=Cin, Cmid=Cmid, Cout=Cout, H=H, W=W, momentum=momentum,
               eps=eps), **tensors)
    return f

# ---------------------------------------------------------------- 16-bit activations
def make_half_activations():
    """Ops on F16 / BF16 activation tensors (ops::cast, conv2d_fused_forward,
    maxpool2x2_forward, upsample_add_forward): the 16-bit inputs, the op in
    float32, the result rounded once by torch's .half() / .bfloat16() (round
    to nearest even). Every tensor is stored as float32 (16-bit values are
    exact in it); "xdtype" / "ydtype" say which the test makes 16-bit."""
    f = FixtureFile("half_activations", 116)
    torch_type = {"F16": torch.float16, "BF16": torch.bfloat16}

    def as_type(t, dtype):  # t rounded to dtype, back in float32
        return t if dtype == "F32" else t.to(torch_type[dtype]).float()

    # cast: ties, subnormals, the overflow edge, both signs.
    special = torch.tensor([0.0, -0.0, 1.0, -2.5, 1 + 2 ** -11, 1 + 3 * 2 ** -11, 1 + 2 ** -8,
                            1 + 3 * 2 ** -8, 65504.0, 65519.0, 65520.0, 1e6, 2 ** -24, 2 ** -25,
                            1.5 * 2 ** -25, 2 ** -14, 3.0e38, -1e-40, float("inf")])
    for dtype in ("F16", "BF16"):
        x = torch.cat([special, f.randn(45, scale=100.0)])
        f.add(dict(name=f"cast_{dtype.lower()}", kind="cast", xdtype="F32", ydtype=dtype,
                   n=x.numel()), x=x, y=as_type(x, dtype))

    def bn_params(c):
        return dict(mean=f.randn(c, scale=0.3), var=f.rand(c, lo=0.5, hi=2.0),
                    gamma=f.rand(c, lo=0.5, hi=1.5), beta=f.randn(c, scale=0.3))

    def bn_eval(t, p):
        return F.batch_norm(t, p["mean"], p["var"], p["gamma"], p["beta"], training=False,
                            eps=1e-5)

    specs = [
        # name, xdtype, ydtype, N, C, H, W, K, R, stride, pad, in_bn, out_bn, relu, residual
        ("conv_f16_3x3_bn_relu_residual", "F16", "F16", 2, 8, 9, 7, 12, 3, 1, 1, False, True,
         True, True),
        ("conv_f32_to_f16_stem7x7", "F32", "F16", 1, 3, 15, 13, 8, 7, 2, 3, False, True, True,
         False),
        ("conv_f16_to_f32_score1x1", "F16", "F32", 2, 8, 6, 6, 5, 1, 1, 0, False, False, False,
         False),
        ("conv_f32_to_f16_add1x1", "F32", "F16", 2, 5, 6, 6, 8, 1, 1, 0, False, False, False,
         True),
        ("conv_bf16_1x1_prologue", "BF16", "BF16", 2, 8, 5, 7, 6, 1, 1, 0, True, True, True,
         False),
        ("conv_bf16_stride2_residual", "BF16", "BF16", 1, 6, 10, 9, 7, 3, 2, 1, False, False,
         False, True),
        ("conv_f32_to_bf16_3x3", "F32", "BF16", 2, 4, 8, 8, 6, 3, 1, 1, False, True, True,
         False),
    ]
    for (name, xt, yt, N, C, H, W, K, R, stride, pad, in_bn, out_bn, relu,
         residual) in specs:
        x = as_type(f.randn(N, C, H, W), xt)
        w = f.randn(K, C, R, R, scale=(1.0 / (C * R * R)) ** 0.5)
        b = f.randn(K, scale=0.5)
        tensors = dict(x=x, weight=w, bias=b)
        h = x
        if in_bn:
            p = bn_params(C)
            h = F.relu(bn_eval(h, p))
            tensors.update({f"in_bn_{k}": v for k, v in p.items()})
        y = F.conv2d(h, w, b, stride=stride, padding=pad)
        if out_bn:
            p = bn_params(K)
            y = bn_eval(y, p)
            tensors.update({f"out_bn_{k}": v for k, v in p.items()})
        if relu:
            y = F.relu(y)
        if residual:
            r = as_type(f.randn(*y.shape), yt)
            y = y + r
            tensors["residual"] = r
        tensors["y"] = as_type(y, yt)
        f.add(dict(name=name, kind="conv", xdtype=xt, ydtype=yt, N=N, C=C, H=H, W=W, K=K, R=R,
                   stride=stride, pad=pad, in_bn=in_bn, out_bn=out_bn, relu=relu,
                   residual=residual), **tensors)

    for dtype, (N, C, H, W) in (("F16", (2, 3, 8, 6)), ("BF16", (1, 4, 7, 9))):
        x = as_type(f.randn(N, C, H, W), dtype)
        f.add(dict(name=f"maxpool_{dtype.lower()}", kind="maxpool", xdtype=dtype, ydtype=dtype,
                   N=N, C=C, H=H, W=W), x=x, y=as_type(F.max_pool2d(x, 2, 2), dtype))
    for dtype, (N, C, H, W) in (("F16", (2, 3, 4, 5)), ("BF16", (1, 5, 3, 3))):
        low = as_type(f.randn(N, C, H, W), dtype)
        a = as_type(f.randn(N, C, 2 * H, 2 * W), dtype)
        y = a + F.interpolate(low, scale_factor=2, mode="nearest")
        f.add(dict(name=f"upsample_add_{dtype.lower()}", kind="upsample_add", xdtype=dtype,
                   ydtype=dtype, N=N, C=C, H=H, W=W), a=a, low=low, y=as_type(y, dtype))
    return f


def main():
    # usage: make_fixtures.py [output_dir] [family ...] (default: every family)
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "fixtures")
    only = set(sys.argv[2:])
    os.makedirs(out_dir, exist_ok=True)
    self_check_asymmetric()
    makers = [make_conv2d, make_linear, make_batchnorm, make_activation, make_add, make_maxpool,
              make_upsample, make_bilinear, make_softargmax, make_grad_reverse, make_dropout,
              make_bn_relu_dropout, make_heatmap_mse,
              make_cross_entropy, make_l1, make_bottleneck, make_half_activations]
    if only:
        makers = [m for m in makers if m.__name__[len("make_"):] in only]
        assert makers, f"no family among {sorted(only)}"
    total = 0
    for make in makers:
        path = make().write(out_dir)
        size = os.path.getsize(path)
        total += size
        print(f"{os.path.relpath(path)}: {size} bytes")
    print(f"total {total} bytes")


if __name__ == "__main__":
    main()
