from __future__ import annotations

from medembed.synth import columns as C
from medembed.synth.backends import Request, create_backend, registered_backends
from medembed.synth.config import SynthConfig
from medembed.synth.extractive import extract_pairs, salient_terms
from medembed.synth.prompts import split_sentences
from medembed.synth.validate import grounding, outcome_of

TITLE = "Acute cholecystitis after ceftriaxone"
NOTE = ("A 54-year-old woman presented with fever and right upper quadrant pain. "
        "Ultrasound showed gallstones and a thickened gallbladder wall. "
        "Blood tests revealed leukocytosis with a CRP of 180 mg/L. "
        "She was treated with ceftriaxone and metronidazole for acute cholecystitis. "
        "She underwent laparoscopic cholecystectomy on day 2 without complications. "
        "At the 3-month follow-up she was free of symptoms and the cholecystitis had resolved.")
S = split_sentences(NOTE)


def test_registry_has_all_backends():
    assert registered_backends() == ["extractive", "openai", "vllm"]


def test_salient_terms_rank_medical_words_first():
    terms = salient_terms(S)
    # ties (score 3.0) keep first-occurrence order; CRP is an acronym (tf 1 + 1.5)
    assert [t[0] for t in terms[:6]] == ["cholecystitis", "leukocytosis", "metronidazole", "cholecystectomy", "crp",
                                         "fever"]
    assert terms[0] == ("cholecystitis", 4.0, 3, "cholecystitis")  # tf 2 + medical suffix bonus 2


def test_extractive_exact_pairs():
    pairs = extract_pairs(TITLE, NOTE, 5)
    assert pairs == [
        {"query": TITLE, "query_type": "title", "passage": " ".join(S[0:3]), "relevance": 0.7},
        {"query": "cholecystitis metronidazole", "query_type": "keyword", "passage": " ".join(S[2:5]), "relevance": 0.6},
        {"query": "leukocytosis CRP", "query_type": "keyword", "passage": " ".join(S[1:4]), "relevance": 0.5},
        {"query": S[0], "query_type": "inverse_cloze", "passage": " ".join([S[1], S[2]]), "relevance": 0.5},
        {"query": S[5], "query_type": "inverse_cloze", "passage": " ".join([S[3], S[4]]), "relevance": 0.5},
    ]
    assert extract_pairs(TITLE, NOTE, 5) == pairs  # deterministic
    for p in pairs:
        assert grounding(p["passage"], NOTE) == 1.0  # every passage is cut from the note
        assert 0 <= p["relevance"] <= 1
    # the inverse-cloze query sentence is removed from its passage
    assert all(p["query"] not in p["passage"] for p in pairs if p["query_type"] == "inverse_cloze")


def test_extractive_edge_cases():
    assert extract_pairs(TITLE, "", 5) == []
    assert [p["query_type"] for p in extract_pairs("", NOTE, 3)] == ["keyword", "keyword", "inverse_cloze"]
    one = extract_pairs("", "Pneumonia treated with amoxicillin.", 4)  # one sentence: no inverse cloze
    assert [p["query"] for p in one] == ["amoxicillin Pneumonia", "Pneumonia treated", "treated"]
    assert [p["query_type"] for p in extract_pairs(TITLE, NOTE, 5, include_title=False)][0] == "keyword"


def test_extractive_backend_passes_validation():
    cfg = SynthConfig(queries_per_note=5)
    backend = create_backend(cfg)
    assert (backend.generator, backend.model, backend.prompt_version) == ("extractive", "heuristic", "extractive_v1")
    [gen] = backend.generate([Request("n1", 0, 1, TITLE, NOTE)])
    out = outcome_of(gen, NOTE, 0, min_relevance=cfg.min_relevance, min_grounding=cfg.min_grounding, seen_queries=set())
    assert out.reason is None and len(out.pairs) == 5 and not out.dropped
    assert {p[C.QUERY_TYPE] for p in out.pairs} == {"title", "keyword", "inverse_cloze"}


ABSTRACT = ("Sepsis is a leading cause of death in intensive care units. We enrolled 412 adults with septic shock "
            "in a randomized trial. Patients received early vasopressin or norepinephrine alone. Mortality at 28 days "
            "was recorded. Early vasopressin reduced mortality at 28 days compared with norepinephrine alone. "
            "These results suggest that early vasopressin should be considered in septic shock.")


def test_finding_pairs_take_conclusions_and_drop_them_from_the_passage():
    pairs = extract_pairs("Vasopressin in septic shock", ABSTRACT, 4, findings=2)
    assert [p["query_type"] for p in pairs][:3] == ["title", "finding", "finding"]
    conclusion, result = pairs[1]["query"], pairs[2]["query"]
    assert conclusion.startswith("These results suggest") and result.startswith("Early vasopressin reduced")
    for p in pairs[1:3]:
        assert p["query"] not in p["passage"] and "We enrolled 412 adults" in p["passage"]
    assert len(pairs) == 4 and pairs[3]["query_type"] in ("keyword", "inverse_cloze")
    assert [p["query_type"] for p in extract_pairs("Vasopressin", ABSTRACT, 4)].count("finding") == 0  # opt-in


def test_finding_pairs_pass_validation():
    cfg = SynthConfig(queries_per_note=4, extractive_findings=2)
    [gen] = create_backend(cfg).generate([Request("n1", 0, 1, "Vasopressin in septic shock", ABSTRACT)])
    out = outcome_of(gen, ABSTRACT, 0, min_relevance=cfg.min_relevance, min_grounding=cfg.min_grounding,
                     seen_queries=set())
    assert out.reason is None and not out.dropped and len(out.pairs) == 4
    assert [p[C.QUERY_TYPE] for p in out.pairs].count("finding") == 2


def test_findings_change_the_generator_version():
    from medembed.synth.config import SynthConfig
    from medembed.synth.extractive import ExtractiveBackend

    assert ExtractiveBackend(SynthConfig()).prompt_version == "extractive_v1"
    assert ExtractiveBackend(SynthConfig(extractive_findings=2)).prompt_version == "extractive_v1+findings2"
