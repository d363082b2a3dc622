"""Hostile and careless input, end to end through the CLI where it can be (issue 14): every case a test.

The secrets tests search every file produced (run directory, zips, outputs), and stdout/stderr, for the
credential in its raw, base64 (each byte alignment, both alphabets) and URL-encoded forms. Pull cases drive the
real kaggle client against the emulator (kaggle_e2e_helpers).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
from kaggle_e2e_helpers import (
    POLL,
    REF,
    SLUG,
    USER,
    cli_env,
    make_bundle,
    push_args,
    repo_run_dir,
    state,
    training_outputs,
    tunix_rt,
    tunix_rt_popen,
    versions,
)
from run_fixtures import edit_json, with_evidence_and_report, write_eval_set, write_finished_run
from tunix_rt.bundle import build_bundle
from tunix_rt.cli import main
from tunix_rt.emulator import Emulator
from tunix_rt.emulator.auth import AuthConfig
from tunix_rt.errors import EXIT_API, EXIT_AUTH, EXIT_INTERNAL, EXIT_USAGE
from tunix_rt.evidence import LOG_FILE, MANIFEST_FILE, SUMMARY_FILE, fill_evidence
from tunix_rt.layout import TRACEBACK_FILE
from tunix_rt.package import tpu_claim_gaps
from tunix_rt.rundir_lock import LOCK_NAME

# ---- data side (items 1, 5, 6, 7, 8)

# A legacy key with characters that URL-encoding changes, so its encoded form differs from the raw one.
SECRET_KEY = "f4k3+k3y/do=not&leak_0123456789abcdef"
SECRET_TOKEN = "KGAT_h0st1le0t0ken0do0not0leak0abcdef12"
OTHER_TOKEN = "KGAT_unused0access0token0txt0abcdef3456"


def secret_forms(secret: str) -> set[str]:
    """``secret`` raw, URL-encoded, and the part of its base64 that depends on it alone, at each of the three
    byte alignments, in both alphabets."""
    raw = secret.encode()
    forms = {secret, quote(secret, safe=""), quote_plus(secret, safe="")}
    for k in range(3):
        for enc in (base64.b64encode, base64.urlsafe_b64encode):
            text = enc(b"\0" * k + raw).decode()
            forms.add(text[-(-8 * k // 6): 8 * (k + len(raw)) // 6])
    return forms


def leaks(secrets: Iterable[str], texts: Iterable[str] = (), roots: Iterable[Path] = ()) -> list[str]:
    """Where any form of any secret appears: in ``texts``, in any file under ``roots``, inside any zip."""
    needles = {form.encode() for s in secrets for form in secret_forms(s)}
    found = [f"text #{i}" for i, t in enumerate(texts) if any(n in t.encode("utf-8", "surrogatepass")
                                                              for n in needles)]
    for root in roots:
        for path in Path(root).rglob("*"):
            if not path.is_file() or path.is_symlink():
                continue
            data = path.read_bytes()
            found += [str(path) for n in needles if n in data][:1]
            if path.suffix == ".zip":
                with zipfile.ZipFile(path) as zf:
                    found += [f"{path}:{name}" for name in zf.namelist()
                              if any(n in zf.read(name) for n in needles)]
    return found


def printing_bundle(folder: Path, files: dict[str, str], *secrets: str) -> Path:
    """make_bundle's tiny kernel, which also prints each secret raw, base64 (after a 1-byte prefix, so the
    alignment is not 0) and URL-encoded. The secrets are joined at run time: the notebook never holds one."""
    bundle = make_bundle(folder, files=files)
    nb_path = bundle / "kaggle_submission.ipynb"
    nb = json.loads(nb_path.read_text())
    code = "import base64, urllib.parse\n"
    for s in secrets:
        half = len(s) // 2
        code += (f"s = {s[:half]!r} + {s[half:]!r}\n"
                 "print('raw', s)\n"
                 "print('b64', base64.b64encode(b'x' + s.encode()).decode())\n"
                 "print('url', urllib.parse.quote(s, safe=''))\n")
    nb["cells"][-1]["source"] += code
    nb_path.write_text(json.dumps(nb))
    assert not any(s in nb_path.read_text() for s in secrets)
    return bundle


def one_line_error(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# ------------------------------------------------------------------------------------- item 1: secrets


def test_key_in_xdg_kaggle_json_printed_by_the_kernel_is_in_no_file_zip_or_output(
        emu: Emulator, run_dir: Path, tmp_path: Path) -> None:
    """Credentials only in $XDG_CONFIG_HOME/kaggle/kaggle.json (no ~/.kaggle, no variables); the kernel prints
    the key in three forms; `run` goes to the zip and nothing anywhere holds the key."""
    home = tmp_path / "home"
    xdg = tmp_path / "xdg"
    (xdg / "kaggle").mkdir(parents=True)
    home.mkdir()
    (xdg / "kaggle" / "kaggle.json").write_text(json.dumps({"username": USER, "key": SECRET_KEY}))
    env = cli_env(emu, key=None, HOME=str(home), XDG_CONFIG_HOME=str(xdg))
    env.pop("KAGGLE_CONFIG_DIR")
    bundle = printing_bundle(tmp_path / "b", training_outputs(run_dir.name, tmp_path), SECRET_KEY)
    out = tmp_path / "submission"
    res = tunix_rt(env, "run", *push_args(run_dir, bundle), "--output", str(out), *POLL, timeout=180)
    assert res.code == 0, res.output
    assert "[REDACTED]" in (run_dir / LOG_FILE).read_text()
    assert len(list(out.glob("*.zip"))) == 1
    assert tunix_rt(env, "validate", str(run_dir)).code == 0
    assert leaks([SECRET_KEY], [res.stdout, res.stderr], [run_dir, out]) == []


def test_token_file_and_unused_access_token_txt_are_redacted_in_pull(
        tmp_path: Path, run_dir: Path) -> None:
    """KAGGLE_API_TOKEN names a file holding the token (the client reads it); ~/.kaggle/access_token.txt holds
    another one the client does not use. The kernel prints both; pull leaves neither anywhere."""
    emu = Emulator(tmp_path / "kaggle", queue_seconds=0.3, auth=AuthConfig(tokens={SECRET_TOKEN: USER})).start()
    try:
        token_file = tmp_path / "token.txt"
        token_file.write_text(SECRET_TOKEN + "\n")
        home = tmp_path / "home"
        (home / ".kaggle").mkdir(parents=True)
        (home / ".kaggle" / "access_token.txt").write_text(OTHER_TOKEN)
        env = cli_env(emu, key=None, HOME=str(home), KAGGLE_API_TOKEN=str(token_file))
        bundle = printing_bundle(tmp_path / "b", {"output/a.txt": "a"}, SECRET_TOKEN, OTHER_TOKEN)
        outputs = [tunix_rt(env, "push", *push_args(run_dir, bundle)),
                   tunix_rt(env, "wait", "--run-dir", str(run_dir), *POLL),
                   tunix_rt(env, "pull", "--run-dir", str(run_dir), "--json")]
        assert [r.code for r in outputs][:2] == [0, 0], outputs[0].output + outputs[1].output
        assert outputs[2].code in (0, 1), outputs[2].output  # 1: the tiny outputs are not a training run
        assert (run_dir / LOG_FILE).read_text().count("[REDACTED]") >= 6
        texts = [t for r in outputs for t in (r.stdout, r.stderr)]
        assert leaks([SECRET_TOKEN, OTHER_TOKEN], texts, [run_dir]) == []
    finally:
        emu.stop()


SOURCES = ["KAGGLE_KEY", "KAGGLE_API_TOKEN", "KAGGLE_API_TOKEN file", "access_token", "access_token.txt",
           "KAGGLE_CONFIG_DIR/kaggle.json", "~/.kaggle/kaggle.json", "$XDG_CONFIG_HOME/kaggle/kaggle.json",
           "~/.config/kaggle/kaggle.json"]


def _plant(source: str, secret: str, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Put ``secret`` where ``source`` says, and nowhere else (HOME is a fresh folder)."""
    home.mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("KAGGLE_CONFIG_DIR", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "xdg"))
    legacy = json.dumps({"username": USER, "key": secret})
    if source == "KAGGLE_KEY":
        monkeypatch.setenv("KAGGLE_KEY", secret)
    elif source == "KAGGLE_API_TOKEN":
        monkeypatch.setenv("KAGGLE_API_TOKEN", secret)
    elif source == "KAGGLE_API_TOKEN file":
        (home / "tok").write_text(secret)
        monkeypatch.setenv("KAGGLE_API_TOKEN", str(home / "tok"))
    elif source.startswith("access_token"):
        (home / ".kaggle").mkdir()
        (home / ".kaggle" / source).write_text(secret + "\n")
    else:
        folder = {"KAGGLE_CONFIG_DIR/kaggle.json": home / "cfg", "~/.kaggle/kaggle.json": home / ".kaggle",
                  "$XDG_CONFIG_HOME/kaggle/kaggle.json": home / "xdg" / "kaggle",
                  "~/.config/kaggle/kaggle.json": home / ".config" / "kaggle"}[source]
        folder.mkdir(parents=True)
        (folder / "kaggle.json").write_text(legacy)
        if source.startswith("KAGGLE_CONFIG_DIR"):
            monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(folder))


@pytest.mark.parametrize("source", SOURCES)
def test_every_credential_source_is_redacted_and_refused(source: str, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """Whatever source holds the secret: evidence filling redacts it (all three forms); evidence holding it
    (a log edited by hand) fails `validate` and `package` (exit 2) without printing it; no zip is written."""
    secret = SECRET_TOKEN if "token" in source.lower() else SECRET_KEY
    _plant(source, secret, tmp_path / "home", monkeypatch)
    printed = (f"raw {secret}\nb64 {base64.b64encode(b'x' + secret.encode()).decode()}\n"
               f"url {quote(secret, safe='')}\n")
    run = write_finished_run(tmp_path / "runs" / "m33_v1", raw_log=printed)
    fill_evidence(run, root=tmp_path)
    assert (run / LOG_FILE).read_text().count("[REDACTED]") == 3
    assert leaks([secret], roots=[run / LOG_FILE, run / MANIFEST_FILE, run / SUMMARY_FILE]) == []
    # Now the evidence holds it (written by an older tool, or by hand): refused everywhere, never printed.
    for form in sorted(secret_forms(secret))[:4]:
        (run / LOG_FILE).write_text(f"step 1\nleaked {form}\n")
        assert main(["validate", str(run)]) == EXIT_USAGE
        assert main(["package", "--run-dir", str(run), "--output", str(tmp_path / "zip")]) == EXIT_USAGE
        captured = capsys.readouterr()
        assert "credential" in captured.out + captured.err
        assert leaks([secret], [captured.out, captured.err]) == []
    assert not (tmp_path / "zip").exists()


@pytest.mark.parametrize("form", ["raw", "base64", "url"])
def test_package_refuses_a_zip_whose_bytes_hold_a_secret(form: str, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """A secret where validate does not look (the report, a binary PNG) is still found in the zip's bytes."""
    monkeypatch.setenv("KAGGLE_KEY", SECRET_KEY)
    run = packageable_run(tmp_path)
    encoded = {"raw": SECRET_KEY, "base64": base64.b64encode(b"ab" + SECRET_KEY.encode()).decode(),
               "url": quote(SECRET_KEY, safe="")}[form]
    if form == "raw":
        (run / "loss.png").write_bytes((run / "loss.png").read_bytes() + SECRET_KEY.encode())
    else:
        report = run / "report.html"
        report.write_text(report.read_text().replace("</body>", f"<!-- {encoded} --></body>"))
    assert main(["validate", str(run)]) == 0
    assert main(["package", "--run-dir", str(run), "--output", str(tmp_path / "zip")]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "credential" in one_line_error(err)
    assert not (tmp_path / "zip").exists() or not list((tmp_path / "zip").iterdir())
    assert leaks([SECRET_KEY], [err]) == []


def test_overlong_api_token_is_one_line_exit_4_never_printed(emu: Emulator, good_bundle: Path,
                                                             run_dir: Path) -> None:
    token = "KGAT_" + "x7" * 150  # 305 characters: the client would crash on Path(token).exists()
    env = cli_env(emu, key=None, KAGGLE_API_TOKEN=token)
    for args in (["push", *push_args(run_dir, good_bundle)], ["quota"]):
        res = tunix_rt(env, *args)
        assert res.code == EXIT_AUTH, res.output
        assert "KAGGLE_API_TOKEN holds 305 characters" in one_line_error(res.stderr)
        assert leaks([token], [res.stdout, res.stderr], [run_dir] if run_dir.exists() else []) == []
    assert emu.calls("SaveKernel") == []


def test_unexpected_error_is_one_redacted_line_exit_70_traceback_in_the_run_dir(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A bug whose message quotes a secret and a host path: one line, redacted; the traceback, redacted and
    portable, is saved in the run directory."""
    monkeypatch.setenv("KAGGLE_KEY", SECRET_KEY)
    run = write_finished_run(tmp_path / "runs" / "m33_v1")
    fill_evidence(run, root=tmp_path)

    def broken(*_a: object, **_k: object) -> None:
        raise RuntimeError(f"boom with {SECRET_KEY} at {run}/x and {'y' * 500}")

    import tunix_rt.commands.report as report_command

    monkeypatch.setattr(report_command, "write_report", broken)
    assert main(["report", str(run)]) == EXIT_INTERNAL == 70
    err = capsys.readouterr().err
    line = one_line_error(err)
    assert "internal error" in line and "RuntimeError" in line and len(line) < 400
    assert (run / TRACEBACK_FILE).is_file()
    saved = (run / TRACEBACK_FILE).read_text()
    assert "Traceback" in saved and "[REDACTED]" in saved and str(tmp_path) not in saved
    assert leaks([SECRET_KEY], [err], [run]) == []


def test_exit_codes_are_documented() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert "70 internal error" in readme
    res = subprocess.run([sys.executable, "-m", "tunix_rt", "--help"], capture_output=True, text=True)
    assert "70 internal error" in res.stdout


# ------------------------------------------------------------------ item 5: hostile logs and outputs


HOSTILE_LOG = (b'[{"stream_name":"stdout","time":1.0,"data":"lone \\ud800 surrogate\\n"}\n'
               b',{"stream_name":"stdout","time":2.0,"data":"bad \xff\xfe bytes\\n"}\n'
               b',{"stream_name":"stdout","time":3.0,"data":' + json.dumps("[" * 20000).encode() + b'}\n'
               b',' + b"[" * 20000 + b"]" * 20000 + b'\n'
               b',{"stream_name":"stdout","time":4.0,"data":"still here\\n"}]')


def test_hostile_log_and_colliding_names_never_crash_and_are_recorded(emu: Emulator, tmp_path: Path,
                                                                      run_dir: Path) -> None:
    long_name = "L" * 300
    bundle = make_bundle(tmp_path / "b", files={**training_outputs(run_dir.name, tmp_path), "f": "file f"})
    env = cli_env(emu)
    assert tunix_rt(env, "push", *push_args(run_dir, bundle)).code == 0
    assert tunix_rt(env, "wait", "--run-dir", str(run_dir), *POLL).code == 0
    emu.version(USER, SLUG, 1).log_path.write_bytes(HOSTILE_LOG)
    for name, data in (("f/inner", b"inner"), ("output", b"a file named output"), (long_name, b"long"),
                       (f"d/{'M' * 300}/x", b"deep long")):
        emu.add_output(USER, SLUG, 1, name, data)
    res = tunix_rt(env, "pull", "--run-dir", str(run_dir), "--json")
    assert res.code == 0, res.output
    assert not (run_dir / TRACEBACK_FILE).exists()
    outputs = run_dir / "outputs"
    assert (outputs / "f").read_text() == "file f" and (outputs / "f~1" / "inner").read_text() == "inner"
    assert (outputs / "output~1").read_text() == "a file named output"
    assert (outputs / "output" / "run_result.json").is_file()
    shortened = [p for p in outputs.iterdir() if p.name.startswith("L" * 200 + "~")]
    assert len(shortened) == 1 and shortened[0].read_text() == "long"
    warnings = [e["message"] for e in res.json_lines() if e["event"] == "warning"]
    assert sum("saved as" in w for w in warnings) == 4 and all(len(w) < 700 for w in warnings)
    log = (run_dir / LOG_FILE).read_bytes().decode("utf-8")  # valid UTF-8
    assert "lone \ufffd surrogate" in log and "bad \ufffd" in log and "still here" in log
    manifest = json.loads((run_dir / MANIFEST_FILE).read_text())
    renamed = {r["name"]: r["saved_as"] for r in manifest["renamed_outputs"]}
    assert renamed["f/inner"] == "f~1/inner" and renamed["output"] == "output~1" and long_name in renamed
    assert manifest["status"] == "complete"
    assert tunix_rt(env, "validate", str(run_dir)).code == 0
    # A rerun puts every file where the first pull did and fetches none again.
    again = tunix_rt(env, "pull", "--run-dir", str(run_dir), "--json")
    assert again.code == 0, again.output
    downloaded = [e for e in again.json_lines() if e["event"] == "downloaded"][0]
    assert downloaded["skipped"] == downloaded["files"] >= 5
    assert not (outputs / "f~2").exists()


def test_hostile_training_outputs_fail_the_evidence_not_the_command(tmp_path: Path) -> None:
    """Deep nesting and lone surrogates in the kernel's own JSON outputs: evidence says failed, and why."""
    run = write_finished_run(tmp_path / "m33_v1")
    out = run / "outputs" / "output"
    (out / "run_result.json").write_text("[" * 100000 + "]" * 100000)
    evals = json.loads((out / "eval_results.json").read_text())
    evals["eval_set"] = "\udcff\ud800"
    (out / "eval_results.json").write_text(json.dumps(evals))
    ev = fill_evidence(run, root=tmp_path)
    assert ev.status == "failed" and "run_result.json is unreadable" in (ev.failure_message or "")
    json.loads((run / SUMMARY_FILE).read_bytes().decode("utf-8"))
    assert main(["validate", str(run)]) == 0


def test_deeply_nested_state_and_bundle_files_are_exit_2_one_line(tmp_path: Path, emu: Emulator,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    deep = "[" * 100000 + "]" * 100000
    run = tmp_path / "m33_v1"
    run.mkdir()
    (run / "run_state.json").write_text(deep)
    assert main(["pull", "--run-dir", str(run)]) == EXIT_USAGE
    assert "unreadable run state (RecursionError)" in one_line_error(capsys.readouterr().err)
    bundle = make_bundle(tmp_path / "b", files={})
    (bundle / "kernel-metadata.json").write_text(deep)
    res = tunix_rt(cli_env(emu), "push", *push_args(tmp_path / "m33_v2", bundle))
    assert res.code == EXIT_USAGE, res.output
    assert "unreadable kernel metadata (RecursionError)" in one_line_error(res.stderr)
    assert emu.calls("SaveKernel") == []


def test_404_on_the_output_list_is_exit_5_one_line(emu: Emulator, tmp_path: Path, run_dir: Path) -> None:
    env = cli_env(emu)
    bundle = make_bundle(tmp_path / "b", files={"output/a.txt": "a"})
    assert tunix_rt(env, "push", *push_args(run_dir, bundle)).code == 0
    assert tunix_rt(env, "wait", "--run-dir", str(run_dir), *POLL).code == 0
    st = state(run_dir)
    st["kaggle"]["version_number"] = 9  # a version that is gone: ListKernelSessionOutput answers 404
    (run_dir / "run_state.json").write_text(json.dumps(st))
    res = tunix_rt(env, "pull", "--run-dir", str(run_dir))
    assert res.code == EXIT_API
    assert "HTTP 404" in one_line_error(res.stderr)


def test_run_dir_that_is_a_file_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "m33_v1"
    target.write_text("not a folder")
    for argv in (["bundle", "--run-dir", str(target)],
                 ["rehearse", "--backend", "local", "--run-dir", str(target)],
                 ["pull", "--run-dir", str(target)],
                 ["push", "--kernel-id", REF, "--accelerator", "cpu", "--run-dir", str(target)]):
        assert main(argv) == EXIT_USAGE, argv
        assert "is a file, not a folder" in one_line_error(capsys.readouterr().err)
    assert target.read_text() == "not a folder"


def test_read_only_run_dir_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = write_finished_run(tmp_path / "m33_v1")
    os.chmod(run, 0o555)
    immutable = False
    try:
        if os.access(run, os.W_OK) and os.geteuid() == 0:  # root writes anyway: make it immutable if allowed
            immutable = subprocess.run(["chattr", "+i", str(run)], capture_output=True).returncode == 0
        try:
            (run / ".probe").write_text("x")
            (run / ".probe").unlink()
            pytest.skip("cannot make a folder read-only here (root without CAP_LINUX_IMMUTABLE)")
        except OSError:
            pass
        for argv in (["rehearse", "--backend", "local", "--run-dir", str(run)], ["bundle", "--run-dir", str(run)]):
            assert main(argv) == EXIT_USAGE, argv
            assert "cannot be written" in one_line_error(capsys.readouterr().err)
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(run)], check=True)
        os.chmod(run, 0o755)


# ------------------------------------------------------------------------- item 6: configs and flags


def _config(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


TINY_CONFIG = (Path(__file__).resolve().parent.parent / "training/configs/sft_tiny.yaml").read_text()
# Nested aliases under a key the config has: 323 bytes that expand to 9**7 strings (before: a 39 MB error
# message and 520 MB of memory).
LAUGHS = "name:\n  - &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"  - &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(6))


@pytest.mark.parametrize(("name", "text", "expected"), [
    ("aliases.yaml", LAUGHS, "line 2: YAML anchor 'a' is not allowed"),
    ("alias_only.yaml", "name: *nowhere\n", "YAML alias 'nowhere' is not allowed"),
    ("unhashable.yaml", "? [a, b]\n: 1\n", "a mapping key must be a plain value"),
    ("brackets.yaml", "name: " + "[" * 20000 + "]" * 20000 + "\n", "nested more than 64 levels deep"),
    ("long_value.yaml", TINY_CONFIG.replace("batch_size: ", "batch_size: " + "9" * 5000 + "x", 1),
     "training.batch_size: expected int, got '9999"),
    ("long_key.yaml", TINY_CONFIG + "K" * 1000 + ": 1\n", "unknown key"),
    ("bad_yaml.yaml", "name: [" + "x, " * 5000 + "\n", "not valid YAML"),
])
def test_hostile_configs_are_one_short_line_exit_2(name: str, text: str, expected: str, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    path = _config(tmp_path, name, text)
    assert main(["bundle", "--run-dir", str(tmp_path / "m33_rehearsal"), "--config", str(path)]) == EXIT_USAGE
    line = one_line_error(capsys.readouterr().err)
    assert expected in line and len(line) <= 200 + len(str(path)) + 120, line
    assert not (tmp_path / "m33_rehearsal").exists()


@pytest.mark.parametrize(("verb", "flag", "value"), [
    ("wait", "--timeout", "nan"), ("wait", "--timeout", "inf"), ("wait", "--timeout", "-5"),
    ("wait", "--poll-min", "0"), ("wait", "--poll-max", "nan"), ("wait", "--stale-grace", "-inf"),
    ("run", "--timeout", "nan"), ("push", "--session-timeout", "0"), ("emulator", "--rate-429", "nan"),
    ("emulator", "--latency", "inf"), ("emulator", "--rate-5xx", "2"),
])
def test_numeric_flags_must_be_finite_and_positive(verb: str, flag: str, value: str, emu: Emulator) -> None:
    args = [verb, flag, value]
    if verb in ("run", "push"):
        args += ["--kernel-id", REF, "--accelerator", "cpu"]
    res = tunix_rt(cli_env(emu), *args, timeout=30)
    assert res.code == EXIT_USAGE, res.output
    assert f"argument {flag}" in res.stderr.strip().splitlines()[-1] and "Traceback" not in res.stderr
    assert emu.calls("GetKernelSessionStatus") == [] and emu.calls("SaveKernel") == []


def test_numeric_knob_must_be_finite(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNIX_RT_STALE_GRACE_S", "nan")
    run = write_finished_run(tmp_path / "m33_v1")
    assert main(["wait", "--run-dir", str(run)]) == EXIT_USAGE
    assert "TUNIX_RT_STALE_GRACE_S='nan' is not a finite number" in one_line_error(capsys.readouterr().err)


# ---------------------------------------------------------------------------- item 7: zip contents


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    scratch = tmp_path_factory.mktemp("hostile_bundle")
    return build_bundle(scratch / "m33_v1", mode="smoke", eval_set=write_eval_set(scratch)).bundle_dir


@pytest.mark.parametrize("name, text", [
    ("kaggle_submission.ipynb", "[]"),
    ("kaggle_submission.ipynb", '{"metadata": null, "cells": [1, null, {"metadata": null}]}'),
    ("kernel-metadata.json", "[]"),
    ("kernel-metadata.json", "null"),
])
def test_a_bundle_whose_json_has_the_wrong_shape_is_refused_in_one_line(tiny_bundle: Path, tmp_path: Path,
                                                                        name: str, text: str) -> None:
    """``push --bundle`` and ``package`` read a bundle a user may have edited: a notebook that is a list, a
    null ``metadata`` or a cell that is a number is exit 2 with one line, never a crash (exit 70)."""
    from tunix_rt.bundle import load_bundle
    from tunix_rt.errors import TunixRtError
    from tunix_rt.kernel_metadata import strip_notebook_pins, tunix_rt_metadata
    from tunix_rt.payload import extract_payload

    folder = shutil.copytree(tiny_bundle, tmp_path / "edited")
    (folder / name).write_text(text)
    with pytest.raises(TunixRtError) as refused:
        load_bundle(folder)
    assert refused.value.exit_code == EXIT_USAGE and "\n" not in refused.value.message
    notebook = folder / "kaggle_submission.ipynb"
    if name == "kaggle_submission.ipynb":
        with pytest.raises(TunixRtError, match="no embedded payload"):
            extract_payload(notebook)
        assert tunix_rt_metadata(notebook.read_bytes()) is None
        assert strip_notebook_pins(notebook.read_bytes()) == notebook.read_bytes()


def packageable_run(tmp_path: Path, bundle: Path | None = None) -> Path:
    """A complete run with its real bundle, evidence and report, that `package` accepts."""
    if bundle is None:
        scratch = tmp_path / "bundle_scratch"
        bundle = build_bundle(scratch / "m33_v1", mode="smoke", eval_set=write_eval_set(scratch)).bundle_dir
    return with_evidence_and_report(write_finished_run(tmp_path / "runs" / "m33_v1", bundle=bundle), tmp_path)


def test_eval_set_naming_a_project_file_is_never_packaged(tmp_path: Path, tiny_bundle: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    run = packageable_run(tmp_path, tiny_bundle)
    edit_json(run / SUMMARY_FILE, eval_set=".git/config", eval_set_sha256=None)
    assert main(["validate", str(run)]) == EXIT_USAGE
    assert main(["package", "--run-dir", str(run), "--output", str(tmp_path / "zip")]) == EXIT_USAGE
    captured = capsys.readouterr()
    assert "eval_set_sha256" in captured.out + captured.err
    assert not (tmp_path / "zip").exists()
    edit_json(run / SUMMARY_FILE, eval_set=".git/config", eval_set_sha256="0" * 64)  # a sha256 does not help
    assert main(["package", "--run-dir", str(run), "--output", str(tmp_path / "zip")]) == EXIT_USAGE
    assert "payload holds no eval set '.git/config'" in one_line_error(capsys.readouterr().err)
    assert not (tmp_path / "zip").exists()


@pytest.mark.parametrize("link", ["hard", "sym"])
def test_linked_evidence_file_is_refused(link: str, tmp_path: Path, tiny_bundle: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    run = packageable_run(tmp_path, tiny_bundle)
    host_file = tmp_path / "host_secret_notes.txt"
    host_file.write_text("the author's private notes\n")
    (run / LOG_FILE).unlink()
    (os.link if link == "hard" else os.symlink)(host_file, run / LOG_FILE)
    assert main(["validate", str(run)]) == EXIT_USAGE
    out = capsys.readouterr().out
    assert ("hard links" if link == "hard" else "symbolic link") in out
    assert main(["package", "--run-dir", str(run), "--output", str(tmp_path / "zip")]) == EXIT_USAGE
    capsys.readouterr()
    assert not (tmp_path / "zip").exists()


@pytest.mark.parametrize(("bad", "expected"), [
    ('"primary_score": NaN', "NaN is not a JSON number"),
    ('"primary_score": Infinity', "Infinity is not a JSON number"),
    ('"primary_score": -Infinity', "-Infinity is not a JSON number"),
    ('"status": "failed", "status": "complete"', "duplicate key 'status'"),
])
def test_evidence_json_is_read_strictly(bad: str, expected: str, tmp_path: Path, tiny_bundle: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    run = packageable_run(tmp_path, tiny_bundle)
    text = (run / SUMMARY_FILE).read_text()
    (run / SUMMARY_FILE).write_text(text.replace("{", "{" + bad + ",", 1))
    assert main(["validate", str(run)]) == EXIT_USAGE
    assert expected in capsys.readouterr().out
    assert main(["package", "--run-dir", str(run), "--output", str(tmp_path / "zip")]) == EXIT_USAGE
    assert not (tmp_path / "zip").exists()


def test_complete_run_needs_eval_set_path_and_sha256(tmp_path: Path, tiny_bundle: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    run = packageable_run(tmp_path, tiny_bundle)
    edit_json(run / SUMMARY_FILE, eval_set_sha256=None)
    assert main(["validate", str(run)]) == EXIT_USAGE
    assert "eval_set_sha256: a complete run must record" in capsys.readouterr().out
    edit_json(run / SUMMARY_FILE, eval_set=None, eval_set_sha256="a" * 64)
    assert main(["validate", str(run)]) == EXIT_USAGE
    assert "eval_set: a complete run must name" in capsys.readouterr().out


def test_local_run_relabelled_kaggle_tpu_gemma_gets_no_tick(tmp_path: Path, tiny_bundle: Path) -> None:
    """Labels anyone can edit (platform, accelerator, model id) do not tick the TPU line of the checklist."""
    run = packageable_run(tmp_path, tiny_bundle)
    manifest = json.loads((run / MANIFEST_FILE).read_text())
    manifest["environment"].update(platform="kaggle", accelerator="tpu")
    manifest.update(model_id="google/gemma-3-1b-it",
                    kaggle={"kernel_ref": "alice/tunix-rt-m33", "url": None, "version_number": 1,
                            "machine_shape": None, "accelerator": "tpu-v5e-8", "status": None,
                            "failure_message": None, "pushed_at": None, "finished_at": None})
    manifest["model"]["param_count"] = 1_000_000_000
    (run / MANIFEST_FILE).write_text(json.dumps(manifest))
    edit_json(run / SUMMARY_FILE, model_id="google/gemma-3-1b-it")
    assert main(["validate", str(run)]) == 0  # the forgery is well-formed
    assert main(["package", "--run-dir", str(run), "--output", str(tmp_path / "zip")]) == 0
    (zpath,) = (tmp_path / "zip").glob("*.zip")
    with zipfile.ZipFile(zpath) as zf:
        readme = zf.read("README_SUBMISSION.md").decode()
    assert "- [ ] Trained with Tunix + Gemma on a Kaggle TPU" in readme
    assert "- [x] Trained with Tunix" not in readme and "NOT proven" in readme


def test_tpu_tick_needs_every_fact_from_the_kaggle_record() -> None:
    proven = {"environment": {"platform": "kaggle", "accelerator": "tpu"}, "model_id": "google/gemma-3-1b-it",
              "model": {"source": "safetensors", "param_count": 999_885_952}, "timings_s": {"total": 3600.0},
              "kaggle": {"kernel_ref": "alice/tunix-rt-m33", "version_number": 3, "machine_shape": "TpuV5E8",
                         "status": "COMPLETE"}}
    sources = ["google/gemma-3/transformers/gemma-3-1b-it/1"]
    assert tpu_claim_gaps(proven, sources) == []
    for path, value in [(("kaggle", "machine_shape"), "NvidiaTeslaT4"), (("kaggle", "status"), "ERROR"),
                        (("kaggle", "kernel_ref"), None), (("kaggle", "version_number"), "3"),
                        (("model", "source"), "random-init"), (("environment", "platform"), "local")]:
        forged = json.loads(json.dumps(proven))
        forged[path[0]][path[1]] = value
        assert tpu_claim_gaps(forged, sources), path
    assert tpu_claim_gaps(proven, None) and tpu_claim_gaps(proven, ["alice/my-dataset"])


# -------------------------------------------------------------------- item 8: bad input found late


@pytest.mark.parametrize(("content", "expected"), [
    ("", "has no items"),
    ("\n\n", "has no items"),
    ('{"id": "a", "prompt": "p"\n', "not valid JSON"),
    ('{"id": "a", "prompt": "p", "expected_answer": "1", "category": "c"}\n', "'difficulty' must be"),
    ("[" * 50000 + "]" * 50000 + "\n", "not valid JSON"),
])
def test_broken_or_empty_eval_set_is_refused_at_bundle_time(content: str, expected: str, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    eval_set = tmp_path / "broken.jsonl"
    eval_set.write_text(content)
    run = tmp_path / "m33_rehearsal"
    assert main(["bundle", "--run-dir", str(run), "--eval-set", str(eval_set)]) == EXIT_USAGE
    assert expected in one_line_error(capsys.readouterr().err)
    assert not run.exists()


def test_push_of_a_bundle_with_a_broken_eval_set_spends_no_session(emu: Emulator, tmp_path: Path,
                                                                   run_dir: Path) -> None:
    """A bundle folder built elsewhere whose payload's eval set is empty: refused before SaveKernel."""
    import io
    import tarfile

    from tunix_rt.bundle import build_payload, extract_payload, render_notebook

    bundle = make_bundle(tmp_path / "b", files={"output/a.txt": "a"})
    nb_path = bundle / "kaggle_submission.ipynb"
    nb = json.loads(nb_path.read_text())
    with tarfile.open(fileobj=io.BytesIO(extract_payload(nb_path)), mode="r:gz") as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]
    files["training/evalsets/eval_v1.jsonl"] = b""
    scratch = tmp_path / "payload"
    for name, data in files.items():
        (scratch / name).parent.mkdir(parents=True, exist_ok=True)
        (scratch / name).write_bytes(data)
    params = nb["metadata"]["tunix_rt"]["parameters"]
    fresh = json.loads(render_notebook(params, build_payload({n: scratch / n for n in files})))
    fresh["cells"] = fresh["cells"][:-1] + nb["cells"][-1:]
    nb_path.write_text(json.dumps(fresh))
    res = tunix_rt(cli_env(emu), "push", *push_args(run_dir, bundle))
    assert res.code == EXIT_USAGE, res.output
    assert "has no items" in one_line_error(res.stderr)
    assert emu.calls("SaveKernel") == []


@pytest.mark.parametrize("run_dir_arg", ["", "   ", "has space", "-dash-first", "bad\nname", "x" * 101, "a/.hidden"])
def test_bad_run_dir_names_are_refused_before_any_work(run_dir_arg: str, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    flag = f"--run-dir={run_dir_arg}"  # "=": a value starting with "-" is not taken for a flag
    for argv in (["bundle", flag], ["rehearse", "--backend", "local", flag],
                 ["push", "--kernel-id", REF, "--accelerator", "cpu", flag], ["pull", flag]):
        assert main(argv) == EXIT_USAGE, argv
        assert "--run-dir" in one_line_error(capsys.readouterr().err)
    assert sorted(tmp_path.rglob("*")) == before  # nothing created, not even the folder


def test_output_inside_the_run_dir_is_refused(tmp_path: Path, tiny_bundle: Path, emu: Emulator,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    run = packageable_run(tmp_path, tiny_bundle)
    for output in (run, run / "zip", run / "outputs"):
        assert main(["package", "--run-dir", str(run), "--output", str(output)]) == EXIT_USAGE
        assert "inside the run directory" in one_line_error(capsys.readouterr().err)
    assert list(run.rglob("*.zip")) == []
    target = repo_run_dir("inside")
    try:
        bundle = make_bundle(tmp_path / "b", files={"output/a.txt": "a"})
        res = tunix_rt(cli_env(emu), "run", *push_args(target, bundle), "--output", str(target / "sub"), *POLL)
        assert res.code == EXIT_USAGE and "inside the run directory" in one_line_error(res.stderr)
        assert emu.calls("SaveKernel") == []
    finally:
        shutil.rmtree(target.parent, ignore_errors=True)


# ---- process side (items 2, 3, 4, 8, 9, 10) ---------------------------------------------------------------
# One process per run dir, a push whose reply never came, signals, stages complete only on valid results,
# nothing lost, Docker limits. (Item 9, the CI example, is tests/test_ci_example.py.) Each case drives the real
# CLI in a subprocess: against the emulator with the real kaggle client, or a real dockerd.


def _until(check, timeout: float = 120.0, what: str = "condition") -> None:
    """Wait (generously: a shared 2-core machine) until ``check()`` is true."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _saves(emu: Emulator) -> list:
    """SaveKernel requests the emulator processed (a hang is processed too, late)."""
    return [r for r in emu.calls("SaveKernel") if r.fault in (None, "drop_after", "hang")]


def test_two_runs_on_one_run_dir_push_once_and_the_second_names_the_holder(
        emu: Emulator, good_bundle: Path, run_dir: Path, tmp_path: Path) -> None:
    """Before: both pushed (v1 and v2) and mixed their state. Now the second exits 2 at once naming the first."""
    env = cli_env(emu)
    args = ["run", *push_args(run_dir, good_bundle), "--output", str(tmp_path / "zip"), *POLL]
    procs = [tunix_rt_popen(env, *args), tunix_rt_popen(env, *args)]  # started together: a real race
    outs = [p.communicate(timeout=300) for p in procs]
    codes = [p.returncode for p in procs]
    assert sorted(codes) == [0, 2], outs
    loser = codes.index(2)
    winner_pid = procs[1 - loser].pid
    assert f"in use by pid {winner_pid} (tunix-rt run" in outs[loser][1]
    assert "since 20" in outs[loser][1]
    assert versions(emu) == [1] and len(_saves(emu)) == 1
    assert state(run_dir)["kaggle"]["version_number"] == 1
    assert not (run_dir / LOCK_NAME).exists()  # released and removed when the winner ended


def test_a_second_verb_is_refused_while_a_run_holds_the_run_dir(emu: Emulator, tmp_path: Path,
                                                               run_dir: Path) -> None:
    bundle = make_bundle(tmp_path / "b", files=training_outputs(run_dir.name, tmp_path), sleep_s=8)
    env = cli_env(emu)
    first = tunix_rt_popen(env, "run", *push_args(run_dir, bundle), "--output", str(tmp_path / "zip"), *POLL)
    try:
        _until(lambda: (run_dir / "run_state.json").exists(), what="the run to start")
        for verb in (["wait", "--run-dir", str(run_dir)], ["pull", "--run-dir", str(run_dir)],
                     ["push", *push_args(run_dir, bundle)]):
            started = time.monotonic()
            res = tunix_rt(env, *verb, "--json")
            assert res.code == 2, res.output
            assert f"in use by pid {first.pid}" in res.stderr
            assert json.loads(res.stdout.splitlines()[-1])["exit_code"] == 2
            assert time.monotonic() - started < 60  # at once, not after the holder (which sleeps 8 s)
            assert first.poll() is None
    finally:
        out, err = first.communicate(timeout=300)
    assert first.returncode == 0, out + err
    assert versions(emu) == [1] and len(_saves(emu)) == 1


def test_save_kernel_completing_after_the_client_timeout_is_adopted_not_pushed_again(
        emu: Emulator, good_bundle: Path, run_dir: Path) -> None:
    """The emulator processes SaveKernel 6 s late; the client's read timeout is 2 s. Before: three quick looks
    for v1 found nothing and the push was sent again (v1 and v2). Now v1 is looked for through the settle
    window and adopted."""
    emu.set_faults(hang_seconds=6)
    emu.script_faults("SaveKernel", "hang")
    env = cli_env(emu, TUNIX_RT_API_TIMEOUT_S="2")
    res = tunix_rt(env, "push", *push_args(run_dir, good_bundle), "--push-settle", "60", timeout=180)
    assert res.code == 0, res.output
    assert "push outcome unknown" in res.stderr and "not pushing again" in res.stderr
    assert versions(emu) == [1] and len(emu.calls("SaveKernel")) == 1
    assert state(run_dir)["kaggle"]["version_number"] == 1


def test_a_push_killed_mid_way_and_rerun_at_once_adopts_the_version_it_created(
        emu: Emulator, good_bundle: Path, run_dir: Path) -> None:
    emu.set_faults(hang_seconds=5)
    emu.script_faults("SaveKernel", "hang")
    env = cli_env(emu)
    killed = tunix_rt_popen(env, "push", *push_args(run_dir, good_bundle))
    _until(lambda: len(emu.calls("SaveKernel")) == 1 or killed.poll() is not None, what="SaveKernel sent")
    killed.kill()  # SIGKILL: no clean-up at all; push_attempt stays in run_state.json, the flock goes
    killed.communicate(timeout=60)
    assert state(run_dir)["kaggle"]["push_attempt"]["previous_version"] == 0
    res = tunix_rt(env, "push", *push_args(run_dir, good_bundle), "--push-settle", "60", timeout=180)
    assert res.code == 0, res.output
    assert "may still complete on Kaggle" in res.stderr and "not pushing again" in res.stderr
    assert versions(emu) == [1] and len(emu.calls("SaveKernel")) == 1


def test_the_previous_versions_complete_is_not_taken_for_the_new_one(emu: Emulator, good_bundle: Path,
                                                                      run_dir: Path, tmp_path: Path) -> None:
    """After the push Kaggle answers v1's COMPLETE for a while (stale status), past the stale grace (0 here).
    Before: accepted, pull got 0 files, evidence failed, and every rerun skipped pull. Now: v2 lists no output
    files yet, so its COMPLETE is not believed; the run waits for v2 and packages v2's outputs."""
    emu.seed_version(USER, SLUG, outputs={"old.txt": b"v1"})
    emu.set_faults(stale_polls=4)
    res = tunix_rt(cli_env(emu), "run", *push_args(run_dir, good_bundle), "--output", str(tmp_path / "zip"),
                   "--stale-grace", "0", *POLL, "--json", timeout=300)
    assert res.code == 0, res.output
    ignored = [e for e in res.json_lines() if e["event"] == "stale_status_ignored"]
    assert ignored and "lists no output files" in ignored[0]["message"]
    st = state(run_dir)
    assert st["kaggle"]["version_number"] == 2 and st["kaggle"]["status"] == "COMPLETE"
    assert st["stages"]["pull"]["files"] > 0 and not (run_dir / "outputs" / "old.txt").exists()


def test_a_complete_without_outputs_is_retried_on_rerun_not_skipped(emu: Emulator, tmp_path: Path,
                                                                    run_dir: Path) -> None:
    """The state an earlier version left: wait recorded done with COMPLETE while the version still ran. Before:
    pull "done" with 0 files, evidence failed, and every rerun skipped pull and failed the same way. Now pull
    fails (exit 5) and undoes the wait; the rerun waits and pulls."""
    bundle = make_bundle(tmp_path / "b", files=training_outputs(run_dir.name, tmp_path), sleep_s=6)
    env = cli_env(emu)
    assert tunix_rt(env, "push", *push_args(run_dir, bundle)).code == 0
    st = state(run_dir)
    st["kaggle"].update(status="COMPLETE", finished_at="2026-01-01T00:00:00Z")
    st["stages"]["wait"] = {"status": "done", "kaggle_status": "COMPLETE"}
    (run_dir / "run_state.json").write_text(json.dumps(st), encoding="utf-8")
    args = ["run", *push_args(run_dir, bundle), "--output", str(tmp_path / "zip"), *POLL]
    first = tunix_rt(env, *args)
    assert first.code == 5, first.output
    assert "lists no output files" in first.stderr and "run again" in first.stderr
    st = state(run_dir)
    assert st["stages"]["pull"]["status"] == "failed" and st["stages"]["wait"]["status"] == "failed"
    again = tunix_rt(env, *args, timeout=300)
    assert again.code == 0, again.output
    st = state(run_dir)
    assert st["stages"]["wait"]["status"] == "done" and st["stages"]["pull"]["files"] > 0
    assert versions(emu) == [1] and len(_saves(emu)) == 1


def _complete_evidence(emu: Emulator, bundle: Path, run_dir: Path, tmp_path: Path) -> Path:
    """A folder holding a finished run's complete evidence (and no run state): a rehearsal's, say."""
    res = tunix_rt(cli_env(emu), "run", *push_args(run_dir, bundle), "--output", str(tmp_path / "zip"), *POLL,
                   timeout=300)
    assert res.code == 0, res.output
    other = run_dir.parent / "kept"
    other.mkdir()
    for name in ("run_manifest.json", "eval_summary.json", "kaggle_output_log.txt"):
        shutil.copy2(run_dir / name, other / name)
    return other


def test_complete_evidence_is_not_overwritten_without_force(emu: Emulator, good_bundle: Path, run_dir: Path,
                                                            tmp_path: Path) -> None:
    """Before: a new rehearse/run into the folder overwrote good evidence (and a bad input then lost it)."""
    kept = _complete_evidence(emu, good_bundle, run_dir, tmp_path)
    before = {p.name: p.read_bytes() for p in kept.iterdir()}
    saves = len(emu.calls("SaveKernel"))
    env = cli_env(emu)
    for args in (["rehearse", "--backend", "local", "--run-dir", str(kept)],
                 ["run", *push_args(kept, good_bundle, kernel_id=f"{USER}/other-kernel")]):
        res = tunix_rt(env, *args)
        assert res.code == 2, res.output
        assert "already holds complete evidence" in res.stderr and "--force" in res.stderr
        assert {p.name: p.read_bytes() for p in kept.iterdir()} == before
    assert len(emu.calls("SaveKernel")) == saves
    forced = tunix_rt(env, "run", *push_args(kept, good_bundle, kernel_id=f"{USER}/other-kernel"), "--force",
                      "--output", str(tmp_path / "zip2"), *POLL, timeout=300)
    assert forced.code == 0, forced.output
    assert versions(emu, USER, "other-kernel") == [1]
    # A pushed run resumes without --force: its rerun skips every stage.
    rerun = tunix_rt(env, "run", *push_args(run_dir, good_bundle), "--output", str(tmp_path / "zip"), *POLL)
    assert rerun.code == 0, rerun.output


def _tree(pid: int) -> set[int]:
    """Every process under ``pid`` now (the kernel included: jupyter_client gives it a session of its own)."""
    found: set[int] = set()
    todo = [pid]
    while todo:
        for task in Path(f"/proc/{todo.pop()}/task").glob("*"):
            with contextlib.suppress(OSError):
                kids = {int(k) for k in (task / "children").read_text().split()} - found
                found |= kids
                todo += kids
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_during_a_local_rehearsal_end_the_kernel_group(sig: signal.Signals,
                                                                         tmp_path: Path) -> None:
    """Before: SIGTERM killed tunix-rt on the spot: papermill, its kernel and the trainer kept running,
    the temp folder stayed, the stage stayed `running`. Now: like Ctrl-C, exit 128+signal."""
    run_dir = tmp_path / "rehearsal"
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch), "PYTHONUNBUFFERED": "1", "TUNIX_RT_JAX_CACHE": "off"}
    proc = subprocess.Popen([sys.executable, "-m", "tunix_rt", "rehearse", "--backend", "local", "--run-dir",
                             str(run_dir)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        tree: set[int] = set()

        def kernel_started() -> bool:
            tree.update(_tree(proc.pid))
            return any("ipykernel" in _cmdline(p) for p in tree)

        _until(kernel_started, timeout=240, what="papermill and its kernel")
        time.sleep(1)
        tree.update(_tree(proc.pid))
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + sig, out[-2000:] + err[-2000:]
    assert f"interrupted ({sig.name})" in err
    _until(lambda: not [p for p in tree if _alive(p)], timeout=30, what="papermill, its kernel and the trainer to end")
    assert list(scratch.iterdir()) == []  # the emulated /kaggle tree is gone
    execute = state(run_dir)["stages"]["execute"]
    assert execute["status"] == "interrupted" and sig.name in execute["error"]


# ---- Docker (item 10, and item 3 for the container) --------------------------------------------------------

def _docker_client():
    from tunix_rt.runners import docker as runner

    if not runner.docker_available():
        if os.environ.get("CI"):
            pytest.fail(f"CI: no Docker daemon answers at {runner.docker_host()}")
        pytest.skip(f"no Docker daemon answers at {runner.docker_host()}")
    import docker

    return docker.DockerClient(base_url=runner.docker_host())


def _rehearsal_containers(client, run_dir: Path) -> list:
    from tunix_rt.runners.docker import LABEL_RUN_DIR

    return client.containers.list(all=True, filters={"label": f"{LABEL_RUN_DIR}={run_dir.resolve()}"})


@pytest.mark.docker
def test_sigterm_during_a_docker_rehearsal_removes_the_container(tmp_path: Path) -> None:
    """Before: the container kept running and writing into the run dir after tunix-rt died. Now: removed,
    exit 143, the execute stage recorded interrupted, the temp input folder gone."""
    client = _docker_client()
    run_dir = tmp_path / "rehearsal"
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch), "PYTHONUNBUFFERED": "1", "TUNIX_RT_JAX_CACHE": "off"}
    proc = subprocess.Popen([sys.executable, "-m", "tunix_rt", "rehearse", "--backend", "docker", "--run-dir",
                             str(run_dir)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _until(lambda: any(c.status == "running" for c in _rehearsal_containers(client, run_dir))
               or proc.poll() is not None, timeout=1500, what="the rehearsal container")
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, out[-2000:] + err[-2000:]
    assert _rehearsal_containers(client, run_dir) == []
    assert list(scratch.iterdir()) == []
    assert state(run_dir)["stages"]["execute"]["status"] == "interrupted"
    client.close()


@pytest.mark.docker
def test_the_kernel_container_is_confined(tmp_path: Path) -> None:
    """no-new-privileges, every capability dropped but CHOWN/DAC_OVERRIDE/FOWNER, the pids and memory limits
    the flags give; the kernel still writes its outputs, and the container is gone after."""
    import nbformat
    from tunix_rt.runners import docker as runner

    client = _docker_client()
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    probe = (
        "import json, pathlib, re\n"
        "status = pathlib.Path('/proc/self/status').read_text()\n"
        "def field(name): return re.search(name + r':\\s*(\\S+)', status).group(1)\n"
        "def first(*paths):\n"
        "    for p in paths:\n"
        "        if pathlib.Path(p).exists(): return pathlib.Path(p).read_text().strip()\n"
        "pathlib.Path('probe.json').write_text(json.dumps({'cap_eff': field('CapEff'),\n"
        "    'no_new_privs': field('NoNewPrivs'),\n"
        "    'pids_max': first('/sys/fs/cgroup/pids.max', '/sys/fs/cgroup/pids/pids.max'),\n"
        "    'memory_max': first('/sys/fs/cgroup/memory.max', '/sys/fs/cgroup/memory/memory.limit_in_bytes')}))\n"
    )
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(probe)]
    nbformat.write(nb, bundle / "probe.ipynb")
    (bundle / "kernel-metadata.json").write_text(json.dumps({"code_file": "probe.ipynb"}), encoding="utf-8")
    run_dir = tmp_path / "run"
    image = runner.build_image(base_image=runner.default_base_image(), stream=None)
    outcome = runner.run_docker(bundle, run_dir, image=image, stream=None, memory="1g", pids_limit=256)
    assert outcome.ok, outcome.detail
    seen = json.loads((run_dir / "outputs" / "probe.json").read_text())
    wanted = sum(1 << bit for bit in (0, 1, 3))  # CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_FOWNER
    assert int(seen["cap_eff"], 16) == wanted
    assert seen["no_new_privs"] == "1"
    assert seen["pids_max"] == "256"
    assert int(seen["memory_max"]) == 1 << 30
    assert _rehearsal_containers(client, run_dir) == []
    client.close()


def test_json_a_kernel_or_user_wrote_anything_into_never_crashes(tmp_path: Path) -> None:
    """Files the tool reads back but did not write itself this run (a kernel's run_result.json, an earlier
    sweep.json, a manifest, a lock file): deep nesting, a list or null is "nothing there" or exit 2."""
    from tunix_rt.chain import _run_result
    from tunix_rt.errors import TunixRtError
    from tunix_rt.fsutil import read_json_object
    from tunix_rt.keep_evidence import complete_evidence
    from tunix_rt.progress import Reporter
    from tunix_rt.rundir_lock import _holder
    from tunix_rt.sweep_grid import GridAxis
    from tunix_rt.sweep_plan import make_plan, write_plan

    deep = "[" * 100000 + "]" * 100000
    for text in (deep, "[]", "null", "{"):
        path = tmp_path / "doc.json"
        path.write_text(text)
        assert read_json_object(path) is None
        assert _holder(path) == "another tunix-rt process"
        run = tmp_path / "run"
        (run / "outputs" / "output").mkdir(parents=True, exist_ok=True)
        (run / "outputs" / "output" / "run_result.json").write_text(text)
        assert _run_result(run) == {}
        (run / MANIFEST_FILE).write_text(text)
        (run / SUMMARY_FILE).write_text("{}")
        assert complete_evidence(run) is False
    plan = make_plan(tmp_path / "sweep", kernel_prefix="alice/hostile-sweep", accelerator="cpu", mode="smoke",
                     config="training/configs/sft_tiny.yaml", axes=[GridAxis("training.seed", (1, 2))],
                     reporter=Reporter("sweep"))
    for text in (deep, "[]", '{"points": [1]}'):
        (tmp_path / "sweep").mkdir(exist_ok=True)
        (tmp_path / "sweep" / "sweep.json").write_text(text)
        with pytest.raises(TunixRtError) as refused:
            write_plan(plan)
        assert refused.value.exit_code == EXIT_USAGE and "not a sweep plan" in refused.value.message
