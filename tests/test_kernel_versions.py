"""Where a kernel stands, asked version by version: currentVersionNumber may lag until a session ends."""

from __future__ import annotations

from pathlib import Path

import pytest
from emulator_fixtures import FakeRun, write_kernel
from tunix_rt.emulator import Emulator, KaggleBehaviour
from tunix_rt.kaggle_client import connect
from tunix_rt.kernel_versions import landed, look_up


def test_a_lagging_current_version_number_is_probed_past(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeRun(gated=True)
    with Emulator(tmp_path / "k", queue_seconds=0.1, execute_fn=fake,
                  behaviour=KaggleBehaviour(version_lags=True)) as emu:
        for key, value in emu.client_env(user="alice", key="0123456789abcdef").items():
            monkeypatch.setenv(key, value)
        client = connect(verify=False)
        assert look_up(client, "alice/lag-kernel").exists is False  # 403: does not exist yet
        emu.seed_version("alice", "lag-kernel", title="Lag Kernel")  # v1, finished
        client.api.kernels_push(str(write_kernel(tmp_path / "kern", "alice/lag-kernel", "print(1)\n",
                                                 kernel_type="script")))  # v2, running
        assert fake.started.wait(30)
        state = look_up(client, "alice/lag-kernel")
        assert (state.exists, state.title, state.reported, state.latest) == (True, "Lag Kernel", 1, 2)
        slept: list[float] = []
        assert landed(client, "alice/lag-kernel", 1, slept.append, 0.5) == 2 and slept == []
        assert landed(client, "alice/lag-kernel", 2, slept.append, 0.5) is None and slept == [0.5, 1.0]
        fake.release()
        emu.wait_until("alice", "lag-kernel", 2)
        assert look_up(client, "alice/lag-kernel").reported == 2  # the session ended: the field caught up


class _Kaggle:
    """A client whose v<N> appears at a given time on a simulated clock (the settle window's loop only)."""

    def __init__(self, appears_at: float | None) -> None:
        self.now, self.appears_at, self.looks = 0.0, appears_at, 0

    def get_kernel(self, _ref: str, _version: int) -> object | None:
        self.looks += 1
        return object() if self.appears_at is not None and self.now >= self.appears_at else None

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_the_settle_window_keeps_looking_until_its_end() -> None:
    late = _Kaggle(appears_at=170.0)  # SaveKernel completed on the server ~3 min after the client gave up
    assert landed(late, "a/k", 0, late.sleep, 0.25, until=300.0, clock=lambda: late.now) == 1  # type: ignore[arg-type]
    assert 170.0 <= late.now <= 200.0  # looks at most 30 s apart
    never = _Kaggle(appears_at=None)
    assert landed(never, "a/k", 0, never.sleep, 0.25, until=300.0, clock=lambda: never.now) is None  # type: ignore[arg-type]
    assert never.now == pytest.approx(300.0) and never.looks < 30
    spent = _Kaggle(appears_at=None)  # a rerun after the window: the usual three looks, no more
    assert landed(spent, "a/k", 0, spent.sleep, 0.25, until=-1.0, clock=lambda: spent.now) is None  # type: ignore[arg-type]
    assert spent.looks == 3
