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


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_written_files_follow_the_umask(tmp_path, mask):
    """mkstemp makes temporaries 0600; the finished file gets what the user's umask asks
    for (it was 0600 whatever the umask), and a replaced file keeps its own mode."""
    import os
    import stat

    old = os.umask(mask)
    try:
        new = tmp_path / "new.csv"
        atomic_write_text(new, "a")
        assert stat.S_IMODE(new.stat().st_mode) == 0o666 & ~mask
        excl = tmp_path / "excl.csv"
        atomic_write_text(excl, "a", exclusive=True)
        assert stat.S_IMODE(excl.stat().st_mode) == 0o666 & ~mask
        kept = tmp_path / "kept.csv"
        kept.write_text("old")
        kept.chmod(0o640)
        atomic_write_text(kept, "b")
        assert stat.S_IMODE(kept.stat().st_mode) == 0o640 and kept.read_text() == "b"
    finally:
        os.umask(old)
