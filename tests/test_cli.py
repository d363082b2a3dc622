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
