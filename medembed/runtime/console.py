"""A quiet console for jobs: medembed's own lines on the terminal, everything else in the run's log file.

While a job runs quietly (:func:`quiet_console`), the process's file descriptors 1 and 2 point at the
run's log file, so Ray's and Lance's internal output (Python loggers, the core worker's C++ logs,
worker logs Ray forwards to the driver, Rust warnings, weight-loading bars) lands there whatever writes
it. The console keeps a duplicate of the original descriptors and gets only:

- lines said with :func:`say` (what the job is about to do, a line per finished stage, the summary);
- :class:`Progress` bars (rows or steps, rate, ETA), redrawn on a terminal, plain periodic lines when the
  console is not a terminal (CI, ``ray job submit`` logs);
- medembed's own warnings and errors, each distinct message once.

``--verbose`` keeps today's behaviour: everything on the console, debug logging on.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

CONSOLE_LOGGER = "medembed.console"
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
PLAIN_EVERY_S = 30.0  # a progress line at most this often when the console is not a terminal

log = logging.getLogger(CONSOLE_LOGGER)
log.setLevel(logging.INFO)  # said lines reach the console whatever the root logger's level

_lock = threading.RLock()
_console: IO[str] | None = None  # the console stream while a quiet session runs, else None
_stdout: IO[str] | None = None  # the console's stdout while a quiet session runs, else None
_log_path: str | None = None  # the active session's log file


def setup_logging(verbose: bool = False) -> None:
    """Log records to stderr (DEBUG with ``verbose``), the chattiest libraries at WARNING."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format=FORMAT, stream=sys.stderr)
    for noisy in ("httpx", "urllib3", "botocore", "s3fs", "aiobotocore", "filelock", "fsspec"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def say(msg: str, *args: Any) -> None:
    """One line for the user (and the log file): what starts, what finished, where things are."""
    log.info(msg, *args)


def console_stream() -> IO[str]:
    """Where user-facing output goes: the console of a quiet session, else this process's stderr."""
    return _console or sys.stderr


def write_out(text: str) -> None:
    """Text for the user's stdout (a job's final summary): the console of a quiet session, else ``sys.stdout``."""
    stream = _stdout or sys.stdout
    stream.write(text)
    stream.flush()
    if _stdout is not None:  # the log file keeps it too
        sys.stdout.write(text)
        sys.stdout.flush()


def _is_tty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def format_eta(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class Progress:
    """One progress bar per long stage: a tqdm bar on a terminal, else a plain line every ``every_s`` seconds.

    Use as a context manager; ``update(n)`` adds work done, ``total`` (optional) gives percent and ETA."""

    def __init__(self, desc: str, total: int | None = None, unit: str = "rows", every_s: float = PLAIN_EVERY_S):
        self.desc, self.total, self.unit, self.every_s = desc, total, unit, every_s
        self.n = 0
        self._t0 = self._last = time.monotonic()
        stream = console_stream()
        self._bar = None
        if _is_tty(stream):
            from tqdm import tqdm

            self._bar = tqdm(desc=desc, total=total, unit=f" {unit}", unit_scale=True, file=stream, leave=True,
                             dynamic_ncols=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def line(self) -> str:
        elapsed = time.monotonic() - self._t0
        rate = self.n / elapsed if elapsed > 0 else 0.0
        text = f"{self.desc}: {self.n:,} {self.unit}"
        if self.total:
            text += f" of {self.total:,} ({100.0 * self.n / self.total:.0f}%)"
        text += f", {rate:,.1f} {self.unit}/s"
        if self.total and rate > 0 and self.n < self.total:
            text += f", ETA {format_eta((self.total - self.n) / rate)}"
        return text

    def update(self, n: int = 1) -> None:
        self.n += n
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            say("%s", self.line())

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self.n and time.monotonic() - self._t0 >= self.every_s:  # a long stage ends with its totals
            say("%s (done)", self.line())


class _ConsoleFilter(logging.Filter):
    """The console's share of the log: ``say`` lines, and medembed's warnings and errors once each."""

    def __init__(self) -> None:
        super().__init__()
        self._seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == CONSOLE_LOGGER:
            return True
        if record.levelno < logging.WARNING or not record.name.startswith("medembed"):
            return False
        key = f"{record.levelno}:{record.getMessage()}"
        if key in self._seen:
            return False
        self._seen.add(key)
        return True


class _ConsoleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        msg = record.getMessage()
        if record.exc_info and record.levelno >= logging.ERROR:
            msg += "\n" + self.formatException(record.exc_info)
        if record.levelno >= logging.WARNING:
            return f"{stamp} {record.levelname}: {msg}"
        return f"{stamp} {msg}"


@contextmanager
def quiet_console(log_path: str | None, verbose: bool = False) -> Iterator[str | None]:
    """Run the body with the console quiet and everything else in ``log_path`` (a local file, appended).

    Re-entrant: a nested call keeps the outer session and yields the outer log file. With ``verbose`` or no
    ``log_path`` nothing is redirected. Yields the log file's path (None when not redirected)."""
    global _console, _stdout, _log_path
    with _lock:
        if _console is not None or verbose or not log_path:
            yield _log_path if _console is not None else None
            return
        os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        saved_out, saved_err = os.dup(1), os.dup(2)
        log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        console = open(os.dup(saved_err), "w", buffering=1, encoding="utf-8", errors="replace")
        stdout = open(os.dup(saved_out), "w", buffering=1, encoding="utf-8", errors="replace")
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(log_fd)
        # Python-level writes too, where sys.stdout/sys.stderr were replaced by objects not on fds 1 and 2
        saved_sys = sys.stdout, sys.stderr
        sys.stdout = open(1, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)
        sys.stderr = open(2, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)
        root = logging.getLogger()
        file_handler = logging.StreamHandler(sys.stderr)  # fd 2 is the log file now
        file_handler.setFormatter(logging.Formatter(FORMAT))
        console_handler = logging.StreamHandler(console)
        console_handler.setFormatter(_ConsoleFormatter())
        console_handler.addFilter(_ConsoleFilter())
        # handlers on the old stderr/stdout (basicConfig's) step aside: the file handler writes every record once
        stepped_aside = [h for h in root.handlers if isinstance(h, logging.StreamHandler)
                         and getattr(h, "stream", None) in saved_sys]
        for h in stepped_aside:
            root.removeHandler(h)
        added = [file_handler, console_handler]
        for h in added:
            root.addHandler(h)
        _console, _stdout, _log_path = console, stdout, log_path
    try:
        yield log_path
    finally:
        with _lock:
            for h in added:
                root.removeHandler(h)
            for h in stepped_aside:
                root.addHandler(h)
            for stream in (sys.stdout, sys.stderr, console, stdout):
                try:
                    stream.flush()
                except (OSError, ValueError):
                    pass
            sys.stdout, sys.stderr = saved_sys
            os.dup2(saved_out, 1)
            os.dup2(saved_err, 2)
            os.close(saved_out)
            os.close(saved_err)
            console.close()
            stdout.close()
            _console = _stdout = _log_path = None


@contextmanager
def follow(read_done: Any, bar: Progress, every_s: float = 2.0) -> Iterator[None]:
    """Move ``bar`` to ``read_done()`` (work done so far, absolute) every ``every_s`` seconds while the body runs.

    For work done in other processes (Ray Train workers report their step to a counters actor): the
    driver's thread polls; a failing read is logged to the log file and polling goes on."""
    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(every_s):
            try:
                done = int(read_done() or 0)
            except Exception as e:
                logging.getLogger(__name__).debug("progress read failed: %s", e)
                continue
            if done > bar.n:
                bar.update(done - bar.n)

    thread = threading.Thread(target=poll, name="medembed-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=every_s + 5)
