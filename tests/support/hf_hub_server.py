"""A private model repository on a loopback Hugging Face Hub API, for tests: no network, a token checked.

``FakeHubServer(repo_id, folder, token)`` serves the files of ``folder`` (e.g. the bundled model) as the
model repo ``repo_id`` at ``url``; clients reach it through ``HF_ENDPOINT=url``. As the Hub does for a
private repo, every request without ``Authorization: Bearer <token>`` gets 401 and nothing else. It answers
what ``huggingface_hub`` (``snapshot_download``, ``hf_hub_download``) and transformers / sentence-transformers
ask when loading a model: the repo's info (``/api/models/<repo>[/revision/<rev>]``) and its files
(``HEAD``/``GET /<repo>/resolve/<rev>/<path>``) and its file tree (``/api/models/<repo>/tree/<rev>``,
which ``snapshot_download(allow_patterns=...)`` lists); anything else is 404. Every request is recorded (method,
path, whether the token was right).
"""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

LOOPBACK = "127.0.0.2"  # reachable from Ray workers on this machine (tests.support.paths.LOOPBACK)


class _Handler(BaseHTTPRequestHandler):
    server: FakeHubServer  # type: ignore[assignment]
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, *args: Any) -> None:  # keep test output quiet
        pass

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def do_GET(self) -> None:
        self._answer(body=True)

    def _answer(self, body: bool) -> None:
        srv = self.server
        path = unquote(urlsplit(self.path).path)
        auth_ok = self.headers.get("Authorization") == f"Bearer {srv.token}"
        with srv.lock:
            srv.log.append({"method": self.command, "path": path, "auth_ok": auth_ok, "peer": self.client_address[0]})
        if not auth_ok:  # the Hub's answer for a private repo without a valid token
            return self._send(401, b'{"error":"Invalid credentials in Authorization header"}', body,
                              {"Content-Type": "application/json", "X-Error-Code": "RepoNotFound"})
        info = f"/api/models/{srv.repo_id}"
        if path == info or path.startswith(info + "/revision/"):
            return self._send(200, json.dumps(srv.info()).encode(), body, {"Content-Type": "application/json"})
        if path.startswith(info + "/tree/"):  # /tree/<rev>[/<folder>]: the whole repo (one page) or one folder
            _rev, _, folder = path[len(info + "/tree/"):].partition("/")
            entries = srv.tree(folder.strip("/"))
            if entries is None:
                return self._send(404, b'{"error":"Entry not found"}', body,
                                  {"Content-Type": "application/json", "X-Error-Code": "EntryNotFound"})
            return self._send(200, json.dumps(entries).encode(), body, {"Content-Type": "application/json"})
        prefix = f"/{srv.repo_id}/resolve/"
        if path.startswith(prefix):
            _rev, _, rel = path[len(prefix):].partition("/")
            f = srv.files.get(rel)
            if f is not None:
                data = f.read_bytes()
                return self._send(200, data, body, {"Content-Type": "application/octet-stream",
                                                    "X-Repo-Commit": srv.commit, "ETag": f'"{srv.etags[rel]}"'})
            return self._send(404, b'{"error":"Entry not found"}', body,
                              {"Content-Type": "application/json", "X-Error-Code": "EntryNotFound"})
        return self._send(404, b'{"error":"Not found"}', body, {"Content-Type": "application/json"})

    def _send(self, code: int, data: bytes, body: bool, headers: dict[str, str]) -> None:
        self.send_response(code)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)


class FakeHubServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, repo_id: str, folder: str | Path, token: str):
        super().__init__((LOOPBACK, 0), _Handler)
        self.repo_id, self.token = repo_id, token
        root = Path(folder)
        self.files = {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*"))
                      if p.is_file() and not p.name.startswith(".")}
        self.etags = {rel: hashlib.sha256(p.read_bytes()).hexdigest() for rel, p in self.files.items()}
        self.commit = hashlib.sha1(json.dumps(self.etags, sort_keys=True).encode()).hexdigest()
        self.log: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.server_address[1]}"

    def info(self) -> dict[str, Any]:
        return {"id": self.repo_id, "modelId": self.repo_id, "sha": self.commit, "private": True,
                "siblings": [{"rfilename": rel} for rel in self.files]}

    def tree(self, folder: str = "") -> list[dict[str, Any]] | None:
        """Every file and folder under ``folder`` (recursive, as ``list_repo_tree(recursive=True)`` asks), or
        None when there is no such folder."""
        prefix = f"{folder}/" if folder else ""
        files = [rel for rel in self.files if rel.startswith(prefix)]
        if folder and not files:
            return None
        parents = {"/".join(rel.split("/")[:i]) for rel in files for i in range(1, rel.count("/") + 1)}
        folders = sorted(d for d in parents if d.startswith(prefix))
        return ([{"type": "directory", "oid": self.commit, "size": 0, "path": d} for d in folders]
                + [{"type": "file", "oid": self.etags[rel], "size": self.files[rel].stat().st_size, "path": rel}
                   for rel in files])

    def __enter__(self) -> FakeHubServer:
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()
