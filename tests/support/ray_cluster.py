"""A real multi-node Ray cluster on this machine, for e2e tests.

Every node is a ``ray start ... --block`` process in its own session (process group), so the
fixture can stop exactly the processes it started: SIGTERM to each ``ray start --block`` (which
shuts down its node's raylet, GCS, dashboard and workers), SIGKILL to the process group if that
does not finish in time, and finally SIGKILL to any leftover process that names this cluster's
private temp dir on its command line. ``ray stop --force`` is deliberately *not* used: it kills
every Ray process of the user on the machine, including local instances that other test runs
(or other engineers) have going at the same time.

Authentication: Ray 2.60 enables token auth by default. Every node, ``ray job submit`` and the
job driver run with ``RAY_AUTH_MODE=token`` and ``RAY_AUTH_TOKEN=<a token made for this cluster>``
(the C++ token loader reads ``RAY_AUTH_TOKEN`` before ``~/.ray/auth_token``), so the cluster never
depends on, or writes, the user's ``~/.ray/auth_token``; HTTP clients send it as a bearer token
(:attr:`RayCluster.auth_headers`). Disabling auth on all sides would work as well, but keeping it
on tests the setup the README documents for real clusters.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.processes import kill_pids

RAY = [sys.executable, "-m", "ray.scripts.scripts"]
# Ray rewrites 127.0.0.1 (--node-ip-address) to the machine's network address; other loopback addresses stay
LOOPBACK = "127.0.0.2"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def pids_titled(title: bytes, among: list[int] | None = None) -> list[int]:
    """Pids (of ``among``, default all) whose command line contains ``title``: a Ray worker's process title
    names its actor class, e.g. ``ray::RayTrainWorker``."""
    if among is None:
        among = [int(d.name) for d in Path("/proc").iterdir() if d.name.isdigit()]
    found = []
    for pid in among:
        try:
            if title in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
        except OSError:
            continue
    return found


@dataclass
class RayCluster:
    num_workers: int = 1
    cpus_per_node: int = 1
    extra_env: dict[str, str] = field(default_factory=dict)
    start_timeout_s: float = 90.0
    head_cpus: int | None = None  # default cpus_per_node; 0: the head runs no tasks (as on real clusters)

    def __post_init__(self) -> None:
        self.token = uuid.uuid4().hex + uuid.uuid4().hex
        self.procs: list[subprocess.Popen] = []
        self.logs: list[Path] = []
        self.env = {**os.environ, **self.extra_env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token,
                    "RAY_USAGE_STATS_ENABLED": "0", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
                    # the GCS checks each raylet every second (default 3 s) and declares a node dead after 5 failed
                    # checks in a row: a killed node is seen in ~5 s, not ~15 s (a check still waits 10 s for an answer
                    # before it fails, so a slow but live node is not declared dead)
                    "RAY_health_check_period_ms": "1000"}
        self.env.pop("RAY_ADDRESS", None)
        self._fresh()

    def _fresh(self) -> None:
        # short path: Ray puts unix sockets under it (108-byte limit)
        self.temp_dir = tempfile.mkdtemp(prefix="mer", dir="/tmp")
        self.gcs_port = free_port()
        self.dashboard_port = free_port()
        self.procs, self.logs = [], []

    # --- addresses ------------------------------------------------------------------------
    @property
    def gcs_address(self) -> str:
        return f"{LOOPBACK}:{self.gcs_port}"

    @property
    def dashboard_url(self) -> str:
        return f"http://{LOOPBACK}:{self.dashboard_port}"

    @property
    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    # --- lifecycle ------------------------------------------------------------------------
    def _start_node(self, args: list[str], name: str) -> None:
        log = Path(self.temp_dir) / f"{name}.out"
        self.logs.append(log)
        fh = open(log, "wb")
        proc = subprocess.Popen(RAY + ["start", "--block", "--disable-usage-stats", *args], env=self.env,
                                stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        fh.close()
        self.procs.append(proc)

    def _node_ports(self) -> list[str]:
        # explicit free ports: two nodes on one machine must not share the fixed defaults (52365, 10001, ...)
        return ["--node-manager-port", str(free_port()), "--object-manager-port", str(free_port()),
                "--dashboard-agent-listen-port", str(free_port()), "--dashboard-agent-grpc-port", str(free_port()),
                "--runtime-env-agent-port", str(free_port()), "--metrics-export-port", str(free_port()),
                "--object-store-memory", str(256 * 1024 ** 2)]

    def start(self, attempts: int = 2) -> RayCluster:
        """Start head and workers; on an overloaded machine `ray start` can hit Ray's fixed 30 s
        node-registration timeout, so a failed start is cleaned up and tried again from scratch."""
        for attempt in range(1, attempts + 1):
            try:
                self._start_once()
                return self
            except (RuntimeError, TimeoutError):
                logs = self.tail_logs()
                self.stop()
                if attempt == attempts:
                    raise RuntimeError(f"could not start the Ray cluster:\n{logs}") from None
                self._fresh()
        return self

    def _start_once(self) -> None:
        self._start_node(["--head", f"--node-ip-address={LOOPBACK}", f"--port={self.gcs_port}",
                          f"--dashboard-host={LOOPBACK}", f"--dashboard-port={self.dashboard_port}",
                          "--include-dashboard=true", f"--ray-client-server-port={free_port()}",
                          f"--num-cpus={self.cpus_per_node if self.head_cpus is None else self.head_cpus}",
                          f"--temp-dir={self.temp_dir}",
                          *self._node_ports()], "head")
        self.wait_for_nodes(1)
        for _ in range(self.num_workers):
            self._start_worker()
        self.wait_for_nodes(1 + self.num_workers)

    def _start_worker(self) -> None:
        i = len(self.procs) - 1
        # Own temp dir per worker node: without one a worker node uses the head's (same machine, same
        # path), so two runtime-env agents unpack a job's working dir into the same folder at once and a
        # driver or worker imports from a half-unpacked copy ("No module named medembed.<random module>").
        self._start_node([f"--address={self.gcs_address}", f"--node-ip-address={LOOPBACK}",
                          f"--num-cpus={self.cpus_per_node}", f"--temp-dir={self.temp_dir}/w{i}",
                          *self._node_ports()], f"worker{i}")

    def add_worker(self) -> None:
        """Start one more worker node (e.g. to replace a killed one) and wait until it is alive. A killed node
        can still be listed alive for a while, so this waits for a node id not seen before, not for a count."""
        before = {n["node_id"] for n in self.alive_nodes()}
        self._start_worker()
        deadline = time.monotonic() + self.start_timeout_s
        while not any(n["node_id"] not in before for n in self.alive_nodes()):
            if time.monotonic() > deadline or self.procs[-1].poll() is not None:
                raise RuntimeError(f"the new worker node did not come up:\n{self.tail_logs()}")
            time.sleep(1.0)

    def _get(self, path: str) -> dict:
        req = urllib.request.Request(self.dashboard_url + path, headers=self.auth_headers)
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def alive_nodes(self) -> list[dict]:
        data = self._get("/api/v0/nodes?limit=100&detail=true")
        nodes = data["data"]["result"]["result"]
        return [n for n in nodes if n.get("state") == "ALIVE"]

    def wait_for_nodes(self, n: int) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        last: object = None
        while time.monotonic() < deadline:
            for p in self.procs:
                if p.poll() is not None:
                    raise RuntimeError(f"ray start exited with {p.returncode}:\n{self.tail_logs()}")
            try:
                alive = self.alive_nodes()
                if len(alive) >= n:
                    return
                last = f"{len(alive)} alive"
            except (urllib.error.URLError, OSError, KeyError, ValueError) as e:
                last = e
            time.sleep(1.0)
        raise TimeoutError(f"{n} Ray nodes not alive after {self.start_timeout_s}s (last: {last}):\n{self.tail_logs()}")

    def tail_logs(self, chars: int = 3000) -> str:
        out = []
        for log in self.logs:
            try:
                out.append(f"--- {log.name}\n{log.read_text(errors='replace')[-chars:]}")
            except OSError:
                pass
        return "\n".join(out)

    def _our_pids(self) -> list[int]:
        """Pids (other than ours) whose command line or environment names this cluster."""
        me = os.getpid()
        found = []
        for d in Path("/proc").iterdir():
            if not d.name.isdigit() or int(d.name) == me:
                continue
            try:
                cmd = (d / "cmdline").read_bytes()
                if self.temp_dir.encode() in cmd or self.gcs_address.encode() in cmd:
                    found.append(int(d.name))
                    continue
                env = (d / "environ").read_bytes()
                if f"RAY_AUTH_TOKEN={self.token}".encode() in env:
                    found.append(int(d.name))
            except OSError:
                continue
        return found

    # --- faults ---------------------------------------------------------------------------------
    @staticmethod
    def process_tree(root: int) -> list[int]:
        """``root`` and all its descendants (by parent pid), from /proc."""
        children: dict[int, list[int]] = {}
        for d in Path("/proc").iterdir():
            if not d.name.isdigit():
                continue
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
        tree, todo = [], [root]
        while todo:
            pid = todo.pop()
            tree.append(pid)
            todo.extend(children.get(pid, []))
        return tree

    def find_pids(self, title: bytes) -> list[int]:
        """Pids of this cluster's processes titled ``title`` (see :func:`pids_titled`)."""
        return pids_titled(title, [pid for p in self.procs for pid in self.process_tree(p.pid)])

    def wait_for_pid(self, title: bytes, timeout_s: float = 60) -> int:
        deadline = time.monotonic() + timeout_s
        while not (pids := self.find_pids(title)):
            if time.monotonic() > deadline:
                raise AssertionError(f"no process titled {title!r} in the cluster after {timeout_s}s")
            time.sleep(0.5)
        return pids[0]

    def node_of_pid(self, pid: int) -> int:
        """Index (0 = head, 1.. = workers) of the node whose process tree holds ``pid``."""
        for i, p in enumerate(self.procs):
            if pid in self.process_tree(p.pid):
                return i
        raise LookupError(f"pid {pid} belongs to no node of this cluster")

    def kill_node(self, index: int) -> list[int]:
        """SIGKILL a node's whole process tree (``ray start``, raylet, its workers): a node lost at once."""
        p = self.procs[index]
        pids = self.process_tree(p.pid)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        p.wait(timeout=30)
        return pids

    def stop(self, timeout_s: float = 8.0) -> list[int]:
        """Stop every process of this cluster; return the pids that had to be killed afterwards."""
        for p in reversed(self.procs):  # workers first, head last
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)  # `ray start --block` then shuts its node down and reaps it
        deadline = time.monotonic() + timeout_s
        for p in self.procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(timeout=10)
        leftovers: list[int] = []
        for _ in range(20):
            pids = self._our_pids()
            if not pids:
                break
            leftovers.extend(pid for pid in pids if pid not in leftovers)
            kill_pids(pids)
            time.sleep(0.5)
        self.procs = []
        shutil.rmtree(self.temp_dir, ignore_errors=True)
        return leftovers

    def __enter__(self) -> RayCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
