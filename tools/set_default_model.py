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
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "weights_tools"))
import safetensors_np  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "engine", "default_model",
                   "default_lifter.safetensors")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="a lifter written by dofpose train (model.safetensors)")
    ap.add_argument("--description", required=True)
    ap.add_argument("--trained-on", required=True, help="e.g. h36m:S1,S5,S6,S7,S8:sh")
    ap.add_argument("--status", default="trained")
    ap.add_argument("--out", default=OUT)
    a = ap.parse_args()
    tensors, meta = safetensors_np.load(a.model, with_metadata=True)
    if meta.get("kind") != "lifter":
        raise SystemExit(f"{a.model}: metadata kind is {meta.get('kind')!r}, expected 'lifter'")
    config = json.loads(meta["config"])
    if config.get("use_attributes"):
        raise SystemExit(f"{a.model}: this lifter uses attributes; the default must not (dofpose lift feeds none)")
    tensors = {k: v for k, v in tensors.items() if not k.startswith("optim.")}
    meta = {k: v for k, v in meta.items() if k != "optimizer"}
    meta.update({"status": a.status, "description": a.description, "trained_on": a.trained_on})
    safetensors_np.save(a.out, tensors, meta)
    print(f"{a.out}: {len(tensors)} tensors, {os.path.getsize(a.out)} bytes, {config['kind']} width {config['width']}")


if __name__ == "__main__":
    main()
