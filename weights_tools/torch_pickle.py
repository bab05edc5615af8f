"""Read PyTorch checkpoints (.pth / .pt / .pth.tar) with numpy only, safely.

    load(path, ignore_keys=()) -> the checkpoint with every tensor as a numpy array

torch.save writes either
  * a ZIP (PyTorch >= 1.6): <prefix>/data.pkl (the pickled object), one member
    <prefix>/data/<key> of raw bytes per storage, <prefix>/byteorder, <prefix>/version;
  * the legacy stream (PyTorch < 1.6, or _use_new_zipfile_serialization=False):
    five pickles in a row (magic number, protocol version, sys info, the object,
    the list of storage keys), then every storage as int64 element count + raw bytes.

Unpickling runs whatever callables the pickle names, so pickle.load on an
untrusted checkpoint executes arbitrary code. This reader never resolves a
name to a real callable except the allow-list below (all implemented here,
none of them torch's own): OrderedDict, tensor and parameter rebuilding, the
storage types, numpy scalars/arrays of plain dtypes and a few harmless
builtins. Any other global (an optimizer class, argparse.Namespace,
os.system, ...) becomes an inert placeholder that records its name and
swallows its arguments; after unpickling, a placeholder left anywhere in the
result is an error naming the class and where it sits, unless it sits under
a top-level key the caller asked to drop (ignore_keys), which is how a
checkpoint carrying e.g. `args: argparse.Namespace` is still readable.
"""
import collections
import io
import pickle
import struct
import zipfile
import zlib

import numpy as np


class CheckpointError(Exception):
    """A checkpoint that cannot be read, or that this loader refuses to read."""


# torch storage class name -> numpy dtype. bfloat16 has no numpy dtype: it is
# read as uint16 bits and widened to float32 in _to_numpy.
STORAGE_DTYPES = {
    "FloatStorage": np.dtype(np.float32),
    "DoubleStorage": np.dtype(np.float64),
    "HalfStorage": np.dtype(np.float16),
    "BFloat16Storage": np.dtype(np.uint16),
    "LongStorage": np.dtype(np.int64),
    "IntStorage": np.dtype(np.int32),
    "ShortStorage": np.dtype(np.int16),
    "CharStorage": np.dtype(np.int8),
    "ByteStorage": np.dtype(np.uint8),
    "BoolStorage": np.dtype(np.bool_),
}

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001


class StorageType:
    """Stands for torch.<name>Storage inside the pickle."""

    def __init__(self, name):
        self.name = name
        self.dtype = STORAGE_DTYPES[name]
        self.bf16 = name == "BFloat16Storage"


class Storage:
    """A flat typed buffer; `data` is filled when the bytes are read (legacy: later)."""

    def __init__(self, stype, key, numel):
        self.stype, self.key, self.numel = stype, key, numel
        self.data = None


class LazyTensor:
    """torch._utils._rebuild_tensor_v2's arguments, resolved once storages are read."""

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride


class Unloadable:
    """Inert stand-in for a global outside the allow-list. Calling the class
    (REDUCE, NEWOBJ, INST, OBJ opcodes) only records the name; BUILD is ignored."""

    qualname = "?"

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        pass

    def __repr__(self):
        return "<refused %s>" % self.qualname


def _refused_global(module, name):
    qualname = "%s.%s" % (module, name)
    return type("Refused", (Unloadable,), {"qualname": qualname})


def _check_int_tuple(value, what):
    if not isinstance(value, (tuple, list)) or not all(isinstance(v, int) for v in value):
        raise CheckpointError("%s must be a tuple of ints, got %r" % (what, value))
    return tuple(value)


def _rebuild_tensor(storage, storage_offset, size, stride, *unused):
    if not isinstance(storage, Storage):
        raise CheckpointError("tensor rebuilt from %r, expected a storage" % (storage,))
    if not isinstance(storage_offset, int):
        raise CheckpointError("tensor storage offset must be an int, got %r" % (storage_offset,))
    size = _check_int_tuple(size, "tensor size")
    stride = _check_int_tuple(stride, "tensor stride")
    if len(size) != len(stride):
        raise CheckpointError("tensor size %s and stride %s differ in length" % (size, stride))
    return LazyTensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *unused):
    return data


def _numpy_scalar(dtype, raw=None):
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise CheckpointError("numpy scalar of dtype %r refused (only plain dtypes)" % (dtype,))
    if not isinstance(raw, bytes) or len(raw) != dtype.itemsize:
        raise CheckpointError("numpy scalar of dtype %s with %r bytes" % (dtype, raw))
    return np.frombuffer(raw, dtype=dtype)[0]


def _numpy_dtype(spec, align=False, copy=True):
    if not isinstance(spec, str):
        raise CheckpointError("numpy dtype from %r refused" % (spec,))
    dtype = np.dtype(spec)
    if dtype.hasobject:
        raise CheckpointError("numpy object dtype refused")
    return dtype


def _codecs_encode(text, encoding="utf-8"):
    """Protocol-2 pickles spell bytes as _codecs.encode(str, 'latin1')."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise CheckpointError("_codecs.encode(%r, %r) refused" % (type(text).__name__, encoding))
    return text.encode("latin1")


class _NumpyArray:
    """numpy.core.multiarray._reconstruct(ndarray, shape, typecode) + BUILD state,
    rebuilt from raw bytes only (object arrays refused)."""

    def __init__(self, cls=None, shape=None, typecode=None):
        if cls is not _NumpyNdarray:
            raise CheckpointError("numpy array of class %r refused" % (cls,))
        self.array = None

    def __setstate__(self, state):
        if not isinstance(state, tuple) or len(state) != 5:
            raise CheckpointError("unexpected numpy array state")
        _version, shape, dtype, fortran, raw = state
        shape = _check_int_tuple(shape, "numpy array shape")
        if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(raw, bytes):
            raise CheckpointError("numpy array of dtype %r refused (only plain dtypes)" % (dtype,))
        count = int(np.prod(shape, dtype=np.int64))
        if count * dtype.itemsize != len(raw):
            raise CheckpointError("numpy array %s %s has %d bytes" % (shape, dtype, len(raw)))
        a = np.frombuffer(raw, dtype=dtype, count=count)
        self.array = a.reshape(shape, order="F" if fortran else "C").copy()


class _NumpyNdarray:
    """Marker for numpy.ndarray as _reconstruct's first argument."""


_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "complex"): complex,
    ("builtins", "bytearray"): bytearray,
    ("__builtin__", "set"): set,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy", "dtype"): _numpy_dtype,
    ("numpy.core.multiarray", "_reconstruct"): _NumpyArray,
    ("numpy", "ndarray"): _NumpyNdarray,
    ("_codecs", "encode"): _codecs_encode,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, fileobj, storage_reader):
        super().__init__(fileobj, encoding="latin1")
        self._storage_reader = storage_reader
        self.storages = {}

    def find_class(self, module, name):
        found = _ALLOWED.get((module, name))
        if found is not None:
            return found
        # GPU-trained legacy checkpoints name torch.cuda.*Storage; the bytes are the same.
        if module in ("torch", "torch.cuda") and name in STORAGE_DTYPES:
            return StorageType(name)
        # Never import anything: the name becomes an inert placeholder.
        return _refused_global(module, name)

    def persistent_load(self, pid):
        if not isinstance(pid, tuple) or len(pid) < 5 or pid[0] not in ("storage", b"storage"):
            raise CheckpointError("unsupported persistent id %r (only tensor storages)" % (pid,))
        stype, key, numel = pid[1], pid[2], pid[4]  # pid[3]: device, ignored (CPU)
        if not isinstance(stype, StorageType):
            raise CheckpointError("storage of unsupported type %r (supported: %s)"
                                  % (stype, ", ".join(sorted(STORAGE_DTYPES))))
        if isinstance(key, bytes):
            key = key.decode("ascii")
        if not isinstance(key, str) or not isinstance(numel, int) or numel < 0:
            raise CheckpointError("malformed storage reference %r" % (pid,))
        if key not in self.storages:
            storage = Storage(stype, key, numel)
            self._storage_reader(storage)
            self.storages[key] = storage
        storage = self.storages[key]
        if len(pid) > 5 and pid[5] is not None:  # legacy view of a larger storage
            raise CheckpointError("legacy storage views are not supported (storage %s)" % key)
        return storage


def _unpickle(data, storage_reader, what):
    unpickler = _RestrictedUnpickler(io.BytesIO(data), storage_reader)
    try:
        return unpickler.load(), unpickler
    except CheckpointError:
        raise
    except Exception as e:  # malformed pickles raise anything from pickle internals
        raise CheckpointError("%s: cannot unpickle: %s: %s" % (what, type(e).__name__, e))


def _to_numpy(t, path):
    s = t.storage
    if s.data is None:
        raise CheckpointError("%s: tensor storage %s was never read" % (path, s.key))
    count = 1
    for d in t.size:
        count *= d
    if count > 0:
        if t.offset < 0 or any(st < 0 for st in t.stride) or any(d < 0 for d in t.size):
            raise CheckpointError("%s: negative tensor offset/size/stride" % path)
        last = t.offset + sum((d - 1) * st for d, st in zip(t.size, t.stride))
        if last >= s.numel:
            raise CheckpointError("%s: tensor of size %s stride %s offset %d reaches past its "
                                  "storage of %d elements" % (path, t.size, t.stride, t.offset, s.numel))
        item = s.data.itemsize
        a = np.lib.stride_tricks.as_strided(
            s.data[t.offset:], shape=t.size, strides=[st * item for st in t.stride], writeable=False)
        a = np.array(a)  # own, contiguous copy
    else:
        a = np.zeros(t.size, dtype=s.data.dtype)
    if s.stype.bf16:
        a = (a.astype(np.uint32) << 16).view(np.float32)
    return a


def _resolve(obj, path, ignore_keys, refused):
    """Replaces lazy tensors with arrays; collects refused placeholders with their path."""
    if isinstance(obj, LazyTensor):
        return _to_numpy(obj, path)
    if isinstance(obj, Unloadable):
        refused.append((path, type(obj).qualname))
        return obj
    if isinstance(obj, _NumpyArray):
        return obj.array
    if isinstance(obj, Storage):
        refused.append((path, "a bare storage"))
        return obj
    if isinstance(obj, dict):
        out = collections.OrderedDict() if isinstance(obj, collections.OrderedDict) else {}
        for k, v in obj.items():
            if not path and k in ignore_keys:
                continue
            if isinstance(k, (Unloadable, LazyTensor)):
                refused.append((path + "[key]", repr(k)))
                continue
            out[k] = _resolve(v, "%s[%r]" % (path, k) if path else repr(k), ignore_keys, refused)
        return out
    if isinstance(obj, (list, tuple)):
        items = [_resolve(v, "%s[%d]" % (path or "<root>", i), ignore_keys, refused)
                 for i, v in enumerate(obj)]
        return items if isinstance(obj, list) else tuple(items)
    if obj is None or isinstance(obj, (bool, int, float, complex, str, bytes, bytearray, set,
                                       frozenset, np.generic, np.ndarray)):
        return obj
    refused.append((path or "<root>", type(obj).__name__))
    return obj


def _finish(root, path, ignore_keys):
    refused = []
    result = _resolve(root, "", set(ignore_keys), refused)
    if refused:
        lines = ["  %s: %s" % (where, what) for where, what in refused[:10]]
        if len(refused) > 10:
            lines.append("  ... and %d more" % (len(refused) - 10))
        tops = sorted({where.split("[")[0] for where, _ in refused})
        raise CheckpointError(
            "%s: refused to construct objects outside the allow-list (tensors, dicts, lists, "
            "numbers, strings):\n%s\nNothing was executed. If these entries are not needed, drop "
            "their top-level keys with --ignore-key (here: %s)."
            % (path, "\n".join(lines), ", ".join(tops)))
    return result


def _load_zip(path, zf):
    names = zf.namelist()
    pkls = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
    if not pkls:
        if any(n.endswith("constants.pkl") or "/code/" in n for n in names):
            raise CheckpointError("%s is a TorchScript archive (torch.jit.save); save the "
                                  "model's state_dict with torch.save instead" % path)
        raise CheckpointError("%s is a ZIP without <name>/data.pkl: not a torch.save checkpoint" % path)
    prefix = pkls[0][: -len("data.pkl")]
    byteorder = "little"
    if prefix + "byteorder" in names:
        byteorder = zf.read(prefix + "byteorder").decode("ascii", "replace").strip()
        if byteorder not in ("little", "big"):
            raise CheckpointError("%s: unknown byteorder %r" % (path, byteorder))
    members = set(names)

    def read_storage(storage):
        member = "%sdata/%s" % (prefix, storage.key)
        if member not in members:
            raise CheckpointError("%s: storage member %s is missing" % (path, member))
        raw = zf.read(member)
        dtype = storage.stype.dtype.newbyteorder("<" if byteorder == "little" else ">")
        need = storage.numel * dtype.itemsize
        if len(raw) < need:
            raise CheckpointError("%s: %s holds %d bytes, its %s of %d elements needs %d"
                                  % (path, member, len(raw), storage.stype.name, storage.numel, need))
        storage.data = np.frombuffer(raw, dtype=dtype, count=storage.numel).astype(
            storage.stype.dtype.newbyteorder("="))

    root, _ = _unpickle(zf.read(pkls[0]), read_storage, "%s (%s)" % (path, pkls[0]))
    return root


def _load_legacy(path, raw):
    f = io.BytesIO(raw)

    # torch.save wrote the pickles back to back; each read leaves f right after its pickle.
    def load_one(what, storage_reader=None):
        unpickler = _RestrictedUnpickler(f, storage_reader or (lambda s: None))
        try:
            value = unpickler.load()
        except CheckpointError:
            raise
        except Exception as e:
            raise CheckpointError("%s: legacy checkpoint, cannot read the %s: %s: %s"
                                  % (path, what, type(e).__name__, e))
        return value, unpickler

    magic, _ = load_one("magic number")
    if magic != LEGACY_MAGIC:
        raise CheckpointError("%s: a pickle, but not a torch.save checkpoint (magic number %r)"
                              % (path, magic))
    protocol, _ = load_one("protocol version")
    if protocol != LEGACY_PROTOCOL:
        raise CheckpointError("%s: unsupported legacy protocol version %r" % (path, protocol))
    sys_info, _ = load_one("system info")
    if isinstance(sys_info, dict) and sys_info.get("little_endian") is False:
        raise CheckpointError("%s: big-endian legacy checkpoints are not supported" % path)
    root, unpickler = load_one("checkpoint object")
    keys, _ = load_one("storage key list")
    if not isinstance(keys, list):
        raise CheckpointError("%s: legacy storage key list is %r" % (path, type(keys).__name__))
    for key in keys:
        if isinstance(key, bytes):
            key = key.decode("ascii")
        storage = unpickler.storages.get(key)
        if storage is None:
            raise CheckpointError("%s: storage %r is listed but never used" % (path, key))
        head = f.read(8)
        if len(head) != 8:
            raise CheckpointError("%s: truncated: storage %s has no size field" % (path, key))
        (numel,) = struct.unpack("<q", head)
        if numel != storage.numel:
            raise CheckpointError("%s: storage %s holds %d elements, the pickle says %d"
                                  % (path, key, numel, storage.numel))
        nbytes = numel * storage.stype.dtype.itemsize
        body = f.read(nbytes)
        if len(body) != nbytes:
            raise CheckpointError("%s: truncated: storage %s needs %d bytes, %d left"
                                  % (path, key, nbytes, len(body)))
        storage.data = np.frombuffer(body, dtype=storage.stype.dtype).copy()
    return root


def load(path, ignore_keys=()):
    """The checkpoint at `path` with tensors as numpy arrays (bfloat16 widened to float32).

    Raises CheckpointError naming the file and the problem."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as e:
        raise CheckpointError("cannot read %s: %s" % (path, e.strerror or e))
    if raw[:4] == b"PK\x03\x04":
        try:
            zf = zipfile.ZipFile(io.BytesIO(raw))
        except zipfile.BadZipFile as e:
            raise CheckpointError("%s starts like a ZIP checkpoint (PyTorch >= 1.6) but its central "
                                  "directory cannot be read (%s): the file is truncated or corrupt"
                                  % (path, e))
        try:
            root = _load_zip(path, zf)
        except (zipfile.BadZipFile, zlib.error, EOFError) as e:
            raise CheckpointError("%s: corrupt ZIP member: %s" % (path, e))
    elif raw[:1] == b"\x80":
        root = _load_legacy(path, raw)
    elif not raw:
        raise CheckpointError("%s is empty" % path)
    else:
        raise CheckpointError("%s is neither a ZIP (PyTorch >= 1.6) nor a legacy pickle "
                              "checkpoint (first bytes %r)" % (path, raw[:8]))
    return _finish(root, path, ignore_keys)


if __name__ == "__main__":
    import argparse
    parser = argparse.ArgumentParser(
        prog="torch_pickle.py", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="This is a library module, not a command: import it from Python "
               "(sys.path.insert(0, 'weights_tools'); import torch_pickle; ckpt = "
               "torch_pickle.load(path)); errors are torch_pickle.CheckpointError. To convert a "
               "checkpoint from the shell use weights_tools/convert.py (docs/converters.md).",
    )
    parser.parse_args()  # --help prints the text below; anything else is a usage error
    parser.print_help()
