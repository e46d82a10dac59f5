"""Hostile checkpoints: no code runs, memory stays bounded, every file gives a clear error.

Malicious pickles are written opcode by opcode, so that every route a pickle has to a
callable is covered (GLOBAL, STACK_GLOBAL, REDUCE, BUILD, INST, OBJ, NEWOBJ, EXT1/2/4,
PERSID/BINPERSID, nested), each inside the three containers (a Caffe2-style plain pickle,
``data.pkl`` of a ``.pyth`` zip, a legacy ``torch.save`` file). Each payload creates a
marker file, and the standard unpickler is shown to run it, so a missing marker means
the reader refused it. Checks that could take the process down (memory, recursion) run
in a child process that loads the readers module alone and reports its peak RSS.
"""

import copyreg  # noqa: F401  (named in a child's code)
import io
import json
import os
import pickle
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from benchmarks.fuzz_checkpoints import golden_files, run_fuzz
from keras_slowfast.weights.readers import UnsafeCheckpointError, read_checkpoint

_REPO = Path(__file__).resolve().parents[1]
_READERS = _REPO / "keras_slowfast" / "weights" / "readers.py"
_SYSTEM = os.system.__module__.encode()  # "posix"


# ---------------------------------------------------------------------------------------
# Pickle bytes, opcode by opcode.


def _u(text):
    """SHORT_BINUNICODE."""
    data = text.encode()
    return b"\x8c" + bytes([len(data)]) + data


def _routes(marker):
    """Malicious pickles, by route, each running ``touch marker`` if executed."""
    cmd = f"touch {marker}".encode()
    glob_sys = b"c" + _SYSTEM + b"\nsystem\n"
    return {
        "GLOBAL+REDUCE": glob_sys + b"(V" + cmd + b"\ntR.",
        "STACK_GLOBAL": b"\x80\x04"
        + _u(_SYSTEM.decode())
        + _u("system")
        + b"\x93"
        + _u(cmd.decode())
        + b"\x85R.",
        "INST": b"(V" + cmd + b"\ni" + _SYSTEM + b"\nsystem\n.",
        "OBJ": b"(" + glob_sys + b"V" + cmd + b"\no.",
        "NEWOBJ": b"\x80\x02csubprocess\nPopen\n]V"
        + b"touch\x00"[:5]
        + b"\naV"
        + str(marker).encode()
        + b"\na\x85\x81.",
        # BUILD puts a __setstate__ into an OrderedDict's __dict__; a second BUILD calls it.
        "BUILD __setstate__": b"\x80\x02ccollections\nOrderedDict\n)R}V__setstate__\n"
        + glob_sys
        + b"sbV"
        + cmd
        + b"\nb.",
        "BINPERSID": b"\x80\x02" + glob_sys + b"V" + cmd + b"\n\x85RQ.",
        "nested": b"\x80\x02}VW\n"
        + b"]" * 40
        + glob_sys
        + b"V"
        + cmd
        + b"\n\x85R"
        + b"a" * 40
        + b"s.",
    }


def _ext_pickles():
    return {
        "EXT1": b"\x80\x02\x82\x7fV\n\x85R.",
        "EXT2": b"\x80\x02\x83\x7f\x00.",
        "EXT4": b"\x80\x02\x84\x7f\x00\x00\x00.",
    }


def _in_zip(path, pickled):
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", pickled)
        zf.writestr("archive/byteorder", "little")
    return path


_LEGACY_HEAD = (
    pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)
    + pickle.dumps(1001, protocol=2)
    + pickle.dumps({"little_endian": True}, protocol=2)
)


def _containers(tmp_path, name, pickled):
    """The pickle as a Caffe2 .pkl, as data.pkl of a .pyth zip and in a legacy file."""
    if not pickled.startswith(b"\x80"):
        pickled = b"\x80\x02" + pickled  # how plain pickles are recognised
    safe = name.replace(" ", "_").replace("+", "_")
    caffe2 = tmp_path / f"{safe}.pkl"
    caffe2.write_bytes(pickled)
    legacy = tmp_path / f"{safe}_legacy.pyth"
    legacy.write_bytes(_LEGACY_HEAD + pickled + pickle.dumps([], protocol=2))
    return [caffe2, _in_zip(tmp_path / f"{safe}.pyth", pickled), legacy]


def _child(code, timeout=120):
    """Runs code in a fresh interpreter with ``readers`` loaded alone; returns its JSON."""
    prelude = (
        "import importlib.util, json, resource, sys\n"
        f"spec = importlib.util.spec_from_file_location('r', {str(_READERS)!r})\n"
        "readers = importlib.util.module_from_spec(spec); spec.loader.exec_module(readers)\n"
        "def attempt(path):\n"
        "    try:\n"
        "        readers.read_checkpoint(path)\n"
        "        return {'error': None}\n"
        "    except BaseException as err:\n"
        "        return {'error': type(err).__name__, 'message': str(err)[:400]}\n"
        # Peak RSS of this process image: getrusage's ru_maxrss also keeps the peak of the
        # process it was forked from (Linux carries it over exec), VmHWM does not.
        "def rss_mb():\n"
        "    try:\n"
        "        for line in open('/proc/self/status'):\n"
        "            if line.startswith('VmHWM:'):\n"
        "                return int(line.split()[1]) / 1024\n"
        "    except OSError:\n"
        "        pass\n"
        "    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
    )
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    result = subprocess.run(
        [sys.executable, "-c", prelude + code],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    assert result.returncode == 0, (result.returncode, result.stderr[-2000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------
# Every route to a callable.


@pytest.mark.parametrize("route", list(_routes("m")))
def test_payload_route_is_live_with_the_standard_unpickler(tmp_path, route):
    # The payloads are real: the standard unpickler runs them (in a child process).
    if route == "NEWOBJ":
        pytest.skip("NEWOBJ only creates the object; the route is checked by refusal")
    marker = tmp_path / "ran"
    pickled = _routes(marker)[route]
    subprocess.run(
        [sys.executable, "-c", "import pickle, sys; pickle.loads(sys.stdin.buffer.read())"],
        input=pickled,
        capture_output=True,
        timeout=60,
    )
    assert marker.exists(), route


@pytest.mark.parametrize("route", list(_routes("m")))
def test_payload_routes_are_refused_in_every_container(tmp_path, route):
    marker = tmp_path / "ran"
    for path in _containers(tmp_path, route, _routes(marker)[route]):
        with pytest.raises(UnsafeCheckpointError, match="Received: path=") as err:
            read_checkpoint(path)
        assert "system" in err.value.global_name or "Popen" in err.value.global_name
        assert not marker.exists(), (route, path.name)


def test_extension_codes_are_refused_even_when_registered(tmp_path):
    marker = tmp_path / "ran"
    code = (
        "import copyreg, pickle, os\n"
        f"copyreg.add_extension({_SYSTEM.decode()!r}, 'system', 127)\n"
        # Live with the standard unpickler once the code is registered ...
        f"pickle.loads(b'\\x80\\x02\\x82\\x7fV' + {('touch ' + str(marker)).encode()!r} "
        "+ b'\\n\\x85R.')\n"
        f"assert os.path.exists({str(marker)!r}); os.remove({str(marker)!r})\n"
        "out = {}\n"
        f"for name, data in {_ext_pickles()!r}.items():\n"
        f"    path = {str(tmp_path)!r} + '/' + name + '.pkl'\n"
        "    open(path, 'wb').write(data)\n"
        "    out[name] = attempt(path)\n"
        "print(json.dumps(out))\n"
    )
    out = _child(code)
    for name, result in out.items():
        assert result["error"] == "UnsafeCheckpointError", (name, result)
        assert "extension codes are not allowed" in result["message"]
    assert not marker.exists()


def test_persistent_ids_are_refused_or_checked(tmp_path):
    cases = {
        # PERSID (text) in a plain pickle and in a zip: not a storage tuple.
        "persid_plain.pkl": (b"P" + str(tmp_path).encode() + b"\n.", "persistent ids"),
        "persid_zip": (b"Pstorage\n.", "unsupported persistent id"),
    }
    pkl = tmp_path / "persid_plain.pkl"
    pkl.write_bytes(b"\x80\x02" + cases["persid_plain.pkl"][0])
    with pytest.raises(ValueError, match="must not contain persistent ids"):
        read_checkpoint(pkl)
    path = _in_zip(tmp_path / "persid.pyth", cases["persid_zip"][0])
    with pytest.raises(ValueError, match="unsupported persistent id.*Received: path="):
        read_checkpoint(path)
    storage = b"ctorch\nFloatStorage\n"
    bad_pids = {
        "missing record": (
            b"(Vstorage\n" + storage + b"V../../etc/passwd\nVcpu\nK\x03tQ.",
            "record 'archive/data/../../etc/passwd' is missing",
        ),
        "key not text": (b"(Vstorage\n" + storage + b"K\x00Vcpu\nK\x03tQ.", "must be text"),
        "wrong length": (b"(Vstorage\n" + storage + b"tQ.", "unsupported persistent id"),
        "negative size": (
            b"(Vstorage\n" + storage + b"V0\nVcpu\nJ\xff\xff\xff\xfftQ.",
            "non-negative integer",
        ),
        "not a storage type": (
            b"(Vstorage\nccollections\nOrderedDict\nV0\nVcpu\nK\x03tQ.",
            "instead of a storage type",
        ),
    }
    for name, (body, message) in bad_pids.items():
        path = _in_zip(tmp_path / "pid.pyth", b"\x80\x02" + body)
        with pytest.raises(ValueError, match=message) as err:
            read_checkpoint(path)
        assert "Received: path=" in str(err.value), name


def test_build_cannot_change_the_stand_ins(tmp_path, golden):
    # BUILD on an allowed global or on a tensor after its bounds were checked would let a
    # file poison later loads or read memory outside a storage.
    storage = b"ctorch\nFloatStorage\n"
    cases = {
        "storage type": b"\x80\x02" + storage + b"N}Vdtype\nNs\x86b.",
        "rebuild function": b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n}Vx\nK\x01sb.",
        "tensor": b"\x80\x02ctorch._utils\n_rebuild_tensor\n((Vstorage\n"
        + storage
        + b"V0\nVcpu\nK\x01tQK\x00K\x01\x85K\x01\x85tRN}Vsize\nJ\x00\x00\x00\x10\x85s\x86b.",
    }
    for name, pickled in cases.items():
        path = tmp_path / "build.pyth"
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("archive/data.pkl", pickled)
            zf.writestr("archive/data/0", b"\x00" * 4)
        with pytest.raises(ValueError, match=r"opcode BUILD.*Received: path=") as err:
            read_checkpoint(path)
        assert not isinstance(err.value, UnsafeCheckpointError), name
    # A real checkpoint still reads the same afterwards.
    ckpt = read_checkpoint(golden / "models/slow_8x8_r50/pyslowfast.pyth")
    assert ckpt["model_state"]["s1.pathway0_stem.conv.weight"].dtype == "float32"


# ---------------------------------------------------------------------------------------
# Memory: sizes are refused before anything is allocated.


def _zip_with_storage(
    path, numel, data=b"\x00" * 16, size=None, stride=None, compression=zipfile.ZIP_STORED
):
    size = size if size is not None else (numel,)
    stride = stride if stride is not None else (1,)

    def tup(values):
        return b"(" + b"".join(b"\x8a\x08" + struct.pack("<q", v) for v in values) + b"t"

    pickled = (
        b"\x80\x02}Vw\nctorch._utils\n_rebuild_tensor\n((Vstorage\nctorch\nFloatStorage\n"
        b"V0\nVcpu\n\x8a\x08"
        + struct.pack("<q", numel)
        + b"tQK\x00"
        + tup(size)
        + tup(stride)
        + b"tRs."
    )
    with zipfile.ZipFile(path, "w", compression) as zf:
        zf.writestr("archive/data.pkl", pickled)
        zf.writestr("archive/data/0", data)
    return str(path)


def test_huge_declared_sizes_are_refused_before_allocating(tmp_path):
    tb = 1 << 40
    files = {
        # A storage of 1 TB (2**38 floats) backed by 16 bytes.
        "zip_storage_1tb": (_zip_with_storage(tmp_path / "a.pyth", tb // 4), "has 16 bytes"),
        # 4 floats repeated with stride 0 into a 1 TB tensor.
        "stride0_1tb": (
            _zip_with_storage(tmp_path / "b.pyth", 4, size=(1 << 19, 1 << 19), stride=(0, 0)),
            "would take 1099511627776 bytes",
        ),
    }
    legacy = tmp_path / "c_legacy.pyth"
    legacy.write_bytes(
        _LEGACY_HEAD
        + b"\x80\x02(Vstorage\nctorch\nFloatStorage\nV0\nVcpu\n\x8a\x06\x00\x00\x00\x00\x40\x00"
        + b"NtQ."
        + pickle.dumps(["0"], protocol=2)
        + struct.pack("<q", 1 << 38)
        + b"\x00" * 64
    )
    files["legacy_storage_1tb"] = (str(legacy), "holds 64 bytes")
    plain = {
        "binbytes8_1tb": (b"\x80\x04\x8e" + struct.pack("<Q", tb) + b"abc.", "expected"),
        "memo_index_2g": (b"\x80\x02Nr\xff\xff\xff\x7f.", "memo entry at index"),
        "bytearray_1tb": (
            b"\x80\x02c__builtin__\nbytearray\n\x8a\x06\x00\x00\x00\x00\x00\x01\x85R.",
            "bytearray may only",
        ),
        "frozenset_range": (
            b"\x80\x02c__builtin__\nfrozenset\nc__builtin__\nxrange\n"
            b"\x8a\x06\x00\x00\x00\x00\x00\x01\x85R\x85R.",
            "list or tuple",
        ),
        "size_range": (
            b"\x80\x02ctorch\nSize\nc__builtin__\nrange\n"
            b"\x8a\x06\x00\x00\x00\x00\x00\x01\x85R\x85R.",
            "list or tuple",
        ),
        "set_range": (
            b"\x80\x02c__builtin__\nset\nc__builtin__\nrange\n"
            b"\x8a\x06\x00\x00\x00\x00\x00\x01\x85R\x85R.",
            "list or tuple",
        ),
    }
    for name, (data, message) in plain.items():
        (tmp_path / f"{name}.pkl").write_bytes(data)
        files[name] = (str(tmp_path / f"{name}.pkl"), message)
    code = (
        f"files = {json.dumps({k: v[0] for k, v in files.items()})}\n"
        "out = {name: attempt(path) for name, path in files.items()}\n"
        "out['rss_mb'] = rss_mb()\n"
        "print(json.dumps(out))\n"
    )
    out = _child(code)
    for name, (_, message) in files.items():
        assert out[name]["error"] == "ValueError", (name, out[name])
        assert message in out[name]["message"], (name, out[name]["message"])
        assert "Received: path=" in out[name]["message"]
    assert out["rss_mb"] < 500, out["rss_mb"]


def test_zip_bombs_are_refused_by_declared_size_and_ratio(tmp_path):
    # A real bomb: 64 MB of zeros deflate to about 64 KB (ratio ~1000).
    bomb = tmp_path / "bomb.pyth"
    _zip_with_storage(bomb, 16 << 20, b"\x00" * (64 << 20), compression=zipfile.ZIP_DEFLATED)
    _zip_with_storage(tmp_path / "plain.pyth", 4)
    # A lie: the records claim 1 TB uncompressed in the central directory.
    raw = bytearray((tmp_path / "plain.pyth").read_bytes())
    cd = raw.rfind(b"PK\x01\x02")
    while cd >= 0:
        raw[cd + 24 : cd + 28] = struct.pack("<I", 0xFFFFFFF0)
        cd = raw.rfind(b"PK\x01\x02", 0, cd)
    lie = tmp_path / "lie.pyth"
    lie.write_bytes(bytes(raw))
    bomb_pkl = tmp_path / "bomb_pkl.pyth"
    with zipfile.ZipFile(bomb_pkl, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("archive/data.pkl", b"\x80\x02N" + b"0N" * (16 << 20) + b".")
    code = (
        f"out = {{n: attempt(p) for n, p in "
        f"{json.dumps({'bomb': str(bomb), 'lie': str(lie), 'bomb_pkl': str(bomb_pkl)})}.items()}}\n"
        "out['rss_mb'] = rss_mb()\n"
        "print(json.dumps(out))\n"
    )
    out = _child(code)
    for name in ("bomb", "lie", "bomb_pkl"):
        assert out[name]["error"] == "ValueError", (name, out[name])
        assert "a zip bomb?" in out[name]["message"], out[name]
    assert out["rss_mb"] < 500, out["rss_mb"]


def test_bad_crc_is_a_clear_error(tmp_path, golden):
    src = golden / "models/slow_8x8_r50/pyslowfast.pyth"
    raw = bytearray(src.read_bytes())
    with zipfile.ZipFile(src) as zf:
        infos = [i for i in zf.infolist() if "/data/" in i.filename and i.file_size > 100]
        info = infos[len(infos) // 2]
    name_len, extra_len = struct.unpack(
        "<HH", raw[info.header_offset + 26 : info.header_offset + 30]
    )
    start = info.header_offset + 30 + name_len + extra_len
    raw[start + 10] ^= 0xFF
    path = tmp_path / "crc.pyth"
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"Bad CRC-32 for file.*Received: path="):
        read_checkpoint(path)


# ---------------------------------------------------------------------------------------
# Truncation, recursion.


def test_truncation_at_many_offsets_of_the_golden_checkpoints(tmp_path, golden):
    files = [(p, f) for p, f in golden_files(str(golden)) if "slowfast_8x8_r50/" in p]
    files += [(p, f) for p, f in golden_files(str(golden)) if "ptv_slowfast_r50/" in p]
    assert {f for _, f in files} == {"pyth", "pyth_legacy", "caffe2"}
    checked = 0
    for src, _ in files:
        raw = Path(src).read_bytes()
        cuts = sorted(
            {1, 2, 10, 100, 1000, len(raw) - 1, len(raw) - 22, len(raw) - 100}
            | {len(raw) * k // 13 for k in range(1, 13)}
        )
        for cut in cuts:
            path = tmp_path / f"cut{Path(src).suffix}"
            path.write_bytes(raw[:cut])
            with pytest.raises(ValueError, match="Received: path=") as err:
                read_checkpoint(path)
            assert not isinstance(err.value, UnsafeCheckpointError)
            checked += 1
    assert checked >= 80


def test_deep_nesting_is_a_clear_error_not_a_crash(tmp_path):
    # Decided: more than 100 nested containers is refused as a ValueError before the
    # pickle is loaded (a deeply nested tuple used as a key overflows the C stack when it
    # is hashed: a segfault with the standard unpickler), and shared tuples whose hashing
    # would take exponential time are refused the same way.
    files = {
        "tuple_key_1e6": b"\x80\x02}K\x01" + b"\x85" * 1_000_000 + b"K\x02s.",
        "list_1e5": b"\x80\x02" + b"]" * 100_000 + b"a" * 99_999 + b".",
        "dict_200": b"\x80\x02" + b"}VW\n" * 200 + b"N" + b"s" * 200 + b".",
        # t_{k+1} = (t_k, t_k), 80 levels, then used as a dict key: 2**80 items to hash.
        "shared_tuples": b"\x80\x02}K\x01" + _shared_tuple(80) + b"K\x02s.",
        # Lists filled after being nested: deep only once the load is over.
        "late_nesting": _late_nesting(300),
    }
    paths = {}
    for name, data in files.items():
        (tmp_path / f"{name}.pkl").write_bytes(data)
        paths[name] = str(tmp_path / f"{name}.pkl")
    code = (
        f"paths = {json.dumps(paths)}\n"
        "import time\n"
        "out = {}\n"
        "for name, path in paths.items():\n"
        "    t = time.perf_counter(); out[name] = attempt(path)\n"
        "    out[name]['seconds'] = time.perf_counter() - t\n"
        "print(json.dumps(out))\n"
    )
    out = _child(code)
    for name, result in out.items():
        assert result["error"] == "ValueError", (name, result)
        assert "levels deep" in result["message"] or "too long to hash" in result["message"], (
            name,
            result,
        )
        assert result["seconds"] < 10, (name, result)


def _shared_tuple(levels):
    # MEMOIZE each level, then build the next from two GETs of it.
    out = b")\x94"
    for k in range(levels):
        out += b"h" + bytes([k]) + b"h" + bytes([k]) + b"\x86\x94" if k < 255 else b""
    return out


def _late_nesting(levels):
    # Empty lists memoized first; each is appended to the next only afterwards.
    out = b"\x80\x02"
    for k in range(levels):
        out += b"]r" + struct.pack("<I", k)
    out += b"0" * levels  # POP them all; they stay in the memo
    for k in range(levels - 1):
        out += b"j" + struct.pack("<I", k + 1) + b"j" + struct.pack("<I", k) + b"a0"
    return out + b"}VW\nj" + struct.pack("<I", levels - 1) + b"s."


# ---------------------------------------------------------------------------------------
# Seeded random mutations of the real files.


def test_seeded_mutation_fuzz_of_the_golden_checkpoints(golden):
    files = [(p, f) for p, f in golden_files(str(golden)) if "r101" not in p]
    counts = run_fuzz(files, 240, seed=20240, time_limit=20.0)
    summary = {k: counts[k] for k in ("cases", "clean", "loaded", "executed", "crashes")}
    assert counts["executed"] == 0, counts["failures"]
    assert counts["crashes"] == 0, counts["failures"]
    assert counts["clean"] + counts["loaded"] == counts["cases"] == 240, summary
    assert counts["clean"] > 100, summary
    assert counts["max_seconds"] < 20 and counts["peak_rss_mb"] < 1000, counts
    print(
        json.dumps(
            {**summary, "max_seconds": counts["max_seconds"], "peak_rss_mb": counts["peak_rss_mb"]}
        )
    )


def test_legacy_file_with_pickled_payload_after_valid_head(tmp_path):
    # The check does not stop at the first pickle: the payload sits in the key list.
    marker = tmp_path / "ran"
    path = tmp_path / "tail_legacy.pyth"
    path.write_bytes(_LEGACY_HEAD + pickle.dumps({}, protocol=2) + _routes(marker)["OBJ"])
    with pytest.raises(UnsafeCheckpointError):
        read_checkpoint(path)
    assert not marker.exists()
    assert io  # the module is used by the helpers of other tests
