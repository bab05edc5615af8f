#!/usr/bin/env python3
"""dofpose vs PyTorch on the CPU, whole models, same weights, same inputs.

    /usr/bin/python3 bench/compare_cpu.py --build /tmp/build-bench [--quick] [--threads 2]

For every case it writes a random weights file (weights_tools/make_random_model.py,
random BatchNorm statistics so differences would show), loads it into our
engine (bench/model_timer.cpp, target dofpose_model_timer, kept running in
--serve mode) and into the PyTorch twins (weights_tools/reference_*.py), checks
the outputs agree (max abs difference), then times both INTERLEAVED
(ours, torch, ours, torch, ...) so a background load hits both alike, and
prints one table of medians with ratio = torch time / our time
(> 1: dofpose is faster). Both run with the same thread count.

Cases: the default hourglass (2 stacks, 256 features, both heads) forward at
256x256, batch 1; the martinez and progressive lifters (width 1024) at batch 1
and 4096 (--quick: 1024) (inference, with the input/output normalisation), and one training
step at batch 64 (forward in train mode, L1 loss over every block, backward,
Adam, row max-norm 1); one hourglass training step at batch 4 (forward in
train mode, MSE of each stack's heatmaps, backward, RMSprop). The training
checks run 3 steps (lifters with dropout 0) on both sides and compare the
losses (they depend on the updates of steps 1 and 2).

PyTorch notes: Debian's torch 1.13 CPU build runs nn.Linear through its
reference BLAS (about 1 GFLOP/s), so for the large-batch lifter cases the torch
column uses torch.utils.mkldnn.to_mkldnn (oneDNN inner products), torch's
fastest path here; --stock-large times the stock model instead (minutes).
Training can only use the stock path (MkldnnLinear has no autograd).
Convolutions use oneDNN in every case. OMP_WAIT_POLICY defaults to passive
for both engines (see docs/cpu-kernels.md, "Shared machines").
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import zlib

# Both engines use libgomp, whose idle threads spin after each parallel region;
# interleaved with a second busy process on 2 cores the spinning of one engine
# would slow the other. Passive waiting for both (unless the caller chose).
os.environ.setdefault("OMP_WAIT_POLICY", "passive")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.utils.mkldnn  # noqa: E402

HG_TRAIN_BATCH = 4  # hourglass training step: 4 images of 256x256 (the paper trains with 6-8)

HERE = os.path.dirname(os.path.abspath(__file__))
TOOLS = os.path.join(HERE, "..", "weights_tools")
sys.path.insert(0, TOOLS)
import reference_hourglass  # noqa: E402
import reference_lifter  # noqa: E402
import safetensors_np  # noqa: E402


# ------------------------------------------------------------------ our engine

class Timer:
    """dofpose_model_timer in --serve mode: loaded once, asked for K runs at a time."""

    def __init__(self, exe, model, inp, threads, out_dir, target=None):
        cmd = [exe, "--model", model, "--input", inp, "--threads", str(threads),
               "--output-dir", out_dir, "--serve"]
        if target is not None:
            cmd += ["--train", "--target", target]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        ready = self._read()
        if not ready.get("ready"):
            raise SystemExit(f"dofpose_model_timer did not start: {ready}")
        self.model = ready.get("model", "")

    def _read(self):
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"dofpose_model_timer exited (status {self.proc.wait()})")
        return json.loads(line)

    def run(self, k):
        self.proc.stdin.write(f"{k}\n")
        self.proc.stdin.flush()
        r = self._read()
        if "error" in r:
            raise SystemExit(f"dofpose_model_timer: {r['error']}")
        return r

    def close(self):
        self.proc.stdin.write("quit\n")
        self.proc.stdin.close()
        self.proc.wait()


def run_once(exe, args):
    r = subprocess.run([exe] + args, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"dofpose_model_timer {' '.join(args)} failed:\n{r.stderr}")
    return json.loads(r.stdout)


# ------------------------------------------------------------------ models

def make_weights(kind, path, config):
    subprocess.run([sys.executable, os.path.join(TOOLS, "make_random_model.py"), kind, path,
                    "--config", json.dumps(config), "--random-bn", "--seed", "1"],
                   check=True, stdout=subprocess.DEVNULL)


def torch_state(path):
    tensors, meta = safetensors_np.load(path, with_metadata=True)
    return {k: torch.from_numpy(np.array(v)) for k, v in tensors.items()}, meta


def load_torch_hourglass(path):
    state, meta = torch_state(path)
    model = reference_hourglass.HourglassNet(json.loads(meta["config"]))
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [m for m in missing if not m.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise SystemExit(f"{path}: missing {missing}, unexpected {unexpected}")
    return model.eval()


def hourglass_fn(model):
    beta = model.config["softargmax_beta"]

    def fn(x):
        out = model(x)
        outs = {f"heatmaps_stack{i}": h for i, h in enumerate(out["heatmaps"])}
        outs["coords"] = reference_hourglass.soft_argmax(out["heatmaps"][-1], beta)
        if out["attributes"] is not None:
            outs["attributes"] = out["attributes"]
        if out["domain"] is not None:
            outs["domain"] = out["domain"]
        return outs
    return fn


def lifter_infer_fn(model, fast):
    """The engine's Model::forward for lifters: normalise, run, denormalise, pelvis 0."""
    n = model.norm
    net = torch.utils.mkldnn.to_mkldnn(model) if fast else model

    def fn(x):
        poses = net((x - n.input.mean) / n.input.std)
        y = poses[-1] * n.output.std + n.output.mean
        y[:, :3] = 0
        return {"pose3d": y.view(-1, 17, 3)}
    return fn


def lifter_train_fn(model, x, target):
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    max_norm = model.config["max_norm"]

    def step():
        opt.zero_grad(set_to_none=True)
        loss = reference_lifter.loss_l1(model(x), target)
        loss.backward()
        opt.step()
        reference_lifter.apply_max_norm(model, max_norm)
        return float(loss)
    return step


def hourglass_train_fn(model, x, target):
    """model_timer's hourglass step: MSE of every stack's heatmaps, summed; RMSprop lr 2.5e-4."""
    opt = torch.optim.RMSprop(model.parameters(), lr=2.5e-4)

    def step():
        opt.zero_grad(set_to_none=True)
        out = model(x)
        loss = sum(torch.nn.functional.mse_loss(h, target) for h in out["heatmaps"])
        loss.backward()
        opt.step()
        return float(loss)
    return step


def max_diff(ours_dir, torch_outs):
    """Largest |ours - torch| over the outputs both produce (name: shape-matched)."""
    worst, names = 0.0, []
    for name, t in torch_outs.items():
        path = os.path.join(ours_dir, name + ".npy")
        if not os.path.exists(path):
            continue
        ours = np.load(path)
        ref = t.detach().numpy()
        if ours.shape != ref.shape:
            raise SystemExit(f"{name}: ours {ours.shape} vs torch {ref.shape}")
        worst = max(worst, float(np.abs(ours - ref).max()))
        names.append(name)
    if not names:
        raise SystemExit(f"no common outputs in {ours_dir} and torch ({list(torch_outs)})")
    return worst, names


def three_step_losses(exe, weights, x_path, y_path, threads, out_dir, torch_step, label=""):
    """The losses of 3 training steps from the same weights: ours (model_timer
    --train: its warm-up step, then 2 more) and torch's (torch_step 3 times)."""
    r = run_once(exe, ["--model", weights, "--input", x_path, "--train", "--target", y_path,
                       "--threads", str(threads), "--output-dir", out_dir, "--repeat", "2"])
    ours = [float(np.load(os.path.join(out_dir, "loss.npy"))[0])] + r["loss"]
    with torch.enable_grad():
        theirs = [torch_step() for _ in range(3)]
    print(f"  check losses{' ' + label if label else ''}: ours "
          + ", ".join(f"{v:.6f}" for v in ours) + "; torch "
          + ", ".join(f"{v:.6f}" for v in theirs), flush=True)
    return ours, theirs


# ------------------------------------------------------------------ timing

def interleave(timer, torch_fn, rounds, per_round):
    """rounds x (ours: per_round runs, torch: per_round runs); per-run milliseconds."""
    ours, theirs = [], []
    for _ in range(rounds):
        ours += timer.run(per_round)["ms"]
        for _ in range(per_round):
            t0 = time.perf_counter()
            torch_fn()
            theirs.append(1e3 * (time.perf_counter() - t0))
    return ours, theirs


def median(v):
    return float(np.median(np.asarray(v)))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build", help="CMake build dir with bench/dofpose_model_timer")
    ap.add_argument("--timer", help="path of dofpose_model_timer (overrides --build)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true",
                    help="fewer repeats, large lifter batch 1024 (about half the time)")
    ap.add_argument("--large-batch", type=int, help="batch of the large lifter cases (default 4096)")
    ap.add_argument("--stock-large", action="store_true",
                    help="large-batch lifters: time torch's stock nn.Linear (reference BLAS; minutes per run)")
    ap.add_argument("--only", default="", help="comma-separated case-name prefixes to run")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    exe = args.timer or os.path.join(args.build, "bench", "dofpose_model_timer")
    if not os.path.exists(exe):
        raise SystemExit(f"{exe} not found: build the target dofpose_model_timer "
                         "(cmake -DDOFPOSE_BUILD_BENCH=ON) or pass --timer")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    def rng_for(name):  # per-case data, whatever else runs (--only, --quick)
        return np.random.default_rng(zlib.crc32(name.encode()))

    q = args.quick
    # (rounds, runs per round) per kind of case: the slow torch cases get few.
    reps = {"hourglass": (3, 1) if q else (7, 1), "small": (4, 5) if q else (10, 5),
            "large": (1, 1) if q else (3, 1), "train": (1, 1) if q else (3, 1)}
    wanted = [p for p in args.only.split(",") if p]

    def want(name):
        return not wanted or any(name.startswith(p) for p in wanted)

    results = []
    t_start = time.time()
    with tempfile.TemporaryDirectory(prefix="dofpose_compare_") as tmp, torch.no_grad():
        def case_dir(name):
            d = os.path.join(tmp, name)
            os.makedirs(d, exist_ok=True)
            return d

        def record(name, unit_per_run, unit, ours_ms, torch_ms, diff, torch_variant, note=""):
            o, t = median(ours_ms), median(torch_ms)
            results.append({"case": name, "ours_ms": o, "torch_ms": t, "ratio": t / o,
                            "ours_rate": unit_per_run * 1e3 / o, "torch_rate": unit_per_run * 1e3 / t,
                            "unit": unit, "max_abs_diff": diff, "torch": torch_variant,
                            "n_ours": len(ours_ms), "n_torch": len(torch_ms), "note": note})
            print(f"  {name}: ours {o:.2f} ms, torch {t:.2f} ms, ratio {t / o:.2f}, "
                  f"max|diff| {diff:.2e}", flush=True)

        # ---- hourglass, batch 1, 256x256
        if want("hourglass"):
            name = "hourglass_b1"
            print(f"{name} ...", flush=True)
            d = case_dir(name)
            w = os.path.join(d, "hg.safetensors")
            make_weights("hourglass", w, {})
            x = rng_for(name).standard_normal((1, 3, 256, 256)).astype(np.float32)
            np.save(os.path.join(d, "x.npy"), x)
            fn = hourglass_fn(load_torch_hourglass(w))
            xt = torch.from_numpy(x)
            ref = fn(xt)  # warm-up, and the reference outputs
            timer = Timer(exe, w, os.path.join(d, "x.npy"), args.threads, d)
            diff, compared = max_diff(d, ref)
            print(f"  compared: {', '.join(compared)}", flush=True)
            ours, theirs = interleave(timer, lambda: fn(xt), *reps["hourglass"])
            timer.close()
            record(name, 1, "images/s", ours, theirs, diff, "stock (oneDNN convs)")

        # ---- lifters: inference at batch 1 and 4096
        for kind in ("martinez", "progressive"):
            lifter_w = None
            for batch in (1, args.large_batch or (1024 if q else 4096)):
                name = f"{kind}_infer_b{batch}"
                if not want(name):
                    continue
                print(f"{name} ...", flush=True)
                d = case_dir(name)
                if lifter_w is None:
                    lifter_w = os.path.join(tmp, f"{kind}.safetensors")
                    make_weights("lifter", lifter_w, {"kind": kind, "width": 1024})
                x = rng_for(name).standard_normal((batch, 32)).astype(np.float32)
                np.save(os.path.join(d, "x.npy"), x)
                fast = batch > 1 and not args.stock_large
                fn = lifter_infer_fn(reference_lifter.load_dofpose(lifter_w).eval(), fast)
                xt = torch.from_numpy(x)
                ref = fn(xt)
                timer = Timer(exe, lifter_w, os.path.join(d, "x.npy"), args.threads, d)
                diff, _ = max_diff(d, ref)
                ours, theirs = interleave(timer, lambda: fn(xt), *reps["small" if batch == 1 else "large"])
                timer.close()
                record(name, batch, "poses/s", ours, theirs, diff,
                       "mkldnn Linear" if fast else "stock (ref. BLAS Linear)")

        # ---- lifters: one training step at batch 64
        for kind in ("martinez", "progressive"):
            name = f"{kind}_train_b64"
            if not want(name):
                continue
            print(f"{name} ...", flush=True)
            d = case_dir(name)
            batch = 64
            rng = rng_for(name)
            x = rng.standard_normal((batch, 32)).astype(np.float32)
            y = rng.standard_normal((batch, 51)).astype(np.float32)
            y[:, :3] = 0  # the pelvis is the origin
            np.save(os.path.join(d, "x.npy"), x)
            np.save(os.path.join(d, "y.npy"), y)
            xt, yt = torch.from_numpy(x), torch.from_numpy(y)

            # Agreement: 3 steps with dropout 0 (dropout masks differ between the engines).
            # Batch 16 keeps torch's reference-BLAS steps short.
            check_w = os.path.join(d, "check.safetensors")
            make_weights("lifter", check_w, {"kind": kind, "width": 1024, "dropout": 0.0})
            np.save(os.path.join(d, "xc.npy"), x[:16])
            np.save(os.path.join(d, "yc.npy"), y[:16])
            ours_losses, torch_losses = three_step_losses(
                exe, check_w, os.path.join(d, "xc.npy"), os.path.join(d, "yc.npy"), args.threads,
                case_dir(name + "/check"),
                lifter_train_fn(reference_lifter.load_dofpose(check_w).train(), xt[:16], yt[:16]),
                "(dropout 0, batch 16)")
            diff = max(abs(a - b) for a, b in zip(ours_losses, torch_losses))

            # Timing: the real config (dropout 0.5), batch 64.
            w = os.path.join(d, "train.safetensors")
            make_weights("lifter", w, {"kind": kind, "width": 1024})
            timer = Timer(exe, w, os.path.join(d, "x.npy"), args.threads, d,
                          target=os.path.join(d, "y.npy"))
            with torch.enable_grad():
                step = lifter_train_fn(reference_lifter.load_dofpose(w).train(), xt, yt)
                step()  # warm-up
                ours, theirs = interleave(timer, step, *reps["train"])
            timer.close()
            record(name, batch, "samples/s", ours, theirs, diff, "stock (ref. BLAS Linear)",
                   note="diff = max |loss difference| over 3 dropout-0 steps at batch 16")

        # ---- hourglass: one training step (the multi-task net's RMSprop step)
        name = f"hourglass_train_b{HG_TRAIN_BATCH}"
        if want(name):
            print(f"{name} ...", flush=True)
            d = case_dir(name)
            w = os.path.join(d, "hg.safetensors")
            make_weights("hourglass", w, {})
            rng = rng_for(name)
            x = rng.standard_normal((HG_TRAIN_BATCH, 3, 256, 256)).astype(np.float32)
            y = (rng.random((HG_TRAIN_BATCH, 16, 64, 64)) * 0.1).astype(np.float32)
            np.save(os.path.join(d, "x.npy"), x)
            np.save(os.path.join(d, "y.npy"), y)
            xt, yt = torch.from_numpy(x), torch.from_numpy(y)
            # Agreement: the losses of 3 steps (no dropout in the hourglass, so
            # the timed configuration itself; steps 2 and 3 see the updates).
            ours_losses, torch_losses = three_step_losses(
                exe, w, os.path.join(d, "x.npy"), os.path.join(d, "y.npy"), args.threads,
                case_dir(name + "/check"), hourglass_train_fn(load_torch_hourglass(w).train(), xt, yt))
            diff = max(abs(a - b) for a, b in zip(ours_losses, torch_losses))
            # Timing: fresh weights on both sides (the check's steps moved them).
            timer = Timer(exe, w, os.path.join(d, "x.npy"), args.threads, d,
                          target=os.path.join(d, "y.npy"))
            with torch.enable_grad():
                step = hourglass_train_fn(load_torch_hourglass(w).train(), xt, yt)
                step()  # warm-up
                ours, theirs = interleave(timer, step, *reps["train"])
            timer.close()
            record(name, HG_TRAIN_BATCH, "images/s", ours, theirs, diff, "stock (oneDNN convs)",
                   note=f"diff = max |loss difference| over 3 steps (step 1: "
                        f"{abs(ours_losses[0] - torch_losses[0]):.1e})")

    print()
    print(f"dofpose vs PyTorch {torch.__version__} (CPU), {args.threads} threads, "
          f"medians of interleaved runs; ratio = torch ms / ours ms (> 1: dofpose faster); "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, {time.time() - t_start:.0f} s total")
    header = (f"| {'case':<23} | {'ours ms':>9} | {'torch ms':>10} | {'ratio':>6} | {'ours /s':>9} | "
              f"{'torch /s':>9} | {'unit':<9} | {'max abs diff':>12} | {'n':>5} | torch path |")
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for r in results:
        print(f"| {r['case']:<23} | {r['ours_ms']:>9.2f} | {r['torch_ms']:>10.2f} | {r['ratio']:>6.2f} | "
              f"{r['ours_rate']:>9.1f} | {r['torch_rate']:>9.1f} | {r['unit']:<9} | "
              f"{r['max_abs_diff']:>12.2e} | {r['n_ours']:>2}/{r['n_torch']:<2} | {r['torch']} |")
    if any(r["note"] for r in results):
        print("training rows: max abs diff = largest |loss difference| over 3 steps (lifters: "
              "dropout 0, batch 16; timings use dropout 0.5, batch 64). RMSprop's first step is "
              "close to lr x sign(grad), so rounding-level gradient differences grow in steps 2-3 "
              "(torch differs from itself by as much between 1 and 2 threads)")
        for r in results:
            if r["note"].startswith("diff = max |loss difference| over 3 steps ("):
                print(f"  {r['case']}: {r['note']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"torch": torch.__version__, "threads": args.threads, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
