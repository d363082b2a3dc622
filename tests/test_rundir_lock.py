"""rundir_lock.py: one process per run directory (flock), the holder named, nothing left behind."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from tunix_rt.errors import EXIT_USAGE, TunixRtError
from tunix_rt.rundir_lock import LOCK_NAME, hold

HOLD_SCRIPT = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from tunix_rt.rundir_lock import hold
    with hold(Path(sys.argv[1]), "run"):
        print("held", flush=True)
        time.sleep(120)
""")


def _holder(run_dir: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLD_SCRIPT, str(run_dir)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_holder_is_refused_naming_the_first(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    other = _holder(run_dir)
    try:
        record = json.loads((run_dir / LOCK_NAME).read_text())
        assert record["pid"] == other.pid and record["command"].startswith("tunix-rt run")
        with pytest.raises(TunixRtError) as caught, hold(run_dir, "push"):
            pass
        assert caught.value.exit_code == EXIT_USAGE
        assert f"in use by pid {other.pid} (tunix-rt run" in caught.value.message
    finally:
        other.kill()
        other.wait()


def test_a_killed_holders_lock_is_taken_over(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    other = _holder(run_dir)
    other.kill()  # SIGKILL: no clean-up; the kernel drops the flock, the file stays
    other.wait()
    assert (run_dir / LOCK_NAME).exists()
    with hold(run_dir, "run") as path:
        assert path is not None and json.loads(path.read_text())["command"].startswith("tunix-rt run")
    assert not (run_dir / LOCK_NAME).exists()


def test_nothing_is_left_behind_and_existing_folders_stay(tmp_path: Path) -> None:
    fresh = tmp_path / "a" / "run"
    with hold(fresh, "push"):
        assert fresh.is_dir()
    assert not (tmp_path / "a").exists()  # made for the lock, empty after: removed
    kept = tmp_path / "kept"
    kept.mkdir()
    with hold(kept, "push"):
        (kept / "run_state.json").write_text("{}")
    assert sorted(p.name for p in kept.iterdir()) == ["run_state.json"]


def test_a_run_dir_that_is_a_file_is_one_line_exit_2(tmp_path: Path) -> None:
    blocker = tmp_path / "run"
    blocker.write_text("not a folder")
    with pytest.raises(TunixRtError, match="not a folder") as caught, hold(blocker, "run"):
        pass
    assert caught.value.exit_code == EXIT_USAGE


def test_create_false_does_not_make_a_missing_run_dir(tmp_path: Path) -> None:
    with hold(tmp_path / "missing", "report", create=False) as path:
        assert path is None
    assert not (tmp_path / "missing").exists()
