"""The log-stream watcher against the emulator's stream as Kaggle serves it: idle cuts (a dropped socket or a
clean end without END_OF_LOG), replay from the start on reconnect, giving up on a stream that never opens."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from emulator_fixtures import FakeRun, write_kernel
from tunix_rt import log_stream
from tunix_rt.emulator import Emulator, KaggleBehaviour
from tunix_rt.kaggle_client import connect
from tunix_rt.log_stream import LogStreamWatch


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAGGLE_USERNAME", "alice")
    monkeypatch.setenv("KAGGLE_KEY", "0123456789abcdef")


def drive(watch: LogStreamWatch, until: float) -> None:
    """What wait.py does between polls: wake on each connection's end, reconnect when due."""
    while not watch.ended.is_set() and not watch.gave_up and time.monotonic() < until:
        watch.poke()
        due = watch.due_in()
        watch.signal.wait(0.05 if due is None else max(0.0, min(0.05, due)))


@pytest.mark.parametrize("clean", [False, True], ids=["socket-dropped", "clean-end"])
def test_cuts_are_reconnected_replays_skipped_and_the_end_seen(tmp_path: Path, env: None,
                                                                monkeypatch: pytest.MonkeyPatch, clean: bool) -> None:
    fake = FakeRun(stdout=["one\n", "two\n", "three\n"], gated=True)
    with Emulator(tmp_path / "k", queue_seconds=0.1, execute_fn=fake,
                  behaviour=KaggleBehaviour(stream_idle_cut_s=0.3, stream_cut_clean=clean)) as emu:
        for key, value in emu.client_env().items():
            monkeypatch.setenv(key, value)
        folder = write_kernel(tmp_path / "kern", "alice/stream-kern", "print('x')\n", kernel_type="script")
        connect(verify=False).api.kernels_push(str(folder))
        assert fake.started.wait(30)
        watch = LogStreamWatch(lambda: connect(verify=False), "alice/stream-kern", 1, served_s=0.2)
        drive(watch, time.monotonic() + 2.0)  # ~2 s of a live session: several idle cuts
        assert watch.cuts >= 2 and not watch.ended.is_set() and not watch.gave_up
        fake.release()
        drive(watch, time.monotonic() + 30)
        assert watch.ended.is_set()
        assert watch.events == 3  # replayed lines are counted once
        assert watch.connects == watch.cuts + 1 and watch.calls == watch.connects  # legacy key: no sign-in call
        cuts = [r for r in emu.calls("logs_stream") if r.fault == "idle_cut"]
        assert len(cuts) == watch.cuts


def test_a_stream_that_never_opens_is_given_up_after_five_tries(tmp_path: Path, env: None,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(log_stream, "BACKOFF_BASE_S", 0.01)
    with Emulator(tmp_path / "k") as emu:
        for key, value in emu.client_env().items():
            monkeypatch.setenv(key, value)
        emu.seed_version("bob", "private-kern")  # 403 for alice
        watch = LogStreamWatch(lambda: connect(verify=False), "bob/private-kern", 1)
        drive(watch, time.monotonic() + 30)
        assert watch.gave_up and watch.failures == log_stream.MAX_FAILURES and not watch.ended.is_set()
        assert [r.status for r in emu.calls("logs_stream")] == [403] * log_stream.MAX_FAILURES
        assert watch.due_in() is None  # polling carries on alone
