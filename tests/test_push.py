"""``tunix-rt push`` / ``run`` against an emulator that answers like Kaggle (the real kaggle client in a
subprocess): the first push of a brand-new kernel (403 for kernels Kaggle does not show), the never-push-twice
guarantee when ``currentVersionNumber`` lags, the one kernel-id rule, the pre-flight checks (owner, quota,
model sources), credentials as the client finds them, and refusals that leave nothing behind."""

from __future__ import annotations

import json
from pathlib import Path

from kaggle_e2e_helpers import (
    FAKE_KEY,
    POLL,
    REF,
    SLUG,
    USER,
    cli_env,
    make_bundle,
    push_args,
    state,
    tunix_rt,
    versions,
)
from tunix_rt.emulator import AuthConfig, Emulator, KaggleBehaviour, QuotaConfig

GEMMA = "google/gemma-3/transformers/gemma-3-1b-it/1"


def saves_that_landed(emu: Emulator) -> list:
    """SaveKernel requests the emulator processed (not answered by an injected 429/5xx/drop first)."""
    return [r for r in emu.calls("SaveKernel") if r.fault in (None, "drop_after")]


def test_first_push_of_a_brand_new_kernel_under_429_and_5xx(emu: Emulator, good_bundle: Path, run_dir: Path,
                                                             tmp_path: Path) -> None:
    """Kaggle answers 403 on GetKernel of a kernel it does not show; for a kernel never pushed that means
    "does not exist yet": the run goes on, pushes once, and the evidence names version 1."""
    emu.set_faults(seed=11, rate_429=0.15, retry_after=1, rate_5xx=0.2)
    res = tunix_rt(cli_env(emu), "run", *push_args(run_dir, good_bundle), "--output", str(tmp_path / "zip"),
                   *POLL, timeout=300)
    assert res.code == 0, res.output
    assert versions(emu) == [1] and len(saves_that_landed(emu)) == 1
    first_look = next(r for r in emu.calls("GetKernel") if r.fault is None)
    assert first_look.status == 403 and not (first_look.body or {}).get("versionLabel")
    assert "check the credentials" not in res.stderr and "rejected the credentials" not in res.stderr
    manifest = json.loads((run_dir / "run_manifest.json").read_text())
    assert manifest["kaggle"]["version_number"] == 1 and manifest["kaggle"]["kernel_ref"] == REF
    assert state(run_dir)["kaggle"]["status"] == "COMPLETE"
    assert FAKE_KEY not in res.output


def test_dropped_push_with_a_lagging_current_version_number_pushes_once(tmp_path: Path, run_dir: Path) -> None:
    """currentVersionNumber advances only when a session ends; a push whose answer is lost is proven by asking
    for v<N+1> itself, for an existing kernel (v1 done, v2 pushed) and for a brand-new one."""
    emu = Emulator(tmp_path / "k", queue_seconds=5, behaviour=KaggleBehaviour(version_lags=True)).start()
    try:
        emu.seed_version(USER, SLUG)  # v1, finished: currentVersionNumber says 1 until v2's session ends
        bundle = make_bundle(tmp_path / "b", files={"output/x.txt": "x"}, sleep_s=30)
        env = cli_env(emu)
        emu.script_faults("SaveKernel", "drop_after", "drop_after")  # processed, then the socket closes
        res = tunix_rt(env, "push", *push_args(run_dir, bundle, "gpu-t4x2", "--json"))
        assert res.code == 0, res.output
        assert "not pushing again" in res.stderr or "not pushing again" in res.stdout
        assert versions(emu) == [1, 2] and len(emu.calls("SaveKernel")) == 1
        assert state(run_dir)["kaggle"]["version_number"] == 2
        labels = [(r.body or {}).get("versionLabel") for r in emu.calls("GetKernel")]
        assert "v2" in labels

        new_run = run_dir.parent / "new-kernel"
        res = tunix_rt(env, "push", *push_args(new_run, bundle, kernel_id=f"{USER}/brand-new-kernel"))
        assert res.code == 0, res.output
        assert versions(emu, USER, "brand-new-kernel") == [1] and len(emu.calls("SaveKernel")) == 2
        assert state(new_run)["kaggle"]["version_number"] == 1
    finally:
        emu.stop()


def test_a_non_canonical_slug_is_refused_before_any_call(emu: Emulator, good_bundle: Path, run_dir: Path) -> None:
    env = cli_env(emu)
    for verb in ("push", "run"):
        res = tunix_rt(env, verb, *push_args(run_dir, good_bundle, kernel_id=f"{USER}/My_Kernel"))
        assert res.code == 2, res.output
        line = res.stderr.strip()
        assert line.count("\n") == 0 and f"use {USER}/my-kernel" in line
    assert emu.requests == []
    assert not run_dir.exists()


def test_refused_runs_leave_no_bundle_or_run_state(emu: Emulator, run_dir: Path, repo_root: Path) -> None:
    """Missing credentials (exit 4) and a wrong owner (exit 2) are found before anything is written."""
    args = ["--accelerator", "cpu", "--config", str(repo_root / "training/configs/sft_tiny.yaml"),
            "--run-dir", str(run_dir), *POLL]
    res = tunix_rt(cli_env(emu, key=None), "run", "--kernel-id", REF, *args)
    assert res.code == 4 and "no Kaggle credentials found" in res.stderr
    assert emu.requests == [] and not run_dir.exists()
    res = tunix_rt(cli_env(emu), "run", "--kernel-id", f"bob/{SLUG}", *args)
    assert res.code == 2 and f"use {USER}/{SLUG}" in res.stderr, res.output
    assert emu.calls("SaveKernel") == [] and not run_dir.exists()


def test_quota_too_small_is_refused_and_ignore_quota_goes_on(tmp_path: Path, run_dir: Path) -> None:
    emu = Emulator(tmp_path / "k", queue_seconds=0.3, quota=QuotaConfig(gpu_used_h=28, gpu_allowed_h=30)).start()
    try:
        bundle = make_bundle(tmp_path / "b", files={"output/x.txt": "x"})
        env = cli_env(emu)
        res = tunix_rt(env, "push", *push_args(run_dir, bundle))  # default session: Kaggle's 9 h
        assert res.code == 2, res.output
        line = res.stderr.strip()
        assert line.count("\n") == 0
        assert "28.0 h used of 30.0 h" in line and "2.0 h left" in line and "refreshes" in line
        assert "--session-timeout 7140" in line and "--ignore-quota" in line
        assert emu.calls("SaveKernel") == [] and not run_dir.exists()

        res = tunix_rt(env, "push", *push_args(run_dir, bundle, "gpu-t4x2", "--ignore-quota"))
        assert res.code == 0, res.output
        assert "going on (--ignore-quota)" in res.stderr
        assert versions(emu) == [1]
        quota_calls = emu.calls("GetAcceleratorQuotaStatistics")
        assert len(quota_calls) == 2  # one per command: the credential check's answer is reused
    finally:
        emu.stop()


def test_quota_endpoint_missing_warns_once_and_the_run_completes(tmp_path: Path, good_bundle: Path,
                                                                 run_dir: Path) -> None:
    emu = Emulator(tmp_path / "k", queue_seconds=0.3, serve_quota=False).start()
    try:
        res = tunix_rt(cli_env(emu), "run", *push_args(run_dir, good_bundle), "--output", str(tmp_path / "z"),
                       *POLL)
    finally:
        emu.stop()
    assert res.code == 0, res.output
    warnings = [ln for ln in res.stderr.splitlines() if ln.startswith("warning:") and "quota" in ln]
    assert len(warnings) == 1 and "going on" in warnings[0], res.stderr
    assert state(run_dir)["kaggle"]["status"] == "COMPLETE"


def test_unreadable_model_source_is_refused_with_the_licence_hint(tmp_path: Path, run_dir: Path) -> None:
    emu = Emulator(tmp_path / "k", queue_seconds=0.3, gated_models=["google/gemma-3"]).start()
    try:
        bundle = make_bundle(tmp_path / "b", files={"output/x.txt": "x"}, model_sources=[GEMMA])
        res = tunix_rt(cli_env(emu), "push", *push_args(run_dir, bundle, "tpu-v5e-8"))
    finally:
        emu.stop()
    assert res.code == 2, res.output
    assert GEMMA in res.stderr and "licence" in res.stderr and "kaggle.com/models/google/gemma-3" in res.stderr
    assert emu.calls("SaveKernel") == [] and not run_dir.exists()


def test_an_existing_kernel_keeps_its_title(emu: Emulator, tmp_path: Path, run_dir: Path) -> None:
    emu.seed_version(USER, SLUG, title="Tiny Kernel")
    bundle = make_bundle(tmp_path / "b", files={"output/x.txt": "x"})
    res = tunix_rt(cli_env(emu), "push", *push_args(run_dir, bundle, "cpu"))
    assert res.code == 0, res.output
    (save,) = emu.calls("SaveKernel")
    assert save.body["newTitle"] == "Tiny Kernel" and save.body["slug"] == REF
    fresh = run_dir.parent / "fresh"
    res = tunix_rt(cli_env(emu), "push", *push_args(fresh, bundle, "cpu", kernel_id=f"{USER}/fresh-kernel"))
    assert res.code == 0 and emu.calls("SaveKernel")[-1].body["newTitle"] == "fresh-kernel"


def test_an_expired_token_falls_back_to_the_legacy_key_like_the_client(tmp_path: Path, run_dir: Path) -> None:
    emu = Emulator(tmp_path / "k", queue_seconds=0.3, auth=AuthConfig(tokens={"KGAT_live0123456789": USER})).start()
    try:
        bundle = make_bundle(tmp_path / "b", files={"output/x.txt": "x"})
        env = cli_env(emu, KAGGLE_API_TOKEN="KGAT_expired0123456789")
        res = tunix_rt(env, "push", *push_args(run_dir, bundle, "cpu"))
        assert res.code == 0, res.output
        assert "did not accept the API token from KAGGLE_API_TOKEN" in res.stderr
        assert "using KAGGLE_USERNAME/KAGGLE_KEY" in res.stderr
        assert emu.calls("IntrospectToken") and emu.calls("SaveKernel")[0].user == USER
        assert "KGAT_expired0123456789" not in res.output
        # Without a legacy key to fall back to, the token's rejection is exit 4, naming it.
        env = cli_env(emu, key=None, KAGGLE_API_TOKEN="KGAT_expired0123456789")
        res = tunix_rt(env, "push", *push_args(run_dir.parent / "other", bundle, "cpu"))
        assert res.code == 4 and "KAGGLE_API_TOKEN" in res.stderr and "expired or revoked" in res.stderr
    finally:
        emu.stop()
