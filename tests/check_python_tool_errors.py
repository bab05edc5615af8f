#!/usr/bin/env python3
"""Bad input to the project's Python tools fails cleanly; good input still works.

    check_python_tool_errors.py [--data DIR] [--dofpose BIN]

For each tool (tools/h36m_import.py, tools/attribute_threshold.py,
tools/set_default_model.py, tools/plot_runs.py, tools/plot_eval.py,
weights_tools/make_random_model.py,
compare_dumps.py, dump_reference.py) it runs bad inputs, each in its own empty folder under a
temporary directory, and checks: a nonzero exit, no "Traceback" on stderr, a
message naming the offending file, field or value, and nothing left in the
folder (nor at the output path). Then a valid input of each tool must succeed.
The library modules and the PyTorch references must answer --help with a usage
text instead of running anything.

--data is Human3.6M (default: ../shared/data/h36m beside the repository); the
checks that need it are skipped with a message when it is missing, and fail
under CI=true. Those that need torch (dump_reference.py, the references' --help)
are skipped without it, and fail under CI=true. --dofpose BIN also loads the
models make_random_model.py writes with `dofpose forward`.

Prints one line per check and a summary; exits 1 when a check failed.
"""
import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = os.path.join(REPO, "tools")
WTOOLS = os.path.join(REPO, "weights_tools")
PY = sys.executable
CI = os.environ.get("CI", "").lower() == "true"

# No __pycache__ folders in the source tree, from this script or the tools it runs.
sys.dont_write_bytecode = True
ENV = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
sys.path.insert(0, WTOOLS)
import safetensors_np  # noqa: E402

failures, passed, skipped = [], [], []


def run(args, cwd, timeout=300):
    return subprocess.run([PY] + args, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=ENV)


def listing(d):
    out = []
    for root, dirs, files in os.walk(d):
        for name in dirs + files:
            out.append(os.path.relpath(os.path.join(root, name), d))
    return sorted(out)


class Case:
    """A fresh empty folder to run one command in."""

    def __init__(self, tmp, name):
        self.name = name
        self.dir = tempfile.mkdtemp(prefix="case.", dir=tmp)

    def path(self, *parts):
        return os.path.join(self.dir, *parts)


def expect_error(tmp, name, args, needles, absent=()):
    """args run in an empty folder: rc != 0, no traceback, every needle in stderr, the
    folder still empty and no path of `absent` created."""
    c = Case(tmp, name)
    args = [a.replace("{case}", c.dir) for a in args]
    absent = [a.replace("{case}", c.dir) for a in absent]
    r = run(args, c.dir)
    problems = []
    if r.returncode == 0:
        problems.append("exit status 0")
    if "Traceback" in r.stderr or "Traceback" in r.stdout:
        problems.append("a Python traceback")
    for n in needles:
        if n not in r.stderr:
            problems.append(f"stderr lacks {n!r}")
    left = listing(c.dir)
    if left:
        problems.append(f"left behind {left}")
    for a in absent:
        if os.path.exists(a):
            problems.append(f"created {a}")
    report(name, problems, r)


def expect_ok(tmp, name, args, creates=(), stdout_has=(), stdout_lacks=()):
    c = Case(tmp, name)
    args = [a.replace("{case}", c.dir) for a in args]
    r = run(args, c.dir)
    problems = []
    if r.returncode != 0:
        problems.append(f"exit status {r.returncode}")
    if "Traceback" in r.stderr:
        problems.append("a Python traceback")
    for p in creates:
        if not os.path.exists(c.path(p)):
            problems.append(f"did not write {p}")
    for n in stdout_has:
        if n not in r.stdout:
            problems.append(f"stdout lacks {n!r}")
    for n in stdout_lacks:
        if n in r.stdout:
            problems.append(f"stdout has {n!r}")
    report(name, problems, r)
    return c


def report(name, problems, r):
    if problems:
        failures.append(name)
        print(f"FAIL {name}: {'; '.join(problems)}")
        print(f"     rc={r.returncode}\n     stderr: {r.stderr.strip()[-1500:]}")
    else:
        passed.append(name)
        msg = (r.stderr.strip().splitlines() or [""])[-1]
        print(f"ok   {name}" + (f"  [{msg[:150]}]" if r.returncode else ""))


def skip(name, why):
    if CI:
        failures.append(name)
        print(f"FAIL {name}: {why} (CI=true: required)")
    else:
        skipped.append(name)
        print(f"skip {name}: {why}")


def file_digest(path):
    if not os.path.exists(path):
        return None
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def make_fixtures(tmp):
    """Small models, a truncated one, one whose tensor disagrees with its config, inputs."""
    fx = os.path.join(tmp, "fixtures")
    os.makedirs(fx)
    mk = os.path.join(WTOOLS, "make_random_model.py")
    hg_cfg = {"stacks": 1, "depth": 1, "num_feats": 8, "stem_channels": 4, "input_size": 32,
              "num_joints": 3, "attribute_channels": 2, "domain_hidden": 3}
    for kind, cfg, name in (("hourglass", hg_cfg, "hg.safetensors"),
                            ("lifter", {"width": 16, "blocks": 1}, "lifter.safetensors"),
                            ("lifter", {"width": 8, "blocks": 0, "use_attributes": True},
                             "lifter_attr.safetensors")):
        r = run([mk, kind, os.path.join(fx, name), "--config", json.dumps(cfg)], fx)
        if r.returncode != 0:
            raise SystemExit(f"cannot make fixture {name}: {r.stderr}")
    lifter = os.path.join(fx, "lifter.safetensors")
    with open(lifter, "rb") as f:
        raw = f.read()
    with open(os.path.join(fx, "truncated.safetensors"), "wb") as f:
        f.write(raw[:len(raw) // 3])
    t, meta = safetensors_np.load(lifter, with_metadata=True)
    t["block1.torso.input_layer.weight"] = t["block1.torso.input_layer.weight"][:, :5].copy()
    safetensors_np.save(os.path.join(fx, "mismatched.safetensors"), t, meta)
    t, meta = safetensors_np.load(lifter, with_metadata=True)
    meta["config"] = json.dumps({"kind": "progressive", "features": 128})
    safetensors_np.save(os.path.join(fx, "badconfig.safetensors"), t, meta)
    rng = np.random.default_rng(0)
    np.save(os.path.join(fx, "joints.npy"), rng.uniform(0, 1, (2, 16, 2)).astype(np.float32))
    np.save(os.path.join(fx, "img32.npy"), rng.uniform(0, 1, (1, 3, 32, 32)).astype(np.float32))
    np.save(os.path.join(fx, "img64.npy"), rng.uniform(0, 1, (1, 3, 64, 64)).astype(np.float32))
    with open(os.path.join(fx, "junk.npy"), "wb") as f:
        f.write(b"not an npy file")
    dump = os.path.join(fx, "dump")
    os.makedirs(dump)
    np.save(os.path.join(dump, "000_conv1.npy"), np.ones((1, 2), np.float32))
    np.save(os.path.join(dump, "001_bn1.npy"), np.zeros((1, 2), np.float32))
    return fx


def check_make_random_model(tmp, fx, dofpose):
    mk = os.path.join(WTOOLS, "make_random_model.py")
    out = "{case}/m.safetensors"
    for name, kind, cfg, needles in [
        ("bad JSON", "lifter", "{bad", ["--config", "not valid JSON"]),
        ("negative width", "lifter", '{"width": -3}', ["'width'", "-3"]),
        ("not an object", "lifter", "[1]", ["--config", "JSON object"]),
        ("NaN", "lifter", '{"dropout": NaN}', ["NaN"]),
        ("wrong type", "lifter", '{"blocks": "2"}', ["'blocks'", "integer"]),
        ("bad groups", "lifter", '{"groups": {"torso": [1, 2]}}', ["groups"]),
        ("stacks 0", "hourglass", '{"stacks": 0}', ["'stacks'", "got 0"]),
        ("input_size 63", "hourglass", '{"input_size": 63}', ["'input_size'", "63"]),
        ("unknown key", "hourglass", '{"features": 128}', ["'features'"]),
        ("too large", "lifter", '{"width": 10000000000}', ["too large"]),
    ]:
        expect_error(tmp, f"make_random_model.py {kind} --config {cfg} ({name})",
                     [mk, kind, out, "--config", cfg], needles, absent=[out])
    expect_error(tmp, "make_random_model.py into a missing folder",
                 [mk, "lifter", "{case}/no/such/dir/m.safetensors"], ["no/such/dir"])
    c = expect_ok(tmp, "make_random_model.py hourglass (valid config)",
                  [mk, "hourglass", "{case}/hg.safetensors", "--config",
                   '{"stacks": 1, "depth": 1, "num_feats": 8, "stem_channels": 4, '
                   '"input_size": 32, "attribute_channels": 2, "domain_hidden": 3}'],
                  creates=["hg.safetensors"])
    expect_ok(tmp, "make_random_model.py lifter (valid config)",
              [mk, "lifter", "{case}/l.safetensors", "--config", '{"kind": "two_block", "width": 8}'],
              creates=["l.safetensors"])
    if dofpose:
        r = subprocess.run([dofpose, "forward", "--model", c.path("hg.safetensors"), "--input",
                            os.path.join(fx, "img32.npy")], capture_output=True, text=True)
        report("dofpose forward loads the make_random_model.py hourglass",
               [] if r.returncode == 0 else [f"exit status {r.returncode}"], r)


def check_compare_dumps(tmp, fx):
    cd = os.path.join(WTOOLS, "compare_dumps.py")
    expect_error(tmp, "compare_dumps.py nodir1 nodir2", [cd, "nodir1", "nodir2"], ["nodir1"])
    expect_error(tmp, "compare_dumps.py DUMP nodir2", [cd, os.path.join(fx, "dump"), "nodir2"],
                 ["nodir2"])
    junk = os.path.join(tmp, "junkdump")
    os.makedirs(junk)
    shutil.copy(os.path.join(fx, "junk.npy"), os.path.join(junk, "000_conv1.npy"))
    expect_error(tmp, "compare_dumps.py with an unreadable .npy",
                 [cd, os.path.join(fx, "dump"), junk], ["000_conv1.npy"])
    expect_ok(tmp, "compare_dumps.py DUMP DUMP (valid)",
              [cd, os.path.join(fx, "dump"), os.path.join(fx, "dump"), "--tol", "1e-6"],
              stdout_has=["2 tensors compared"])


def check_set_default_model(tmp, fx):
    sd = os.path.join(TOOLS, "set_default_model.py")
    embedded = os.path.join(REPO, "engine", "default_model", "default_lifter.safetensors")
    before = file_digest(embedded)
    common = ["--description", "test", "--trained-on", "none", "--out", "{case}/default.safetensors"]
    for name, model, needles in [
        ("truncated", "truncated.safetensors", ["truncated.safetensors", "not a readable weights file"]),
        ("an hourglass", "hg.safetensors", ["hg.safetensors", "kind", "'lifter'"]),
        ("tensor/config mismatch", "mismatched.safetensors",
         ["mismatched.safetensors", "block1.torso.input_layer.weight", "[16, 5]"]),
        ("unknown config key", "badconfig.safetensors", ["badconfig.safetensors", "'features'"]),
        ("uses attributes", "lifter_attr.safetensors", ["lifter_attr.safetensors", "attributes"]),
        ("missing file", "nofile.safetensors", ["nofile.safetensors"]),
    ]:
        expect_error(tmp, f"set_default_model.py on {name}",
                     [sd, os.path.join(fx, model)] + common, needles,
                     absent=["{case}/default.safetensors"])
    expect_ok(tmp, "set_default_model.py on a valid lifter",
              [sd, os.path.join(fx, "lifter.safetensors")] + common,
              creates=["default.safetensors"])
    report("set_default_model.py checks left the embedded default model alone",
           [] if file_digest(embedded) == before else [f"{embedded} changed"],
           subprocess.CompletedProcess([], 0, "", ""))


def check_plot_runs(tmp):
    """Bad run logs are named with the line or column at fault; good ones plot one
    polyline per run with a point per validated epoch."""
    pr = os.path.join(TOOLS, "plot_runs.py")
    runs = os.path.join(tmp, "runs")
    header = "epoch,step,train_loss,val_mpjpe,val_pmpjpe,lr,seconds\n"
    logs = {
        "a": header + "1,10,0.5,95.5,70.1,0.001,1.0\n2,20,0.4,90.25,68.0,0.0009,2.0\n"
                      "3,30,0.3,88.0,66.5,0.0008,3.0\n",
        "b": header + "1,10,0.6,,,0.001,1.0\n2,20,0.5,93.0,69.0,0.0009,2.0\n",
        "nocol": "epoch,step,train_loss\n1,10,0.5\n",
        "text": header + "1,10,0.5,95.5,70.1,0.001,1.0\n2,20,0.4,fast,68.0,0.0009,2.0\n",
        "noval": header + "1,10,0.5,,,0.001,1.0\n",
    }
    for name, text in logs.items():
        os.makedirs(os.path.join(runs, name))
        with open(os.path.join(runs, name, "log.csv"), "w") as f:
            f.write(text)
    out = ["--out", "{case}/curves.svg"]
    for name, args, needles in [
        ("a missing run", [os.path.join(runs, "none")], ["none", "no log.csv"]),
        ("a log without the metric", [os.path.join(runs, "nocol")],
         ["nocol", "no column 'val_mpjpe'", "train_loss"]),
        ("a non-number", [os.path.join(runs, "text")], ["text", "line 3", "'fast'"]),
        ("a log without validation", [os.path.join(runs, "noval")], ["noval", "no values"]),
        ("--label of another run", [os.path.join(runs, "a"), "--label", "elsewhere=x"],
         ["--label", "elsewhere"]),
    ]:
        expect_error(tmp, f"plot_runs.py on {name}", [pr] + args + out, needles,
                     absent=["{case}/curves.svg"])
    expect_error(tmp, "plot_runs.py --out without .svg",
                 [pr, os.path.join(runs, "a"), "--out", "{case}/curves.png"], ["--out", ".svg"])
    c = expect_ok(tmp, "plot_runs.py on two runs",
                  [pr, os.path.join(runs, "a"), os.path.join(runs, "b"),
                   "--label", os.path.join(runs, "b") + "=second run"] + out,
                  creates=["curves.svg"])
    import xml.etree.ElementTree as ET
    problems = []
    try:
        root = ET.parse(c.path("curves.svg")).getroot()
        lines = {pl.get("data-run"): pl.get("points").split()
                 for pl in root.iter("{http://www.w3.org/2000/svg}polyline")}
        if sorted(lines) != ["a", "second run"]:
            problems.append(f"polylines for {sorted(lines)}, expected a and 'second run'")
        elif (len(lines["a"]), len(lines["second run"])) != (3, 1):
            problems.append(f"points {len(lines['a'])}, {len(lines['second run'])}; expected 3, 1")
        else:
            ys = [float(p.split(",")[1]) for p in lines["a"]]
            if not ys[0] < ys[1] < ys[2]:  # SVG y grows downwards, as the error falls
                problems.append(f"run a's falling curve is drawn at y {ys}")
        legend = " ".join(t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}text"))
        for want in ("a: 88.0", "second run: 93.0"):
            if want not in legend:
                problems.append(f"legend lacks {want!r}")
    except (ET.ParseError, OSError) as e:
        problems.append(f"not readable SVG: {e}")
    report("plot_runs.py draws each run's epochs", problems,
           subprocess.CompletedProcess([], 0, "", ""))


def check_plot_eval(tmp):
    """Bad eval JSONs are named with the field at fault; good ones give a bar per
    model and category (the average last) of the right length."""
    pe = os.path.join(TOOLS, "plot_eval.py")
    ev = os.path.join(tmp, "evals")
    os.makedirs(ev)

    def result(scale):
        acts = {"Walking": 50.0, "Sitting": 80.0}
        return {"mpjpe": 65.0 * scale, "p_mpjpe": 50.0 * scale,
                "per_action": {a: {"mpjpe": v * scale, "p_mpjpe": 0.8 * v * scale}
                               for a, v in acts.items()},
                "per_joint": {"hip": 20.0 * scale, "wrist": 100.0 * scale}}
    files = {"a": result(1.0), "b": result(0.5), "list": [1, 2],
             "nojoints": {k: v for k, v in result(1.0).items() if k != "per_joint"},
             "nan": dict(result(1.0), per_action={"Walking": {"mpjpe": "x"}}),
             "other": dict(result(1.0), per_action={"Eating": {"mpjpe": 1.0, "p_mpjpe": 1.0}})}
    for name, obj in files.items():
        with open(os.path.join(ev, name + ".json"), "w") as f:
            json.dump(obj, f)
    with open(os.path.join(ev, "broken.json"), "w") as f:
        f.write('{"mpjpe": 1,')
    out = ["--out", "{case}/bars.svg"]
    e = lambda n: os.path.join(ev, n + ".json")  # noqa: E731
    for name, args, needles in [
        ("a missing file", [e("none")], ["none.json", "no such file"]),
        ("broken JSON", [e("broken")], ["broken.json", "not readable JSON"]),
        ("a JSON list", [e("list")], ["list.json", "JSON object"]),
        ("no per-joint table", [e("nojoints"), "--by", "joint"], ["nojoints.json", "per_joint"]),
        ("a non-number", [e("nan")], ["nan.json", "per_action.Walking.mpjpe", "'x'"]),
        ("different actions", [e("a"), e("other")], ["other.json", "a.json", "Eating", "Walking"]),
        ("--by joint --metric p_mpjpe", [e("a"), "--by", "joint", "--metric", "p_mpjpe"],
         ["--by joint", "MPJPE only"]),
    ]:
        expect_error(tmp, f"plot_eval.py on {name}", [pe] + args + out, needles,
                     absent=["{case}/bars.svg"])
    c = expect_ok(tmp, "plot_eval.py on two models",
                  [pe, e("a"), e("b"), "--label", e("b") + "=half"] + out, creates=["bars.svg"])
    import xml.etree.ElementTree as ET
    problems = []
    try:
        root = ET.parse(c.path("bars.svg")).getroot()
        bars = {(r.get("data-model"), r.get("data-category")): float(r.get("width"))
                for r in root.iter("{http://www.w3.org/2000/svg}rect") if r.get("data-model")}
        want = {(m, k) for m in ("evals", "half") for k in ("Walking", "Sitting", "Average")}
        if set(bars) != want:
            problems.append(f"bars {sorted(bars)}, expected {sorted(want)}")
        else:
            for k in ("Walking", "Sitting", "Average"):  # b = a / 2: half the bar
                if abs(bars[("half", k)] * 2 - bars[("evals", k)]) > 0.2:
                    problems.append(f"{k}: bar of b {bars[('half', k)]} is not half of a's "
                                    f"{bars[('evals', k)]}")
            if not bars[("evals", "Walking")] < bars[("evals", "Average")] < bars[("evals", "Sitting")]:
                problems.append("bar lengths do not follow the values 50 < 65 < 80")
    except (ET.ParseError, OSError) as ex:
        problems.append(f"not readable SVG: {ex}")
    report("plot_eval.py draws a bar per model and action", problems,
           subprocess.CompletedProcess([], 0, "", ""))


def check_dump_reference(tmp, fx, have_torch):
    dr = os.path.join(WTOOLS, "dump_reference.py")
    out = "{case}/out/dump"
    for name, args, needles in [
        ("truncated model", ["truncated.safetensors", "joints.npy"],
         ["truncated.safetensors", "not a readable weights file"]),
        ("tensor/config mismatch", ["mismatched.safetensors", "joints.npy"],
         ["mismatched.safetensors", "block1.torso.input_layer.weight"]),
        ("input of the wrong size", ["hg.safetensors", "img64.npy"],
         ["img64.npy", "[N,3,32,32]"]),
        ("images to a lifter", ["lifter.safetensors", "img32.npy"], ["img32.npy", "[N,16,2]"]),
        ("unreadable input", ["lifter.safetensors", "junk.npy"], ["junk.npy"]),
        ("missing attributes", ["lifter_attr.safetensors", "joints.npy"], ["--attributes"]),
    ]:
        expect_error(tmp, f"dump_reference.py on {name}",
                     [dr] + [os.path.join(fx, a) for a in args] + [out], needles,
                     absent=["{case}/out"])
    if not have_torch:
        skip("dump_reference.py on valid input", "torch is not importable")
        return
    expect_ok(tmp, "dump_reference.py on a valid lifter",
              [dr, os.path.join(fx, "lifter.safetensors"), os.path.join(fx, "joints.npy"),
               "{case}/dump"], creates=["dump/000_norm.input.npy"])


def check_h36m(tmp, data):
    imp = os.path.join(TOOLS, "h36m_import.py")
    at = os.path.join(TOOLS, "attribute_threshold.py")
    names = ["h36m_import.py --subjects S2", "h36m_import.py --subjects S1,S2",
             "h36m_import.py --subjects S1,S9", "h36m_import.py --out inside the repository",
             "h36m_import.py --actions Bogus", "h36m_import.py s9 (valid)",
             "attribute_threshold.py --actions Bogus", "attribute_threshold.py --subjects S2",
             "attribute_threshold.py S9 Walking (valid)"]
    if not os.path.isfile(os.path.join(data, "S9.npz")):
        for n in names:
            skip(n, f"no Human3.6M data at {data}")
        return
    base = [imp, "--data", data, "--out", "{case}/out"]
    expect_error(tmp, names[0], base + ["--subjects", "S2"],
                 ["unknown subject S2", "available: S1"], absent=["{case}/out"])
    expect_error(tmp, names[1], base + ["--subjects", "S1,S2"], ["unknown subject S2"],
                 absent=["{case}/out"])
    expect_error(tmp, names[2], base + ["--subjects", "S1,S9"],
                 ["mixes training (S1) and test (S9)", "--split"], absent=["{case}/out"])
    inside = os.path.join(REPO, "tools", "h36m-import-check-must-not-exist")
    expect_error(tmp, names[3], [imp, "--data", data, "--out", inside, "--subjects", "S9",
                                 "--actions", "Walking", "--max-frames", "1"],
                 ["--out", "inside the repository"], absent=[inside])
    expect_error(tmp, names[4], base + ["--subjects", "S9", "--actions", "Bogus"],
                 ["unknown action 'Bogus'", "Walking"], absent=["{case}/out"])
    expect_ok(tmp, names[5], base + ["--subjects", "s9", "--actions", "Walking",
                                     "--max-frames", "2"], creates=["out/test.safetensors"])
    hist = ["--hist", "{case}/hist"]
    expect_error(tmp, names[6], [at, "--data", data, "--subjects", "S9", "--actions", "Bogus"] + hist,
                 ["unknown action 'Bogus'"])
    expect_error(tmp, names[7], [at, "--data", data, "--subjects", "S2"] + hist,
                 ["unknown subject S2", "available"])
    c = expect_ok(tmp, names[8], [at, "--data", data, "--subjects", "S9", "--actions", "Walking"]
                  + hist, stdout_has=["chosen threshold"])
    if sorted(os.listdir(c.dir)) not in (["hist.txt"], ["hist.png"]):
        report("attribute_threshold.py writes only its histogram", [f"wrote {os.listdir(c.dir)}"],
               subprocess.CompletedProcess([], 0, "", ""))


def check_help(tmp, have_torch):
    for path in ("weights_tools/safetensors_np.py", "weights_tools/torch_pickle.py",
                 "tools/h36m_lib.py", "tools/svg_chart.py"):
        expect_ok(tmp, f"{os.path.basename(path)} --help",
                  [os.path.join(REPO, path), "--help"], stdout_has=["usage:", "library module"])
        expect_error(tmp, f"{os.path.basename(path)} --bogus",
                     [os.path.join(REPO, path), "--bogus"], ["--bogus"])
    for path, selftest in (("weights_tools/reference_hourglass.py", "parameters:"),
                           ("weights_tools/reference_lifter.py", "params=")):
        if not have_torch:
            skip(f"{os.path.basename(path)} --help", "torch is not importable")
            continue
        expect_ok(tmp, f"{os.path.basename(path)} --help", [os.path.join(REPO, path), "--help"],
                  stdout_has=["usage:"], stdout_lacks=[selftest])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=os.path.join(os.path.dirname(REPO), "shared", "data", "h36m"))
    ap.add_argument("--dofpose", default=None, help="the dofpose binary (optional)")
    a = ap.parse_args()
    have_torch = subprocess.run([PY, "-c", "import torch"], capture_output=True,
                                env=ENV).returncode == 0
    tmp = tempfile.mkdtemp(prefix="dofpose-pytools-")
    try:
        fx = make_fixtures(tmp)
        check_make_random_model(tmp, fx, a.dofpose if a.dofpose and os.path.exists(a.dofpose) else None)
        check_compare_dumps(tmp, fx)
        check_set_default_model(tmp, fx)
        check_plot_runs(tmp)
        check_plot_eval(tmp)
        check_dump_reference(tmp, fx, have_torch)
        check_h36m(tmp, a.data)
        check_help(tmp, have_torch)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\n{len(passed)} checks passed, {len(failures)} failed, {len(skipped)} skipped")
    if failures:
        print("failed: " + "; ".join(failures))
        return 1
    print("all Python tool error checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
