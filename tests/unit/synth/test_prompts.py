from __future__ import annotations

import pytest

from medembed.config import ConfigError, load_config
from medembed.synth.config import GeneratePairsJobConfig, SynthConfig
from medembed.synth.prompts import load_template, sentence_spans, split_note, split_sentences


def test_template_renders_chat_messages():
    t = load_template("pairs_v1")
    msgs = t.messages(title="Acute cholecystitis", note="She had gallstones.", n=4, part_index=1, n_parts=3)
    assert [m["role"] for m in msgs] == ["system", "user"]
    assert msgs[0]["content"].startswith("You are a clinical information specialist")
    user = msgs[1]["content"]
    assert "write 4 diverse search queries" in user
    assert user.endswith("Title: Acute cholecystitis\nNote (part 2 of 3):\nShe had gallstones.\n")
    for kind in ("keyword", "question", "treatment", "procedure", "follow_up"):
        assert f'"{kind}"' in user
    assert '{"pairs": [{"query": "...", "query_type": "keyword", "passage": "...", "relevance": 0.9}]}' in user
    assert "(none)" in t.messages(title="", note="x", n=1)[1]["content"]


def test_unknown_template_is_a_config_error():
    with pytest.raises(FileNotFoundError):
        load_template("nope_v9")
    with pytest.raises(ConfigError, match="prompt_version"):
        load_config(GeneratePairsJobConfig, None, ["synth.backend=openai", "synth.prompt_version=nope_v9"])
    assert SynthConfig(prompt_version="nope_v9").backend == "extractive"  # extractive uses no template


def test_sentences():
    text = "Fever for 3 days. BP was 120/80 mmHg! Was it sepsis? (Unclear.) 2 doses given.  "
    assert split_sentences(text) == ["Fever for 3 days.", "BP was 120/80 mmHg!", "Was it sepsis?", "(Unclear.)",
                                     "2 doses given."]
    assert split_sentences("") == [] and sentence_spans("   ") == []
    assert split_sentences("no end punctuation") == ["no end punctuation"]


def test_split_note_packs_sentences_deterministically():
    sents = [f"Sentence number {i} is about the patient's course." for i in range(10)]  # 46 chars each
    text = " ".join(sents)
    parts = split_note(text, 200)
    assert parts == [" ".join(sents[0:4]), " ".join(sents[4:8]), " ".join(sents[8:10])]
    assert all(len(p) <= 200 and p in text for p in parts)
    assert split_note(text, 200) == parts
    assert split_note("short note.", 200) == ["short note."]
    assert split_note("  ", 200) == []


def test_split_note_cuts_overlong_sentences_at_whitespace():
    words = " ".join(f"w{i:03d}" for i in range(100))  # 499 chars, no sentence end
    parts = split_note(words, 200)
    assert all(len(p) <= 200 for p in parts)
    assert " ".join(parts) == words
    assert split_note("x" * 450, 200) == ["x" * 200, "x" * 200, "x" * 50]
