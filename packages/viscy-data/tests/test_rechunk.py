"""viscy_data.rechunk: sharded NGFF 0.5 copies of HCS plates (metadata, subsets, verification, resuming)."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import zarr
from iohub.ngff import TransformationMeta, open_ome_zarr

from viscy_data.rechunk import DEFAULT_CHUNKS, PROVENANCE_KEY, RechunkResult, copy_fov, driver, rechunk

CHANNELS = ["Phase3D", "GFP", "Mito"]
FOVS = [("A", "1", "0"), ("A", "1", "1"), ("A", "2", "0"), ("B", "1", "0")]
SCALE = [1.0, 1.0, 2.5, 0.325, 0.325]


def _norm(channels, offset):
    return {
        name: {
            "dataset_statistics": {"mean": 1.0 + c, "std": 2.0},
            "fov_statistics": {"mean": offset + c, "std": 3.0},
            "timepoint_statistics": {"0": {"mean": 5.0}, "1": {"mean": 6.0}},
        }
        for c, name in enumerate(channels)
    }


def make_plate(path: Path, version: str, shape=(3, 3, 4, 40, 48), fovs=FOVS, seed=0, pyramid=False) -> Path:
    """Random float32 plate with scale, per-FOV and plate normalisation metadata and a custom attribute."""
    rng = np.random.default_rng(seed)
    with open_ome_zarr(path, layout="hcs", mode="w-", channel_names=CHANNELS, version=version) as plate:
        for i, (row, col, fov) in enumerate(fovs):
            position = plate.create_position(row, col, fov)
            data = rng.standard_normal(shape).astype(np.float32)
            position.create_image("0", data, transform=[TransformationMeta(type="scale", scale=SCALE)])
            if pyramid:
                level = (rng.random((shape[0], shape[1], shape[2], shape[3] // 2, shape[4] // 2)) * 4000).astype(
                    np.uint16
                )
                position.create_image("1", level, transform=[TransformationMeta(type="scale", scale=SCALE)])
            position.zattrs["normalization"] = _norm(CHANNELS, float(i))
            position.zattrs["acquisition"] = {"objective": "63x", "fov": i}
        plate.zattrs["normalization"] = _norm(CHANNELS, 100.0)
        plate.zattrs["experiment"] = {"name": "test", "tags": ["a", "b"]}
    zarr.open_array(str(path / "/".join(fovs[0]) / "0"), mode="r+").attrs["note"] = {"detector": "sCMOS"}
    if pyramid:  # a label image (T, Z, Y, X) in a nested group of the first FOV, as NGFF "labels"
        fov = zarr.open_group(str(path / "/".join(fovs[0])), mode="r+")
        labels = fov.create_group("labels")
        labels.attrs["labels"] = ["cells"]
        cells = labels.create_group("cells")
        axes = [{"name": n, "type": "space" if n != "T" else "time"} for n in "TZYX"]
        cells.attrs["multiscales"] = [{"version": version, "axes": axes, "datasets": [{"path": "0"}]}]
        cells.attrs["image-label"] = {"version": version, "source": {"image": "../../"}}
        mask = rng.integers(0, 5, (shape[0], *shape[2:]), dtype=np.uint16)
        cells.create_array("0", shape=mask.shape, dtype=np.uint16, chunks=mask.shape)[:] = mask
    return path


def _ome_and_rest(attrs: dict) -> tuple[dict, dict]:
    attrs = dict(attrs)
    if "ome" in attrs:
        return attrs.pop("ome"), attrs
    ome = {k: attrs.pop(k) for k in ("plate", "well", "multiscales", "omero") if k in attrs}
    attrs.pop("version", None)
    return ome, attrs


def _strip_versions(node):
    if isinstance(node, dict):
        return {k: _strip_versions(v) for k, v in node.items() if k != "version"}
    if isinstance(node, list):
        return [_strip_versions(v) for v in node]
    return node


def _array_meta(path: Path) -> dict:
    return json.loads((path / "zarr.json").read_text())


@pytest.fixture(scope="module", params=["0.4", "0.5"])
def source(request, tmp_path_factory) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return make_plate(tmp_path_factory.mktemp(f"src{request.param}") / "plate.zarr", request.param, pyramid=True)


@pytest.fixture(scope="module")
def copied(source, tmp_path_factory) -> tuple[Path, RechunkResult]:
    dest = tmp_path_factory.mktemp("dest") / "ai_ready.zarr"
    return dest, rechunk(source, dest, progress=False)


def test_copy_is_ngff_05_with_every_pixel_and_metadata(source, copied):
    dest, result = copied
    assert result.fovs == result.written == ["/".join(f) for f in FOVS] and result.skipped == []
    assert result.bytes_written == 4 * (3 * 3 * 4 * 40 * 48 * 4 + 3 * 3 * 4 * 20 * 24 * 2) + 3 * 4 * 40 * 48 * 2
    assert set(result.checksums) == set(result.fovs) and len(set(result.checksums.values())) == 4
    assert not (dest.parent / f".{dest.name}.rechunk").exists()  # bookkeeping removed at the end
    with open_ome_zarr(dest, layout="hcs", mode="r") as out, open_ome_zarr(source, layout="hcs", mode="r") as src:
        assert out.version == "0.5"
        assert [name for name, _ in out.positions()] == [name for name, _ in src.positions()]
        for (name, pos), (_, ref) in zip(out.positions(), src.positions()):
            assert pos.channel_names == CHANNELS
            for key in ("0", "1"):
                np.testing.assert_array_equal(pos[key][:], ref[key][:], err_msg=f"{name}/{key}")
                assert pos[key].dtype == ref[key].dtype
            assert pos.scale == SCALE
            assert pos.zattrs["normalization"] == ref.zattrs["normalization"]
            assert pos.zattrs["acquisition"] == ref.zattrs["acquisition"]
        assert out.zattrs["normalization"] == src.zattrs["normalization"]
        assert out.zattrs["experiment"] == src.zattrs["experiment"]
    # the NGFF metadata of every group is the source's (versions aside), under "ome" with version 0.5
    for rel in ["", "A", "A/1", "B/1", "A/1/0", "B/1/0"]:
        src_attrs = zarr.open_group(str(source / rel), mode="r").attrs.asdict()
        out_attrs = zarr.open_group(str(dest / rel), mode="r", zarr_format=3).attrs.asdict()
        assert out_attrs.get("ome", {}).get("version", "0.5") == "0.5"
        src_ome, src_rest = _ome_and_rest(src_attrs)
        out_ome, out_rest = _ome_and_rest(out_attrs)
        out_rest.pop(PROVENANCE_KEY, None)
        assert _strip_versions(out_ome) == _strip_versions(src_ome), rel
        assert out_rest == src_rest, rel
    assert zarr.open_array(str(dest / "A/1/0/0"), mode="r").attrs["note"] == {"detector": "sCMOS"}
    # nested label image: pixels, TZYX chunking by axis name, group metadata
    labels = zarr.open_array(str(dest / "A/1/0/labels/cells/0"), mode="r")
    np.testing.assert_array_equal(labels[:], zarr.open_array(str(source / "A/1/0/labels/cells/0"), mode="r")[:])
    assert _array_meta(dest / "A/1/0/labels/cells/0")["codecs"][0]["configuration"]["chunk_shape"] == [1, 4, 40, 48]
    cells = zarr.open_group(str(dest / "A/1/0/labels/cells"), mode="r", zarr_format=3).attrs.asdict()
    assert cells["ome"]["image-label"]["source"] == {"image": "../../"} and cells["ome"]["version"] == "0.5"
    assert zarr.open_group(str(dest / "A/1/0/labels"), mode="r").attrs["ome"]["labels"] == ["cells"]
    provenance = zarr.open_group(str(dest), mode="r").attrs[PROVENANCE_KEY]
    assert provenance["source"] == str(source.resolve()) and provenance["checksums"] == result.checksums


def test_arrays_are_sharded_per_plane_stack_with_small_inner_chunks(copied):
    dest, _ = copied
    meta = _array_meta(dest / "A/1/0/0")
    assert meta["zarr_format"] == 3 and meta["dimension_names"] == list("TCZYX")
    assert meta["chunk_grid"]["configuration"]["chunk_shape"] == [1, 1, 4, 40, 48]
    (codec,) = meta["codecs"]
    assert codec["name"] == "sharding_indexed"
    assert codec["configuration"]["chunk_shape"] == [1, 1, 4, 40, 48]  # (1, 1, Z, 64, 64) clipped to the image
    assert DEFAULT_CHUNKS[3:] == (64, 64)
    assert codec["configuration"]["codecs"][1]["configuration"] | {"typesize": 4} == {
        "cname": "lz4",
        "clevel": 1,
        "shuffle": "bitshuffle",
        "typesize": 4,
        "blocksize": 0,
    }
    pyramid = _array_meta(dest / "A/1/0/1")
    assert pyramid["data_type"] == "uint16"
    assert pyramid["codecs"][0]["configuration"]["chunk_shape"] == [1, 1, 4, 20, 24]
    # one shard file per (t, c) plane stack, as many files as the source's chunks
    assert len([p for p in (dest / "A/1/0/0/c").rglob("*") if p.is_file()]) == 3 * 3


def test_inner_chunks_and_shards_are_configurable(source, tmp_path):
    dest = tmp_path / "custom.zarr"
    rechunk(source, dest, chunks=(1, 1, 2, 16, 16), shards=(2, 1, -1, 20, -1), compressor="zstd", progress=False)
    meta = _array_meta(dest / "A/2/0/0")
    # shards hold whole inner chunks: Y 20 -> 32, X 48 -> 48
    assert meta["chunk_grid"]["configuration"]["chunk_shape"] == [2, 1, 4, 32, 48]
    inner = meta["codecs"][0]["configuration"]
    assert inner["chunk_shape"] == [1, 1, 2, 16, 16]
    assert inner["codecs"][1]["configuration"]["cname"] == "zstd"
    with open_ome_zarr(dest, layout="hcs") as out, open_ome_zarr(source, layout="hcs") as src:
        np.testing.assert_array_equal(out["A/2/0"]["0"][:], src["A/2/0"]["0"][:])
        np.testing.assert_array_equal(out["B/1/0"]["1"][:], src["B/1/0"]["1"][:])


def test_channel_and_well_subsets_restrict_pixels_and_metadata(source, tmp_path):
    dest = tmp_path / "subset.zarr"
    result = rechunk(source, dest, channels=["Mito", "Phase3D"], wells=["B/1", "A/1"], progress=False)
    assert result.fovs == ["A/1/0", "A/1/1", "B/1/0"]  # plate order, not the order asked for
    with open_ome_zarr(dest, layout="hcs") as out, open_ome_zarr(source, layout="hcs") as src:
        assert [w["path"] for w in out.zattrs["ome"]["plate"]["wells"]] == ["A/1", "B/1"]
        assert list(out.zattrs["normalization"]) == ["Phase3D", "Mito"]
        for name, pos in out.positions():
            assert pos.channel_names == ["Phase3D", "Mito"]  # source order
            assert list(pos.zattrs["normalization"]) == ["Phase3D", "Mito"]
            assert pos.zattrs["normalization"]["Mito"] == src[name].zattrs["normalization"]["Mito"]
            for key in ("0", "1"):
                np.testing.assert_array_equal(pos[key][:], src[name][key][:][:, [0, 2]])
    assert not (dest / "A/2").exists()


def test_bad_arguments_name_the_culprit(source, tmp_path):
    with pytest.raises(ValueError, match=r"\['Nope'\] not found in FOV 'A/1/0'; available channels"):
        rechunk(source, tmp_path / "a.zarr", channels=["GFP", "Nope"])
    with pytest.raises(ValueError, match=r"well\(s\) \['C/9'\] not in .*available wells: \['A/1', 'A/2', 'B/1'\]"):
        rechunk(source, tmp_path / "a.zarr", wells=["C/9"])
    with pytest.raises(ValueError, match="chunks must have 5 entries"):
        rechunk(source, tmp_path / "a.zarr", chunks=(64, 64))
    with pytest.raises(ValueError, match="shards entries must be positive or -1"):
        rechunk(source, tmp_path / "a.zarr", shards=(1, 1, 0, -1, -1))
    with pytest.raises(ValueError, match="compressor must be one of"):
        rechunk(source, tmp_path / "a.zarr", compressor="gzip")
    with pytest.raises(ValueError, match="not an HCS OME-Zarr plate"):
        rechunk(source / "A" / "1", tmp_path / "a.zarr")
    with pytest.raises(FileNotFoundError, match="source plate not found"):
        rechunk(tmp_path / "missing.zarr", tmp_path / "a.zarr")
    with pytest.raises(FileNotFoundError, match="parent folder"):
        rechunk(source, tmp_path / "no" / "a.zarr")
    (tmp_path / "taken.zarr").mkdir()
    with pytest.raises(FileExistsError, match="not a rechunk destination"):
        rechunk(source, tmp_path / "taken.zarr")
    with pytest.raises(ValueError, match="must differ from the source"):
        rechunk(source, source)
    assert not (tmp_path / "a.zarr").exists()


def test_finished_destination_is_left_alone_or_refused_with_other_settings(source, copied):
    dest, first = copied
    again = rechunk(source, dest, progress=False)
    assert again.written == [] and again.skipped == first.fovs and again.checksums == first.checksums
    with pytest.raises(ValueError, match=r"finished rechunk with other settings \(channels: was None"):
        rechunk(source, dest, channels=["GFP"])


def test_interrupted_run_never_shows_a_partial_fov_and_resumes(source, tmp_path, monkeypatch):
    dest = tmp_path / "resume.zarr"
    real = driver._copy_fov
    calls = []

    def crash_on_third(ts, fov, *args):
        calls.append(fov.name)
        if len(calls) == 3:
            real(ts, fov, *args)  # staged completely, then interrupted before the move
            raise KeyboardInterrupt
        return real(ts, fov, *args)

    monkeypatch.setattr(driver, "_copy_fov", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        rechunk(source, dest, progress=False)
    assert not (dest / "zarr.json").exists()  # the plate does not open as complete
    assert not (dest / "A/2/0").exists()  # the interrupted FOV is not in place
    with pytest.raises(ValueError, match="unfinished rechunk with other settings"):
        rechunk(source, dest, wells=["A/1"])
    monkeypatch.setattr(driver, "_copy_fov", real)
    result = rechunk(source, dest, progress=False)
    assert result.skipped == ["A/1/0", "A/1/1"] and result.written == ["A/2/0", "B/1/0"]
    with open_ome_zarr(dest, layout="hcs") as out, open_ome_zarr(source, layout="hcs") as src:
        for name, pos in out.positions():
            np.testing.assert_array_equal(pos["0"][:], src[name]["0"][:])
    assert result.checksums == rechunk(source, tmp_path / "fresh.zarr", progress=False).checksums


def test_verification_failure_keeps_the_fov_out(source, tmp_path, monkeypatch):
    real = copy_fov._digest
    calls = itertools.count(1)  # thread-safe: shards are copied and read back by several threads

    def corrupt_read_back(array):
        # the first array of the first FOV has 9 shards: calls 10-18 are its read-back
        return real(array)[::-1] if next(calls) > 9 else real(array)

    monkeypatch.setattr(copy_fov, "_digest", corrupt_read_back)
    dest = tmp_path / "bad.zarr"
    match = r"verification failed for FOV 'A/1/0', array '0', region \[\(0, 1\), \(0, 1\), \(0, 4\)"
    with pytest.raises(RuntimeError, match=match):
        rechunk(source, dest, progress=False)
    assert not (dest / "A/1/0").exists() and not (dest / "zarr.json").exists()


def _done(dest: Path) -> int:
    return len(list((dest.parent / f".{dest.name}.rechunk" / "done").rglob("*.json")))


def test_sigkill_at_random_points_then_rerun_gives_a_verified_copy(tmp_path):
    """The command is killed (SIGKILL) at several random points; every re-run resumes; the end is exact."""
    fovs = [(row, str(col), str(f)) for row in "AB" for col in (1, 2, 3) for f in (0, 1)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        source = make_plate(tmp_path / "src.zarr", "0.4", shape=(8, 3, 8, 128, 128), fovs=fovs, seed=3)
    dest = tmp_path / "dst.zarr"
    command = [sys.executable, "-m", "viscy_data.rechunk", str(source), str(dest), "--quiet", "--chunks"]
    command += ["1", "1", "-1", "32", "32"]
    rng = np.random.default_rng(0)
    kills = 0
    for target in sorted(rng.choice(len(fovs), 4, replace=False).tolist()):
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while proc.poll() is None and _done(dest) < target and time.monotonic() < deadline:
            time.sleep(0.002)
        time.sleep(float(rng.uniform(0, 0.05)))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
        assert proc.returncode in (0, -signal.SIGKILL), proc.stderr.read().decode()
        if proc.returncode == 0:
            break
        assert not (dest / "zarr.json").exists()
        # every FOV in place is complete: same pixels as the source
        for path in dest.glob("*/*/*/0"):
            name = str(path.parent.relative_to(dest))
            expected = zarr.open_array(str(source / name / "0"), mode="r")[:]
            np.testing.assert_array_equal(zarr.open_array(str(path), mode="r")[:], expected, err_msg=name)
    assert kills >= 2
    final = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr
    with open_ome_zarr(dest, layout="hcs") as out, open_ome_zarr(source, layout="hcs") as src:
        assert len(list(out.positions())) == len(fovs)
        for name, pos in out.positions():
            np.testing.assert_array_equal(pos["0"][:], src[name]["0"][:], err_msg=name)
    assert not (tmp_path / ".dst.zarr.rechunk").exists()


_IMPORT_SPY = """
import builtins, importlib, json, sys
from pathlib import Path

repo, source, dest = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
importers = set()
original_import, original_import_module = builtins.__import__, importlib.import_module


def record(name, depth):
    if name == "tensorstore" or name.startswith("tensorstore."):
        caller = Path(sys._getframe(depth).f_code.co_filename)
        if caller.is_relative_to(repo) and ".venv" not in caller.parts:
            importers.add(caller.relative_to(repo).as_posix())


def spy_import(name, *args, **kwargs):
    record(name, 2)
    return original_import(name, *args, **kwargs)


def spy_import_module(name, *args, **kwargs):
    record(name, 2)
    return original_import_module(name, *args, **kwargs)


builtins.__import__, importlib.import_module = spy_import, spy_import_module
from iohub.ngff import open_ome_zarr
from viscy_data.patch_reader import FovArray, PatchReader
from viscy_data.rechunk import rechunk

rechunk(source, dest, progress=False)
with open_ome_zarr(dest, layout="hcs") as plate:
    arrays = [FovArray.from_position(position) for _, position in plate.positions()]
patches = PatchReader(arrays, ["Phase3D", "GFP"], (16, 16), (0, 2)).read([0, 1], [0, 2], [3, 20], [5, 30])
assert tuple(patches.shape) == (2, 2, 2, 16, 16), patches.shape
print(json.dumps(sorted(importers)))
"""


def test_only_the_patch_reader_imports_tensorstore_at_run_time(tmp_path):
    """Rechunking and reading patches reach tensorstore only through ``viscy_data.patch_reader``.

    ``tests/test_layering.py`` checks the import statements; this runs the code in a fresh interpreter and
    records which project file asks for ``tensorstore`` each time (cached imports included), so a helper
    that imports it lazily inside a function cannot slip past.
    """
    repo = Path(__file__).resolve().parents[3]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        source = make_plate(tmp_path / "src.zarr", "0.4", fovs=FOVS[:2])  # zarr v2 in, sharded zarr v3 out
    script = tmp_path / "spy.py"
    script.write_text(_IMPORT_SPY)
    out = subprocess.run(
        [sys.executable, str(script), str(repo), str(source), str(tmp_path / "dest.zarr")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    importers = json.loads(out.stdout.strip().splitlines()[-1])
    assert importers == ["packages/viscy-data/src/viscy_data/patch_reader.py"]
