"""Save/load: exact round trip, and a clear refusal for every broken folder."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import xarray as xr

import bayes_lse as bl
from bayes_lse.results.storage import ModelFolderError


def test_round_trip_is_exact(tiny_map, tmp_path):
    path = tiny_map.save(tmp_path / "m")
    loaded = bl.load(path)
    assert loaded.method == tiny_map.method
    assert loaded.config_hash == tiny_map.config_hash
    assert loaded.model_config == tiny_map.model_config
    for group in ("posterior", "observed_data", "constant_data", "optimization"):
        a = tiny_map.idata[group].to_dataset()
        b = loaded.idata[group].to_dataset()
        xr.testing.assert_identical(a, b)
    pd_a = tiny_map.interactions
    pd_b = loaded.interactions
    assert pd_a.equals(pd_b)
    p1 = tiny_map.predict(pd_a)
    p2 = loaded.predict(pd_b)
    np.testing.assert_array_equal(p1["p_mean"].to_numpy(), p2["p_mean"].to_numpy())


def test_range_coordinates_are_not_written_and_come_back_as_ranges(tiny_map, tmp_path):
    """state/obs/transition are 0..n-1: fit.nc holds only their dimensions (xarray had
    materialised them all while writing, 0.4 GB at 25M rows); load restores RangeIndexes,
    and each state's student is a code into the ids."""
    import h5py
    import pandas as pd

    path = tiny_map.save(tmp_path / "m")
    with h5py.File(path / "fit.nc") as h:
        for group, dim in (("posterior", "state"), ("observed_data", "obs"), ("constant_data", "transition")):
            assert b"not a netCDF variable" in h[f"{group}/{dim}"].attrs["NAME"]
    loaded = bl.load(path)
    post = loaded.idata["posterior"].to_dataset()
    assert isinstance(post.indexes["state"], pd.RangeIndex)
    assert isinstance(loaded.idata["constant_data"].to_dataset().indexes["transition"], pd.RangeIndex)
    codes = post["state_student"].values
    assert np.issubdtype(codes.dtype, np.integer)
    si = loaded.state_index()
    np.testing.assert_array_equal(si["student_id"].to_numpy(), np.asarray(loaded.students, dtype=object)[codes])


def test_nuts_round_trip(tiny_nuts, tmp_path):
    loaded = bl.load(tiny_nuts.save(tmp_path / "n"))
    xr.testing.assert_identical(tiny_nuts.idata["posterior"].to_dataset(), loaded.idata["posterior"].to_dataset())
    xr.testing.assert_identical(tiny_nuts.idata["sample_stats"].to_dataset(), loaded.idata["sample_stats"].to_dataset())


def test_refuses_to_overwrite(tiny_map, tmp_path):
    path = tiny_map.save(tmp_path / "m")
    before = (path / "fit.nc").read_bytes()
    with pytest.raises(ModelFolderError, match="already holds files"):
        tiny_map.save(path)
    assert (path / "fit.nc").read_bytes() == before
    tiny_map.save(path, overwrite=True)
    bl.load(path)


def test_never_replaces_a_foreign_folder(tiny_map, tmp_path):
    d = tmp_path / "mine"
    d.mkdir()
    (d / "notes.txt").write_text("precious")
    with pytest.raises(ModelFolderError, match="not a bayes-lse model"):
        tiny_map.save(d, overwrite=True)
    assert (d / "notes.txt").read_text() == "precious"


def test_failed_write_leaves_nothing(tiny_map, tmp_path, monkeypatch):
    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(xr.DataTree, "to_netcdf", boom)
    with pytest.raises(OSError, match="disk full"):
        tiny_map.save(tmp_path / "m")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda p: (p / "manifest.json").unlink(), "manifest.json is missing"),
        (lambda p: (p / "fit.nc").unlink(), "fit.nc is missing"),
        (lambda p: (p / "ids.json").write_text('{"students": []}'), "ids.json does not match its recorded hash"),
        (lambda p: (p / "fit.nc").write_bytes((p / "fit.nc").read_bytes()[:-10] + b"0123456789"),
         "fit.nc does not match its recorded hash"),
        (lambda p: _set_manifest(p, format_version=99), "format version 99"),
        (lambda p: _set_manifest(p, format="something-else"), "not a bayes-lse model folder"),
        (lambda p: (p / "manifest.json").write_text("{not json"), "not valid JSON"),
    ],
)
def test_refuses_broken_folders(tiny_map, tmp_path, damage, message):
    path = tiny_map.save(tmp_path / "m")
    damage(path)
    with pytest.raises(ModelFolderError, match=message):
        bl.load(path)


def test_refuses_config_that_does_not_match_the_draws(tiny_map, tmp_path):
    """A consistent-looking folder whose config.json was swapped (hashes recomputed) is refused."""
    path = tiny_map.save(tmp_path / "m")
    cfg = json.loads((path / "config.json").read_text())
    cfg["model_config"]["priors"]["gain_scale"] = 5.0
    (path / "config.json").write_text(json.dumps(cfg))
    from bayes_lse.results.storage import sha256_file

    m = json.loads((path / "manifest.json").read_text())
    m["files"]["config.json"] = sha256_file(path / "config.json")
    (path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ModelFolderError, match="different config"):
        bl.load(path)


def test_missing_folder(tmp_path):
    with pytest.raises(ModelFolderError, match="no such model folder"):
        bl.load(tmp_path / "nope")
    (tmp_path / "f").write_text("x")
    with pytest.raises(ModelFolderError, match="not a folder"):
        bl.load(tmp_path / "f")


def _set_json(path, name, **changes):
    obj = json.loads((path / name).read_text())
    obj.update(changes)
    (path / name).write_text(json.dumps(obj))


def _set_manifest(path, **changes):
    m = json.loads((path / "manifest.json").read_text())
    m.update(changes)
    (path / "manifest.json").write_text(json.dumps(m))


def test_copy_of_folder_loads(tiny_map, tmp_path):
    path = tiny_map.save(tmp_path / "m")
    shutil.copytree(path, tmp_path / "copy")
    assert bl.load(tmp_path / "copy").config_hash == tiny_map.config_hash


def test_variant_without_biases_round_trips(tiny_cohort, tmp_path):
    f = bl.LatentSkillEmbedding(n_skills=1, biases=False, prerequisites=False).fit(
        tiny_cohort.table, method="map", starts=1, seed=0, maxiter=200)
    loaded = bl.load(f.save(tmp_path / "nb"))
    assert list(loaded.students) == list(f.students) and len(f.students) == tiny_cohort.table.student_id.nunique()
    np.testing.assert_array_equal(loaded.predict(tiny_cohort.table)["p_mean"], f.predict(tiny_cohort.table)["p_mean"])


def test_data_fingerprint_streams_the_digest_of_the_whole_hash_list():
    """The streamed fingerprint (blocks of 65,536 rows) is `config_hash` of the full list
    of row hashes, so it does not depend on the block size; and it sees a changed row."""
    import numpy as np
    import pandas as pd

    from bayes_lse.core.config import config_hash
    from bayes_lse.inference.assemble import data_fingerprint

    n = 150_000  # three blocks, the last partial
    rng = np.random.default_rng(0)
    table = pd.DataFrame({"student_id": rng.integers(0, 500, n).astype(str), "module_id": rng.integers(0, 90, n).astype(str),
                          "module_type": "assessment", "outcome": rng.integers(0, 2, n), "timestep": np.arange(n) % 7})
    full = pd.util.hash_pandas_object(table, index=False).to_numpy().tolist()
    assert data_fingerprint(table) == config_hash(full)
    assert data_fingerprint(table, rows=40_000) == config_hash(full)  # hashed 40,000 rows at a time
    assert data_fingerprint(table.head(10)) == config_hash(full[:10])
    changed = table.copy()
    changed.loc[n - 1, "outcome"] = 1 - changed.loc[n - 1, "outcome"]
    assert data_fingerprint(changed) != data_fingerprint(table)


def _rehash(path, name):
    from bayes_lse.results.storage import sha256_file

    m = json.loads((path / "manifest.json").read_text())
    m["files"][name] = sha256_file(path / name)
    (path / "manifest.json").write_text(json.dumps(m))


@pytest.mark.parametrize("special", ["dev_zero", "fifo", "folder"])
def test_special_files_are_refused_without_hanging(tiny_map, tmp_path, special):
    """Issue 19 items 7 and 11: fit.nc as a symlink to /dev/zero or a FIFO hung `predict`
    forever (hashing never ends / blocks on open); a folder gave a traceback."""
    import os

    path = tiny_map.save(tmp_path / "m")
    (path / "fit.nc").unlink()
    if special == "dev_zero":
        if not os.path.exists("/dev/zero"):
            pytest.skip("no /dev/zero here")
        os.symlink("/dev/zero", path / "fit.nc")
    elif special == "fifo":
        os.mkfifo(path / "fit.nc")
    else:
        (path / "fit.nc").mkdir()
    with pytest.raises(ModelFolderError, match="regular file|is a folder"):
        bl.load(path)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda p: _set_manifest(p, files=None), "'files' must map"),
        (lambda p: _set_manifest(p, files=["config.json"]), "'files' must map"),
        (lambda p: (p / "manifest.json").write_text("[1, 2]"), "JSON object is expected"),
        (lambda p: ((p / "config.json").write_text("[]"), _rehash(p, "config.json")), "config.json is not a bayes-lse"),
        (lambda p: ((p / "ids.json").write_text('{"students": []}'), _rehash(p, "ids.json")), "ids.json is not a bayes-lse"),
        # found by test_storage_properties.py: values of the wrong JSON type were TypeErrors
        (lambda p: (_set_json(p, "ids.json", students=None), _rehash(p, "ids.json")),
         "ids.json's 'students' must be a list of ids"),
        (lambda p: (_set_json(p, "ids.json", lessons=[1, 2]), _rehash(p, "ids.json")),
         "ids.json's 'lessons' must be a list of ids"),
        (lambda p: (_set_json(p, "config.json", model_config="x"), _rehash(p, "config.json")),
         "config.json's 'model_config' must be a JSON object"),
    ],
)
def test_malformed_json_is_refused_with_one_message(tiny_map, tmp_path, edit, message):
    path = tiny_map.save(tmp_path / "m")
    edit(path)
    with pytest.raises(ModelFolderError, match=message):
        bl.load(path)


def test_manifest_as_a_folder_is_refused(tiny_map, tmp_path):
    path = tiny_map.save(tmp_path / "m")
    (path / "manifest.json").unlink()
    (path / "manifest.json").mkdir()
    with pytest.raises(ModelFolderError, match="is a folder"):
        bl.load(path)


def test_swapped_ids_with_a_rehashed_manifest_are_refused(tiny_map, tmp_path):
    """Issue 19 item 4: swapping two ids in ids.json and re-hashing the manifest loaded
    fine and shifted predictions silently."""
    path = tiny_map.save(tmp_path / "m")
    for key in ("students", "assessments"):
        ids = json.loads((path / "ids.json").read_text())
        ids[key][0], ids[key][1] = ids[key][1], ids[key][0]
        (path / "ids.json").write_text(json.dumps(ids))
        _rehash(path, "ids.json")
        with pytest.raises(ModelFolderError, match=f"ids.json's {key} differ"):
            bl.load(path)
        ids[key][0], ids[key][1] = ids[key][1], ids[key][0]
        (path / "ids.json").write_text(json.dumps(ids))
        _rehash(path, "ids.json")
    bl.load(path)  # restored: loads again


def test_writer_version_is_required_and_checked(tiny_map, tmp_path):
    path = tiny_map.save(tmp_path / "m")
    m = json.loads((path / "manifest.json").read_text())
    assert m["bayes_lse_version"] == bl.__version__
    _set_manifest(path, bayes_lse_version="99.0.0")
    with pytest.warns(UserWarning, match="written by bayes-lse 99.0.0, newer than"):
        bl.load(path)
    _set_manifest(path, bayes_lse_version=None)
    with pytest.raises(ModelFolderError, match="records no bayes_lse_version"):
        bl.load(path)


@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_model_folder_follows_the_umask(tiny_map, tmp_path, mask):
    """Issue 19: model folders were 0700 (tempfile.mkdtemp's mode, renamed into place)
    whatever the umask, so a colleague in the group could not load a shared model."""
    import os
    import stat

    old = os.umask(mask)
    try:
        tiny_map.save(tmp_path / "m")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "m").stat().st_mode) == 0o777 & ~mask
    for f in (tmp_path / "m").iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o666 & ~mask, f.name
