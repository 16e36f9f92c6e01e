"""The quiet console: medembed's lines on the console, everything else (any fd-level write) in the log file."""

from __future__ import annotations

import logging
import os
import sys

from medembed.runtime import console


def test_quiet_console_sends_library_output_to_the_log_file(tmp_path, capfd, caplog):
    caplog.set_level(logging.INFO)  # as runner.setup_logging sets it
    log_path = str(tmp_path / "run" / "job.log")
    with console.quiet_console(log_path) as active:
        assert active == log_path
        console.say("embedding %d documents", 12)
        logging.getLogger("somelib.internal").warning("streaming executor plan: noise")  # propagates to root
        logging.getLogger("medembed.index.writer").info("wrote 12 rows (detail)")
        logging.getLogger("medembed.ingest").warning("3 rows quarantined: empty_text")
        logging.getLogger("medembed.ingest").warning("3 rows quarantined: empty_text")  # said once
        os.write(2, b"[core_worker.cc:123] C++ noise on fd 2\n")
        os.write(1, b"weight loading bar on fd 1\n")
        print("a library's print", file=sys.stderr)
        console.write_out("final summary\n")
    out, err = capfd.readouterr()
    assert out == "final summary\n"
    lines = err.splitlines()
    assert [line.split(" ", 1)[1] for line in lines] == ["embedding 12 documents",
                                                        "WARNING: 3 rows quarantined: empty_text"]
    logged = open(log_path).read()
    for text in ("streaming executor plan: noise", "C++ noise on fd 2", "weight loading bar on fd 1",
                 "a library's print", "wrote 12 rows (detail)", "embedding 12 documents", "final summary"):
        assert text in logged, text
    # after the session the descriptors are back: this goes to the (captured) console again
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "after\n"


def test_verbose_and_nested_sessions_redirect_nothing_more(tmp_path, capfd):
    with console.quiet_console(str(tmp_path / "job.log"), verbose=True) as active:
        assert active is None
        os.write(2, b"visible\n")
    assert capfd.readouterr().err == "visible\n" and not (tmp_path / "job.log").exists()
    with console.quiet_console(str(tmp_path / "outer.log")):
        with console.quiet_console(str(tmp_path / "inner.log")) as inner:  # a job run inside another
            assert inner == str(tmp_path / "outer.log")  # where its output really goes
            os.write(2, b"stage noise\n")
    assert not (tmp_path / "inner.log").exists() and "stage noise" in (tmp_path / "outer.log").read_text()


def test_progress_prints_plain_lines_when_not_a_terminal(tmp_path, capfd):
    with console.quiet_console(str(tmp_path / "job.log")):
        with console.Progress("chunks written", total=200, unit="rows", every_s=0.0) as bar:
            bar.update(50)
            bar.update(150)
    lines = [line.split(" ", 1)[1] for line in capfd.readouterr().err.splitlines()]
    assert lines[0].startswith("chunks written: 50 rows of 200 (25%), ") and "ETA" in lines[0]
    assert lines[1].startswith("chunks written: 200 rows of 200 (100%)") and "ETA" not in lines[1]
    assert lines[-1].endswith("(done)")


def test_follow_moves_the_bar_to_work_done_elsewhere():
    done = iter([3, 3, 7, 10, 10, 10, 10, 10])
    bar = console.Progress("training", total=10, unit="steps", every_s=3600)
    import time

    with console.follow(lambda: next(done), bar, every_s=0.01):
        deadline = time.monotonic() + 5
        while bar.n < 10 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert bar.n == 10


def test_quarantined_input_is_said_once_on_the_console(tmp_path, capfd):
    from medembed.runtime.execute import warn_quarantine as _warn_quarantine
    from medembed.runtime.manifest import RunManifest

    m = RunManifest("embed", str(tmp_path / "runs"), {}, run_id="q1")
    m.count("quarantined", 3)
    m.count("quarantine_by_reason", {"empty_text": 2, "malformed_json": 1, "duplicate_id": 0})
    m.set("quarantine_dir", "runs/q1/quarantine")
    with console.quiet_console(str(tmp_path / "job.log")):
        _warn_quarantine(m)
    err = capfd.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].split(" ", 1)[1] == (
        "WARNING: 3 input records quarantined (empty_text 2, malformed_json 1); each with its file, line and "
        "reason in runs/q1/quarantine")
