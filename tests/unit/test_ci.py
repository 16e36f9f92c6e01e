"""CI cannot quietly pass: `.ci/run` sets CI=true itself and stops on the first failing step, and the test process
exits with pytest's own status, so a crash after the results (in interpreter teardown) fails the run."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support.paths import REPO


def _pytest(tmp_path: Path, body: str) -> subprocess.CompletedProcess:
    """pytest in a new process on one test file, with this suite's conftest loaded as a plugin."""
    f = tmp_path / "test_probe.py"
    f.write_text(textwrap.dedent(body))
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.conftest", str(f)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("body", "status"), [("def test_ok():\n    assert True\n", 0),
                                              ("def test_fails():\n    assert False\n", 1)])
def test_the_process_exits_with_pytests_status(tmp_path, body, status):
    p = _pytest(tmp_path, body)
    assert p.returncode == status, p.stdout[-2000:] + p.stderr[-2000:]


def test_a_crash_in_interpreter_teardown_fails_the_run(tmp_path):
    """The results are out ("1 passed"), then the interpreter crashes while it shuts down (as a native library's
    thread can): the process must die with the signal, not exit 0."""
    p = _pytest(tmp_path, """
        import atexit, os, signal

        atexit.register(lambda: os.kill(os.getpid(), signal.SIGSEGV))  # runs after pytest reported

        def test_ok():
            assert True
    """)
    assert "1 passed" in p.stdout, p.stdout[-2000:] + p.stderr[-2000:]
    assert p.returncode == -signal.SIGSEGV, (p.returncode, p.stdout[-2000:], p.stderr[-2000:])


def test_ci_script_sets_ci_true_before_the_tests_and_stops_on_failure():
    lines = [ln.strip() for ln in (REPO / ".ci" / "run").read_text().splitlines()]
    assert "set -euo pipefail" in lines
    tests = next(i for i, ln in enumerate(lines) if ln.startswith("python -m pytest"))
    assert "export CI=true" in lines[:tests], "CI=true must be set by .ci/run itself, before pytest runs"
    assert lines[tests].endswith(" tests") and "||" not in lines[tests] and lines[-1] == lines[tests]
