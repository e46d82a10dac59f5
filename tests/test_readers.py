"""Tests of the torch-free checkpoint readers and their restricted unpickling."""

import collections
import io
import json
import os
import pickle
import subprocess
import sys
import types
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from keras_slowfast.weights.readers import (
    UnsafeCheckpointError,
    load_state_dict,
    read_checkpoint,
)

_REPO = Path(__file__).resolve().parents[1]
_BN_STATS = ("running_mean", "running_var", "num_batches_tracked")


# ---------------------------------------------------------------------------------------
# The golden checkpoints written by PySlowFast, PyTorchVideo and the Caffe2 tooling.


def _meta(folder):
    return json.loads((folder / "meta.json").read_text())


def _pyth_files(golden):
    files = sorted(golden.glob("models/*/*.pyth"))
    assert files, "no .pyth file in the golden fixtures"
    return files


def test_every_pyth_reads(golden):
    for path in _pyth_files(golden):
        tensors, info = load_state_dict(path)
        assert info["format"] == ("pyth_legacy" if "legacy" in path.name else "pyth"), path
        assert tensors, path
        for name, value in tensors.items():
            assert isinstance(value, np.ndarray), name
            assert value.flags.writeable and value.flags.c_contiguous, name
            if name.endswith("num_batches_tracked"):
                # int64 in PyTorch; these fixtures were saved with every buffer as float32.
                assert value.shape == () and value.dtype in (np.int64, np.float32), name
            else:
                assert value.dtype == np.float32, name
                assert np.isfinite(value).all(), name
        # The number of learnable parameters is the one the reference model reported.
        params = sum(v.size for k, v in tensors.items() if not k.endswith(_BN_STATS))
        assert params == _meta(path.parent)["params"], path

        running_vars = [k for k in tensors if k.endswith("running_var")]
        assert running_vars, path
        for name in running_vars:
            prefix = name[: -len("running_var")]
            assert (tensors[name] > 0).all(), name
            for suffix in ("running_mean", "weight", "bias"):
                assert tensors[prefix + suffix].shape == tensors[name].shape, prefix + suffix

        if path.name.startswith("pyslowfast"):
            assert info["epoch"] == read_checkpoint(path)["epoch"]
            assert isinstance(info["epoch"], int)
            cfg = yaml.safe_load(info["cfg"])
            assert {"MODEL", "RESNET"} <= set(cfg)
            assert cfg["RESNET"]["DEPTH"] == _meta(path.parent)["depth"]
            assert cfg["MODEL"]["NUM_CLASSES"] == _meta(path.parent)["num_classes"]
            assert yaml.safe_load((path.parent / "config.yaml").read_text()) == cfg
        else:
            assert info["cfg"] is None and info["epoch"] is None


def test_pyslowfast_checkpoint_layout(golden):
    ckpt = read_checkpoint(golden / "models/slowfast_8x8_r50/pyslowfast.pyth")
    assert set(ckpt) == {"epoch", "model_state", "optimizer_state", "cfg"}
    assert isinstance(ckpt["cfg"], str)
    stem = ckpt["model_state"]["s1.pathway0_stem.conv.weight"]
    assert stem.shape == (8, 3, 1, 7, 7)


def test_every_caffe2_pkl_reads(golden):
    files = sorted(golden.glob("models/*/caffe2.pkl"))
    assert files, "no caffe2.pkl in the golden fixtures"
    for path in files:
        ckpt = read_checkpoint(path)
        assert set(ckpt) >= {"blobs"}
        blobs, info = load_state_dict(path)
        assert info == {"format": "caffe2", "cfg": None, "epoch": None, "skipped": []}
        assert all(type(name) is str for name in blobs)
        assert blobs["model_iter"].dtype == np.int64
        weights = {
            k: v
            for k, v in blobs.items()
            if not k.endswith(("_momentum", "_rm", "_riv")) and k not in ("lr", "model_iter")
        }
        assert all(v.dtype == np.float32 for v in weights.values())
        assert sum(v.size for v in weights.values()) == _meta(path.parent)["params"], path
        for name in (k for k in blobs if k.endswith("_bn_riv")):
            assert np.isfinite(blobs[name]).all() and (blobs[name] > 0).all(), name


def test_legacy_and_zip_checkpoints_agree(golden):
    folder = golden / "models/slowfast_8x8_r50"
    legacy = read_checkpoint(folder / "pyslowfast_legacy.pyth")
    current = read_checkpoint(folder / "pyslowfast.pyth")
    assert legacy["epoch"] == current["epoch"] and legacy["cfg"] == current["cfg"]
    assert list(legacy["model_state"]) == list(current["model_state"])
    for name, value in current["model_state"].items():
        other = legacy["model_state"][name]
        assert other.dtype == value.dtype and other.shape == value.shape, name
        assert other.tobytes() == value.tobytes(), name


# Caffe2 blob -> PySlowFast key pairs that need no name map (the slow-only model has no
# fast pathway, hence no t_* blobs).
_CAFFE2_TWINS = {
    "conv1_w": "s1.pathway0_stem.conv.weight",
    "res_conv1_bn_s": "s1.pathway0_stem.bn.weight",
    "res_conv1_bn_b": "s1.pathway0_stem.bn.bias",
    "res_conv1_bn_rm": "s1.pathway0_stem.bn.running_mean",
    "res_conv1_bn_riv": "s1.pathway0_stem.bn.running_var",
    "t_conv1_w": "s1.pathway1_stem.conv.weight",
    "t_pool1_subsample_w": "s1_fuse.conv_f2s.weight",
    "pred_w": "head.projection.weight",
    "pred_b": "head.projection.bias",
}


def test_caffe2_and_pyth_hold_the_same_weights(golden):
    folders = sorted(p.parent for p in golden.glob("models/*/caffe2.pkl"))
    assert folders
    for folder in folders:
        blobs, _ = load_state_dict(folder / "caffe2.pkl")
        state, _ = load_state_dict(folder / "pyslowfast.pyth")
        checked = 0
        for blob, key in _CAFFE2_TWINS.items():
            if blob.startswith("t_") and _meta(folder)["arch"] == "slow":
                assert blob not in blobs
                continue
            assert blobs[blob].shape == state[key].shape, (folder.name, blob)
            assert blobs[blob].tobytes() == state[key].tobytes(), (folder.name, blob)
            checked += 1
        assert checked >= 6


def test_reader_never_imports_torch(golden):
    # Run in a fresh interpreter where importing torch fails outright.
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from keras_slowfast.weights.readers import load_state_dict\n"
        "for p in sys.argv[1:]:\n"
        "    load_state_dict(p)\n"
        "assert sys.modules['torch'] is None\n"
    )
    folder = golden / "models/slowfast_8x8_r50"
    files = [folder / n for n in ("pyslowfast.pyth", "pyslowfast_legacy.pyth", "caffe2.pkl")]
    env = dict(os.environ, PYTHONPATH=str(_REPO))
    result = subprocess.run(
        [sys.executable, "-c", code, *map(str, files)], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


# ---------------------------------------------------------------------------------------
# Hand-made checkpoints. Stand-ins for the torch globals live in throwaway modules named
# like torch's, present in sys.modules only while a pickle is written, so that the
# pickler stores references to them by those names.


def _make_fake_torch():
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")
    tensor_mod = types.ModuleType("torch._tensor")
    torch._utils = utils
    torch._tensor = tensor_mod

    def stand_in(module, name):
        def never_called(*args):
            raise AssertionError("a stand-in is only pickled by name")

        never_called.__module__ = module.__name__
        never_called.__name__ = never_called.__qualname__ = name
        setattr(module, name, never_called)

    for name in ("_rebuild_tensor_v2", "_rebuild_parameter"):
        stand_in(utils, name)
    stand_in(tensor_mod, "_rebuild_from_type_v2")
    for name in ("FloatStorage", "DoubleStorage", "HalfStorage", "BFloat16Storage"):
        setattr(torch, name, type(name, (), {"__module__": "torch"}))
    for name in ("LongStorage", "IntStorage", "ByteStorage", "BoolStorage", "Tensor"):
        setattr(torch, name, type(name, (), {"__module__": "torch"}))
    return {"torch": torch, "torch._utils": utils, "torch._tensor": tensor_mod}


class _FakeStorage:
    """A storage to be pickled as a persistent id; ``view`` only in legacy files."""

    def __init__(self, storage_type, key, raw, numel, view=None):
        self.storage_type, self.key, self.raw, self.numel = storage_type, key, raw, numel
        self.view = view


class _FakeTensor:
    def __init__(self, storage, offset, size, stride, parameter=False):
        self.args = (storage, offset, tuple(size), tuple(stride))
        self.parameter = parameter

    def __reduce__(self):
        utils = sys.modules["torch._utils"]
        rebuilt = (utils._rebuild_tensor_v2, (*self.args, False, collections.OrderedDict()))
        if self.parameter:
            inner = _FakeTensor(*self.args)
            return (utils._rebuild_parameter, (inner, True, collections.OrderedDict()))
        return rebuilt


class _StoragePickler(pickle.Pickler):
    def __init__(self, file, legacy):
        super().__init__(file, protocol=2)
        self.legacy = legacy

    def persistent_id(self, obj):
        if not isinstance(obj, _FakeStorage):
            return None
        storage_type = getattr(sys.modules["torch"], obj.storage_type)
        if self.legacy:
            return ("storage", storage_type, obj.key, "cpu", obj.numel, obj.view)
        return ("storage", storage_type, obj.key, "cpu", obj.numel)


def _dumps(obj, legacy=False):
    buf = io.BytesIO()
    with pytest.MonkeyPatch.context() as mp:
        for name, module in _make_fake_torch().items():
            mp.setitem(sys.modules, name, module)
        _StoragePickler(buf, legacy).dump(obj)
    return buf.getvalue()


def _write_zip(path, obj, storages, root="archive", byteorder="little"):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr(f"{root}/data.pkl", _dumps(obj))
        if byteorder is not None:
            zf.writestr(f"{root}/byteorder", byteorder)
        for storage in storages:
            zf.writestr(f"{root}/data/{storage.key}", storage.raw)
        zf.writestr(f"{root}/version", "3\n")
    return path


def _storage(values, storage_type, key, byteorder="<"):
    values = np.asarray(values)
    raw = values.astype(values.dtype.newbyteorder(byteorder)).tobytes()
    return _FakeStorage(storage_type, key, raw, values.size)


def _gather(flat, offset, size, stride):
    """What a strided tensor holds, element by element."""
    out = np.empty(size, dtype=flat.dtype)
    for index in np.ndindex(*size):
        out[index] = flat[offset + sum(i * s for i, s in zip(index, stride))]
    return out


def _strided_checkpoint(tmp_path, byteorder="little"):
    order = "<" if byteorder == "little" else ">"
    floats = np.arange(40, dtype=np.float32) * 0.5 - 3.0
    longs = np.arange(12, dtype=np.int64) * 1_000_000_007
    halves = np.linspace(-2, 2, 9).astype(np.float16)
    doubles = np.arange(6, dtype=np.float64) / 7
    ints = np.arange(-4, 4, dtype=np.int32)
    bytes_ = np.arange(250, 256, dtype=np.uint8)
    bools = np.array([True, False, False, True])
    storages = {
        "f": _storage(floats, "FloatStorage", "0", order),
        "l": _storage(longs, "LongStorage", "1", order),
        "h": _storage(halves, "HalfStorage", "2", order),
        "d": _storage(doubles, "DoubleStorage", "3", order),
        "i": _storage(ints, "IntStorage", "4", order),
        "b": _storage(bytes_, "ByteStorage", "5", order),
        "?": _storage(bools, "BoolStorage", "6", order),
    }
    flats = {"f": floats, "l": longs, "h": halves, "d": doubles, "i": ints}
    flats.update({"b": bytes_, "?": bools})
    layouts = {
        "contiguous": ("f", 0, (2, 3), (3, 1)),
        "offset": ("f", 7, (2, 3), (3, 1)),
        "transposed": ("f", 1, (3, 4), (1, 5)),
        "strided_5d": ("f", 2, (2, 1, 2, 2, 3), (19, 7, 9, 4, 2)),
        "expanded": ("f", 4, (3, 2), (0, 1)),
        "scalar": ("f", 39, (), ()),
        "empty": ("f", 0, (0, 4), (4, 1)),
        "long_t": ("l", 1, (2, 3), (1, 4)),
        "half": ("h", 1, (2, 2), (4, 1)),
        "double": ("d", 0, (3, 2), (1, 3)),
        "int": ("i", 2, (3,), (2,)),
        "byte": ("b", 0, (6,), (1,)),
        "bool": ("?", 0, (2, 2), (1, 2)),
    }
    state = collections.OrderedDict(
        (name, _FakeTensor(storages[key], offset, size, stride))
        for name, (key, offset, size, stride) in layouts.items()
    )
    state["param"] = _FakeTensor(storages["f"], 10, (4,), (2,), parameter=True)
    layouts["param"] = ("f", 10, (4,), (2,))
    obj = {"model_state": state, "epoch": 3, "cfg": "MODEL:\n  ARCH: slow\n"}
    path = _write_zip(tmp_path / "strided.pyth", obj, storages.values(), byteorder=byteorder)
    expected = {
        name: _gather(flats[key], offset, size, stride)
        for name, (key, offset, size, stride) in layouts.items()
    }
    return path, expected


@pytest.mark.parametrize("byteorder", ["little", "big"])
def test_strided_tensors_with_offsets(tmp_path, byteorder):
    path, expected = _strided_checkpoint(tmp_path, byteorder)
    tensors, info = load_state_dict(path)
    assert info == {"format": "pyth", "cfg": "MODEL:\n  ARCH: slow\n", "epoch": 3, "skipped": []}
    assert list(tensors) == list(expected)
    for name, want in expected.items():
        got = tensors[name]
        assert got.dtype == want.dtype and got.shape == want.shape, name
        np.testing.assert_array_equal(got, want, err_msg=name)
        assert got.flags.writeable and got.flags.c_contiguous and got.flags.owndata, name
    # Tensors sharing a storage are independent copies.
    tensors["contiguous"][0, 0] = 100.0
    assert tensors["offset"][0, 0] == expected["offset"][0, 0]


def test_strided_tensors_match_torch_load(tmp_path):
    torch = pytest.importorskip("torch")
    path, _ = _strided_checkpoint(tmp_path)
    ours = read_checkpoint(path)["model_state"]
    theirs = torch.load(path, weights_only=True)["model_state"]
    for name, value in theirs.items():
        np.testing.assert_array_equal(ours[name], value.detach().numpy(), err_msg=name)


def test_bfloat16_widens_exactly(tmp_path):
    # bfloat16 bit patterns and the values they stand for.
    known = {0x3F80: 1.0, 0xC000: -2.0, 0x3F00: 0.5, 0x4049: 3.140625, 0x0000: 0.0}
    known[0x7F80] = np.inf
    bits = np.array(list(known), dtype="<u2")
    storage = _FakeStorage("BFloat16Storage", "0", bits.tobytes(), bits.size)
    obj = {"w": _FakeTensor(storage, 0, (2, 3), (3, 1)), "t": _FakeTensor(storage, 1, (2,), (2,))}
    path = _write_zip(tmp_path / "bf16.pyth", obj, [storage], root="bf16", byteorder=None)
    ckpt = read_checkpoint(path)
    want = np.array(list(known.values()), dtype=np.float32)
    assert ckpt["w"].dtype == np.float32
    np.testing.assert_array_equal(ckpt["w"], want.reshape(2, 3))
    np.testing.assert_array_equal(ckpt["t"], want[[1, 3]])


def test_shared_storage_and_tensor_identity(tmp_path):
    values = np.arange(8, dtype=np.float32)
    storage = _storage(values, "FloatStorage", "0")
    tensor = _FakeTensor(storage, 2, (3,), (1,))
    obj = {"a": tensor, "b": tensor, "c": [_FakeTensor(storage, 0, (2, 2), (2, 1)), (tensor,)]}
    ckpt = read_checkpoint(_write_zip(tmp_path / "shared.pyth", obj, [storage]))
    np.testing.assert_array_equal(ckpt["a"], values[2:5])
    # One pickled tensor stays one array, as torch.load keeps it one tensor.
    assert ckpt["b"] is ckpt["a"] and ckpt["c"][1][0] is ckpt["a"]
    np.testing.assert_array_equal(ckpt["c"][0], values[:4].reshape(2, 2))


def _write_legacy(path, obj, storages):
    parts = [
        pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2),
        pickle.dumps(1001, protocol=2),
        pickle.dumps({"protocol_version": 1001, "little_endian": True}, protocol=2),
        _dumps(obj, legacy=True),
        pickle.dumps([s.key for s in storages], protocol=2),
    ]
    for storage in storages:
        parts.append(storage.numel.to_bytes(8, "little") + storage.raw)
    path.write_bytes(b"".join(parts))
    return path


def test_legacy_file_by_hand(tmp_path):
    floats = np.linspace(0, 1, 10, dtype=np.float32)
    longs = np.array([5, -6, 7], dtype=np.int64)
    storages = [_storage(floats, "FloatStorage", "94011"), _storage(longs, "LongStorage", "7")]
    # Old files could also declare a storage as a slice (here elements 2..6) of another.
    view = _FakeStorage("FloatStorage", "94011", None, floats.size, view=("94012", 2, 5))
    obj = collections.OrderedDict(
        w=_FakeTensor(storages[0], 1, (3, 2), (1, 4)),
        n=_FakeTensor(storages[1], 2, (), ()),
        v=_FakeTensor(view, 1, (2, 2), (1, 2)),
    )
    path = _write_legacy(tmp_path / "legacy.pyth", obj, storages)
    tensors, info = load_state_dict(path)
    assert info["format"] == "pyth_legacy"
    np.testing.assert_array_equal(tensors["w"], _gather(floats, 1, (3, 2), (1, 4)))
    np.testing.assert_array_equal(tensors["v"], _gather(floats[2:7], 1, (2, 2), (1, 2)))
    assert tensors["n"].dtype == np.int64 and tensors["n"].shape == () and tensors["n"] == 7
    # Cut inside the storage data.
    truncated = tmp_path / "legacy_cut.pyth"
    truncated.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(ValueError, match="Received: path="):
        read_checkpoint(truncated)


def test_out_of_bounds_tensor_is_refused(tmp_path):
    storage = _storage(np.arange(6, dtype=np.float32), "FloatStorage", "0")
    obj = {"w": _FakeTensor(storage, 1, (2, 3), (3, 1))}  # reaches element 6 of 0..5
    path = _write_zip(tmp_path / "oob.pyth", obj, [storage])
    with pytest.raises(ValueError, match=r"reaches element 6.*Received: path="):
        read_checkpoint(path)


def test_missing_storage_record(tmp_path):
    storage = _storage(np.arange(6, dtype=np.float32), "FloatStorage", "0")
    path = _write_zip(tmp_path / "nostorage.pyth", {"w": _FakeTensor(storage, 0, (6,), (1,))}, [])
    with pytest.raises(ValueError, match="archive/data/0"):
        read_checkpoint(path)


def test_wrapped_rebuild_accepts_only_rebuild_functions(tmp_path):
    storage = _storage(np.arange(4, dtype=np.float32), "FloatStorage", "0")
    # A plain tensor wrapped the way torch pickles tensor subclasses reads fine ...
    wrapped = _Wrapped(storage, rebuild="torch._utils._rebuild_tensor_v2")
    ckpt = read_checkpoint(_write_zip(tmp_path / "wrapped.pyth", {"w": wrapped}, [storage]))
    np.testing.assert_array_equal(ckpt["w"], np.arange(4, dtype=np.float32))
    # ... but the wrapper cannot be used to call another allowed global.
    misused = _Wrapped(storage, rebuild="collections.OrderedDict")
    path = _write_zip(tmp_path / "misused.pyth", {"w": misused}, [storage])
    with pytest.raises(ValueError, match="unsupported rebuild function"):
        read_checkpoint(path)


class _Wrapped:
    """Pickles as torch._tensor._rebuild_from_type_v2(func, torch.Tensor, args, {})."""

    def __init__(self, storage, rebuild):
        self.storage, self.rebuild = storage, rebuild

    def __reduce__(self):
        module_name, _, name = self.rebuild.rpartition(".")
        func = getattr(sys.modules[module_name], name)
        args = (self.storage, 0, (4,), (1,), False, collections.OrderedDict())
        wrapper = sys.modules["torch._tensor"]._rebuild_from_type_v2
        return (wrapper, (func, sys.modules["torch"].Tensor, args, {}))


# ---------------------------------------------------------------------------------------
# Malicious pickles.


class _Payload:
    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


def _payloads(marker):
    return {
        f"{os.system.__module__}.system": _Payload(os.system, f"touch {marker}"),
        "builtins.eval": _Payload(eval, f"open({str(marker)!r}, 'w').close()"),
        "subprocess.call": _Payload(subprocess.call, ["touch", str(marker)]),
        "builtins.getattr": _Payload(getattr, "text", "upper"),
        "builtins.__import__": _Payload(__import__, "subprocess"),
        "builtins.exec": _Payload(exec, f"open({str(marker)!r}, 'w').close()"),
    }


def test_payload_is_live(tmp_path):
    # Sanity check of the test itself: the standard unpickler does run the payload.
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(_payloads(marker)[f"{os.system.__module__}.system"], protocol=2))
    assert marker.exists()


@pytest.mark.parametrize("kind", ["caffe2", "pyth", "pyth_legacy"])
def test_malicious_pickles_are_refused(tmp_path, kind):
    marker = tmp_path / "pwned"
    for global_name, payload in _payloads(marker).items():
        path = tmp_path / f"evil_{global_name}.{kind}"
        if kind == "caffe2":
            blobs = {"conv1_w": np.zeros(3, np.float32), "pred_w": payload}
            path.write_bytes(pickle.dumps({"blobs": blobs}, protocol=2))
        elif kind == "pyth":
            storage = _storage(np.zeros(3, np.float32), "FloatStorage", "0")
            state = {"w": _FakeTensor(storage, 0, (3,), (1,)), "evil": payload}
            _write_zip(path, {"model_state": state, "cfg": "x"}, [storage])
        else:
            storage = _storage(np.zeros(3, np.float32), "FloatStorage", "0")
            _write_legacy(path, {"model_state": {"evil": payload}}, [storage])
        for reader in (read_checkpoint, load_state_dict):
            with pytest.raises(UnsafeCheckpointError, match="Received: path=") as err:
                reader(path)
            assert err.value.global_name == global_name
            assert f"'{global_name}'" in str(err.value)
            assert str(path) in str(err.value)
            assert isinstance(err.value, pickle.UnpicklingError)
            assert isinstance(err.value, ValueError)
        assert not marker.exists(), global_name


def test_unsafe_global_in_protocol_0_pickle(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "old.pkl"
    path.write_bytes(pickle.dumps({"blobs": _Payload(os.system, f"touch {marker}")}, protocol=0))
    with pytest.raises(UnsafeCheckpointError, match=r"\.system'"):
        read_checkpoint(path)
    assert not marker.exists()


def test_storage_type_must_be_a_storage(tmp_path):
    # A persistent id naming an allowed global that is not a storage type.
    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, _FakeStorage):
                return ("storage", collections.OrderedDict, "0", "cpu", 3)
            return None

    buf = io.BytesIO()
    storage = _storage(np.zeros(3, np.float32), "FloatStorage", "0")
    with pytest.MonkeyPatch.context() as mp:
        for name, module in _make_fake_torch().items():
            mp.setitem(sys.modules, name, module)
        Pickler(buf, protocol=2).dump({"w": _FakeTensor(storage, 0, (3,), (1,))})
    path = tmp_path / "weird.pyth"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("weird/data.pkl", buf.getvalue())
        zf.writestr("weird/data/0", storage.raw)
    with pytest.raises(ValueError, match="instead of a storage type"):
        read_checkpoint(path)


# ---------------------------------------------------------------------------------------
# Inputs that are not checkpoints.


def test_missing_file(tmp_path):
    with pytest.raises(ValueError, match=r"does not exist\. Received: path=.*nope\.pyth"):
        read_checkpoint(tmp_path / "nope.pyth")


def test_directory_and_wrong_type(tmp_path):
    with pytest.raises(ValueError, match="not a file"):
        read_checkpoint(tmp_path)
    with pytest.raises(TypeError, match="Received: path=3"):
        read_checkpoint(3)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.pyth"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match="is empty. Received: path="):
        load_state_dict(path)


def test_truncated_zip(tmp_path, golden):
    raw = (golden / "models/slowfast_8x8_r50/pyslowfast.pyth").read_bytes()
    for cut in (len(raw) // 2, len(raw) - 30):
        path = tmp_path / "cut.pyth"
        path.write_bytes(raw[:cut])
        with pytest.raises(ValueError, match=r"format 'pyth'.*Received: path="):
            read_checkpoint(path)


def test_truncated_caffe2_pickle(tmp_path, golden):
    raw = (golden / "models/slow_8x8_r50/caffe2.pkl").read_bytes()
    path = tmp_path / "cut.pkl"
    path.write_bytes(raw[: len(raw) // 3])
    with pytest.raises(ValueError, match=r"format 'caffe2'.*Received: path="):
        read_checkpoint(path)


def test_random_bytes_and_text(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(20):
        path = tmp_path / f"random{i}.bin"
        path.write_bytes(rng.integers(0, 256, 1000, dtype=np.uint8).tobytes())
        with pytest.raises(ValueError, match="Received: path="):
            read_checkpoint(path)
    text = tmp_path / "config.yaml"
    text.write_text("MODEL:\n  ARCH: slowfast\n")
    with pytest.raises(ValueError, match="not a checkpoint"):
        read_checkpoint(text)


def test_zip_without_data_pkl(tmp_path):
    path = tmp_path / "other.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("readme.txt", "hello")
    with pytest.raises(ValueError, match="no data.pkl"):
        read_checkpoint(path)


def test_pickle_without_weights(tmp_path):
    path = tmp_path / "list.pkl"
    path.write_bytes(pickle.dumps([1, 2, 3], protocol=2))
    with pytest.raises(ValueError, match="holds a list"):
        read_checkpoint(path)
    path = tmp_path / "nothing.pkl"
    path.write_bytes(pickle.dumps({"epoch": 3}, protocol=2))
    with pytest.raises(ValueError, match=r"no weight dict.*\['epoch'\]"):
        load_state_dict(path)


def test_python3_pickle_layouts(tmp_path):
    # Bytes names (Python 3 pickles of Caffe2-style dicts), numpy scalars and the
    # state_dict / bare layouts.
    w = np.arange(6, dtype=np.float32).reshape(2, 3)
    for protocol in (2, 4, 5):
        path = tmp_path / f"p{protocol}.pkl"
        path.write_bytes(
            pickle.dumps({"blobs": {b"conv1_w": w, "lr": np.float32(0.5)}}, protocol=protocol)
        )
        blobs, info = load_state_dict(path)
        assert list(blobs) == ["conv1_w"] and info["skipped"] == ["lr"]
        np.testing.assert_array_equal(blobs["conv1_w"], w)
        assert read_checkpoint(path)["blobs"]["lr"] == np.float32(0.5)
    for layout in ({"state_dict": {"a": w}}, {"model": {"a": w}}, {"a": w}):
        path = tmp_path / "layout.pkl"
        path.write_bytes(pickle.dumps(layout, protocol=2))
        tensors, _ = load_state_dict(path)
        assert list(tensors) == ["a"]


# ---------------------------------------------------------------------------------------
# One name, one meaning: `read_checkpoint` is the reader of the whole file.


def test_transfer_reads_tensors_under_its_own_name(tmp_path):
    from keras_slowfast.weights import transfer

    path = tmp_path / "tiny.pkl"
    blob = np.arange(6, dtype=np.float32).reshape(2, 3)
    with open(path, "wb") as f:
        pickle.dump({"blobs": {"w": blob}, "epoch": 3}, f)
    # readers.read_checkpoint: the file's top-level object.
    assert sorted(read_checkpoint(path)) == ["blobs", "epoch"]
    # transfer.read_checkpoint_tensors: the flat tensors and what the file says of itself.
    tensors, info = transfer.read_checkpoint_tensors(path)
    np.testing.assert_array_equal(tensors["w"], blob)
    assert info["format"] == "caffe2" and info["epoch"] == 3
    # Its former name still works for one release, with a warning naming the new one.
    with pytest.warns(
        DeprecationWarning, match=r"transfer\.read_checkpoint .*read_checkpoint_tensors"
    ):
        old_tensors, old_info = transfer.read_checkpoint(path)
    np.testing.assert_array_equal(old_tensors["w"], blob)
    assert old_info == info
    with pytest.raises(ValueError, match="No checkpoint file at this path"):
        transfer.read_checkpoint_tensors(tmp_path / "missing.pkl")
