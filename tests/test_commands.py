"""training/'s small command-line tools: rescore, build_dataset's messages, and the entry scripts' one
bootstrap (each script runs from any folder, and from a copy of training/ outside the checkout)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tunix_rt import paths
from tunix_rt.training import commands
from tunix_rt.training.evalset import DEFAULT_EVAL_SET, eval_set_sha256, load_eval_set
from tunix_rt.training.scoring import build_prediction

SCRIPTS = paths.training_dir()
ENTRY_SCRIPTS = ("train_jax.py", "build_dataset.py", "build_evalset.py", "build_tokenizer.py", "rescore.py")


def _write_predictions(path: Path, items: list[dict], n_right: int) -> None:
    lines = []
    for k, item in enumerate(items):
        answer = item["expected_answer"] if k < n_right else "wrong"
        lines.append(json.dumps(build_prediction(item, f"<reasoning>x</reasoning><answer>{answer}</answer>"),
                                ensure_ascii=False))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_rescore_writes_eval_results(tmp_path: Path) -> None:
    items = load_eval_set(DEFAULT_EVAL_SET)
    preds = tmp_path / "predictions.jsonl"
    _write_predictions(preds, items, n_right=5)
    out = tmp_path / "out" / "eval_results.json"
    proc = subprocess.run([sys.executable, str(SCRIPTS / "rescore.py"), "--predictions", str(preds),
                           "--eval_set", str(DEFAULT_EVAL_SET), "--output", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(out.read_text(encoding="utf-8"))
    assert res["n_items"] == len(items) and res["n_correct"] == 5 and res["n_well_formed"] == len(items)
    assert res["answer_correctness"] == pytest.approx(5 / len(items))
    assert res["eval_set"] == "eval_v1.jsonl" and res["eval_set_sha256"] == eval_set_sha256(DEFAULT_EVAL_SET)
    assert set(res) == {"answer_correctness", "format_compliance", "n_items", "n_correct", "n_well_formed",
                        "by_category", "eval_set", "eval_set_sha256"}


@pytest.mark.parametrize("problem", ["missing_predictions", "bad_line", "deep_line", "missing_eval"])
def test_rescore_bad_input_is_one_line_exit_2(tmp_path: Path, problem: str) -> None:
    preds = tmp_path / "predictions.jsonl"
    eval_set = DEFAULT_EVAL_SET
    if problem == "bad_line":
        preds.write_text('{"id": "eval-001", "raw_output": "x"}\n{not json\n', encoding="utf-8")
    elif problem == "deep_line":  # nested deeper than the parser goes
        preds.write_text("[" * 100000 + "]" * 100000 + "\n", encoding="utf-8")
    elif problem == "missing_eval":
        preds.write_text("", encoding="utf-8")
        eval_set = tmp_path / "nope.jsonl"
    out = tmp_path / "eval_results.json"
    code = commands.rescore(["--predictions", str(preds), "--eval_set", str(eval_set), "--output", str(out)])
    assert code == 2 and not out.exists()


def test_rescore_error_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    preds = tmp_path / "p.jsonl"
    preds.write_text("[1, 2]\n", encoding="utf-8")
    code = commands.rescore(["--predictions", str(preds), "--eval_set", str(DEFAULT_EVAL_SET),
                           "--output", str(tmp_path / "o.json")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "p.jsonl line 1" in err


def test_entry_scripts_are_thin_and_library_modules_never_scripts() -> None:
    for path in sorted(SCRIPTS.glob("*.py")):
        text = path.read_text(encoding="utf-8")
        if path.name in ENTRY_SCRIPTS:
            assert "from bootstrap import run" in text and "sys.path" not in text, path.name
            assert len(text.splitlines()) <= 20, f"{path.name} is not a thin entry script"
        else:
            assert '__name__ == "__main__"' not in text, f"{path.name} is a library module and a script"


def test_check_from_a_copy_of_training_shows_relative_paths(tmp_path: Path) -> None:
    """The kernel runs the scripts from its unpacked payload: the copy works on its own, and the messages
    name paths relative to the current folder (no machine paths in the kernel's log)."""
    copy = tmp_path / "payload"
    shutil.copytree(SCRIPTS, copy / "training", ignore=shutil.ignore_patterns("__pycache__"))
    proc = subprocess.run([sys.executable, "training/build_dataset.py", "--check", "--dataset", "dev-reasoning-v2"],
                          cwd=copy, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ("build_dataset: training/datasets/dev-reasoning-v2 matches a fresh build of "
                           "dev-reasoning-v2\n")
    help_text = subprocess.run([sys.executable, str(copy / "training" / "rescore.py"), "--help"],
                               cwd=tmp_path, capture_output=True, text=True)
    assert help_text.returncode == 0 and "usage: rescore.py" in help_text.stdout
