import subprocess
import sys

from tunix_rt import __version__
from tunix_rt.cli import build_parser, main


def test_version_and_help(capsys):
    assert main([]) == 2
    out = subprocess.run([sys.executable, "-m", "tunix_rt", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and __version__ in out.stdout


def test_cli_start_imports_nothing_heavy():
    code = (
        "import sys; from tunix_rt.cli import build_parser; build_parser();"
        "heavy=[m for m in ('jax','tunix','kaggle','docker','flax','transformers','matplotlib') if m in sys.modules];"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_every_verb_has_a_module():
    import importlib

    parser = build_parser()
    verbs = parser._subparsers._group_actions[0].choices  # noqa: SLF001
    for verb in verbs:
        assert hasattr(importlib.import_module(f"tunix_rt.commands.{verb}"), "run"), verb


def test_a_bad_flag_is_one_line_and_json_still_ends_with_a_result(capsys):
    import json

    import pytest

    with pytest.raises(SystemExit) as exc:
        main(["wait", "--timeout", "nan", "--json"])
    assert exc.value.code == 2
    out, err = capsys.readouterr()
    assert err.splitlines() == ["tunix-rt wait: error: argument --timeout: 'nan' is not a finite number "
                                "(tunix-rt wait --help)"]  # no usage block above it
    result = json.loads(out)
    assert result["event"] == "result" and result["exit_code"] == 2 and result["command"] == "wait"
    assert "not a finite number" in result["error"] and "t" in result


def test_a_run_dir_refused_up_front_still_ends_json_with_one_result(capsys, tmp_path):
    import json

    assert main(["run", "--kernel-id", "alice/k", "--accelerator", "cpu", "--run-dir", "", "--json"]) == 2
    out, err = capsys.readouterr()
    lines = [json.loads(line) for line in out.splitlines()]
    assert [e["event"] for e in lines] == ["result"] and lines[0]["exit_code"] == 2
    assert "--run-dir ''" in lines[0]["error"] and err.count("\n") == 1
    # A verb that reports its own result is not followed by a second one.
    assert main(["wait", "--run-dir", str(tmp_path), "--json"]) == 2
    out, _ = capsys.readouterr()
    assert [json.loads(line)["event"] for line in out.splitlines()] == ["result"]
