"""Read PyTorch and Caffe2 checkpoints without PyTorch, refusing any code in them.

Three container formats are understood, told apart by their first bytes:

* ``"pyth"``: the zip archive that ``torch.save`` writes since PyTorch 1.6. It holds
  ``<root>/data.pkl``, a pickle in which every tensor storage is a persistent id
  ``("storage", storage_type, key, location, numel)`` whose raw bytes are the record
  ``<root>/data/<key>``; ``<root>/byteorder`` says how those bytes are ordered.
* ``"pyth_legacy"``: the older ``torch.save`` layout, a run of pickles (magic number,
  protocol version, system info, the object, the list of storage keys) followed by every
  storage as an 8-byte little-endian element count and its little-endian bytes.
* ``"caffe2"``: a plain pickle such as the Caffe2 ``.pkl`` files of the PySlowFast model
  zoo, written by Python 2 (``{"blobs": {name: array}}``), read with ``encoding="latin1"``.

A pickle can call any importable function while it loads, so reading an untrusted one
with :func:`pickle.load` can run arbitrary code. Every pickle here is read by an
unpickler that resolves only an explicit allowlist of globals (containers, numpy's array
reconstruction and PyTorch's tensor rebuild functions) and maps the PyTorch names to
local stand-ins, so ``torch`` is never imported. Any other global raises
:class:`UnsafeCheckpointError` before anything runs.

Tensors come back as writable, C-contiguous ``numpy.ndarray`` copies with their PyTorch
dtype, except ``bfloat16`` (numpy has none), which is widened exactly to ``float32``.

A hostile file must not exhaust the process either, so before a pickle is unpickled its
opcodes are scanned and it is refused (as a ``ValueError``) when it nests containers more
than ``_MAX_DEPTH`` levels deep, asks to hash more than ``_MAX_HASH_WORK`` nested items
(shared tuples make hashing exponential), stores memo entries at indices the pickle cannot
have reached, or fetches copyreg extension codes. Sizes are checked before any allocation:
a storage must be backed by as many bytes in the file as it declares, a zip record may not
expand more than ``_MAX_ZIP_RATIO`` times (zip bombs), and all tensors together may not
take more than ``_EXPANSION_FACTOR`` times the file's size plus ``_EXPANSION_FLOOR`` bytes
(a stride of 0 repeats one element as often as a file asks). No stand-in object can be
modified through the pickle ``BUILD`` opcode, and numpy dtypes are only built from type
strings. A damaged zip record (bad CRC) is reported, never returned.
"""

from __future__ import annotations

import _compat_pickle
import codecs
import collections
import io
import math
import os
import pickle
import pickletools
import types
import zipfile
import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["CHECKPOINT_SUFFIXES", "UnsafeCheckpointError", "load_state_dict", "read_checkpoint"]

# File suffixes read as PyTorch / Caffe2 checkpoints (anything else is a weights name or a
# Keras `.weights.h5` file). Defined here, where nothing imports Keras, so that a command
# line can tell a checkpoint path before TensorFlow loads.
CHECKPOINT_SUFFIXES = (".pyth", ".pkl", ".pth", ".pt")

# The first object of a legacy torch.save file: this long, pickled with protocol 2.
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PREFIX = b"\x80\x02\x8a\x0a" + _LEGACY_MAGIC.to_bytes(10, "little")
_LEGACY_PROTOCOL_VERSION = 1001
_ZIP_MAGIC = b"PK\x03\x04"

# Limits against files built to exhaust the stack, the CPU or the memory.
_MAX_DEPTH = 100  # containers nested in a pickle (real checkpoints: under 10)
_MAX_HASH_WORK = 10_000_000  # tuple items hashed while unpickling, all keys together
_MAX_ZIP_RATIO = 100  # uncompressed / compressed size of a zip record ...
_ZIP_RATIO_FLOOR = 1 << 20  # ... for records larger than this
_EXPANSION_FACTOR = 8  # all tensors together, in bytes, at most this times the file ...
_EXPANSION_FLOOR = 256 << 20  # ... plus this


class UnsafeCheckpointError(pickle.UnpicklingError, ValueError):
    """A checkpoint asked for a global that the restricted unpickler does not allow.

    It is a :class:`pickle.UnpicklingError` and, like every other unreadable input, a
    :class:`ValueError`.

    Attributes:
        global_name: the refused global as ``"module.name"``.
        path: the file being read.

    Example:

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = os.path.join(tmp, "suspicious.pkl")
    ...     with open(path, "wb") as f:
    ...         pickle.dump({"blobs": {"conv1_w": os.system}}, f)  # a reference, not a call
    ...     try:
    ...         read_checkpoint(path)
    ...     except UnsafeCheckpointError as err:
    ...         print(err.global_name)
    posix.system
    """

    def __init__(
        self, global_name: str, path: str | os.PathLike, reason: str | None = None
    ) -> None:
        self.global_name = global_name
        self.path = path
        reason = reason or (
            "only containers, numpy arrays and PyTorch tensors are allowed in a checkpoint; "
            "this file asks to run other code and may be malicious"
        )
        super().__init__(
            f"Refused to load the global '{global_name}' from the checkpoint: {reason}. "
            f"Received: path={path}"
        )

    def __reduce__(self):
        return (type(self), (self.global_name, self.path))


class _FormatError(Exception):
    """A structural problem in a checkpoint; reported to the caller as a ValueError."""


def _describe(value):
    """A short, cheap description of an unpickled value for an error message.

    Only small atoms are shown with ``repr``; anything else by its type, since the repr
    of a crafted nested object can be arbitrarily slow or long.
    """
    if value is None or isinstance(value, (bool, int, float)):
        text = repr(value)
    elif isinstance(value, (str, bytes)):
        text = repr(value[:60]) + ("..." if len(value) > 60 else "")
    elif (
        isinstance(value, (tuple, list))
        and len(value) <= 8
        and all(v is None or isinstance(v, (bool, int, float)) for v in value)
    ):
        text = repr(value)
    else:
        return f"a {type(value).__name__}"
    return text if len(text) <= 200 else text[:200] + "..."


def _refuse_state(obj, state=None):
    raise _FormatError(
        f"the pickle tries to change the state of {_describe(obj)} (opcode BUILD), which "
        "no checkpoint needs"
    )


# ---------------------------------------------------------------------------------------
# Stand-ins for the PyTorch globals a checkpoint may name.


class _StorageType:
    """Stands for ``torch.FloatStorage`` and friends: only records the element type."""

    __slots__ = ("name", "dtype", "bfloat16")
    __setstate__ = _refuse_state

    def __init__(self, name, dtype):
        self.name = name
        self.bfloat16 = dtype == "bfloat16"
        # bfloat16 is kept as its raw 16 bits until a tensor is copied out.
        self.dtype = np.dtype(np.uint16 if self.bfloat16 else dtype)

    def __repr__(self):
        return f"<storage type {self.name}>"


_STORAGE_DTYPES = {
    "DoubleStorage": "float64",
    "FloatStorage": "float32",
    "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
    "ComplexFloatStorage": "complex64",
    "ComplexDoubleStorage": "complex128",
    "UntypedStorage": "uint8",
}
_STORAGE_TYPES = {name: _StorageType(name, dtype) for name, dtype in _STORAGE_DTYPES.items()}


class _Storage:
    """One storage: a flat run of ``numel`` elements, filled from the file's bytes.

    A legacy file may also declare a storage as a slice of another (``base``).
    """

    __slots__ = ("key", "type", "numel", "base", "base_offset", "_array")
    __setstate__ = _refuse_state

    def __init__(self, key, storage_type, numel, base=None, base_offset=0):
        self.key = key
        self.type = storage_type
        self.numel = numel
        self.base = base
        self.base_offset = base_offset
        self._array = None

    def fill(self, raw, byteorder):
        nbytes = self.numel * self.type.dtype.itemsize
        if len(raw) < nbytes:
            raise _FormatError(
                f"storage '{self.key}' holds {len(raw)} bytes, expected {nbytes} "
                "(the file is truncated or corrupt)"
            )
        file_dtype = self.type.dtype.newbyteorder("<" if byteorder == "little" else ">")
        array = np.frombuffer(raw, dtype=file_dtype, count=self.numel)
        if not file_dtype.isnative:
            array = array.astype(self.type.dtype)
        self._array = array

    @property
    def array(self):
        if self.base is not None:
            return self.base.array[self.base_offset : self.base_offset + self.numel]
        if self._array is None:
            raise _FormatError(f"storage '{self.key}' is referenced but its data is missing")
        return self._array


class _TensorRef:
    """A tensor as a strided view of a storage; copied into numpy once the file is read."""

    __slots__ = ("storage", "offset", "size", "stride")
    __setstate__ = _refuse_state

    def __init__(self, storage, offset, size, stride):
        if not isinstance(storage, _Storage):
            raise _FormatError(f"a tensor refers to {_describe(storage)}, not a storage")
        offset = _check_int(offset, "storage offset")
        size = _check_int_tuple(size, "size")
        stride = _check_int_tuple(stride, "stride")
        if len(size) != len(stride):
            raise _FormatError(
                f"tensor size and stride differ in length ({len(size)} and {len(stride)})"
            )
        if all(n > 0 for n in size):
            last = offset + sum((n - 1) * s for n, s in zip(size, stride))
            if last >= storage.numel:
                raise _FormatError(
                    f"tensor of size {size}, stride {stride} and offset {offset} reaches "
                    f"element {last} of a storage of {storage.numel} elements"
                )
        self.storage = storage
        self.offset = offset
        self.size = size
        self.stride = stride

    def to_numpy(self, budget):
        storage_type = self.storage.type
        itemsize = 6 if storage_type.bfloat16 else storage_type.dtype.itemsize
        budget.spend(math.prod(self.size) * itemsize, self.size)
        if any(n == 0 for n in self.size):
            out = np.zeros(self.size, dtype=storage_type.dtype)
        else:
            flat = self.storage.array
            itemsize = flat.dtype.itemsize
            view = np.lib.stride_tricks.as_strided(
                flat[self.offset :],
                shape=self.size,
                strides=tuple(s * itemsize for s in self.stride),
                writeable=False,
            )
            out = np.array(view, order="C", copy=True)
        if storage_type.bfloat16:
            out = (out.astype(np.uint32) << 16).view(np.float32)
        return out


def _check_int(value, what):
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _FormatError(f"tensor {what} must be a non-negative integer, got {_describe(value)}")
    return value


def _check_int_tuple(value, what):
    if not isinstance(value, (tuple, list)):
        raise _FormatError(f"tensor {what} must be a tuple of integers, got {_describe(value)}")
    return tuple(_check_int(v, what) for v in value)


class _Budget:
    """How many bytes the tensors of one file may still take once copied out."""

    __slots__ = ("left", "total")

    def __init__(self, file_size):
        self.total = self.left = _EXPANSION_FACTOR * file_size + _EXPANSION_FLOOR

    def spend(self, nbytes, size):
        if nbytes > self.left:
            raise _FormatError(
                f"a tensor of size {_describe(size)} would take {nbytes} bytes, more than the "
                f"{self.total} bytes that all tensors of a file this size may take (a stride "
                "of 0 repeats one element: the file asks for far more memory than it holds)"
            )
        self.left -= nbytes


def _rebuild_tensor(storage, storage_offset, size, stride):
    return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_tensor_v2(
    storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None
):
    return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad, backward_hooks):
    if not isinstance(data, _TensorRef):
        raise _FormatError(f"a parameter wraps {_describe(data)}, not a tensor")
    return data


def _rebuild_parameter_with_state(data, requires_grad, backward_hooks, state):
    return _rebuild_parameter(data, requires_grad, backward_hooks)


class _TensorClass:
    """Stands for ``torch.Tensor`` / ``torch.nn.Parameter`` as an argument, never called."""

    __slots__ = ("name",)
    __setstate__ = _refuse_state

    def __init__(self, name):
        self.name = name


_REBUILD_FUNCTIONS = (
    _rebuild_tensor,
    _rebuild_tensor_v2,
    _rebuild_parameter,
    _rebuild_parameter_with_state,
)


def _rebuild_from_type_v2(func, new_type, args, state):
    # Tensor subclasses and tensors with Python attributes are pickled through this
    # wrapper; only the plain rebuild functions may be wrapped.
    if not any(func is f for f in _REBUILD_FUNCTIONS) or not isinstance(new_type, _TensorClass):
        raise _FormatError("a wrapped tensor names an unsupported rebuild function or class")
    if not isinstance(args, tuple):
        raise _FormatError("a wrapped tensor has malformed arguments")
    return func(*args)


# ---------------------------------------------------------------------------------------
# Stand-ins for numpy and builtins globals.


class _NdarrayClass:
    """Stands for ``numpy.ndarray`` as the first argument of ``_reconstruct``."""

    __slots__ = ()
    __setstate__ = _refuse_state


_NDARRAY = _NdarrayClass()


def _np_reconstruct(subtype, shape, dtype):
    if subtype is not _NDARRAY:
        raise _FormatError("numpy array reconstruction names a class other than numpy.ndarray")
    # The array's real shape, dtype and bytes arrive right after, through __setstate__.
    return np.empty((0,), dtype=np.uint8)


def _np_scalar(dtype, data=None):
    if not isinstance(dtype, np.dtype):
        raise _FormatError("a numpy scalar names something other than a dtype")
    if dtype.hasobject:
        return data
    if isinstance(data, str):
        data = data.encode("latin1")
    if not isinstance(data, (bytes, bytearray)):
        raise _FormatError("a numpy scalar carries no bytes")
    return np.frombuffer(data, dtype=dtype, count=1)[0]


def _np_frombuffer(buffer, dtype, shape, order):
    if not isinstance(dtype, np.dtype) or dtype.hasobject or order not in ("C", "F"):
        raise _FormatError("malformed numpy buffer record")
    return np.frombuffer(buffer, dtype=dtype).reshape(shape, order=order).copy(order="K")


_TEXT_ENCODINGS = ("latin1", "latin-1", "iso-8859-1", "utf-8", "utf8", "ascii")


def _codecs_encode(obj, encoding="utf-8", errors="strict"):
    # Python 3 writes ``bytes`` into protocol-2 pickles as _codecs.encode(text, "latin1").
    if not isinstance(obj, str) or encoding not in _TEXT_ENCODINGS or errors != "strict":
        raise _FormatError("_codecs.encode is allowed only to turn text into bytes")
    return codecs.encode(obj, encoding)


def _check_hash_work(items, what):
    """Refuses items whose hashing would visit too many nested tuples (shared or deep)."""
    work, pending = 0, list(items)
    while pending:
        item = pending.pop()
        work += 1
        if work > _MAX_HASH_WORK:
            raise _FormatError(f"the items of {what} are nested too much to be hashed")
        if type(item) is tuple:
            pending.extend(item)
    return items


def _finite(items, what):
    # Only containers the pickle spelled out: a range could ask for 10**18 items.
    if not isinstance(items, (list, tuple, set, frozenset, dict)):
        raise _FormatError(f"{what} may only be built from a list or tuple, got {_describe(items)}")
    return items


def _make_set(items=()):
    return set(_check_hash_work(_finite(items, "a set"), "a set"))


def _make_frozenset(items=()):
    return frozenset(_check_hash_work(_finite(items, "a frozenset"), "a frozenset"))


def _make_size(items=()):
    return tuple(_finite(items, "a torch.Size"))


def _make_ordered_dict(items=()):
    # Python 2 pickles an OrderedDict as OrderedDict([[key, value], ...]).
    items = _finite(items, "an OrderedDict")
    if not isinstance(items, dict):
        pairs = [tuple(pair) if isinstance(pair, (list, tuple)) else pair for pair in items]
        if not all(isinstance(pair, tuple) and len(pair) == 2 for pair in pairs):
            raise _FormatError("an OrderedDict must be built from (key, value) pairs")
        _check_hash_work([key for key, _ in pairs], "an OrderedDict")
        items = pairs
    return collections.OrderedDict(items)


def _make_bytearray(source=b"", encoding=None, errors=None):
    # bytearray(n) would allocate n bytes; only spelled-out contents are allowed.
    if isinstance(source, str) and encoding in _TEXT_ENCODINGS and errors in (None, "strict"):
        return bytearray(source, encoding)
    if isinstance(source, (bytes, bytearray, list, tuple)) and encoding is None and errors is None:
        return bytearray(source)
    raise _FormatError("a bytearray may only be built from bytes, or text and its encoding")


def _make_dtype(spec, align=False, copy=False):
    # Pickled dtypes are spelled as a type string ("f4", "<i8", "O8", "V16"); nested
    # specs (lists, dicts, tuples) could share parts and take exponential time.
    if isinstance(spec, bytes):
        spec = spec.decode("latin1")
    if not isinstance(spec, str) or len(spec) > 1000:
        raise _FormatError(
            f"a numpy dtype may only be named by a type string, got {_describe(spec)}"
        )
    return np.dtype(spec, align=bool(align), copy=bool(copy))


_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): _make_ordered_dict,
    ("builtins", "set"): _make_set,
    ("builtins", "frozenset"): _make_frozenset,
    ("builtins", "slice"): slice,
    ("builtins", "complex"): complex,
    ("builtins", "bytearray"): _make_bytearray,
    ("builtins", "range"): range,
    ("_codecs", "encode"): _codecs_encode,
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _make_dtype,
    ("numpy.core.multiarray", "_reconstruct"): _np_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _np_reconstruct,
    ("numpy.core.multiarray", "scalar"): _np_scalar,
    ("numpy._core.multiarray", "scalar"): _np_scalar,
    ("numpy.core.numeric", "_frombuffer"): _np_frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _np_frombuffer,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter_with_state,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
    ("torch._tensor", "Tensor"): _TensorClass("Tensor"),
    ("torch", "Tensor"): _TensorClass("Tensor"),
    ("torch.nn.parameter", "Parameter"): _TensorClass("Parameter"),
    # torch.Size pickles as Size(tuple); a plain tuple is the same data.
    ("torch", "Size"): _make_size,
}
for _name, _storage_type in _STORAGE_TYPES.items():
    _ALLOWED_GLOBALS[("torch", _name)] = _storage_type
    # Legacy files saved from a GPU name the CUDA storage classes.
    if _name != "UntypedStorage":
        _ALLOWED_GLOBALS[("torch.cuda", _name)] = _storage_type
del _name, _storage_type
# The pickle opcode BUILD sets the state of whatever object is on the stack, allowed
# globals included; a function's attributes are guarded like the stand-in classes.
for _value in _ALLOWED_GLOBALS.values():
    if isinstance(_value, types.FunctionType):
        _value.__setstate__ = types.MethodType(_refuse_state, _value)
del _value


class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only ``_ALLOWED_GLOBALS``."""

    def __init__(self, file, path, load_storage=None, **kwargs):
        super().__init__(file, **kwargs)
        self._path = path
        self._load_storage = load_storage

    def find_class(self, module, name):
        # Python 2 names, translated as the default find_class does (Python 3 also
        # writes them into protocol 0-2 pickles).
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except (KeyError, TypeError):
            raise UnsafeCheckpointError(f"{module}.{name}", self._path) from None

    def persistent_load(self, pid):
        if self._load_storage is None:
            raise _FormatError("a plain pickle must not contain persistent ids")
        return self._load_storage(pid)


# What each opcode does to the stack, for the scan below; the values are symbolic.
_PUSH_ATOM = frozenset(
    "INT BININT BININT1 BININT2 LONG LONG1 LONG4 STRING BINSTRING SHORT_BINSTRING BINBYTES "
    "SHORT_BINBYTES BINBYTES8 BYTEARRAY8 NEXT_BUFFER NONE NEWTRUE NEWFALSE UNICODE "
    "SHORT_BINUNICODE BINUNICODE BINUNICODE8 FLOAT BINFLOAT GLOBAL PERSID".split()
)
_PUSH_EMPTY = frozenset("EMPTY_LIST EMPTY_TUPLE EMPTY_DICT EMPTY_SET".split())
_BUILD_FROM_MARK = frozenset("TUPLE LIST DICT FROZENSET INST OBJ".split())
_TUPLE_N = {"TUPLE1": 1, "TUPLE2": 2, "TUPLE3": 3}
_CALLS = {"REDUCE": 2, "NEWOBJ": 2, "NEWOBJ_EX": 3}
_NO_STACK = frozenset("PROTO FRAME STOP".split())
_STRING_OPS = frozenset(
    "STRING BINSTRING SHORT_BINSTRING UNICODE SHORT_BINUNICODE BINUNICODE BINUNICODE8".split()
)


class _Sym:
    """What the scan knows of one unpickled value.

    ``depth``: how deeply containers nest in it (tracked when it is built); ``weight``: an
    upper bound of the items hashing it visits; ``kind``: ``"none"``, ``"str"``,
    ``"global"``, ``"dtype"``, ``"tuple"`` or None; ``payload``: the text of a string or
    global, the items of a tuple.
    """

    __slots__ = ("depth", "weight", "kind", "payload")

    def __init__(self, depth, weight, kind=None, payload=None):
        self.depth = depth
        self.weight = min(weight, _MAX_HASH_WORK + 1)
        self.kind = kind
        self.payload = payload


def _scan_pickle(file, path):
    """Walks the opcodes of the pickle at the file's position without building anything.

    Refuses what the unpickler would do without calling ``find_class`` or with no bound
    on the stack, time or memory: copyreg extension codes (answered from a process-wide
    cache), containers nested deeper than ``_MAX_DEPTH`` (hashing a deeply nested tuple
    overflows the C stack), more than ``_MAX_HASH_WORK`` tuple items hashed as keys
    (tuples that share parts hash in exponential time), memo indices beyond the opcodes
    read so far (the unpickler sizes its memo by the largest index), and numpy dtypes
    given a nested structure through their state. The file position is restored.
    """
    start = file.tell()
    scan = _PickleScan(path)
    for count, (opcode, arg, _) in enumerate(pickletools.genops(file), 1):
        scan.step(opcode.name, arg, count)
    file.seek(start)


class _PickleScan:
    """The symbolic stack, marks and memo of :func:`_scan_pickle`, one opcode at a time."""

    def __init__(self, path):
        self.path = path
        self.stack, self.marks, self.memo = [], [], {}
        self.hash_work = 0

    def pop(self, n=1):
        stack, marks = self.stack, self.marks
        floor = marks[-1] if marks else 0
        if len(stack) - n < floor:
            raise _FormatError("malformed pickle: an opcode takes more values than the stack holds")
        items = stack[len(stack) - n :]
        del stack[len(stack) - n :]
        return items

    def pop_mark(self):
        stack, marks = self.stack, self.marks
        if not marks:
            raise _FormatError("malformed pickle: an opcode needs a mark that was never set")
        items = stack[marks[-1] :]
        del stack[marks.pop() :]
        return items

    def top(self):
        stack, marks = self.stack, self.marks
        if len(stack) <= (marks[-1] if marks else 0):
            raise _FormatError("malformed pickle: an opcode needs a value on an empty stack")
        return stack[-1]

    def push(self, sym):
        if sym.depth > _MAX_DEPTH:
            raise _FormatError(
                f"the pickle nests containers more than {_MAX_DEPTH} levels deep; no "
                "checkpoint does, and a deeper one could overflow the stack"
            )
        self.stack.append(sym)

    @staticmethod
    def contains(items, kind=None, payload=None, extra=0):
        depth = max((s.depth for s in items), default=0) + 1
        weight = sum(s.weight for s in items) + 1 + extra
        return _Sym(depth, weight, kind, payload)

    def hashed(self, syms):
        self.hash_work += sum(s.weight for s in syms)
        if self.hash_work > _MAX_HASH_WORK:
            raise _FormatError(
                "the pickle's keys are nested tuples that would take too long to hash"
            )

    def grow(self, items, key_step=0):
        # APPEND-like opcodes add items to the container below them.
        if key_step:
            self.hashed(items[::key_step])
        merged = self.contains(items)
        container = self.top()
        container.depth = max(container.depth, merged.depth)
        if container.depth > _MAX_DEPTH:
            self.push(container)  # raises

    def step(self, name, arg, count):
        """Applies opcode `name` (argument `arg`, the `count`-th read) to the stack."""
        if not (
            self.build_value(name, arg)
            or self.fill_value(name)
            or self.move_value(name, arg, count)
        ):
            if name in ("EXT1", "EXT2", "EXT4"):
                raise UnsafeCheckpointError(
                    f"copyreg extension {arg}", self.path, "extension codes are not allowed"
                )
            if name not in _NO_STACK:
                raise _FormatError(f"unsupported pickle opcode {name}")

    def build_value(self, name, arg):
        """Opcodes that push a new value: atoms, globals, containers, calls."""
        if name in _PUSH_ATOM:
            if name in _STRING_OPS:
                text = arg.decode("latin1") if isinstance(arg, bytes) else arg
                self.push(_Sym(0, 1, "str", text))
            elif name == "GLOBAL":
                self.push(_Sym(0, 1, "global", arg))
            else:
                self.push(_Sym(0, 1, "none" if name == "NONE" else None))
        elif name in _PUSH_EMPTY:
            self.push(_Sym(1, 1, "tuple" if name == "EMPTY_TUPLE" else None, ()))
        elif name in _TUPLE_N:
            items = self.pop(_TUPLE_N[name])
            self.push(self.contains(items, "tuple", tuple(items)))
        elif name in _BUILD_FROM_MARK:
            items = self.pop_mark()
            if name in ("DICT", "FROZENSET"):
                self.hashed(items[::2] if name == "DICT" else items)
            kind = "tuple" if name == "TUPLE" else None
            if name == "INST" and arg == "numpy dtype":
                raise _FormatError("a numpy dtype may only be built by calling numpy.dtype")
            if name == "OBJ" and items and items[0].payload == "numpy dtype":
                kind = "dtype"
            self.push(self.contains(items, kind, tuple(items) if kind == "tuple" else None))
        elif name in _CALLS:
            items = self.pop(_CALLS[name])
            callable_ = items[0]
            kind = "dtype" if callable_.payload == "numpy dtype" else None
            self.push(self.contains(items[1:], kind))
        elif name == "STACK_GLOBAL":
            module, qualname = self.pop(2)
            text = None
            if module.kind == "str" and qualname.kind == "str":
                text = f"{module.payload} {qualname.payload}"
            self.push(_Sym(0, 1, "global", text))
        elif name == "BINPERSID":
            self.pop(1)
            self.push(_Sym(0, 1))
        else:
            return False
        return True

    def fill_value(self, name):
        """Opcodes that add to the value on the stack: items, state, a read-only flag."""
        if name == "APPEND":
            self.grow(self.pop(1))
        elif name == "SETITEM":
            self.grow(self.pop(2), key_step=2)
        elif name in ("APPENDS", "SETITEMS", "ADDITEMS"):
            items = self.pop_mark()
            self.grow(items, key_step={"APPENDS": 0, "SETITEMS": 2, "ADDITEMS": 1}[name])
        elif name == "READONLY_BUFFER":
            self.top()
        elif name == "BUILD":
            (state,) = self.pop(1)
            target = self.top()
            if target.kind == "dtype":
                fields = state.payload if state.kind == "tuple" else ()
                if len(fields) < 5 or any(f.kind != "none" for f in fields[2:5]):
                    raise _FormatError(
                        "a numpy dtype with fields or a sub-array is not supported in a checkpoint"
                    )
            target.depth = max(target.depth, state.depth + 1)
            target.weight = min(target.weight + state.weight, _MAX_HASH_WORK + 1)
            if target.depth > _MAX_DEPTH:
                self.push(target)  # raises
        else:
            return False
        return True

    def move_value(self, name, arg, count):
        """Opcodes that move values: marks, pops, duplicates and the memo."""
        stack, marks, memo = self.stack, self.marks, self.memo
        if name == "POP":
            if marks and len(stack) == marks[-1]:
                marks.pop()
            else:
                self.pop(1)
        elif name == "POP_MARK":
            self.pop_mark()
        elif name == "DUP":
            self.push(self.top())
        elif name == "MARK":
            marks.append(len(stack))
        elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
            if not isinstance(arg, int) or arg < 0 or arg > count:
                raise _FormatError(
                    f"the pickle stores a memo entry at index {_describe(arg)} after only "
                    f"{count} opcodes"
                )
            memo[arg] = self.top()
        elif name == "MEMOIZE":
            memo[len(memo)] = self.top()
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            if arg not in memo:
                raise _FormatError(
                    f"the pickle reads the memo entry {_describe(arg)} it never stored"
                )
            self.push(memo[arg])
        else:
            return False
        return True


def _unpickle(file, path, load_storage=None, encoding="ASCII"):
    _scan_pickle(file, path)
    return _RestrictedUnpickler(file, path, load_storage, encoding=encoding).load()


# ---------------------------------------------------------------------------------------
# Converting the unpickled tree into numpy.


def _materialize(obj, memo, budget, depth=0):
    # The scan bounds how deeply a pickle nests containers as it builds them; a list
    # filled after it was put into another can still nest deeper, which is refused here.
    if depth > _MAX_DEPTH:
        raise _FormatError(f"the checkpoint nests containers more than {_MAX_DEPTH} levels deep")
    key = id(obj)
    if key in memo:
        return memo[key]
    if isinstance(obj, _TensorRef):
        out = obj.to_numpy(budget)
    elif isinstance(obj, _Storage):
        out = _TensorRef(obj, 0, (obj.numel,), (1,)).to_numpy(budget)
    elif isinstance(obj, dict):
        out = collections.OrderedDict() if isinstance(obj, collections.OrderedDict) else {}
        memo[key] = out
        for k, v in obj.items():
            out[k] = _materialize(v, memo, budget, depth + 1)
    elif isinstance(obj, list):
        out = []
        memo[key] = out
        out.extend(_materialize(v, memo, budget, depth + 1) for v in obj)
    elif isinstance(obj, tuple):
        out = tuple(_materialize(v, memo, budget, depth + 1) for v in obj)
    elif isinstance(obj, np.ndarray) and not obj.flags.writeable:
        out = obj.copy()
    else:
        out = obj
    memo[key] = out
    return out


# ---------------------------------------------------------------------------------------
# The three container formats.


def _parse_storage_pid(pid, length):
    if not isinstance(pid, tuple) or len(pid) != length or pid[0] != "storage":
        kind = _describe(pid[0] if isinstance(pid, tuple) and pid else pid)
        raise _FormatError(
            f"unsupported persistent id {kind} (expected a tuple of {length} items starting "
            "with 'storage'); only tensor storages are supported"
        )
    storage_type, key, numel = pid[1], pid[2], pid[4]
    if not isinstance(storage_type, _StorageType):
        raise _FormatError(f"a storage names {_describe(storage_type)} instead of a storage type")
    if not isinstance(key, str):
        raise _FormatError(f"a storage key must be text, got {_describe(key)}")
    return storage_type, key, _check_int(numel, "storage size")


def _zip_root(names):
    roots = [n[: -len("data.pkl")] for n in names if n.endswith("data.pkl")]
    roots = [r for r in roots if r == "" or (r.endswith("/") and r.count("/") == 1)]
    if not roots:
        raise _FormatError("the zip archive has no data.pkl record, so it is not a torch.save file")
    if len(roots) > 1:
        first = names[0].split("/")[0] + "/"
        roots = [r for r in roots if r == first] or roots[:1]
    return roots[0]


def _read_member(zf, info, archive_size):
    """The bytes of one zip record, refused before reading when its sizes are implausible.

    The CRC is checked by :mod:`zipfile` once the record is read to its end.
    """
    name = info.filename
    if info.flag_bits & 0x1:
        raise _FormatError(f"the zip record '{name}' is encrypted")
    if info.compress_size > archive_size:
        raise _FormatError(
            f"the zip record '{name}' declares {info.compress_size} bytes but the whole file "
            f"has {archive_size} (the file is truncated or corrupt)"
        )
    if info.file_size > max(_ZIP_RATIO_FLOOR, _MAX_ZIP_RATIO * info.compress_size):
        raise _FormatError(
            f"the zip record '{name}' would expand {info.compress_size} bytes into "
            f"{info.file_size}, more than {_MAX_ZIP_RATIO} times (a zip bomb?)"
        )
    return zf.read(info)


def _read_zip(path):
    archive_size = os.path.getsize(path)
    with zipfile.ZipFile(path) as zf:
        infos = {info.filename: info for info in zf.infolist()}
        prefix = _zip_root(list(infos))
        byteorder = "little"
        if prefix + "byteorder" in infos:
            raw = _read_member(zf, infos[prefix + "byteorder"], archive_size)
            byteorder = raw.decode("ascii").strip()
            if byteorder not in ("little", "big"):
                raise _FormatError(f"unknown byte order record {_describe(byteorder)}")
        storages = {}

        def load_storage(pid):
            storage_type, key, numel = _parse_storage_pid(pid, 5)
            cache_key = (key, storage_type.name)
            if cache_key not in storages:
                member = f"{prefix}data/{key}"
                info = infos.get(member)
                if info is None:
                    raise _FormatError(f"the storage record '{member}' is missing")
                nbytes = numel * storage_type.dtype.itemsize
                if info.file_size < nbytes:
                    raise _FormatError(
                        f"the storage record '{member}' has {info.file_size} bytes, "
                        f"expected {nbytes}"
                    )
                storage = _Storage(key, storage_type, numel)
                storage.fill(_read_member(zf, info, archive_size), byteorder)
                storages[cache_key] = storage
            return storages[cache_key]

        data = io.BytesIO(_read_member(zf, infos[prefix + "data.pkl"], archive_size))
        obj = _unpickle(data, path, load_storage)
        return _materialize(obj, {}, _Budget(archive_size))


def _read_legacy(path):
    with open(path, "rb") as f:
        raw = f.read()
    file = io.BytesIO(raw)
    if _unpickle(file, path) != _LEGACY_MAGIC:
        raise _FormatError("bad magic number")
    version = _unpickle(file, path)
    if version != _LEGACY_PROTOCOL_VERSION:
        raise _FormatError(f"unsupported legacy protocol version {_describe(version)}")
    _unpickle(file, path)  # system info; storages are always little-endian in this format

    roots, views = {}, {}

    def load_storage(pid):
        storage_type, root_key, numel = _parse_storage_pid(pid, 6)
        root = roots.get(root_key)
        if root is None:
            root = roots[root_key] = _Storage(root_key, storage_type, numel)
        view = pid[5]
        if view is None:
            return root
        if not isinstance(view, tuple) or len(view) != 3 or not isinstance(view[0], str):
            raise _FormatError(f"malformed storage view {_describe(view)}")
        view_key = view[0]
        if view_key not in views:
            offset = _check_int(view[1], "view offset")
            size = _check_int(view[2], "view size")
            if offset + size > root.numel:
                raise _FormatError(f"storage view {_describe(view)} exceeds its storage")
            views[view_key] = _Storage(view_key, root.type, size, base=root, base_offset=offset)
        return views[view_key]

    obj = _unpickle(file, path, load_storage)
    keys = _unpickle(file, path)
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise _FormatError("malformed list of storage keys")
    buffer = memoryview(raw)
    pos = file.tell()
    for key in keys:
        if key not in roots:
            raise _FormatError(f"data for the unknown storage '{key}'")
        storage = roots[key]
        if pos + 8 > len(raw):
            raise _FormatError("the file is truncated")
        count = int.from_bytes(raw[pos : pos + 8], "little")
        pos += 8
        if count != storage.numel:
            raise _FormatError(
                f"storage '{key}' has {count} elements in the data but {storage.numel} declared"
            )
        nbytes = count * storage.type.dtype.itemsize
        storage.fill(buffer[pos : pos + nbytes], "little")
        pos += nbytes
    return _materialize(obj, {}, _Budget(len(raw)))


def _str_keys(mapping):
    return type(mapping)(
        (k.decode("latin1") if isinstance(k, bytes) else k, v) for k, v in mapping.items()
    )


def _read_plain(path):
    with open(path, "rb") as f:
        file = io.BytesIO(f.read())
    budget = _Budget(len(file.getbuffer()))
    obj = _materialize(_unpickle(file, path, encoding="latin1"), {}, budget)
    if not isinstance(obj, dict):
        raise _FormatError(
            f"the pickle holds a {type(obj).__name__}, not a dict of weights (e.g. Caffe2 blobs)"
        )
    obj = _str_keys(obj)
    if isinstance(obj.get("blobs"), dict):
        obj["blobs"] = _str_keys(obj["blobs"])
    return obj


_READERS = {"pyth": _read_zip, "pyth_legacy": _read_legacy, "caffe2": _read_plain}

# What a damaged or foreign file makes the readers raise; all become one ValueError.
_READ_ERRORS = (
    _FormatError,
    pickle.UnpicklingError,
    EOFError,
    zipfile.BadZipFile,
    zlib.error,
    NotImplementedError,
    KeyError,
    IndexError,
    AttributeError,
    TypeError,
    ValueError,
    OverflowError,
    RecursionError,
)


def _check_path(path):
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"`path` must be a str or os.PathLike. Received: path={path!r}")
    path = os.fspath(path)
    if not isinstance(path, str):
        raise TypeError(f"`path` must be a str or os.PathLike. Received: path={path!r}")
    if not os.path.exists(path):
        raise ValueError(f"The checkpoint file does not exist. Received: path={path}")
    if not os.path.isfile(path):
        raise ValueError(f"The checkpoint path is not a file. Received: path={path}")
    return path


def _detect_format(path):
    with open(path, "rb") as f:
        head = f.read(512)
    if not head:
        raise ValueError(f"The checkpoint file is empty. Received: path={path}")
    if head.startswith(_ZIP_MAGIC):
        return "pyth"
    if head.startswith(_LEGACY_PREFIX):
        return "pyth_legacy"
    if len(head) >= 262 and head[257:262] == b"ustar":
        raise ValueError(
            "The file is a tar archive, the serialisation of PyTorch before 0.4, which is not "
            f"supported; re-save it with a newer PyTorch. Received: path={path}"
        )
    # A pickle starts with PROTO (protocol 2 and later) or, for protocols 0 and 1 as
    # Python 2 wrote them, with the opening of a dict.
    if (head[0] == 0x80 and len(head) > 1 and 2 <= head[1] <= 5) or head[:1] in (b"(", b"}"):
        return "caffe2"
    raise ValueError(
        "The file is not a checkpoint: expected a torch.save zip archive (.pyth), a legacy "
        f"torch.save file or a pickled dict such as a Caffe2 .pkl. Received: path={path}"
    )


def _read(path):
    path = _check_path(path)
    fmt = _detect_format(path)
    try:
        return _READERS[fmt](path), fmt
    except UnsafeCheckpointError:
        raise
    except _READ_ERRORS as err:
        raise ValueError(
            f"Could not read the checkpoint (format '{fmt}'): {err}. Received: path={path}"
        ) from err


def read_checkpoint(path: str | os.PathLike) -> Any:
    """Reads a PyTorch ``.pyth`` or Caffe2 ``.pkl`` checkpoint into numpy, without PyTorch.

    The format is detected from the file's content: a ``torch.save`` zip archive, a legacy
    (pre-1.6) ``torch.save`` file, or a plain pickle such as the Caffe2 files of the
    PySlowFast model zoo. Pickles are read by a restricted unpickler that refuses every
    global outside a small allowlist, so a crafted file cannot run code.

    Args:
        path: path of the checkpoint file.

    Returns:
        The top-level object of the checkpoint with every tensor as a writable numpy
        array, e.g. ``{"epoch": 10, "model_state": {...}, "optimizer_state": {...},
        "cfg": "<YAML>"}`` for a PySlowFast file or ``{"blobs": {...}}`` for a Caffe2 file
        (whose names are returned as ``str``).

    Raises:
        UnsafeCheckpointError: the file asks for a global outside the allowlist.
        ValueError: the file is missing, empty, truncated or not a checkpoint.
        TypeError: ``path`` is not a str or path-like object.

    Example:

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = os.path.join(tmp, "tiny.pkl")
    ...     with open(path, "wb") as f:
    ...         pickle.dump({"blobs": {"conv1_w": np.ones((8, 3, 1, 7, 7), "float32")}}, f)
    ...     ckpt = read_checkpoint(path)
    >>> ckpt["blobs"]["conv1_w"].shape
    (8, 3, 1, 7, 7)

    A published checkpoint (downloaded first):

    >>> ckpt = read_checkpoint("SLOWFAST_8x8_R50.pyth")  # doctest: +SKIP
    >>> ckpt["model_state"]["s1.pathway0_stem.conv.weight"].shape  # doctest: +SKIP
    (64, 3, 1, 7, 7)
    """
    return _read(path)[0]


_STATE_KEYS = ("model_state", "blobs", "state_dict", "model")


def load_state_dict(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Reads the flat weight dict of a checkpoint and what else it says about itself.

    The weights are taken from ``model_state`` (PySlowFast and PyTorchVideo), ``blobs``
    (Caffe2), ``state_dict`` or ``model``, or from the top level when the file is a bare
    state dict. Names are returned unchanged (prefixes such as ``"model."`` included).

    Args:
        path: path of the checkpoint file.

    Returns:
        A tuple ``(tensors, info)``: ``tensors`` maps each name to a numpy array, in file
        order; ``info`` is a dict with ``"format"`` (``"pyth"``, ``"pyth_legacy"`` or
        ``"caffe2"``), ``"cfg"`` (the YAML text of a PySlowFast config, or None),
        ``"epoch"`` (or None) and ``"skipped"`` (names of non-array entries left out).

    Raises:
        UnsafeCheckpointError: the file asks for a global outside the allowlist.
        ValueError: the file is not a readable checkpoint or holds no weight dict.
        TypeError: ``path`` is not a str or path-like object.

    Example:

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = os.path.join(tmp, "tiny.pkl")
    ...     with open(path, "wb") as f:
    ...         pickle.dump({"blobs": {"conv1_w": np.ones((8, 3, 1, 7, 7), "float32")}}, f)
    ...     tensors, info = load_state_dict(path)
    >>> info["format"], tensors["conv1_w"].shape
    ('caffe2', (8, 3, 1, 7, 7))

    A published checkpoint (downloaded first):

    >>> tensors, info = load_state_dict("SLOWFAST_8x8_R50.pkl")  # doctest: +SKIP
    >>> info["format"], tensors["conv1_w"].shape  # doctest: +SKIP
    ('caffe2', (64, 3, 1, 7, 7))
    """
    obj, fmt = _read(path)
    path = os.fspath(path)
    state = None
    if isinstance(obj, Mapping):
        for key in _STATE_KEYS:
            if isinstance(obj.get(key), Mapping):
                state = obj[key]
                break
        else:
            if obj and all(isinstance(v, np.ndarray) for v in obj.values()):
                state = obj
    if state is None:
        found = sorted(map(str, obj)) if isinstance(obj, Mapping) else type(obj).__name__
        raise ValueError(
            f"The checkpoint holds no weight dict: expected one of the keys {list(_STATE_KEYS)} "
            f"or a bare dict of arrays, found {found}. Received: path={path}"
        )
    tensors, skipped = {}, []
    for name, value in state.items():
        if isinstance(name, bytes):
            name = name.decode("latin1")
        if isinstance(value, np.ndarray):
            tensors[str(name)] = value
        else:
            skipped.append(str(name))
    cfg = obj.get("cfg")
    if isinstance(cfg, bytes):
        cfg = cfg.decode("utf-8")
    epoch = obj.get("epoch")
    info = {
        "format": fmt,
        "cfg": cfg if isinstance(cfg, str) else None,
        "epoch": epoch if isinstance(epoch, (int, np.integer)) else None,
        "skipped": skipped,
    }
    return tensors, info
