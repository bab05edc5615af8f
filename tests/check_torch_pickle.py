#!/usr/bin/env python3
"""Checks of weights_tools/torch_pickle.py, run by tests/test_convert.cpp (numpy only:
torch is made unimportable first, so a hidden torch dependency fails here).

    python3 tests/check_torch_pickle.py FIXTURES_DIR WEIGHTS_TOOLS_DIR TEMP_DIR

Prints "all torch_pickle checks passed" at the end; any failure raises.
"""
import os
import pickle
import sys
import zipfile

sys.modules["torch"] = None  # `import torch` now raises ImportError

import numpy as np  # noqa: E402

FIXTURES, TOOLS, TMP = sys.argv[1:4]
sys.path.insert(0, TOOLS)
import safetensors_np  # noqa: E402
import torch_pickle  # noqa: E402
from torch_pickle import CheckpointError  # noqa: E402


def fixture(name):
    return os.path.join(FIXTURES, name)


def expect_error(fn, *needles):
    try:
        fn()
    except CheckpointError as e:
        msg = str(e)
        for n in needles:
            assert n in msg, "error message lacks %r:\n%s" % (n, msg)
        return msg
    raise AssertionError("no CheckpointError (expected one mentioning %s)" % (needles,))


def check_tensor_files():
    expected = safetensors_np.load(fixture("convert_tensors_expected.safetensors"))
    for name in ("zip", "legacy"):
        ckpt = torch_pickle.load(fixture("convert_tensors_%s.pt" % name))
        for key, want in expected.items():
            got = ckpt["nested"]["list"][0] if key == "nested.list.0" else ckpt[key]
            assert isinstance(got, np.ndarray), (name, key, type(got))
            assert got.shape == want.shape, (name, key, got.shape, want.shape)
            assert np.array_equal(got.astype(np.float64), np.asarray(want).astype(np.float64)), \
                (name, key, got, want)
        assert ckpt["half"].dtype == np.float16 and ckpt["int32"].dtype == np.int32
        assert ckpt["bf16"].dtype == np.float32 and ckpt["bool"].dtype == np.bool_
        assert ckpt["shared_b"].dtype == np.int64
        assert ckpt["nested"]["list"][1:] == [2, "three"], ckpt["nested"]["list"]
        assert ckpt["nested"]["tuple"] == (4.0, None, True) and ckpt["nested"][5] == "int key"
        assert ckpt["numpy"] == 0.125
        # Copies, not views of a shared buffer.
        ckpt["shared_b"][3] = -1
        assert ckpt["shared_a"][1] == 3
    print("tensor fixtures: ok")


MARKER = os.path.join(TMP, "pwned")


def malicious_pickles():
    """Pickles that run code under a plain pickle.load."""
    cmd = ("touch " + MARKER).encode()
    marker = MARKER.encode()
    out = {}
    # GLOBAL os.system + REDUCE
    out["os.system"] = (b"\x80\x02cos\nsystem\nq\x00X" + len(cmd).to_bytes(4, "little") + cmd
                        + b"\x85q\x01Rq\x02.")
    # builtins.eval of an expression that would create the marker
    expr = b"open(%r, 'w')" % marker
    out["builtins.eval"] = (b"\x80\x02cbuiltins\neval\nX" + len(expr).to_bytes(4, "little") + expr
                            + b"\x85R.")
    # the real thing, as pickle.dumps writes it (module posix / nt)
    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + MARKER,))
    out["system"] = pickle.dumps({"state_dict": {}, "x": Evil()}, protocol=2)
    # INST opcode (protocol 0): instantiate subprocess.Popen
    out["subprocess.Popen"] = b"\x80\x02(](S'touch'\nS'%s'\neisubprocess\nPopen\n." % marker
    return out


def zip_checkpoint(path, data_pkl, extra=None):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", data_pkl)
        z.writestr("archive/version", "3\n")
        for name, data in (extra or {}).items():
            z.writestr(name, data)


def check_refuses_code():
    for what, payload in malicious_pickles().items():
        for container in ("zip", "legacy"):
            path = os.path.join(TMP, "evil_%s_%s.pt" % (what, container))
            if container == "zip":
                zip_checkpoint(path, payload)
                needles = ("refused", what)
            else:
                with open(path, "wb") as f:
                    f.write(payload)
                # the first pickle of a legacy file must be the magic number
                needles = ("not a torch.save checkpoint",)
            expect_error(lambda: torch_pickle.load(path), *needles)
            assert not os.path.exists(MARKER), "%s (%s) was executed" % (what, container)
    print("malicious pickles refused, nothing executed: ok")


def check_ignore_key():
    path = fixture("convert_with_args.pth")
    msg = expect_error(lambda: torch_pickle.load(path), "argparse.Namespace", "'args'",
                       "--ignore-key")
    ckpt = torch_pickle.load(path, ignore_keys=["args"])
    assert list(ckpt) == ["state_dict"] and np.array_equal(ckpt["state_dict"]["w"], np.ones(2))
    print("argparse.Namespace refused (%s), --ignore-key args: ok" % msg.splitlines()[1].strip())


def check_corrupt_files():
    raw = open(fixture("convert_tensors_zip.pt"), "rb").read()
    cut = os.path.join(TMP, "truncated.pt")
    with open(cut, "wb") as f:
        f.write(raw[: len(raw) // 2])
    expect_error(lambda: torch_pickle.load(cut), "truncated or corrupt")

    legacy = open(fixture("convert_tensors_legacy.pt"), "rb").read()
    with open(cut, "wb") as f:
        f.write(legacy[:-10])
    expect_error(lambda: torch_pickle.load(cut), "truncated")
    with open(cut, "wb") as f:
        f.write(legacy[:40])
    expect_error(lambda: torch_pickle.load(cut), "legacy checkpoint, cannot read")

    # A storage member shorter than the tensor needs.
    src = zipfile.ZipFile(fixture("convert_tensors_zip.pt"))
    short = os.path.join(TMP, "short.pt")
    with zipfile.ZipFile(short, "w") as z:
        for info in src.infolist():
            data = src.read(info)
            if "/data/" in info.filename:
                data = data[:1]
            z.writestr(info.filename, data)
    expect_error(lambda: torch_pickle.load(short), "bytes", "needs")

    text = os.path.join(TMP, "text.pt")
    with open(text, "w") as f:
        f.write("hello")
    expect_error(lambda: torch_pickle.load(text), "neither a ZIP")
    expect_error(lambda: torch_pickle.load(os.path.join(TMP, "missing.pt")), "cannot read")

    # A persistent id that is not a storage.
    odd = os.path.join(TMP, "odd.pt")
    zip_checkpoint(odd, b"\x80\x02X\x03\x00\x00\x00abcQ.")
    expect_error(lambda: torch_pickle.load(odd), "persistent id")
    print("corrupt files give clear errors: ok")


if __name__ == "__main__":
    check_tensor_files()
    check_refuses_code()
    check_ignore_key()
    check_corrupt_files()
    print("all torch_pickle checks passed")
