"""The bundle: deterministic bytes, a complete payload, Kaggle metadata per accelerator, the size limit,
run-state records, and no credentials inside. No JAX needed."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import tarfile
from pathlib import Path

import pytest
from tunix_rt import paths
from tunix_rt.bundle import (
    MAX_NOTEBOOK_BYTES,
    build_bundle,
    default_kernel_id,
    extract_payload,
    load_bundle,
)
from tunix_rt.cli import main
from tunix_rt.errors import EXIT_USAGE, TunixRtError
from tunix_rt.fsutil import sha256_file


def _members(notebook: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(extract_payload(notebook)), mode="r:gz") as tar:
        return {m.name: m for m in tar.getmembers()}


def _payload_text(notebook: Path) -> str:
    """Every byte the payload unpacks to, as text (for substring checks)."""
    parts = []
    with tarfile.open(fileobj=io.BytesIO(extract_payload(notebook)), mode="r:gz") as tar:
        for member in tar.getmembers():
            parts.append(tar.extractfile(member).read().decode("utf-8", errors="replace"))
    return "\n".join(parts)


def test_same_inputs_give_identical_bytes(tmp_path: Path) -> None:
    first = build_bundle(tmp_path / "a" / "m33_rehearsal", mode="smoke")
    second = build_bundle(tmp_path / "b" / "m33_rehearsal", mode="smoke")
    assert first.notebook_path.read_bytes() == second.notebook_path.read_bytes()
    assert first.metadata_path.read_bytes() == second.metadata_path.read_bytes()
    assert first.sha256 == second.sha256 == sha256_file(first.notebook_path)
    # another mode is another notebook (the parameters are baked in)
    full = build_bundle(tmp_path / "c" / "m33_rehearsal", mode="full")
    assert full.sha256 != first.sha256 and full.payload_sha256 == first.payload_sha256


def test_payload_unpacks_to_the_training_files(tmp_path: Path) -> None:
    info = build_bundle(tmp_path / "run1", mode="smoke")
    members = _members(info.notebook_path)
    for name in ("training/train_jax.py", "training/run.py", "training/rescore.py", "training/build_dataset.py",
                 "training/bootstrap.py", "training/contract.py",
                 "training/config.py", "training/configs/sft_tiny.yaml", "training/tokenizer/tokenizer.json",
                 "training/datasets/dev-reasoning-v2/dataset.jsonl",
                 "training/datasets/dev-reasoning-v2/manifest.json", "training/evalsets/eval_v1.jsonl",
                 "kernel/requirements.txt"):
        assert name in members, name
    assert list(members) == sorted(members)
    assert not [n for n in members if "__pycache__" in n or n.endswith(".pyc")]
    for member in members.values():
        assert (member.mtime, member.uid, member.gid, member.mode, member.uname) == (0, 0, 0, 0o644, "")
        assert member.isfile()
    # the shipped bytes are the checkout's bytes
    for name in ("training/configs/sft_tiny.yaml", "kernel/requirements.txt"):
        with tarfile.open(fileobj=io.BytesIO(extract_payload(info.notebook_path)), mode="r:gz") as tar:
            assert tar.extractfile(name).read() == (paths.project_root() / name).read_bytes()
    assert info.payload_files == tuple(members)


def test_parameters_are_baked_into_the_parameters_cell(tmp_path: Path) -> None:
    info = build_bundle(tmp_path / "m33_v9", mode="full", dataset="dev-reasoning-v2")
    nb = json.loads(info.notebook_path.read_text(encoding="utf-8"))
    assert nb["nbformat"] == 4 and nb["metadata"]["kernelspec"]["name"] == "python3"
    (cell,) = [c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", [])]
    namespace: dict[str, object] = {}
    exec("".join(cell["source"]), namespace)  # noqa: S102 - our own generated assignments
    assert {k: namespace[k] for k in ("mode", "config", "dataset", "eval_set", "run_version",
                                      "session_timeout_s")} == {
        "mode": "full", "config": "configs/sft_tiny.yaml", "dataset": "dev-reasoning-v2",
        "eval_set": "evalsets/eval_v1.jsonl", "run_version": "m33_v9", "session_timeout_s": None}
    assert all(c.get("outputs", []) == [] for c in nb["cells"])
    loaded = load_bundle(info.bundle_dir)
    assert (loaded.sha256, loaded.mode, loaded.dataset, loaded.run_version, loaded.kernel_id) == (
        info.sha256, "full", "dev-reasoning-v2", "m33_v9", info.kernel_id)


@pytest.mark.parametrize(
    ("accelerator", "expected", "absent"),
    [
        ("cpu", {"enable_gpu": False, "enable_tpu": False, "docker_image_pinning_type": "original"},
         ["machine_shape"]),
        ("gpu-t4x2", {"enable_gpu": True, "enable_tpu": False, "machine_shape": "NvidiaTeslaT4",
                      "docker_image_pinning_type": "original"}, []),
        ("tpu-v5e-8", {"enable_gpu": False, "enable_tpu": True, "machine_shape": "TpuV5E8"},
         ["docker_image_pinning_type", "docker_image"]),
    ],
)
def test_metadata_per_accelerator(tmp_path: Path, accelerator: str, expected: dict, absent: list) -> None:
    info = build_bundle(tmp_path / "m33_v1", accelerator=accelerator, kernel_id="alice/tunix-rt-m33-v1")
    meta = json.loads(info.metadata_path.read_text(encoding="utf-8"))
    assert {k: meta[k] for k in expected} == expected
    assert not set(absent) & meta.keys()
    assert meta["id"] == "alice/tunix-rt-m33-v1" and meta["title"] == "tunix-rt-m33-v1"
    assert (meta["code_file"], meta["language"], meta["kernel_type"]) == (
        "kaggle_submission.ipynb", "python", "notebook")
    assert meta["is_private"] is True and meta["enable_internet"] is True
    assert meta["model_sources"] == []  # sft_tiny trains a random-init model: no weights to mount


def test_submission_config_mounts_its_model(tmp_path: Path) -> None:
    info = build_bundle(tmp_path / "m33_v1", config="training/configs/submission_gemma3_1b.yaml",
                        accelerator="tpu-v5e-8", kernel_id="alice/tunix-rt-m33-v1")
    meta = json.loads(info.metadata_path.read_text(encoding="utf-8"))
    assert meta["model_sources"] == ["google/gemma-3/transformers/gemma-3-1b-it/1"]
    assert info.dataset == "dev-reasoning-v2"


def test_title_agrees_with_the_slug_as_kaggle_checks_it(tmp_path: Path) -> None:
    from slugify import slugify

    info = build_bundle(tmp_path / "m33_rehearsal")
    meta = json.loads(info.metadata_path.read_text(encoding="utf-8"))
    assert meta["id"] == default_kernel_id("m33_rehearsal") == "local/tunix-rt-m33-rehearsal"
    assert slugify(meta["title"]) == meta["id"].split("/")[1] and len(meta["title"]) >= 5


def test_run_state_records_the_bundle(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "m33_rehearsal"
    assert main(["bundle", "--mode", "smoke", "--accelerator", "cpu", "--run-dir", str(run_dir)]) == 0
    info = load_bundle(run_dir / "bundle")
    state = json.loads((run_dir / "run_state.json").read_text(encoding="utf-8"))
    bundle = state["bundle"]
    assert bundle["sha256"] == sha256_file(run_dir / "bundle" / "kaggle_submission.ipynb") == info.sha256
    assert bundle["metadata_sha256"] == sha256_file(run_dir / "bundle" / "kernel-metadata.json")
    assert bundle["size_bytes"] == (run_dir / "bundle" / "kaggle_submission.ipynb").stat().st_size
    assert (bundle["config_path"], bundle["dataset"], bundle["eval_set"], bundle["mode"]) == (
        "training/configs/sft_tiny.yaml", "dev-reasoning-v2-x10", "training/evalsets/eval_v1.jsonl", "smoke")
    assert state["run_version"] == "m33_rehearsal" and state["stages"]["bundle"]["status"] == "done"


def test_cli_bundle_prints_the_sha(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "m33_rehearsal"
    assert main(["bundle", "--run-dir", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert sha256_file(run_dir / "bundle" / "kaggle_submission.ipynb") in out


def test_size_limit_refuses_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(TunixRtError) as err:
        build_bundle(tmp_path / "small", max_bytes=50_000)
    assert err.value.exit_code == EXIT_USAGE and "50,000-byte limit" in err.value.message
    assert not (tmp_path / "small" / "bundle").exists()
    # through the CLI, with a real oversized input: a valid eval set of 12 MB of incompressible prompts
    big = tmp_path / "huge_eval.jsonl"
    items = [{"id": f"big-{i}", "prompt": base64.b64encode(os.urandom(96 * 1024)).decode(), "expected_answer": "1",
              "category": "arithmetic", "difficulty": "easy"} for i in range(96)]
    big.write_text("".join(json.dumps(item) + "\n" for item in items), encoding="utf-8")
    assert main(["bundle", "--run-dir", str(tmp_path / "big"), "--eval-set", str(big)]) == EXIT_USAGE
    err_text = capsys.readouterr().err
    assert f"{MAX_NOTEBOOK_BYTES:,}-byte limit" in err_text and len(err_text.strip().splitlines()) == 1
    assert not (tmp_path / "big" / "bundle").exists()


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--dataset", "no-such-dataset"], "unknown dataset"),
        (["--config", "no/such/config.yaml"], "no such file"),
        (["--kernel-id", "Alice/Bad Slug"], "--kernel-id"),
        (["--kernel-id", "alice/abc"], "at least 5"),
        (["--accelerator", "gpu-v100"], "unknown accelerator"),
    ],
)
def test_bad_inputs_are_one_line_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              argv: list[str], needle: str) -> None:
    assert main(["bundle", "--run-dir", str(tmp_path / "r"), *argv]) == EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1
    assert not (tmp_path / "r" / "bundle").exists()


def test_bad_config_key_is_refused_before_anything_is_built(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text((paths.training_dir() / "configs" / "sft_tiny.yaml").read_text(encoding="utf-8")
                      + "\nextra_key: 1\n", encoding="utf-8")
    assert main(["bundle", "--run-dir", str(tmp_path / "r"), "--config", str(config)]) == EXIT_USAGE
    assert "extra_key" in capsys.readouterr().err


def test_external_config_is_shipped_next_to_the_stock_ones(tmp_path: Path) -> None:
    config = tmp_path / "my_tiny.yaml"
    shutil.copyfile(paths.training_dir() / "configs" / "sft_tiny.yaml", config)
    info = build_bundle(tmp_path / "r", config=config)
    assert info.config == "configs/my_tiny.yaml"
    assert "training/configs/my_tiny.yaml" in _members(info.notebook_path)


def test_no_credentials_in_the_bundle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = "0123456789abcdef0123456789abcdef"
    token = "KGAT_sentinel0123456789"
    monkeypatch.setenv("KAGGLE_USERNAME", "sentinel-user-x")
    monkeypatch.setenv("KAGGLE_KEY", key)
    monkeypatch.setenv("KAGGLE_API_TOKEN", token)
    config_dir = Path(os.environ["KAGGLE_CONFIG_DIR"])
    (config_dir / "kaggle.json").write_text(json.dumps({"username": "sentinel-user-x", "key": key}))
    # a copy of training/ with credential files dropped into it: they must not be embedded
    training = tmp_path / "training"
    shutil.copytree(paths.training_dir(), training, ignore=shutil.ignore_patterns("__pycache__"))
    (training / "kaggle.json").write_text(json.dumps({"username": "sentinel-user-x", "key": key}))
    (training / "configs" / ".env").write_text(f"KAGGLE_KEY={key}\n")
    (training / "access_token").write_text(token)
    monkeypatch.setattr(paths, "training_dir", lambda: training)

    assert main(["bundle", "--mode", "smoke", "--run-dir", str(tmp_path / "m33_rehearsal")]) == 0
    info = load_bundle(tmp_path / "m33_rehearsal" / "bundle")
    blobs = [info.notebook_path.read_text(encoding="utf-8"), info.metadata_path.read_text(encoding="utf-8"),
             _payload_text(info.notebook_path), (tmp_path / "m33_rehearsal" / "run_state.json").read_text()]
    for blob in blobs:
        for secret in (key, token, "sentinel-user-x"):
            assert secret not in blob
    names = _members(info.notebook_path)
    assert not [n for n in names if n.endswith(("kaggle.json", ".env", "access_token"))]


def test_session_timeout_is_baked_and_checked(tmp_path: Path) -> None:
    info = build_bundle(tmp_path / "chain_s1", mode="full", session_timeout_s=7200)
    nb = json.loads(info.notebook_path.read_text(encoding="utf-8"))
    (cell,) = [c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", [])]
    namespace: dict[str, object] = {}
    exec("".join(cell["source"]), namespace)  # noqa: S102 - our own generated assignments
    assert namespace["session_timeout_s"] == 7200
    assert load_bundle(info.bundle_dir).session_timeout_s == info.session_timeout_s == 7200
    for bad in (0, -5, 1.5, True):
        with pytest.raises(TunixRtError, match="session timeout"):
            build_bundle(tmp_path / "bad", mode="full", session_timeout_s=bad)


def test_cli_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cli_json import json_lines

    run_dir = tmp_path / "m33_rehearsal"
    assert main(["bundle", "--run-dir", str(run_dir), "--json"]) == 0
    objects = json_lines(capsys.readouterr().out, "bundle", 0)
    result = objects[-1]
    assert [o["event"] for o in objects] == ["bundle", "result"]
    assert result["sha256"] == sha256_file(run_dir / "bundle" / "kaggle_submission.ipynb")
    assert (result["kernel_id"], result["mode"], result["config"]) == (
        "local/tunix-rt-m33-rehearsal", "smoke", "training/configs/sft_tiny.yaml")
    assert main(["bundle", "--run-dir", str(tmp_path / "bad"), "--mode", "smoke", "--config", "nope.yaml",
                 "--json"]) == EXIT_USAGE
    (result,) = json_lines(capsys.readouterr().out, "bundle", EXIT_USAGE)
    assert "nope.yaml" in result["error"]
    assert not (tmp_path / "bad").exists()


def test_a_pushed_run_keeps_its_bundle(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tunix_rt.runstate import KaggleRecord, RunState

    run_dir = tmp_path / "m33_v1"
    assert main(["bundle", "--run-dir", str(run_dir)]) == 0
    before = sha256_file(run_dir / "bundle" / "kaggle_submission.ipynb")
    state = RunState.read(run_dir)
    state.kaggle = KaggleRecord(kernel_ref="alice/tunix-rt-m33-v1", version_number=1)
    state.write()
    capsys.readouterr()
    assert main(["bundle", "--run-dir", str(run_dir), "--mode", "full"]) == EXIT_USAGE
    assert "this run pushed alice/tunix-rt-m33-v1 v1" in capsys.readouterr().err
    assert sha256_file(run_dir / "bundle" / "kaggle_submission.ipynb") == before
