"""Turning raw model outputs into validated pairs: pure functions, no I/O, no Ray.

Each request (a note, or one part of a long note) ends as a :class:`PartOutcome`: the pairs that
survived validation, or a failure reason from :data:`columns.FAILURE_REASONS`, plus how many
candidate pairs each validation rule dropped. :func:`assemble_note` folds the parts of a note
into one ledger row and its pair rows, so that every note ends with pairs or a recorded reason.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from medembed.synth import columns as C

_FENCE = re.compile(r"^\s*```[A-Za-z0-9_-]*[ \t]*\n?(.*?)\n?```\s*$", re.DOTALL)
_OPEN_FENCE = re.compile(r"^\s*```[A-Za-z0-9_-]*[ \t]*\n")
_REFUSAL = re.compile(
    r"\b(i'?m sorry|i am sorry|i apologi[sz]e|i cannot|i can'?t|i can ?not|i'?m unable|i am unable|"
    r"i'?m not able|i am not able|as an ai\b|i won'?t be able|i must decline|unable to comply)",
    re.IGNORECASE,
)
_WORD = re.compile(r"\w+")
_QT_ALIASES = {"keywords": "keyword", "kw": "keyword", "natural_language": "question", "followup": "follow_up",
               "outcome": "follow_up", "therapy": "treatment", "medication": "treatment", "test": "procedure"}


@dataclass
class Generation:
    """What a backend returns for one request: raw text to parse, or structured candidates, or an error."""

    content: str | None = None
    items: list[dict] | None = None  # candidates that need no parsing (extractive backend)
    finish_reason: str | None = None
    error: str | None = None  # a failure reason (timeout, http_error) when there is no content
    detail: str = ""  # secret-free
    attempts: int = 1


@dataclass
class PartOutcome:
    pairs: list[dict] = field(default_factory=list)  # query, query_type, passage, relevance, part_index
    reason: str | None = None
    detail: str = ""
    dropped: Counter = field(default_factory=Counter)
    attempts: int = 0


def strip_code_fences(text: str) -> str:
    """Remove a surrounding Markdown code fence (```json ... ```), also an unterminated opening one."""
    m = _FENCE.match(text)
    if m:
        return m.group(1).strip()
    m = _OPEN_FENCE.match(text)
    if m:
        return text[m.end():].strip()
    return text.strip()


def is_unterminated_json(text: str) -> bool:
    """True if ``text`` opens a JSON array/object (or string) that it never closes."""
    depth = 0
    in_str = esc = False
    started = False
    for ch in text:
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            started = True
        elif ch in "]}":
            depth -= 1
    return started and (depth > 0 or in_str)


def looks_like_refusal(text: str) -> bool:
    return bool(_REFUSAL.search(text))


def parse_output(content: str | None, finish_reason: str | None = None) -> tuple[list | None, str | None, str]:
    """Parse a model answer into candidate items; return (items, failure_reason, detail).

    Accepts a top-level JSON list or an object with a ``pairs`` list, possibly inside a code fence
    and surrounded by prose. ``items`` may be empty (the caller reports ``empty``).
    """
    truncated = finish_reason == "length"
    if content is None or not content.strip():
        return None, (C.F_TRUNCATED if truncated else C.F_EMPTY), "no content"
    text = strip_code_fences(content)
    starts = [i for i in (text.find("["), text.find("{")) if i >= 0]
    if not starts:
        if looks_like_refusal(text):
            return None, C.F_REFUSAL, _preview(text)
        return None, (C.F_TRUNCATED if truncated else C.F_MALFORMED), "no JSON in output: " + _preview(text)
    start = min(starts)
    try:
        obj, _ = json.JSONDecoder().raw_decode(text[start:])
    except json.JSONDecodeError as e:
        if truncated or is_unterminated_json(text[start:]):
            return None, C.F_TRUNCATED, f"unterminated JSON ({e.msg})"
        return None, C.F_MALFORMED, f"invalid JSON: {e.msg} at {e.pos}"
    if isinstance(obj, dict) and isinstance(obj.get("pairs"), list):
        return obj["pairs"], None, ""
    if isinstance(obj, list):
        return obj, None, ""
    return None, C.F_MALFORMED, "JSON is neither a list nor an object with a 'pairs' list"


def _preview(text: str, n: int = 120) -> str:
    t = " ".join(text.split())
    return t if len(t) <= n else t[: n - 3] + "..."


def normalize_query(q: str) -> str:
    return " ".join(_WORD.findall(q.lower()))


def tokens(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def ngrams(toks: list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(toks[i:i + n]) for i in range(len(toks) - n + 1)}


class Grounder:
    """Grounding of passages in one source text: the fraction of the passage's word 3-grams
    (lower-cased, punctuation and whitespace ignored) that occur in the source. Passages shorter
    than 3 words use their words (n = their length)."""

    def __init__(self, source: str, n: int = 3):
        self.n = n
        self._toks = tokens(source)
        self._cache: dict[int, set] = {}

    def _grams(self, n: int) -> set:
        if n not in self._cache:
            self._cache[n] = ngrams(self._toks, n)
        return self._cache[n]

    def score(self, passage: str) -> float:
        ptoks = tokens(passage)
        if not ptoks:
            return 0.0
        n = min(self.n, len(ptoks))
        pg = [tuple(ptoks[i:i + n]) for i in range(len(ptoks) - n + 1)]
        have = self._grams(n)
        return sum(1 for g in pg if g in have) / len(pg)


def grounding(passage: str, source: str) -> float:
    return Grounder(source).score(passage)


def check_item(item: Any) -> dict | None:
    """Schema check of one candidate; return it normalized, or None if invalid."""
    if not isinstance(item, dict):
        return None
    q, p, r = item.get("query"), item.get("passage"), item.get("relevance")
    if not isinstance(q, str) or not q.strip() or not isinstance(p, str) or not p.strip():
        return None
    if isinstance(r, bool) or not isinstance(r, (int, float)) or not (0.0 <= float(r) <= 1.0):
        return None
    qt = item.get("query_type")
    if qt is None:
        qt = "other"
    elif isinstance(qt, str):
        qt = re.sub(r"[\s-]+", "_", qt.strip().lower())
        qt = _QT_ALIASES.get(qt, qt)
        if qt not in C.QUERY_TYPES:
            return None
    else:
        return None
    return {C.QUERY: " ".join(q.split()), C.QUERY_TYPE: qt, C.PASSAGE: p.strip(), C.RELEVANCE: float(r)}


def validate_items(items: list, source: str, *, min_relevance: float, min_grounding: float,
                   seen_queries: set[str] | None = None) -> tuple[list[dict], Counter]:
    """Apply the rules in order schema, relevance, grounding, duplicate query; return (kept, dropped)."""
    seen = seen_queries if seen_queries is not None else set()
    grounder = Grounder(source)
    kept: list[dict] = []
    dropped: Counter = Counter()
    for item in items:
        pair = check_item(item)
        if pair is None:
            dropped[C.D_SCHEMA] += 1
            continue
        if pair[C.RELEVANCE] < min_relevance:
            dropped[C.D_LOW_RELEVANCE] += 1
            continue
        if grounder.score(pair[C.PASSAGE]) < min_grounding:
            dropped[C.D_UNGROUNDED] += 1
            continue
        key = normalize_query(pair[C.QUERY])
        if not key or key in seen:
            dropped[C.D_DUPLICATE] += 1
            continue
        seen.add(key)
        kept.append(pair)
    return kept, dropped


def outcome_of(gen: Generation, source: str, part_index: int, *, min_relevance: float, min_grounding: float,
               seen_queries: set[str]) -> PartOutcome:
    """Validate one backend output against the text it was generated from."""
    out = PartOutcome(attempts=gen.attempts)
    if gen.error is not None:
        out.reason, out.detail = gen.error, gen.detail
        return out
    if gen.items is not None:
        items, reason, detail = gen.items, None, ""
    else:
        items, reason, detail = parse_output(gen.content, gen.finish_reason)
    if reason is not None:
        out.reason, out.detail = reason, detail
        return out
    kept, dropped = validate_items(items, source, min_relevance=min_relevance, min_grounding=min_grounding,
                                   seen_queries=seen_queries)
    out.dropped = dropped
    for p in kept:
        p[C.PART_INDEX] = part_index
    out.pairs = kept
    if not kept:
        out.reason = C.F_EMPTY
        out.detail = "no pairs" if not items else "no pair survived validation: " + ", ".join(
            f"{k}={v}" for k, v in sorted(dropped.items()))
    return out


def assemble_note(note_id: str, parts: list[PartOutcome], *, generator: str, model: str, prompt_version: str,
                  run_id: str, now: datetime) -> tuple[dict, list[dict]]:
    """Fold the outcomes of a note's parts into (ledger row, pair rows).

    A note is ``ok`` when at least one pair survived in any part; otherwise it fails with the reason
    of its first failed part. ``detail`` lists every failed part (``part<i>:<reason>: ...``).
    """
    gkey = C.generator_key(generator, model, prompt_version)
    pairs: list[dict] = []
    dropped: Counter = Counter()
    failures: list[str] = []
    first_reason: str | None = None
    for i, po in enumerate(parts):
        dropped.update(po.dropped)
        if po.reason is not None:
            first_reason = first_reason or po.reason
            failures.append(f"part{i}:{po.reason}" + (f": {po.detail}" if po.detail else ""))
        for p in po.pairs:
            pairs.append({
                C.PAIR_ID: C.pair_id(note_id, gkey, p[C.QUERY]),
                C.NOTE_ID: note_id,
                C.PART_INDEX: p[C.PART_INDEX],
                C.QUERY: p[C.QUERY],
                C.QUERY_TYPE: p[C.QUERY_TYPE],
                C.PASSAGE: p[C.PASSAGE],
                C.RELEVANCE: p[C.RELEVANCE],
                C.GENERATOR: generator,
                C.MODEL: model,
                C.PROMPT_VERSION: prompt_version,
                C.CREATED_AT: now,
            })
    if not parts:
        first_reason, failures = C.F_EMPTY, ["note has no text"]
    row = {
        C.NOTE_ID: note_id,
        C.GENERATOR_KEY: gkey,
        C.STATUS: C.S_OK if pairs else C.S_FAILED,
        C.REASON: None if pairs else first_reason,
        C.N_PAIRS: len(pairs),
        C.N_PARTS: len(parts),
        C.ATTEMPTS: sum(p.attempts for p in parts),
        C.DETAIL: "; ".join(failures)[:2000],
        C.DROPPED: json.dumps(dict(sorted(dropped.items()))),
        C.RUN_ID: run_id,
        C.FINISHED_AT: now,
    }
    return row, pairs
