from __future__ import annotations

import logging
import random
import threading
import time

import pytest

from medembed.synth import columns as C
from medembed.synth.backends import Request, create_backend
from medembed.synth.config import SynthConfig
from medembed.synth.openai_backend import Secret, backoff_delay, parse_retry_after
from medembed.synth.validate import outcome_of
from tests.support.openai_server import FakeOpenAIServer

SECRET = "sk-test-VERY-SECRET-0123456789"
BASE = "A 61-year-old man had chest pain for two hours. The ECG showed ST elevation in leads II and III. {} " \
       "He received aspirin and underwent primary angioplasty."


@pytest.fixture()
def server():
    with FakeOpenAIServer(api_key=SECRET, retry_after_s=1, slow_s=1.5) as srv:
        yield srv


def _backend(srv, monkeypatch, **openai):
    monkeypatch.setenv("SYNTH_TEST_KEY", SECRET)
    opts = {"base_url": srv.url, "api_key_env": "SYNTH_TEST_KEY", "timeout_s": 0.4, "max_retries": 2,
            "backoff_base_s": 0.05, "max_concurrency": 8, **openai}
    return create_backend(SynthConfig(backend="openai", openai=opts), seed=0)


def _run(backend, fault):
    text = BASE.format(fault)
    gen = backend.complete(Request("n", 0, 1, "STEMI", text))
    return gen, outcome_of(gen, text, 0, min_relevance=0.3, min_grounding=0.8, seen_queries=set())


@pytest.mark.parametrize("fault,reason,n_pairs,attempts", [
    ("", None, 2, 1),
    ("FAULT:fenced", None, 2, 1),
    ("FAULT:dupes", None, 1, 1),
    ("FAULT:malformed", C.F_MALFORMED, 0, 1),
    ("FAULT:truncated", C.F_TRUNCATED, 0, 1),
    ("FAULT:refusal", C.F_REFUSAL, 0, 1),
    ("FAULT:empty", C.F_EMPTY, 0, 1),
    ("FAULT:ungrounded", C.F_EMPTY, 0, 1),
    ("FAULT:lowrel", C.F_EMPTY, 0, 1),
    ("FAULT:500:1", None, 2, 2),
    ("FAULT:500:always", C.F_HTTP_ERROR, 0, 3),
    ("FAULT:slow", C.F_TIMEOUT, 0, 3),
])
def test_outcome_per_fault(server, monkeypatch, fault, reason, n_pairs, attempts):
    gen, out = _run(_backend(server, monkeypatch), fault)
    assert (out.reason, len(out.pairs), gen.attempts) == (reason, n_pairs, attempts)
    assert server.calls_with(fault or "underwent primary") == attempts
    assert all(e["auth_ok"] for e in server.log)  # the key was sent, in the header


def test_429_honours_retry_after(server, monkeypatch):
    backend = _backend(server, monkeypatch)
    t = time.monotonic()
    gen, out = _run(backend, "FAULT:429:2")
    assert (out.reason, len(out.pairs), gen.attempts) == (None, 2, 3)
    times = server.times_with("FAULT:429:2")
    assert len(times) == 3
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert all(1.0 <= g < 1.5 for g in gaps), gaps  # waited Retry-After (1 s) + at most 10% jitter
    assert time.monotonic() - t < 3.5


def test_non_retryable_status_and_no_server(monkeypatch):
    with FakeOpenAIServer(api_key="another-key") as srv:  # wrong key -> 401, not retried
        gen, out = _run(_backend(srv, monkeypatch), "")
        assert (out.reason, gen.attempts, srv.calls_with("underwent")) == (C.F_HTTP_ERROR, 1, 1)
        assert gen.detail.startswith("HTTP 401")
    gen, out = _run(_backend(srv, monkeypatch, base_url=srv.url), "")  # server gone: connection refused
    assert (out.reason, gen.attempts) == (C.F_HTTP_ERROR, 3)
    assert "connection error" in gen.detail


def test_concurrent_batch_is_bounded_and_ordered(monkeypatch):
    with FakeOpenAIServer(latency_s=0.2) as srv:
        backend = _backend(srv, monkeypatch, max_concurrency=8)
        reqs = [Request(f"n{i}", 0, 1, "t", f"Case {i} had fever. " + BASE.format("")) for i in range(16)]
        t = time.monotonic()
        gens = backend.generate(reqs)
        took = time.monotonic() - t
    assert 0.4 <= took < 1.5, took  # 16 requests, 8 in flight, 0.2 s each: two waves
    assert all(g.error is None and g.content for g in gens)
    assert [(f"Case {i} had") in g.content for i, g in enumerate(gens)] == [True] * 16  # answers in request order


def test_concurrent_batches_share_max_concurrency_over_keepalive(monkeypatch):
    """Batches handed over from several threads at once (an actor working on several batches) share
    one limit of max_concurrency requests in flight, over reused (keep-alive) connections."""
    with FakeOpenAIServer(latency_s=0.2) as srv:
        backend = _backend(srv, monkeypatch, max_concurrency=8)
        batches = [[Request(f"b{b}n{i}", 0, 1, "t", f"Case {b}-{i} had fever. " + BASE.format("")) for i in range(8)]
                   for b in range(4)]
        out: dict[int, list] = {}

        def work(b: int) -> None:
            out[b] = backend.generate(batches[b])

        t = time.monotonic()
        threads = [threading.Thread(target=work, args=(b,)) for b in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        took = time.monotonic() - t
        peers = {e["peer"] for e in srv.log}
        backend.close()
    assert 0.8 <= took < 2.5, took  # 32 requests, 8 in flight in all (not per batch), 0.2 s each: four waves
    for b in range(4):
        assert [(f"Case {b}-{i} had") in g.content for i, g in enumerate(out[b])] == [True] * 8
    assert len(srv.log) == 32 and len(peers) <= 8, len(peers)  # connections reused, at most max_concurrency


def test_close_and_reuse_after_close(server, monkeypatch):
    backend = _backend(server, monkeypatch)
    gen, out = _run(backend, "")
    backend.close()
    backend.close()  # idempotent
    gen, out = _run(backend, "")  # a closed backend starts a new loop on demand
    assert out.reason is None and len(out.pairs) == 2
    backend.close()


def test_secret_never_leaks(server, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG, logger="medembed")
    backend = _backend(server, monkeypatch)
    texts = []
    for fault in ("", "FAULT:500:always", "FAULT:slow", "FAULT:malformed", "FAULT:429:1"):
        gen, out = _run(backend, fault)
        texts += [repr(gen), gen.detail, out.detail, str(out.pairs)]
    texts += [caplog.text, repr(backend.__dict__), repr(Secret(SECRET)), str(Secret(SECRET)),
              backend.cfg.model_dump_json()]
    assert not [t for t in texts if SECRET in t]
    assert backend._secret.value == SECRET and Secret(SECRET).value == SECRET


def test_explicit_key_wins_over_env(server, monkeypatch):
    monkeypatch.setenv("SYNTH_TEST_KEY", "wrong")
    cfg = SynthConfig(backend="openai", openai={"base_url": server.url, "api_key_env": "SYNTH_TEST_KEY"})
    gen, out = _run(create_backend(cfg, api_key=Secret(SECRET)), "")
    assert out.reason is None


def test_retry_helpers():
    assert parse_retry_after("3") == 3.0 and parse_retry_after(" 0.5 ") == 0.5
    assert parse_retry_after(None) is None and parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") is None
    rng = random.Random(1)
    for retry in range(8):
        d = backoff_delay(retry, 1.0, 10.0, rng)
        exp = min(10.0, 2.0 ** retry)
        assert exp / 2 <= d <= exp


def test_request_body(server, monkeypatch):
    backend = _backend(server, monkeypatch, json_mode=True, temperature=0.2, max_tokens=512)
    body = backend.body(Request("n", 1, 2, "Title", "Note text."))
    assert body["model"] == backend.model and body["temperature"] == 0.2 and body["max_tokens"] == 512
    assert body["response_format"] == {"type": "json_object"}
    assert body["messages"][1]["content"].endswith("Note (part 2 of 2):\nNote text.\n")
