from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timezone

import pytest

from medembed.synth import columns as C
from medembed.synth.validate import (
    Generation,
    assemble_note,
    check_item,
    grounding,
    is_unterminated_json,
    normalize_query,
    outcome_of,
    parse_output,
    strip_code_fences,
    validate_items,
)

NOTE = ("A 54-year-old woman presented with fever and right upper quadrant pain. Ultrasound showed "
        "gallstones and a thickened gallbladder wall. She underwent laparoscopic cholecystectomy on day 2. "
        "At 3-month follow-up she was free of symptoms.")
P1 = "She underwent laparoscopic cholecystectomy on day 2."
P2 = "Ultrasound showed gallstones and a thickened gallbladder wall."


@pytest.mark.parametrize("raw,expected", [
    ('```json\n{"a": 1}\n```', '{"a": 1}'),
    ('```\n[1, 2]\n```', '[1, 2]'),
    ('  ```JSON\n[1]```  ', '[1]'),
    ('```json\n{"a": [1', '{"a": [1'),  # unterminated fence: opening removed
    ('{"a": 1}', '{"a": 1}'),
])
def test_strip_code_fences(raw, expected):
    assert strip_code_fences(raw) == expected


def test_parse_accepts_list_object_prose_and_fences():
    item = {"query": "q", "passage": "p", "relevance": 1}
    assert parse_output(json.dumps([item])) == ([item], None, "")
    assert parse_output(json.dumps({"pairs": [item]})) == ([item], None, "")
    assert parse_output("Here you go:\n```json\n" + json.dumps({"pairs": [item]}) + "\n```\nThanks") == ([item], None, "")
    assert parse_output('Sure! {"pairs": []} hope this helps') == ([], None, "")


@pytest.mark.parametrize("content,finish,reason", [
    (None, "stop", C.F_EMPTY),
    ("   ", "stop", C.F_EMPTY),
    ("", "length", C.F_TRUNCATED),
    ("I'm sorry, but I cannot help with that.", "stop", C.F_REFUSAL),
    ("I cannot provide medical queries for this note.", "stop", C.F_REFUSAL),
    ("As an AI language model, I must decline.", "stop", C.F_REFUSAL),
    ("The note describes a patient.", "stop", C.F_MALFORMED),
    ("The note describes a patient", "length", C.F_TRUNCATED),
    ('{"pairs": [{"query": "a", "passage": "b', "stop", C.F_TRUNCATED),  # unterminated
    ('{"pairs": [{"query": "a"}]}', "length", None),  # complete despite "length": kept
    ('{"pairs": [{"query": "a", \'passage\': 1}]}', "stop", C.F_MALFORMED),
    ('{"pairs": [1,]}', "stop", C.F_MALFORMED),
    ('{"queries": []}', "stop", C.F_MALFORMED),
    ('"just a string"', "stop", C.F_MALFORMED),
])
def test_parse_failure_reasons(content, finish, reason):
    assert parse_output(content, finish)[1] == reason


def test_unterminated_detection():
    assert is_unterminated_json('[{"a": "b"')
    assert is_unterminated_json('{"a": "b}')
    assert not is_unterminated_json('{"a": "b"}')
    assert not is_unterminated_json('{"a": "]"}')
    assert not is_unterminated_json("no json")


def test_check_item_schema():
    ok = {"query": "  gallbladder   surgery ", "passage": P1, "relevance": 1, "query_type": "Follow-up"}
    assert check_item(ok) == {"query": "gallbladder surgery", "query_type": "follow_up", "passage": P1,
                              "relevance": 1.0}
    assert check_item({"query": "q", "passage": "p", "relevance": 0.5})["query_type"] == "other"
    for bad in ({"query": "", "passage": "p", "relevance": 0.5},
                {"query": "q", "passage": " ", "relevance": 0.5},
                {"query": "q", "passage": "p", "relevance": 1.5},
                {"query": "q", "passage": "p", "relevance": -0.1},
                {"query": "q", "passage": "p", "relevance": "0.9"},
                {"query": "q", "passage": "p", "relevance": True},
                {"query": "q", "passage": "p"},
                {"query": "q", "passage": "p", "relevance": 0.5, "query_type": "poetry"},
                {"query": 3, "passage": "p", "relevance": 0.5},
                ["q", "p", 0.5]):
        assert check_item(bad) is None, bad


def test_grounding_is_case_and_whitespace_insensitive():
    assert grounding(P1, NOTE) == 1.0
    assert grounding("  she UNDERWENT laparoscopic\n cholecystectomy ON DAY 2 ", NOTE) == 1.0
    # 7 tokens -> 5 trigrams; replacing the last word breaks 1 of them
    assert grounding("She underwent laparoscopic cholecystectomy on day 5.", NOTE) == pytest.approx(4 / 5)
    assert grounding("The patient flew to the moon.", NOTE) == 0.0
    assert grounding("gallstones", NOTE) == 1.0  # shorter than 3 words: unigrams
    assert grounding("", NOTE) == 0.0


def test_validate_items_rules_and_counts():
    items = [
        {"query": "gallbladder surgery", "passage": P1, "relevance": 0.9, "query_type": "procedure"},
        {"query": "Gallbladder  surgery?", "passage": P2, "relevance": 0.8},  # duplicate after normalization
        {"query": "imaging findings", "passage": P2, "relevance": 0.2},  # low relevance
        {"query": "made up", "passage": "The patient flew to the moon and back.", "relevance": 0.9},  # ungrounded
        {"query": "bad", "passage": P2},  # schema
        {"query": "imaging", "passage": P2, "relevance": 0.3},  # at the threshold: kept
    ]
    kept, dropped = validate_items(items, NOTE, min_relevance=0.3, min_grounding=0.8)
    assert [k["query"] for k in kept] == ["gallbladder surgery", "imaging"]
    assert dropped == Counter({C.D_DUPLICATE: 1, C.D_LOW_RELEVANCE: 1, C.D_UNGROUNDED: 1, C.D_SCHEMA: 1})
    assert normalize_query("Gallbladder  surgery?") == "gallbladder surgery"


def test_outcomes_and_note_assembly():
    seen: set[str] = set()
    good = Generation(content=json.dumps({"pairs": [{"query": "cholecystectomy day", "passage": P1, "relevance": 0.9}]}),
                      finish_reason="stop", attempts=2)
    o1 = outcome_of(good, NOTE, 0, min_relevance=0.3, min_grounding=0.8, seen_queries=seen)
    o2 = outcome_of(Generation(error=C.F_TIMEOUT, detail="no response within 1s", attempts=3), NOTE, 1,
                    min_relevance=0.3, min_grounding=0.8, seen_queries=seen)
    o3 = outcome_of(good, NOTE, 2, min_relevance=0.3, min_grounding=0.8, seen_queries=seen)  # same query again
    assert (o1.reason, len(o1.pairs)) == (None, 1)
    assert (o2.reason, o3.reason, dict(o3.dropped)) == (C.F_TIMEOUT, C.F_EMPTY, {C.D_DUPLICATE: 1})
    now = datetime(2025, 1, 1, tzinfo=timezone.utc)
    row, pairs = assemble_note("n1", [o1, o2, o3], generator="openai", model="m", prompt_version="pairs_v1",
                               run_id="r", now=now)
    assert row[C.STATUS] == C.S_OK and row[C.REASON] is None and row[C.N_PAIRS] == 1 and row[C.N_PARTS] == 3
    assert row[C.ATTEMPTS] == 2 + 3 + 2
    assert row[C.DETAIL].startswith("part1:timeout: no response within 1s; part2:empty:")
    assert json.loads(row[C.DROPPED]) == {C.D_DUPLICATE: 1}
    assert pairs[0][C.PAIR_ID] == C.pair_id("n1", "openai|m|pairs_v1", "cholecystectomy day")
    assert pairs[0][C.PROMPT_VERSION] == "pairs_v1" and pairs[0][C.PART_INDEX] == 0
    failed, none = assemble_note("n2", [o2], generator="openai", model="m", prompt_version="pairs_v1", run_id="r",
                                 now=now)
    assert (failed[C.STATUS], failed[C.REASON], none) == (C.S_FAILED, C.F_TIMEOUT, [])
    empty, _ = assemble_note("n3", [], generator="openai", model="m", prompt_version="pairs_v1", run_id="r", now=now)
    assert (empty[C.STATUS], empty[C.REASON]) == (C.S_FAILED, C.F_EMPTY)
