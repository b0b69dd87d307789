"""Property-based tests of loading a tampered model folder (issue 19): whatever a JSON
file of the folder holds — any JSON value, a key changed to any value or removed, bytes
that are not JSON — with or without the manifest re-hashed to match, loading either
gives the model or raises `ModelFolderError`, never another exception."""

from __future__ import annotations

import json
import shutil
import warnings

import pytest

hypothesis = pytest.importorskip("hypothesis", reason="hypothesis is in the test extra: pip install -e '.[test]'")
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import bayes_lse as bl  # noqa: E402
from bayes_lse.results.storage import ModelFolderError, sha256_file  # noqa: E402

JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=8)),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)),
    max_leaves=12,
)


@pytest.fixture(scope="module")
def saved(tiny_map, tmp_path_factory):
    return tiny_map.save(tmp_path_factory.mktemp("saved") / "m")


def _paths(obj, prefix=()):
    """Every key path into a JSON value (dict keys and list positions)."""
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:3]):
            yield from _paths(v, prefix + (i,))


@st.composite
def damage(draw, saved_folder):
    name = draw(st.sampled_from(["manifest.json", "config.json", "ids.json"]))
    original = json.loads((saved_folder / name).read_text())
    how = draw(st.sampled_from(["replace", "edit", "delete", "bytes"]))
    if how == "bytes":
        return name, draw(st.binary(max_size=30)), draw(st.booleans())
    if how == "replace":
        value = draw(JSON)
    else:
        value = json.loads(json.dumps(original))
        paths = [p for p in _paths(value) if p]
        path = draw(st.sampled_from(paths))
        parent = value
        for k in path[:-1]:
            parent = parent[k]
        if how == "delete":
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(JSON)
    return name, json.dumps(value).encode(), draw(st.booleans())


@given(data=st.data())
def test_a_tampered_json_file_loads_or_is_refused_with_one_clear_error(saved, tmp_path_factory, data):
    name, content, rehash = data.draw(damage(saved))
    folder = tmp_path_factory.mktemp("t") / "m"
    shutil.copytree(saved, folder)
    (folder / name).write_bytes(content)
    if rehash and name != "manifest.json":  # as a hostile user would, to get past the hashes
        m = json.loads((folder / "manifest.json").read_text())
        m["files"][name] = sha256_file(folder / name)
        (folder / "manifest.json").write_text(json.dumps(m))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a newer writer version only warns
        try:
            loaded = bl.load(folder)
        except ModelFolderError as exc:
            assert "\n" not in str(exc)
            return
    assert loaded.config_hash  # loaded: a harmless change (the saved time, say)
