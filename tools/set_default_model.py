#!/usr/bin/env python3
"""Makes a trained lifter the embedded default model (docs/lift.md).

    /usr/bin/python3 tools/set_default_model.py build-data/runs/.../model.safetensors \
        --description "..." --trained-on h36m:S1,S5,S6,S7,S8:sh [--status trained]

Copies the model's tensors (optimizer state, if any, dropped) to
engine/default_model/default_lifter.safetensors with the metadata `status`,
`description` and `trained_on` added (everything else, config included, kept).
Refuses a lifter that needs attributes: `dofpose lift` feeds none.
Then rebuild; the `lift:*` tests check the embedded copy equals the file.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "weights_tools"))
import safetensors_np  # noqa: E402
import make_random_model  # noqa: E402  (the engine's config rules and tensor shapes)

PROG = "set_default_model.py"
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "engine", "default_model",
                   "default_lifter.safetensors")


class ToolError(Exception):
    """Bad input: main() prints it as `set_default_model.py: error: ...` and exits 2."""


def read_lifter(path):
    """(tensors, metadata, config) of a lifter file, checked as the engine's loader does."""
    if not os.path.isfile(path):
        raise ToolError(f"{path}: no such file (expected a lifter written by dofpose train)")
    try:
        tensors, meta = safetensors_np.load(path, with_metadata=True)
    except ValueError as e:  # the reader names the file and the problem
        raise ToolError(f"not a readable weights file: {e}") from None
    if meta.get("format_version") != "1":
        raise ToolError(f"{path}: metadata format_version is {meta.get('format_version')!r}, "
                        "expected '1'")
    if meta.get("kind") != "lifter":
        raise ToolError(f"{path}: metadata kind is {meta.get('kind')!r}, expected 'lifter'")
    if "config" not in meta:
        raise ToolError(f"{path}: metadata has no 'config'")
    try:
        config = make_random_model.make_config("lifter", meta["config"])
    except make_random_model.ConfigError as e:
        raise ToolError(f"{path}: metadata config: {e}") from None
    try:
        make_random_model.check_model_tensors(path, "lifter", config,
                                              {k: v.shape for k, v in tensors.items()})
    except make_random_model.ConfigError as e:
        raise ToolError(str(e)) from None
    return tensors, meta, config


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="a lifter written by dofpose train (model.safetensors)")
    ap.add_argument("--description", required=True)
    ap.add_argument("--trained-on", required=True, help="e.g. h36m:S1,S5,S6,S7,S8:sh")
    ap.add_argument("--status", default="trained")
    ap.add_argument("--out", default=OUT, help="default: engine/default_model/default_lifter.safetensors")
    a = ap.parse_args()
    try:
        return run(a)
    except ToolError as e:
        msg = str(e)
    except OSError as e:
        msg = f"cannot write {a.out}: {e.strerror or e}"
    print(f"{PROG}: error: {msg}", file=sys.stderr)
    return 2


def run(a):
    tensors, meta, config = read_lifter(a.model)
    if config["use_attributes"]:
        raise ToolError(f"{a.model}: this lifter uses attributes; the default must not "
                        "(dofpose lift feeds none)")
    if os.path.isdir(a.out):
        raise ToolError(f"--out {a.out} is a folder; give the file to write")
    tensors = {k: v for k, v in tensors.items() if not k.startswith("optim.")}
    meta = {k: v for k, v in meta.items() if k != "optimizer"}
    meta.update({"status": a.status, "description": a.description, "trained_on": a.trained_on})
    safetensors_np.save(a.out, tensors, meta)
    print(f"{a.out}: {len(tensors)} tensors, {os.path.getsize(a.out)} bytes, {config['kind']} width {config['width']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
