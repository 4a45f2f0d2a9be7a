"""A safe reader of PyTorch tensor state dicts, without PyTorch.

`torch.load` unpickles arbitrary objects, so a weights file from the internet can run code.
This reader allows only the handful of globals that a plain tensor state dict needs
(`collections.OrderedDict`, `torch._utils._rebuild_tensor_v2`, the typed storage classes such as
`torch.FloatStorage`), each mapped to a tiny stand-in defined here, and refuses everything else
with `pickle.UnpicklingError` naming the global.

Two on-disk formats are read:
- the legacy one (`torch.save(..., _use_new_zipfile_serialization=False)`, torch < 1.6):
  five consecutive items: a pickled magic number, a pickled protocol version, a pickled
  sys-info dict, the main pickle (storages as persistent ids), a pickled list of storage keys,
  then for each key an int64 element count followed by the raw storage bytes;
- the zip one (torch >= 1.6 default): `<archive>/data.pkl` plus `<archive>/data/<key>` files
  holding raw storage bytes.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import zipfile
from typing import Any

import numpy as np

LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001

# torch storage class name -> numpy dtype; bfloat16 is widened to float32 after reading.
_STORAGE_DTYPES = {
    "DoubleStorage": np.dtype("<f8"),
    "FloatStorage": np.dtype("<f4"),
    "HalfStorage": np.dtype("<f2"),
    "BFloat16Storage": np.dtype("<u2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


class _StorageType:
    """Stand-in for a `torch.<X>Storage` class: only carries the element dtype."""

    def __init__(self, name: str):
        self.name = name
        self.dtype = _STORAGE_DTYPES[name]

    def __repr__(self):
        return f"torch.{self.name}"


_STORAGE_TYPES = {name: _StorageType(name) for name in _STORAGE_DTYPES}


class _Storage:
    """A storage seen in the pickle; its bytes are attached once they have been read."""

    def __init__(self, key: str, storage_type: _StorageType, numel: int):
        self.key, self.storage_type, self.numel = key, storage_type, numel
        self.array: np.ndarray | None = None  # [numel] of storage_type.dtype
        self.view: tuple[_Storage, int, int] | None = None  # (root, offset, size) legacy views

    def resolve(self) -> np.ndarray:
        if self.view is not None:
            root, offset, size = self.view
            return root.resolve()[offset:offset + size]
        if self.array is None:
            raise pickle.UnpicklingError(f"storage {self.key!r} has no data in the file")
        return self.array


class _TensorRef:
    """What `_rebuild_tensor_v2` returns: a strided view description, materialised later."""

    def __init__(self, storage, offset, size, stride):
        if not isinstance(storage, _Storage):
            raise pickle.UnpicklingError(f"tensor built on {type(storage).__name__}, not a storage")
        for what, value in (("size", size), ("stride", stride)):
            if not (isinstance(value, tuple) and all(isinstance(v, int) and v >= 0 for v in value)):
                raise pickle.UnpicklingError(
                    f"tensor {what} must be a tuple of ints, got {value!r}")
        if len(size) != len(stride) or not isinstance(offset, int) or offset < 0:
            raise pickle.UnpicklingError(f"bad tensor layout: offset {offset!r}, size {size}, "
                                         f"stride {stride}")
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    def materialise(self, name: str) -> np.ndarray:
        flat = self.storage.resolve()
        if 0 in self.size:
            out = np.zeros(self.size, flat.dtype)
        else:
            last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride))
            if last >= flat.size or int(np.prod(self.size)) > flat.size:
                raise pickle.UnpicklingError(
                    f"tensor {name!r} reaches element {last} of a storage of {flat.size}")
            item = flat.dtype.itemsize
            out = np.lib.stride_tricks.as_strided(
                flat[self.offset:], shape=self.size,
                strides=tuple(s * item for s in self.stride)).copy()
        if self.storage.storage_type.name == "BFloat16Storage":
            out = (out.astype(np.uint32) << 16).view(np.float32)
        return np.array(out, dtype=out.dtype.newbyteorder("="), order="C")  # keeps 0-d shapes


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    del requires_grad, backward_hooks, metadata
    return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_tensor(storage, storage_offset, size, stride):
    return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    del requires_grad, backward_hooks
    return data


_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    **{("torch", name): storage_type for name, storage_type in _STORAGE_TYPES.items()},
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only allow-listed globals and storage persistent ids."""

    def __init__(self, file, source: str, storages: dict[str, _Storage] | None = None):
        super().__init__(file)
        self._source = source
        self.storages = storages if storages is not None else {}

    def find_class(self, module, name):
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"{self._source}: refused global '{module}.{name}': a tensor state dict needs "
                "only " + ", ".join(sorted(f"{m}.{n}" for m, n in _ALLOWED_GLOBALS))) from None

    def persistent_load(self, pid):
        # legacy: ('storage', type, key, location, numel[, view_metadata]); zip: first five.
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"{self._source}: unsupported persistent id {pid!r}")
        storage_type, key, _, numel = pid[1:5]
        view = pid[5] if len(pid) == 6 else None
        if not isinstance(storage_type, _StorageType) or not isinstance(key, str) \
                or not isinstance(numel, int) or numel < 0:
            raise pickle.UnpicklingError(f"{self._source}: malformed storage id {pid!r}")
        storage = self.storages.get(key)
        if storage is None:
            storage = self.storages[key] = _Storage(key, storage_type, numel)
        if view is None:
            return storage
        view_key, offset, view_size = view  # legacy sub-storage of a root storage
        out = _Storage(view_key, storage_type, view_size)
        out.view = (storage, int(offset), int(view_size))
        return out


def _materialise(obj: Any, source: str) -> dict[str, np.ndarray]:
    if not isinstance(obj, dict):
        raise pickle.UnpicklingError(
            f"{source}: expected a state dict (a mapping of names to tensors), got "
            f"{type(obj).__name__}")
    out = collections.OrderedDict()
    for name, value in obj.items():
        if not isinstance(value, _TensorRef):
            raise pickle.UnpicklingError(
                f"{source}: entry {name!r} is a {type(value).__name__}, not a tensor")
        out[str(name)] = value.materialise(name)
    return out


def _load_legacy(f: io.BufferedIOBase, source: str) -> dict[str, np.ndarray]:
    def small(what):
        return _RestrictedUnpickler(f, f"{source} ({what})").load()

    magic = small("magic number")
    if magic != LEGACY_MAGIC_NUMBER:
        raise pickle.UnpicklingError(
            f"{source}: not a PyTorch file (magic number {magic!r}); expected a torch.save output")
    protocol = small("protocol version")
    if protocol != LEGACY_PROTOCOL_VERSION:
        raise pickle.UnpicklingError(f"{source}: unsupported legacy protocol version {protocol!r}")
    sys_info = small("sys info")
    if not isinstance(sys_info, dict) or not sys_info.get("little_endian", True):
        raise pickle.UnpicklingError(f"{source}: only little-endian files are supported")
    main = _RestrictedUnpickler(f, source)
    obj = main.load()
    keys = small("storage keys")
    if not (isinstance(keys, list) and all(isinstance(k, str) for k in keys)):
        raise pickle.UnpicklingError(f"{source}: malformed storage key list")
    for key in keys:
        storage = main.storages.get(key)
        if storage is None:
            raise pickle.UnpicklingError(f"{source}: storage key {key!r} used by no tensor")
        header = f.read(8)
        if len(header) != 8:
            raise pickle.UnpicklingError(f"{source}: truncated before storage {key!r}")
        (numel,) = struct.unpack("<q", header)
        if numel != storage.numel:
            raise pickle.UnpicklingError(f"{source}: storage {key!r} holds {numel} elements, "
                                         f"its tensors expect {storage.numel}")
        dtype = storage.storage_type.dtype
        raw = f.read(numel * dtype.itemsize)
        if len(raw) != numel * dtype.itemsize:
            raise pickle.UnpicklingError(f"{source}: truncated data of storage {key!r}")
        storage.array = np.frombuffer(raw, dtype)
    return _materialise(obj, source)


def _load_zip(path: str) -> dict[str, np.ndarray]:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pkls = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
        if len(pkls) != 1:
            raise pickle.UnpicklingError(f"{path}: a torch zip file has one '<name>/data.pkl', "
                                         f"found {pkls}")
        prefix = pkls[0][:-len("data.pkl")]
        if prefix + "byteorder" in names and archive.read(prefix + "byteorder") != b"little":
            raise pickle.UnpicklingError(f"{path}: only little-endian files are supported")
        unpickler = _RestrictedUnpickler(io.BytesIO(archive.read(pkls[0])), path)
        obj = unpickler.load()
        for key, storage in unpickler.storages.items():
            member = f"{prefix}data/{key}"
            if member not in names:
                raise pickle.UnpicklingError(f"{path}: storage file {member!r} is missing")
            raw = archive.read(member)
            dtype = storage.storage_type.dtype
            if len(raw) != storage.numel * dtype.itemsize:
                raise pickle.UnpicklingError(f"{path}: {member!r} has {len(raw)} bytes, expected "
                                             f"{storage.numel} x {dtype.itemsize}")
            storage.array = np.frombuffer(raw, dtype)
    return _materialise(obj, path)


def load_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads a PyTorch tensor state dict (legacy or zip format) without PyTorch.

    Args:
      path: a file written by `torch.save(model.state_dict(), path)`.

    Returns:
      An ordered dict {parameter name: np.ndarray} in the file's order, with the tensors'
      shapes and dtypes (bfloat16 widened to float32).

    Raises:
      FileNotFoundError: the file does not exist.
      pickle.UnpicklingError: the file is not a tensor state dict, or its pickle names a
        global outside the allow-list (the message names it); nothing in it is executed.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No PyTorch weights file at {path!r}")
    if zipfile.is_zipfile(path):
        return _load_zip(path)
    with open(path, "rb") as f:
        try:
            return _load_legacy(f, path)
        except (EOFError, ValueError, struct.error) as e:
            raise pickle.UnpicklingError(f"{path}: not a readable PyTorch state dict ({e})") from e
