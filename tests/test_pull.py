"""``tunix-rt pull`` across signed output URLs that expire (the real kaggle client in a subprocess, and the
client layer in process), and a rerun that does not fetch again what is already there and verified."""

from __future__ import annotations

from pathlib import Path

import pytest
from kaggle_e2e_helpers import USER, cli_env, make_bundle, push_args, state, tunix_rt
from tunix_rt.emulator import Emulator
from tunix_rt.errors import EXIT_USAGE, TunixRtError
from tunix_rt.kaggle_client import connect
from tunix_rt.kernel_status import KernelStatus
from tunix_rt.progress import Reporter
from tunix_rt.pull import download_outputs
from tunix_rt.runstate import KaggleRecord, RunState


def pushed_state(run: Path, ref: str) -> RunState:
    state = RunState.new(run)
    state.kaggle = KaggleRecord(kernel_ref=ref, version_number=1, status=KernelStatus.COMPLETE)
    return state


def test_a_pull_across_expired_urls_completes_and_a_rerun_fetches_nothing_again(emu: Emulator, tmp_path: Path,
                                                                                 run_dir: Path) -> None:
    bundle = make_bundle(tmp_path / "b", files={"output/a.txt": "a"}, n_extra=8)
    env = cli_env(emu)
    assert tunix_rt(env, "push", *push_args(run_dir, bundle, "cpu")).code == 0
    assert tunix_rt(env, "wait", "--run-dir", str(run_dir), "--poll-min", "0.2", "--poll-max", "0.5").code == 0
    # URLs live 1 s and every answer takes 0.35 s: a page of 3 files outlives its URLs.
    emu.set_faults(url_ttl=1.0, latency=0.35, page_size_cap=3)
    res = tunix_rt(env, "pull", "--run-dir", str(run_dir), "--json", timeout=300)
    assert res.code in (0, 1), res.output  # 1: these fake outputs are not a complete training run
    expired = [r for r in emu.calls("blob") if r.status == 400]
    assert expired, "no URL expired: the test did not test anything"
    extra = sorted(p.name for p in (run_dir / "outputs" / "extra").iterdir())
    assert extra == [f"file_{i:03d}.txt" for i in range(8)]
    assert all((run_dir / "outputs" / "extra" / f"file_{i:03d}.txt").read_text() == str(i) for i in range(8))
    assert (run_dir / "outputs" / "output" / "a.txt").read_text() == "a"
    pull = state(run_dir)["stages"]["pull"]
    assert pull["expired_urls"] == len(expired) and pull["files"] == 9
    warnings = [e["message"] for e in res.json_lines() if e["event"] == "warning"]
    assert sum("signed URL expired" in w for w in warnings) == len(expired)
    pulled = state(run_dir)["kaggle"]["pulled_files"]
    assert set(pulled) == {"output/a.txt", *(f"extra/file_{i:03d}.txt" for i in range(8))}

    # A rerun (e.g. after a crash in evidence) fetches no file again: each is there with its sha256.
    emu.set_faults(url_ttl=None, latency=0.0)
    blobs = len(emu.calls("blob"))
    again = tunix_rt(env, "pull", "--run-dir", str(run_dir))
    assert again.code == res.code, again.output
    assert len(emu.calls("blob")) == blobs
    assert "9 already pulled and verified" in again.stderr
    # A file changed on disk is not "verified": only it is fetched again.
    (run_dir / "outputs" / "extra" / "file_003.txt").write_text("tampered")
    tunix_rt(env, "pull", "--run-dir", str(run_dir))
    assert len(emu.calls("blob")) == blobs + 1
    assert (run_dir / "outputs" / "extra" / "file_003.txt").read_text() == "3"


@pytest.fixture
def client_env(monkeypatch: pytest.MonkeyPatch, emu: Emulator) -> None:
    for key, value in emu.client_env(user=USER, key="emulator-key-0123").items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("TUNIX_RT_RETRY_BASE_S", "0.01")


def test_urls_that_expire_with_403_are_fetched_again_in_process(emu: Emulator, client_env: None,
                                                               tmp_path: Path) -> None:
    emu.set_behaviour(url_expired_status=403)
    emu.seed_version(USER, "many-files", outputs={f"f{i}.txt": str(i).encode() for i in range(4)})
    state = pushed_state(tmp_path / "run", f"{USER}/many-files")
    emu.set_faults(url_ttl=0.5, latency=0.3, page_size_cap=2)
    summary = download_outputs(state, connect(), Reporter("pull"))
    assert summary.expired_urls >= 1 and sorted(summary.files) == [f"f{i}.txt" for i in range(4)]
    assert [r.status for r in emu.calls("blob")].count(403) == summary.expired_urls
    # each file was recorded (and the state written) as it arrived
    assert sorted(RunState.read(tmp_path / "run").kaggle.pulled_files) == [f"f{i}.txt" for i in range(4)]


def test_an_output_list_this_account_cannot_see_names_the_kernel(emu: Emulator, client_env: None,
                                                                tmp_path: Path) -> None:
    emu.seed_version("bob", "private-kern")
    state = pushed_state(tmp_path / "run", "bob/private-kern")
    with pytest.raises(TunixRtError) as info:
        download_outputs(state, connect(), Reporter("pull"))
    assert info.value.exit_code == EXIT_USAGE
    assert "HTTP 403 for bob/private-kern v1" in info.value.message and "credential" not in info.value.message
