"""Writers of one model folder exclude each other (issue 19 item 1), and a swap that
was interrupted between its two renames is recovered by the next load or write
(item 3). The locks are held by real second processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

import bayes_lse as bl
from bayes_lse.results import storage
from bayes_lse.results.storage import ModelFolderBusy, ModelFolderError, folder_lock, lock_path, write_folder

ROOT = Path(__file__).resolve().parents[2]


def _python(code: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=env, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


@contextmanager
def held_by_another_process(dest: Path):
    """Another process holds the folder's lock until the block ends."""
    proc = _python(f"""
        import sys
        from bayes_lse.results.storage import folder_lock
        with folder_lock({str(dest)!r}):
            print("held", flush=True)
            sys.stdin.read()
    """)
    try:
        line = proc.stdout.readline().strip()
        assert line == "held", proc.stderr.read()
        yield proc
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)


def _writers(text: str) -> dict:
    return {name: (lambda p, t=text: p.write_text(t)) for name in ("config.json", "ids.json", "fit.nc")}


def _debris(parent: Path, name: str) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(f".{name}."))


# ------------------------------------------------------------------ item 1: one writer at a time
def test_a_second_writer_fails_while_another_process_writes(tmp_path):
    dest = tmp_path / "m"
    with held_by_another_process(dest) as holder:
        with pytest.raises(ModelFolderBusy, match=rf"another bayes-lse process \(PID {holder.pid} on .*\) is "
                                                   "writing this model folder"):
            write_folder(dest, _writers("mine"), {}, overwrite=True)
        assert not dest.exists()
        assert _debris(tmp_path, "m") == [".m.lock"]  # the holder's, nothing of ours
    assert _debris(tmp_path, "m") == []  # released: the lock file goes with it
    write_folder(dest, _writers("mine"), {}, overwrite=True)
    assert (dest / "fit.nc").read_text() == "mine"
    assert _debris(tmp_path, "m") == []


def test_two_processes_racing_for_one_folder_one_wins_one_fails(tmp_path):
    """Both start writing at once (a file barrier), each holding the folder for 0.8 s."""
    dest = tmp_path / "m"
    code = """
        import os, sys, time
        from pathlib import Path
        from bayes_lse.results.storage import ModelFolderBusy, write_folder
        me, other, dest = sys.argv[1], sys.argv[2], Path(sys.argv[3])
        (dest.parent / f"ready-{me}").touch()
        while not (dest.parent / f"ready-{other}").exists():
            time.sleep(0.005)
        def slow(p):
            time.sleep(0.8)
            p.write_text(me)
        def fast(p):
            p.write_text(me)
        try:
            write_folder(dest, {"config.json": slow, "ids.json": fast, "fit.nc": fast}, {}, overwrite=True)
        except ModelFolderBusy as exc:
            print("busy", exc)
        else:
            print("wrote")
    """
    procs = {me: subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), me, other, str(dest)],
                                  env={**os.environ, "PYTHONPATH": str(ROOT)}, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for me, other in (("a", "b"), ("b", "a"))}
    out = {me: p.communicate(timeout=60) for me, p in procs.items()}
    assert all(p.returncode == 0 for p in procs.values()), out
    said = {me: o[0].split()[0] for me, o in out.items()}
    assert sorted(said.values()) == ["busy", "wrote"], out
    winner = next(me for me, s in said.items() if s == "wrote")
    assert (dest / "fit.nc").read_text() == winner  # the loser replaced nothing
    assert _debris(tmp_path, "m") == []


def test_the_lock_is_reentrant_in_one_thread_and_exclusive_across_threads(tmp_path):
    import threading

    dest = tmp_path / "m"
    errors = []
    with folder_lock(dest):
        write_folder(dest, _writers("x"), {}, overwrite=False)  # the CLI holds it around the save
        t = threading.Thread(target=lambda: errors.append(_try_write(dest)))
        t.start()
        t.join()
    assert isinstance(errors[0], ModelFolderBusy)
    assert not lock_path(dest).exists()


def _try_write(dest):
    try:
        write_folder(dest, _writers("y"), {}, overwrite=True)
    except ModelFolderError as exc:
        return exc
    return None


def test_a_lock_file_left_by_a_killed_writer_is_taken_over(tmp_path):
    dest = tmp_path / "m"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock_path(dest).write_text(f"{dead.pid} somehost\n")  # its holder died without removing it
    write_folder(dest, _writers("new"), {}, overwrite=False)
    assert (dest / "fit.nc").read_text() == "new"
    assert not lock_path(dest).exists()


def test_a_writer_killed_while_holding_the_lock_does_not_block_the_next(tmp_path):
    dest = tmp_path / "m"
    proc = _python(f"""
        import sys, time
        from bayes_lse.results.storage import folder_lock
        with folder_lock({str(dest)!r}):
            print("held", flush=True)
            time.sleep(60)
    """)
    assert proc.stdout.readline().strip() == "held"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert lock_path(dest).exists()  # left behind, but no longer locked
    write_folder(dest, _writers("after"), {}, overwrite=False)
    assert (dest / "fit.nc").read_text() == "after" and not lock_path(dest).exists()


def test_without_flock_an_exclusive_lock_file_excludes_writers(tmp_path, monkeypatch):
    """Where fcntl is missing (Windows) the lock is an O_EXCL-created file."""
    monkeypatch.setattr(storage, "fcntl", None)
    dest = tmp_path / "m"
    write_folder(dest, _writers("one"), {}, overwrite=False)
    assert not lock_path(dest).exists()
    lock_path(dest).write_text("4242 otherhost\n")
    with pytest.raises(ModelFolderBusy, match="PID 4242 on otherhost; if none is running, delete the lock file"):
        write_folder(dest, _writers("two"), {}, overwrite=True)
    assert (dest / "fit.nc").read_text() == "one"


def test_a_refused_write_leaves_nothing_behind(tmp_path):
    dest = tmp_path / "new" / "deeper" / "m"
    (tmp_path / "other").mkdir()
    with pytest.raises(OSError, match="disk full"):
        write_folder(dest, {"config.json": _boom}, {}, overwrite=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other"]  # folders made for the lock go too
    write_folder(tmp_path / "other" / "m", _writers("a"), {}, overwrite=False)
    with pytest.raises(ModelFolderError, match="already holds files"):
        write_folder(tmp_path / "other" / "m", _writers("b"), {}, overwrite=False)
    assert sorted(p.name for p in (tmp_path / "other").iterdir()) == ["m"]


def _boom(path):
    raise OSError("disk full")


# ------------------------------------------------------------------ item 3: an interrupted swap
def _predictions(fitted, table):
    return fitted.predict(table)["p_mean"].to_numpy()


def test_an_error_between_the_two_renames_puts_the_old_model_back(tiny_map, tiny_cohort, tmp_path, monkeypatch):
    path = tiny_map.save(tmp_path / "m")
    before = (path / "fit.nc").read_bytes()
    real = os.replace
    calls = []

    def second_fails(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:  # old moved aside; now the new one should land
            raise OSError("power cut")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", second_fails)
    with pytest.raises(OSError, match="power cut"):
        tiny_map.save(path, overwrite=True)
    monkeypatch.setattr(os, "replace", real)
    assert Path(calls[0][1]).name.startswith(".m.old-")
    assert (path / "fit.nc").read_bytes() == before
    assert _debris(tmp_path, "m") == []
    np.testing.assert_array_equal(_predictions(bl.load(path), tiny_cohort.table),
                                  _predictions(tiny_map, tiny_cohort.table))


def test_a_kill_between_the_two_renames_is_recovered_by_the_next_load(tiny_map, tiny_cohort, tmp_path):
    """The writer really dies (SIGKILL, no finally runs) right after moving the old model aside."""
    path = tiny_map.save(tmp_path / "m")
    before = (path / "fit.nc").read_bytes()
    proc = _python(f"""
        import os, signal
        from bayes_lse.results.storage import write_folder
        real, calls = os.replace, []
        def replace(src, dst):
            calls.append(1)
            if len(calls) == 2:
                os.kill(os.getpid(), signal.SIGKILL)
            return real(src, dst)
        os.replace = replace
        write_folder({str(path)!r}, {{n: (lambda p: p.write_text("new")) for n in
                                     ("config.json", "ids.json", "fit.nc")}}, {{}}, overwrite=True)
    """)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    left = _debris(tmp_path, "m")
    assert not path.exists()  # the state the issue describes: no model at the path
    assert any(n.startswith(".m.old-") for n in left) and any(n.endswith(".tmp") for n in left), left
    with pytest.warns(UserWarning, match="restored the model that an interrupted overwrite had moved"):
        loaded = bl.load(path)
    assert (path / "fit.nc").read_bytes() == before
    assert _debris(tmp_path, "m") == []
    np.testing.assert_array_equal(_predictions(loaded, tiny_cohort.table), _predictions(tiny_map, tiny_cohort.table))


def _make_leftovers(path: Path, *, landed: bool) -> None:
    """By hand: the old model as .m.old-PID and a half-written .m.*.tmp, as a kill leaves them."""
    import shutil

    old = path.with_name(".m.old-99999")
    if landed:
        shutil.copytree(path, old)
    else:
        os.replace(path, old)
    tmp = path.with_name(".m.ab12cd_9.tmp")
    tmp.mkdir()
    (tmp / "fit.nc").write_text("half")


def test_a_write_recovers_first_and_then_refuses_without_overwrite(tiny_map, tmp_path):
    path = tiny_map.save(tmp_path / "m")
    _make_leftovers(path, landed=False)
    with pytest.warns(UserWarning, match="restored"), pytest.raises(ModelFolderError, match="already holds files"):
        tiny_map.save(path)  # the old model is back, so a write without --overwrite refuses
    assert _debris(tmp_path, "m") == []
    bl.load(path)


def test_leftovers_of_a_completed_swap_are_removed(tiny_map, tmp_path):
    path = tiny_map.save(tmp_path / "m")
    _make_leftovers(path, landed=True)
    (tmp_path / ".mm.old-1").mkdir()  # another folder's leftovers are not ours
    (tmp_path / ".m.x.12345678.tmp").mkdir()
    with pytest.warns(UserWarning, match="removed 2 leftover folder"):
        bl.load(path)
    assert _debris(tmp_path, "m") == [".m.x.12345678.tmp"]
    assert (tmp_path / ".mm.old-1").is_dir()


def test_a_live_writers_folders_are_not_leftovers(tiny_map, tmp_path):
    path = tiny_map.save(tmp_path / "m")
    tmp = path.with_name(".m.ab12cd_9.tmp")
    with held_by_another_process(path):
        tmp.mkdir()  # as a writer that is still at work has it
        bl.load(path)
        assert tmp.is_dir()
    with pytest.warns(UserWarning, match="removed 1 leftover folder"):
        bl.load(path)  # no writer now: debris
    assert not tmp.exists()


def test_load_names_the_old_model_when_it_cannot_restore_it(tiny_map, tmp_path):
    path = tiny_map.save(tmp_path / "m")
    with held_by_another_process(path):  # a writer at work: loading must not touch its folders
        _make_leftovers(path, landed=False)
        with pytest.raises(ModelFolderError, match=r"interrupted overwrite left the previous one as .*\.m\.old-99999"):
            bl.load(path)
    with pytest.warns(UserWarning, match="restored"):
        bl.load(path)


def test_taking_and_releasing_the_lock_leaves_nothing(tmp_path):
    for i in range(5):
        with folder_lock(tmp_path / f"m{i}" / "deep"):
            pass
    assert list(tmp_path.iterdir()) == []
