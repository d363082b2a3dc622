"""Portable text: the machine's folders become the Kaggle layout, relative paths, <venv> or ~; what is left is
named by find()."""

from __future__ import annotations

import sys

import pytest
from tunix_rt.hostpaths import HostPaths, Rule, for_evidence, for_validation, machine_rules
from tunix_rt.redact import REDACTED, Redactor

WORK = "/data/run-17/m33/outputs"


def test_folders_become_their_portable_names() -> None:
    paths = HostPaths([Rule(WORK, "/kaggle/working", "w"), Rule("/data/run-17/m33", "", "run"),
                       Rule("/data/run-17", "", "checkout")])
    assert paths.scrub(f"cd {WORK}/output; cat {WORK}") == "cd /kaggle/working/output; cat /kaggle/working"
    assert paths.scrub("see /data/run-17/m33/raw_log/console.log") == "see raw_log/console.log"
    assert paths.scrub("in /data/run-17/m33 now") == "in . now"  # the folder itself is "."
    assert paths.scrub("/data/run-17/training/run.py") == "training/run.py"
    assert paths.scrub("/data/run-170/x and /data/run-17x") == "/data/run-170/x and /data/run-17x"  # whole names


def test_the_kernel_payload_root_becomes_relative() -> None:
    text = 'File "/tmp/tunix_rt_payload_e_z4949n/training/run.py", line 3'
    assert HostPaths().scrub(text) == 'File "training/run.py", line 3'
    assert HostPaths().scrub('prefix="tunix_rt_payload_"') == 'prefix="tunix_rt_payload_"'  # the source itself


def test_machine_rules(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "alice"))
    scrub = for_evidence(run_dir=tmp_path / "repo" / "runs" / "m33", root=tmp_path / "repo").scrub
    assert scrub(f"{tmp_path}/alice/.cache/x") == "~/.cache/x"
    assert scrub(f"{tmp_path}/repo/runs/m33/bundle") == "bundle"
    assert scrub(f"{tmp_path}/repo/training") == "training"
    if sys.prefix != sys.base_prefix:
        assert scrub(f"{sys.prefix}/lib/site.py") == "<venv>/lib/site.py"
    monkeypatch.setenv("HOME", "/root")  # Kaggle's home too: left alone
    assert all(r.folder != "/root" for r in machine_rules())


def test_find_names_what_is_left(tmp_path) -> None:
    found = for_validation(tmp_path / "repo").find(f"{tmp_path}/repo/x and /tmp/tunix-rt-kaggle-abcd1234/kaggle")
    assert found == ["the checkout", "a tunix-rt temporary folder"]
    assert for_validation(tmp_path / "repo").find("/kaggle/working/output and training/run.py") == []


def test_a_redactor_with_paths_does_both_in_one_pass() -> None:
    redactor = Redactor(["s3cr3t-value-1"], paths=HostPaths([Rule(WORK, "/kaggle/working", "w")]))
    assert redactor.redact(f"{WORK}/x s3cr3t-value-1") == f"/kaggle/working/x {REDACTED}"
