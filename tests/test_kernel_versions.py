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
