"""A small OpenAI-compatible ``/v1/chat/completions`` server on 127.0.0.1 for tests and benchmarks.

It answers with grounded pairs cut from the note in the prompt (the ``pairs_v1`` layout), or
injects a fault selected by a marker in the note text:

``FAULT:malformed``   invalid (but complete) JSON
``FAULT:truncated``   JSON cut short, finish_reason "length"
``FAULT:refusal``     "I'm sorry, ..." with no JSON
``FAULT:empty``       ``{"pairs": []}``
``FAULT:ungrounded``  pairs whose passages are not in the note
``FAULT:lowrel``      pairs with relevance 0.1
``FAULT:fenced``      good pairs inside a ```json code fence
``FAULT:dupes``       the same query three times
``FAULT:429:N``       HTTP 429 with ``Retry-After`` for the first N calls, then success
``FAULT:500:N``       HTTP 500 for the first N calls, then success (``FAULT:500:always``: never succeeds)
``FAULT:slow``        sleeps ``slow_s`` before answering (past the client's timeout)

Every request is recorded (marker key, arrival time, the client's address and port, whether the
Authorization header was right).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_FAULT = re.compile(r"FAULT:([a-z0-9]+)(?::(\w+))?")
_NOTE = re.compile(r"Note \(part \d+ of \d+\):\n(.*)\Z", re.DOTALL)
_SENT = re.compile(r"(?<=[.!?])\s+")


def _note_of(user: str) -> str:
    m = _NOTE.search(user)
    return (m.group(1) if m else user).strip()


def good_pairs(note: str, n: int = 2) -> list[dict]:
    """What the fake model answers for a healthy note: one pair per leading sentence."""
    sents = [s for s in _SENT.split(note) if s.strip() and "FAULT:" not in s]
    out = []
    for i, s in enumerate(sents[:n]):
        words = re.findall(r"\w+", s)[:4]
        out.append({"query": f"q{i} " + " ".join(words).lower(), "query_type": "question", "passage": s,
                    "relevance": 0.9})
    return out


class _Handler(BaseHTTPRequestHandler):
    server: FakeOpenAIServer  # type: ignore[assignment]
    protocol_version = "HTTP/1.1"
    # TCP_NODELAY, as real servers (uvicorn under vLLM) set it: without it a keep-alive client waits
    # ~40 ms per response (the body write waits on the delayed ACK of the header write)
    disable_nagle_algorithm = True

    def log_message(self, *args: Any) -> None:  # keep test output quiet
        pass

    def do_POST(self) -> None:
        srv = self.server
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length))
        user = next(m["content"] for m in body["messages"] if m["role"] == "user")
        note = _note_of(user)
        fault = _FAULT.search(note)
        kind, arg = (fault.group(1), fault.group(2)) if fault else ("ok", None)
        key = note[:200]
        with srv.lock:
            srv.calls[key] += 1
            call_no = srv.calls[key]
            srv.log.append({"key": key, "kind": kind, "t": time.monotonic(), "peer": self.client_address,
                            "auth_ok": self.headers.get("Authorization") == srv.expect_auth})
        if srv.expect_auth is not None and self.headers.get("Authorization") != srv.expect_auth:
            return self._send(401, {"error": {"message": "bad api key"}})
        if srv.latency_s:
            time.sleep(srv.latency_s)
        if kind == "429" and (arg == "always" or call_no <= int(arg or 1)):
            return self._send(429, {"error": {"message": "rate limited"}}, {"Retry-After": str(srv.retry_after_s)})
        if kind == "500" and (arg == "always" or call_no <= int(arg or 1)):
            return self._send(500, {"error": {"message": "internal error"}})
        if kind == "slow":
            time.sleep(srv.slow_s)
        finish = "stop"
        pairs = good_pairs(note)
        if kind == "malformed":
            content = '{"pairs": [{"query": "x", "passage": \'single quotes\', "relevance": 1}]}'
        elif kind == "truncated":
            content, finish = json.dumps({"pairs": pairs})[:40], "length"
        elif kind == "refusal":
            content = "I'm sorry, but I cannot help with that request."
        elif kind == "empty":
            content = '{"pairs": []}'
        elif kind == "ungrounded":
            content = json.dumps([{"query": "made up", "passage": "The patient flew to the moon and back twice.",
                                   "relevance": 0.9}])
        elif kind == "lowrel":
            content = json.dumps({"pairs": [{**p, "relevance": 0.1} for p in pairs]})
        elif kind == "fenced":
            content = "```json\n" + json.dumps({"pairs": pairs}) + "\n```"
        elif kind == "dupes":
            content = json.dumps({"pairs": [pairs[0], {**pairs[0]}, {**pairs[0], "query": pairs[0]["query"].upper()}]})
        else:
            content = json.dumps({"pairs": pairs})
        self._send(200, {"id": "cmpl-fake", "object": "chat.completion", "model": body.get("model"),
                         "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                                      "finish_reason": finish}]})

    def _send(self, code: int, obj: dict, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(obj).encode("utf-8")
        try:
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
            pass


class FakeOpenAIServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512

    def __init__(self, *, api_key: str | None = None, latency_s: float = 0.0, retry_after_s: int = 1,
                 slow_s: float = 2.0):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.expect_auth = f"Bearer {api_key}" if api_key else None
        self.latency_s, self.retry_after_s, self.slow_s = latency_s, retry_after_s, slow_s
        self.lock = threading.Lock()
        self.calls: dict[str, int] = defaultdict(int)
        self.log: list[dict] = []
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def calls_with(self, marker: str) -> int:
        with self.lock:
            return sum(n for k, n in self.calls.items() if marker in k)

    def times_with(self, marker: str) -> list[float]:
        with self.lock:
            return [e["t"] for e in self.log if marker in e["key"]]

    def start(self) -> FakeOpenAIServer:
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
