"""OpenAI-compatible ``/v1/chat/completions`` backend (vLLM server, LiteLLM, hosted APIs).

Stdlib only (``urllib.request``). One instance lives in one Ray actor and keeps up to
``max_concurrency`` requests in flight with a thread pool. 429, 5xx, connection errors and
timeouts are retried up to ``max_retries`` times with exponential backoff and jitter; a 429's
``Retry-After`` (seconds) is honoured. The API key is read from the environment variable named
by ``api_key_env``, sent only in the Authorization header and redacted from every message.
"""

from __future__ import annotations

import json
import logging
import os
import random
import socket
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from medembed.synth import columns as C
from medembed.synth.backends import Request, register_backend
from medembed.synth.config import SynthConfig
from medembed.synth.prompts import load_template
from medembed.synth.validate import Generation

log = logging.getLogger("medembed.synth")


class Secret:
    """A value that never shows itself in repr/str (logs, tracebacks, Ray task specs printed)."""

    __slots__ = ("value",)

    def __init__(self, value: str | None):
        self.value = value

    def __repr__(self) -> str:
        return "Secret(***)"

    __str__ = __repr__

    @classmethod
    def from_env(cls, name: str) -> Secret:
        return cls(os.environ.get(name) or None)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds form); None if absent or not a number."""
    if value is None:
        return None
    try:
        secs = float(value.strip())
    except ValueError:
        return None
    return max(0.0, secs)


def backoff_delay(retry: int, base: float, cap: float, rng: random.Random) -> float:
    """Exponential backoff with "equal jitter": half fixed, half random, capped."""
    exp = min(cap, base * (2 ** retry))
    return exp / 2 + rng.uniform(0, exp / 2)


@register_backend("openai")
class OpenAIBackend:
    mode = "batch"

    def __init__(self, cfg: SynthConfig, *, api_key: Secret | str | None = None,
                 sleep: Callable[[float], None] = time.sleep, seed: int | None = None):
        self.cfg = cfg
        self.o = cfg.openai
        self.model = self.model_name(cfg)
        self.prompt_version = self.prompt_version_of(cfg)
        self.template = load_template(cfg.prompt_version)
        self.url = self.o.base_url.rstrip("/") + "/chat/completions"
        key = api_key.value if isinstance(api_key, Secret) else api_key
        self._secret = Secret(key or os.environ.get(self.o.api_key_env) or None)  # never a plain attribute
        if self._secret.value is None:
            log.info("synth.openai: %s is not set; sending requests without an API key", self.o.api_key_env)
        self._sleep = sleep
        self._rng = random.Random(seed)
        self._pool = ThreadPoolExecutor(max_workers=self.o.max_concurrency, thread_name_prefix="synth-openai")

    @staticmethod
    def model_name(cfg: SynthConfig) -> str:
        return cfg.openai.model

    @staticmethod
    def prompt_version_of(cfg: SynthConfig) -> str:
        return cfg.prompt_version

    # --- public -------------------------------------------------------------------------------
    def generate(self, requests: list[Request]) -> list[Generation]:
        return list(self._pool.map(self.complete, requests))

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def body(self, req: Request) -> dict:
        msgs = self.template.messages(title=req.title, note=req.text, n=self.cfg.queries_per_note,
                                      part_index=req.part_index, n_parts=req.n_parts)
        body = {"model": self.o.model, "messages": msgs, "temperature": self.o.temperature,
                "max_tokens": self.o.max_tokens}
        if self.o.json_mode:
            body["response_format"] = {"type": "json_object"}
        return body

    def complete(self, req: Request) -> Generation:
        """One request with retries; never raises for HTTP/network problems."""
        data = json.dumps(self.body(req)).encode("utf-8")
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._secret.value:
            headers["Authorization"] = f"Bearer {self._secret.value}"
        reason, detail = C.F_HTTP_ERROR, ""
        for attempt in range(self.o.max_retries + 1):
            retry_after: float | None = None
            try:
                http_req = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
                with urllib.request.urlopen(http_req, timeout=self.o.timeout_s) as resp:
                    payload = resp.read()
                return self._parse_response(payload, attempt + 1)
            except urllib.error.HTTPError as e:
                snippet = self._redact(_read_snippet(e))
                reason, detail = C.F_HTTP_ERROR, f"HTTP {e.code}" + (f": {snippet}" if snippet else "")
                if e.code != 429 and e.code < 500:
                    return Generation(error=reason, detail=detail, attempts=attempt + 1)
                if e.code == 429:
                    retry_after = parse_retry_after(e.headers.get("Retry-After") if e.headers else None)
            except (TimeoutError, socket.timeout):
                reason, detail = C.F_TIMEOUT, f"no response within {self.o.timeout_s:g}s"
            except urllib.error.URLError as e:
                if isinstance(e.reason, (TimeoutError, socket.timeout)):
                    reason, detail = C.F_TIMEOUT, f"no response within {self.o.timeout_s:g}s"
                else:
                    reason, detail = C.F_HTTP_ERROR, self._redact(f"connection error: {e.reason}")
            except (ConnectionError, OSError) as e:  # reset / remote disconnected mid-response
                reason, detail = C.F_HTTP_ERROR, self._redact(f"connection error: {type(e).__name__}")
            if attempt < self.o.max_retries:
                if retry_after is not None:
                    delay = min(retry_after, self.o.max_retry_after_s) * (1 + self._rng.uniform(0, 0.1))
                else:
                    delay = backoff_delay(attempt, self.o.backoff_base_s, self.o.backoff_max_s, self._rng)
                log.debug("synth.openai: note %s part %d: %s, retry %d in %.2fs", req.note_id, req.part_index,
                          detail, attempt + 1, delay)
                self._sleep(delay)
        attempts = self.o.max_retries + 1
        return Generation(error=reason, detail=f"{detail} (after {attempts} attempts)", attempts=attempts)

    # --- helpers ------------------------------------------------------------------------------
    def _parse_response(self, payload: bytes, attempts: int) -> Generation:
        try:
            obj = json.loads(payload)
            choice = obj["choices"][0]
            content = (choice.get("message") or {}).get("content")
            finish = choice.get("finish_reason")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            return Generation(error=C.F_MALFORMED, detail="response is not a chat completion", attempts=attempts)
        return Generation(content=content, finish_reason=finish, attempts=attempts)

    def _redact(self, text: str) -> str:
        key = self._secret.value
        if key and key in text:
            text = text.replace(key, "***")
        return text


def _read_snippet(e: urllib.error.HTTPError, n: int = 200) -> str:
    try:
        raw = e.read(n)
    except Exception:  # noqa: BLE001 - the body is only a hint for the ledger
        return ""
    return " ".join(raw.decode("utf-8", "replace").split())[:n]
