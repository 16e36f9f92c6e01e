"""OpenAI-compatible ``/v1/chat/completions`` backend (vLLM server, LiteLLM, hosted APIs).

One instance lives in one Ray actor. It runs an asyncio event loop on a background thread with
one ``aiohttp`` session (keep-alive connections, at most ``max_concurrency`` open); every request
of every batch handed to ``generate`` (from any number of threads: the actor works on several
batches at once) goes through that loop, and a semaphore keeps at most ``max_concurrency`` HTTP
requests in flight per actor across all of them. ``generate`` and ``complete`` stay synchronous.
429, 5xx, connection errors and timeouts are retried up to ``max_retries`` times with exponential
backoff and jitter (a retry waits outside the semaphore); a 429's ``Retry-After`` (seconds) is
honoured. ``timeout_s`` bounds connecting and each wait for response bytes (a socket timeout). The
API key is read from the environment variable named by ``api_key_env``, sent only in the
Authorization header and redacted from every message.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import threading
from collections.abc import Awaitable, Callable

import aiohttp

from medembed.synth import columns as C
from medembed.synth.base import BackendBase, Request, register_backend
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
class OpenAIBackend(BackendBase):
    mode = "batch"
    concurrent_batches = True  # generate() is thread-safe: an actor may work on several batches at once

    def __init__(self, cfg: SynthConfig, *, api_key: Secret | str | None = None,
                 sleep: Callable[[float], Awaitable[None] | None] | None = None, seed: int | None = None):
        super().__init__(cfg)
        self.o = cfg.openai
        self.template = load_template(cfg.prompt_version)
        self.url = self.o.base_url.rstrip("/") + "/chat/completions"
        key = api_key.value if isinstance(api_key, Secret) else api_key
        self._secret = Secret(key or os.environ.get(self.o.api_key_env) or None)  # never a plain attribute
        if self._secret.value is None:
            log.info("synth.openai: %s is not set; sending requests without an API key", self.o.api_key_env)
        self._sleep = sleep  # None: asyncio.sleep; a plain function runs in a thread
        self._rng = random.Random(seed)
        self._start_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._session: aiohttp.ClientSession | None = None
        self._slots: asyncio.Semaphore | None = None

    @staticmethod
    def model_name(cfg: SynthConfig) -> str:
        return cfg.openai.model

    # --- public -------------------------------------------------------------------------------
    def generate(self, requests: list[Request]) -> list[Generation]:
        """Answers in request order; thread-safe (concurrent batches share ``max_concurrency``)."""
        if not requests:
            return []
        return self._run(self._gather(requests))

    def complete(self, req: Request) -> Generation:
        """One request with retries; never raises for HTTP/network problems."""
        return self._run(self.acomplete(req))

    def close(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or loop.is_closed():
            return
        try:
            if self._session is not None and loop.is_running():
                asyncio.run_coroutine_threadsafe(self._session.close(), loop).result(timeout=5)
        except Exception:
            pass
        try:
            loop.call_soon_threadsafe(loop.stop)
        except RuntimeError:  # already closed
            pass
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
        self._loop = self._thread = self._session = self._slots = None

    def body(self, req: Request) -> dict:
        msgs = self.template.messages(title=req.title, note=req.text, n=self.cfg.queries_per_note,
                                      part_index=req.part_index, n_parts=req.n_parts)
        body = {"model": self.o.model, "messages": msgs, "temperature": self.o.temperature,
                "max_tokens": self.o.max_tokens}
        if self.o.json_mode:
            body["response_format"] = {"type": "json_object"}
        return body

    async def acomplete(self, req: Request) -> Generation:
        """One request with retries, on the backend's loop; never raises for HTTP/network problems."""
        data = json.dumps(self.body(req)).encode("utf-8")
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._secret.value:
            headers["Authorization"] = f"Bearer {self._secret.value}"
        session, slots = self._session, self._slots
        assert session is not None and slots is not None, "acomplete runs on the backend's loop (use complete)"
        reason, detail = C.F_HTTP_ERROR, ""
        for attempt in range(self.o.max_retries + 1):
            retry_after: float | None = None
            try:
                async with slots:  # at most max_concurrency HTTP requests in flight (retry waits excluded)
                    async with session.post(self.url, data=data, headers=headers) as resp:
                        if resp.status < 400:
                            return self._parse_response(await resp.read(), attempt + 1)
                        code, ra = resp.status, resp.headers.get("Retry-After")
                        snippet = self._redact(await _read_snippet(resp))
                reason, detail = C.F_HTTP_ERROR, f"HTTP {code}" + (f": {snippet}" if snippet else "")
                if code != 429 and code < 500:
                    return Generation(error=reason, detail=detail, attempts=attempt + 1)
                if code == 429:
                    retry_after = parse_retry_after(ra)
            except (TimeoutError, asyncio.TimeoutError):  # aiohttp's ServerTimeoutError is one too
                reason, detail = C.F_TIMEOUT, f"no response within {self.o.timeout_s:g}s"
            except aiohttp.ClientConnectorError as e:
                reason, detail = C.F_HTTP_ERROR, self._redact(f"connection error: {e.os_error}")
            except (aiohttp.ClientError, OSError) as e:  # reset / remote disconnected mid-response
                reason, detail = C.F_HTTP_ERROR, self._redact(f"connection error: {type(e).__name__}")
            if attempt < self.o.max_retries:
                if retry_after is not None:
                    delay = min(retry_after, self.o.max_retry_after_s) * (1 + self._rng.uniform(0, 0.1))
                else:
                    delay = backoff_delay(attempt, self.o.backoff_base_s, self.o.backoff_max_s, self._rng)
                log.debug("synth.openai: note %s part %d: %s, retry %d in %.2fs", req.note_id, req.part_index,
                          detail, attempt + 1, delay)
                await self._wait(delay)
        attempts = self.o.max_retries + 1
        return Generation(error=reason, detail=f"{detail} (after {attempts} attempts)", attempts=attempts)

    # --- the event loop -----------------------------------------------------------------------
    def _run(self, coro: Awaitable):
        loop = self._ensure_loop()
        if threading.current_thread() is self._thread:
            raise RuntimeError("OpenAIBackend.generate/complete called on its own loop; await acomplete instead")
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._start_lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()

                def main() -> None:
                    asyncio.set_event_loop(loop)
                    loop.run_forever()
                    loop.close()

                thread = threading.Thread(target=main, name="synth-openai", daemon=True)
                thread.start()
                asyncio.run_coroutine_threadsafe(self._open(), loop).result()
                self._loop, self._thread = loop, thread
            return self._loop

    async def _open(self) -> None:
        # keep-alive pool of at most max_concurrency connections; no total timeout, a socket
        # timeout for connecting and for each wait for response bytes (as urllib's)
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.o.max_concurrency, keepalive_timeout=30),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.o.timeout_s, sock_read=self.o.timeout_s))
        self._slots = asyncio.Semaphore(self.o.max_concurrency)

    async def _gather(self, requests: list[Request]) -> list[Generation]:
        return list(await asyncio.gather(*(self.acomplete(r) for r in requests)))

    async def _wait(self, delay: float) -> None:
        if self._sleep is None:
            await asyncio.sleep(delay)
            return
        if asyncio.iscoroutinefunction(self._sleep):
            await self._sleep(delay)
        else:
            await asyncio.to_thread(self._sleep, delay)

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


async def _read_snippet(resp: aiohttp.ClientResponse, n: int = 200) -> str:
    try:
        raw = await resp.content.read(n)
    except Exception:
        return ""
    return " ".join(raw.decode("utf-8", "replace").split())[:n]
