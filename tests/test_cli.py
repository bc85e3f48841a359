"""The CLI's shared contract: help works, usage errors exit 2, bad input is one line without traceback."""

from __future__ import annotations

import subprocess
import sys

from medsynth.cli import app, main


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "medsynth", *args], capture_output=True, text=True, timeout=120)


def test_help_lists_commands():
    res = _run("--help")
    assert res.returncode == 0, res.stderr
    for name in [c.name or c.callback.__name__ for c in app.registered_commands]:
        assert name.replace("_", "-") in res.stdout


def test_unknown_command_is_usage_error():
    assert main(["no-such-command"]) == 2


def test_missing_file_is_bad_input_without_traceback(tmp_path):
    res = _run("info", str(tmp_path / "missing.dcm"))
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert "missing.dcm" in res.stderr + res.stdout
