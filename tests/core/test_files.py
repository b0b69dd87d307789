"""Atomic writes (bayes_lse/core/files.py)."""

from __future__ import annotations

import pytest

from bayes_lse.core.files import atomic_write_text


def test_exclusive_write_never_replaces_a_file_that_appeared(tmp_path, monkeypatch):
    """Issue 19 item 2: a file created after the command's existence check (simulated
    here by creating it just before the final link) survives, and the write fails."""
    target = tmp_path / "out.csv"
    import bayes_lse.core.files as files

    real_link = files.os.link

    def racing_link(src, dst):
        target.write_text("someone else's data")
        return real_link(src, dst)

    monkeypatch.setattr(files.os, "link", racing_link)
    with pytest.raises(FileExistsError, match="appeared while this command ran"):
        atomic_write_text(target, "ours", exclusive=True)
    assert target.read_text() == "someone else's data"
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]  # no temporary debris


def test_exclusive_write_creates_and_plain_write_replaces(tmp_path):
    target = tmp_path / "sub" / "x.txt"
    atomic_write_text(target, "a", exclusive=True)
    assert target.read_text() == "a"
    with pytest.raises(FileExistsError):
        atomic_write_text(target, "b", exclusive=True)
    atomic_write_text(target, "c")
    assert target.read_text() == "c"
    assert sorted(p.name for p in target.parent.iterdir()) == ["x.txt"]
