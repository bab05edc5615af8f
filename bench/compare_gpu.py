#!/usr/bin/env python3
"""dofpose vs PyTorch on one CUDA GPU, whole models, same weights, same inputs.

    python3 bench/compare_gpu.py --build build-cuda [--quick] [--only NAME,...]

Like bench/compare_cpu.py (whose helpers it reuses): for each case it writes a
random weights file (weights_tools/make_random_model.py, random BatchNorm
statistics), loads it into our engine (bench/model_timer.cpp with --device
cuda, kept running in --serve mode) and into the PyTorch twins
(weights_tools/reference_*.py) on the same GPU, checks that the outputs agree,
then times both interleaved and prints one table of medians. Each of our
timed runs ends with a stream synchronisation; each torch run with
torch.cuda.synchronize(). ratio = torch time / our time (> 1: dofpose faster).

Torch columns: "eager" (cuDNN, allow_tf32 as the row says) and "graph" (the
same forward captured once into a CUDA graph and replayed). Rows:
  hourglass_b1 / hourglass_b64    default 2-stack hourglass, 256x256, both heads
  martinez_b1 / progressive_b1    lifters, width 1024, batch 1 (latency)
  martinez_b4096 / progressive_b4096   batch 4096 (throughput)
  progressive_train_b64           one training step (forward, L1, backward, Adam, max-norm)
  hourglass_train_b8              one training step (forward, MSE per stack, backward, RMSprop)
hourglass rows in f32, tf32, fp16 and bf16 math (ours: float32 tensors, the
tensor-core inputs rounded; torch: allow_tf32, or autocast for fp16/bf16),
lifter rows in f32 only.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import compare_cpu as cc  # noqa: E402  (make_weights, load_torch_hourglass, ...)
import reference_lifter  # noqa: E402


class GpuTimer(cc.Timer):
    def __init__(self, exe, model, inp, out_dir, math, target=None, graph=False, extra=()):
        # "tf32p": TF32 on the multi-stage kernel (model_timer --pipeline);
        # "f32s": F32 with the stem's direct kernel (--stem-kernel)
        # "fp16p" / "bf16p" / "tf32m": FP16 / BF16 / TF32 on the multi-stage mma.sync kernel
        # "fp16a" / "bf16a": 16-bit activation tensors (--activations f16 / bf16)
        mode = {"tf32p": ["--math", "tf32", "--pipeline"],
                "tf32m": ["--math", "tf32", "--tf32-mma"],
                "fp16p": ["--math", "fp16", "--pipeline"],
                "bf16p": ["--math", "bf16", "--pipeline"],
                "f32s": ["--math", "f32", "--stem-kernel"],
                "fp16a": ["--math", "fp16", "--activations", "f16"],
                "bf16a": ["--math", "bf16", "--activations", "bf16"]}.get(math, ["--math", math])
        cmd = [exe, "--model", model, "--input", inp, "--device", "cuda", *mode,
               "--output-dir", out_dir, "--warmup", "3", "--serve", *extra] + (["--graph"] if graph else [])
        if target is not None:
            cmd += ["--train", "--target", target]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        ready = self._read()
        if not ready.get("ready"):
            raise SystemExit(f"dofpose_model_timer did not start: {ready}")


def sync_timed(fn, n):
    out = []
    for _ in range(n):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        out.append(1e3 * (time.perf_counter() - t0))
    return out


def graphed(fn, x):
    """fn(x) captured into a CUDA graph on a static input; returns a replay function."""
    static_x = x.clone()
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            fn(static_x)
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        fn(static_x)
    return g.replay


def max_diff_gpu(ours_dir, outs):
    return cc.max_diff(ours_dir, {k: v.float().cpu() for k, v in outs.items()})


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", required=True, help="CUDA-enabled build dir (bench/dofpose_model_timer)")
    ap.add_argument("--quick", action="store_true", help="fewer repeats")
    ap.add_argument("--only", default="", help="comma-separated case names")
    ap.add_argument("--json", help="also write the rows to this JSON file")
    ap.add_argument("--maths", default="f32,tf32,fp16,bf16",
                    help="hourglass math modes (ours: --math; torch: allow_tf32 / autocast); "
                         "tf32p / fp16p / bf16p = ours on the multi-stage kernels (--pipeline), "
                         "tf32m = TF32 on the multi-stage mma.sync kernel (--tf32-mma), "
                         "f32s = ours in F32 with the stem's direct kernel (--stem-kernel), "
                         "fp16a / bf16a = ours with 16-bit activation tensors (--activations)")
    ap.add_argument("--mlp-launch", default="cooperative", choices=["cooperative", "cluster", "prefetch"],
                    help="our persistent batch-1 lifter's launch (model_timer --mlp-launch)")
    args = ap.parse_args()
    exe = os.path.join(args.build, "bench", "dofpose_model_timer")
    if not torch.cuda.is_available():
        raise SystemExit("compare_gpu: torch sees no CUDA device")
    dev = torch.device("cuda")
    card = torch.cuda.get_device_name(0)
    rounds, per = (3, 5) if args.quick else (5, 10)
    only = set(filter(None, args.only.split(",")))
    rows = []

    def want(name):
        return not only or name in only

    def record(name, math, ours, eager, graph, diff, note="", ours_graph=None):
        """ours: our eager forward; ours_graph: ours replayed from a CUDA graph
        (model_timer --graph). Ratios use our best of the two."""
        row = {"case": name, "math": math, "ours_ms": float(np.median(ours)),
               "ours_graph_ms": float(np.median(ours_graph)) if ours_graph else None,
               "torch_eager_ms": float(np.median(eager)),
               "torch_graph_ms": float(np.median(graph)) if graph else None,
               "max_abs_diff": diff, "note": note}
        best = min(row["ours_ms"], row["ours_graph_ms"] or float("inf"))
        row["ours_best_ms"] = best
        rows.append(row)
        og = f"{row['ours_graph_ms']:9.3f}" if ours_graph else "        -"
        g = f"{row['torch_graph_ms']:9.3f}" if graph else "        -"
        gr = f"{row['torch_graph_ms'] / best:6.2f}x" if graph else "      -"
        print(f"{name:22s} {math:5s} ours {row['ours_ms']:9.3f} graph {og} ms | torch eager "
              f"{row['torch_eager_ms']:9.3f} ({row['torch_eager_ms'] / best:6.2f}x) graph {g} ({gr})"
              f"  diff {diff:.2e} {note}", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        hg_w = os.path.join(tmp, "hourglass.safetensors")
        if any(want(n) for n in ("hourglass_b1", "hourglass_b64")):
            cc.make_weights("hourglass", hg_w, {})
            hg = cc.load_torch_hourglass(hg_w).to(dev)
            fn = cc.hourglass_fn(hg)
            for batch in (1, 64):
                name = f"hourglass_b{batch}"
                if not want(name):
                    continue
                x = np.random.default_rng(batch).standard_normal((batch, 3, 256, 256)).astype(np.float32)
                d = os.path.join(tmp, name)
                os.makedirs(d, exist_ok=True)
                np.save(os.path.join(d, "x.npy"), x)
                xt = torch.from_numpy(x).to(dev)
                for math in args.maths.split(","):
                    torch.backends.cudnn.allow_tf32 = math in ("tf32", "tf32p", "tf32m")
                    torch.backends.cuda.matmul.allow_tf32 = math in ("tf32", "tf32p", "tf32m")
                    fn_m = fn
                    if math in ("fp16", "bf16", "fp16p", "bf16p", "fp16a", "bf16a"):  # torch: autocast (16-bit convs, FP32 BN/outputs)
                        dt = torch.float16 if math.startswith("fp16") else torch.bfloat16

                        def fn_m(inp, dt=dt):
                            with torch.autocast("cuda", dtype=dt, cache_enabled=False):
                                return {k: v.float() for k, v in fn(inp).items()}
                    with torch.no_grad():
                        outs = fn_m(xt)
                        timer = GpuTimer(exe, hg_w, os.path.join(d, "x.npy"), d, math)
                        diff, _ = max_diff_gpu(d, outs)
                        gtimer = GpuTimer(exe, hg_w, os.path.join(d, "x.npy"), d, math, graph=True)
                        diff = max(diff, max_diff_gpu(d, outs)[0])
                        replay = graphed(fn_m, xt)
                        ours, ours_g, eager, graph = [], [], [], []
                        for _ in range(rounds):
                            ours += timer.run(per)["ms"]
                            ours_g += gtimer.run(per)["ms"]
                            eager += sync_timed(lambda: fn_m(xt), per)
                            graph += sync_timed(replay, per)
                        timer.close()
                        gtimer.close()
                    record(name, math, ours, eager, graph, diff, ours_graph=ours_g)
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False

        for kind in ("martinez", "progressive"):
            lw = os.path.join(tmp, f"{kind}.safetensors")
            made = False
            for batch in (1, 4096):
                name = f"{kind}_b{batch}"
                if not want(name):
                    continue
                if not made:
                    cc.make_weights("lifter", lw, {"kind": kind, "width": 1024})
                    made = True
                model = reference_lifter.load_dofpose(lw).eval().to(dev)
                n = model.norm
                cfg = model.config
                jin = cfg.get("num_joints_in", 16)
                x = (np.random.default_rng(batch).standard_normal((batch, jin, 2)) * 100 + 500).astype(np.float32)
                d = os.path.join(tmp, name)
                os.makedirs(d, exist_ok=True)
                np.save(os.path.join(d, "x.npy"), x)
                xt = torch.from_numpy(x).to(dev).view(batch, -1)

                def fn(inp, model=model, n=n):
                    poses = model((inp - n.input.mean) / n.input.std)
                    y = poses[-1] * n.output.std + n.output.mean
                    y[:, :3] = 0
                    return {"pose3d": y.view(-1, 17, 3)}
                with torch.no_grad():
                    outs = fn(xt)
                    launch = ("--mlp-launch", args.mlp_launch)
                    timer = GpuTimer(exe, lw, os.path.join(d, "x.npy"), d, "f32", extra=launch)
                    diff, _ = max_diff_gpu(d, outs)
                    gtimer = GpuTimer(exe, lw, os.path.join(d, "x.npy"), d, "f32", graph=True, extra=launch)
                    diff = max(diff, max_diff_gpu(d, outs)[0])
                    try:  # the reference lifter indexes with Python lists: not capturable
                        replay = graphed(fn, xt)
                    except RuntimeError:
                        replay = None
                    ours, ours_g, eager, graph = [], [], [], []
                    for _ in range(rounds):
                        ours += timer.run(per)["ms"]
                        ours_g += gtimer.run(per)["ms"]
                        eager += sync_timed(lambda: fn(xt), per)
                        if replay:
                            graph += sync_timed(replay, per)
                    timer.close()
                    gtimer.close()
                record(name, "f32", ours, eager, graph, diff,
                       "ours: host normalisation + upload included" +
                       (f"; batch 1 = persistent kernel, {args.mlp_launch} launch" if batch == 1 else ""),
                       ours_graph=ours_g)

        def time_train(name, weights, x, y, step, note):
            """One training step of ours (model_timer --train on x, y) against `step` (torch)."""
            d = os.path.join(tmp, name)
            os.makedirs(d, exist_ok=True)
            np.save(os.path.join(d, "x.npy"), x)
            np.save(os.path.join(d, "t.npy"), y)
            for _ in range(3):
                step()
            timer = GpuTimer(exe, weights, os.path.join(d, "x.npy"), d, "f32", target=os.path.join(d, "t.npy"))
            ours, eager = [], []
            for _ in range(rounds):
                ours += timer.run(per)["ms"]
                eager += sync_timed(step, per)
            timer.close()
            record(name, "f32", ours, eager, None, float("nan"), note)

        name = "progressive_train_b64"
        if want(name):
            lw = os.path.join(tmp, "progressive_train.safetensors")
            cc.make_weights("lifter", lw, {"kind": "progressive", "width": 1024})
            model = reference_lifter.load_dofpose(lw).train().to(dev)
            in_dim = reference_lifter.input_dim(reference_lifter.full_config(model.config))
            rng = np.random.default_rng(64)
            x = rng.standard_normal((64, in_dim)).astype(np.float32)
            y = rng.standard_normal((64, 51)).astype(np.float32)
            xt, yt = torch.from_numpy(x).to(dev), torch.from_numpy(y).to(dev)
            time_train(name, lw, x, y, cc.lifter_train_fn(model, xt, yt),
                       "training step; no output check (dropout streams differ)")

        name = "hourglass_train_b8"
        if want(name):
            hw = os.path.join(tmp, "hourglass_train.safetensors")
            cc.make_weights("hourglass", hw, {})
            model = cc.load_torch_hourglass(hw).train().to(dev)
            rng = np.random.default_rng(8)
            x = rng.standard_normal((8, 3, 256, 256)).astype(np.float32)
            y = (rng.random((8, 16, 64, 64)) * 0.1).astype(np.float32)
            xt, yt = torch.from_numpy(x).to(dev), torch.from_numpy(y).to(dev)
            time_train(name, hw, x, y, cc.hourglass_train_fn(model, xt, yt),
                       "training step (forward, MSE per stack, backward, RMSprop); no output check")

    print(f"\ncard: {card}; torch {torch.__version__}, cuDNN {torch.backends.cudnn.version()}; "
          f"medians of {rounds * per} runs; ratio = torch / our best (eager or graph)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"card": card, "torch": torch.__version__, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
