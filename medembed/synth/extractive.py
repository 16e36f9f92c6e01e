"""Offline, deterministic weak supervision: (query, passage) pairs with no LLM.

Three kinds of pairs per note (part), all passages copied from the note:

* ``title``: the note's title -> its leading sentences (first part only; up to 3 sentences / 600 chars).
* ``inverse_cloze``: a sentence -> the window of up to 2 sentences either side, **with the query
  sentence removed** (as in Lee et al. 2019's inverse cloze task), so the pair cannot be solved by
  string matching; the window stays grounded (only the n-grams across the gap are new).
* ``keyword``: a salient term plus its strongest co-occurring salient term -> the sentence holding
  the term's first occurrence with one sentence either side. Terms are scored tf-idf-ish without a
  corpus: frequency in the note, minus stop/generic clinical words, plus a bonus for medical-looking
  words (suffixes such as -itis, -ectomy, -mab) and acronyms (ARDS, CT).

* ``finding`` (opt-in, ``synth.extractive_findings``): a finding or conclusion sentence ("we found",
  "these results suggest", "X reduced Y") -> the rest of the document without it: claim-like queries,
  the kind a reader searching the literature types, answered by the whole abstract or note.

Relevance scores are heuristic constants in [0, 1] (title 0.7, inverse cloze 0.5, keyword 0.5-0.9
by the term's frequency). Slots: one title pair, then the rest split between keyword and inverse
cloze queries (keywords get the odd one).
"""

from __future__ import annotations

import re
from collections import Counter

from medembed.synth import columns as C
from medembed.synth.base import BackendBase, Request, register_backend
from medembed.synth.config import SynthConfig
from medembed.synth.prompts import split_sentences
from medembed.synth.validate import Generation

EXTRACTIVE_VERSION = "extractive_v1"

_TERM = re.compile(r"[A-Za-z][A-Za-z0-9-]*[A-Za-z0-9]")
STOPWORDS = frozenset("""
a about above after again against all also although among an and any are as at be because been before
being below between both but by can could did does doing down during each either even ever every few for
from further had has have having he her here hers herself him himself his how however i if in into is it
its itself just many may might more most much must my neither no nor not now of off on once only or other
our out over own same she should since so some such than that the their them then there these they this
those though through thus to too under until up upon very was we were what when where whether which while
who whom whose why will with within without would yet you your
""".split())
GENERIC = frozenset("""
patient patients year years old month months week weeks day days hour hours time times history presented
presentation showed revealed admitted admission hospital normal left right case report reported noted
initial initially later follow following performed found given underwent received remained including
examination physical laboratory level levels value values increased decreased significant mild moderate
severe due well within without less further first second third two three four five male female man woman
boy girl age aged years-old year-old department clinic visit status result results test tests start started
""".split())
MEDICAL_SUFFIXES = ("itis", "osis", "emia", "aemia", "oma", "ectomy", "otomy", "ostomy", "plasty", "scopy",
                    "graphy", "pathy", "algia", "plasia", "trophy", "penia", "cytosis", "uria", "mab", "nib",
                    "olol", "pril", "sartan", "mycin", "cillin", "statin", "azole", "cycline", "floxacin",
                    "parin", "dipine", "prazole", "sone", "lone", "vir", "gram", "megaly", "rrhea", "ptysis")

TITLE_RELEVANCE = 0.7
ICT_RELEVANCE = 0.5
ICT_WINDOW = 2
ICT_MIN_WORDS, ICT_MAX_WORDS = 6, 60
LEAD_SENTENCES, LEAD_MAX_CHARS = 3, 600
FINDING_RELEVANCE = 0.6
FINDING_MIN_WORDS, FINDING_MAX_WORDS = 8, 40
FINDING_MAX_CHARS = 2000
FINDING_CUE = re.compile(
    r"\b(we (found|show|showed|demonstrate|conclude|observed|report)|these (results|findings|data)|in conclusion|"
    r"suggest|indicate|associated with|increase[sd]?|decrease[sd]?|reduce[sd]?|improve[sd]?|induce[sd]?|"
    r"inhibit(s|ed)?|promote[sd]?|correlat\w*|required for|is essential|predict(s|ed)?)\b", re.I)


def finding_pairs(text: str, k: int) -> list[dict]:
    """Up to ``k`` claim-like sentences (conclusions first) -> the rest of the text without them."""
    sents = split_sentences(text)
    if len(sents) < 3 or k <= 0:
        return []
    cands = [i for i, s in enumerate(sents)
             if FINDING_CUE.search(s) and FINDING_MIN_WORDS <= len(s.split()) <= FINDING_MAX_WORDS]
    out = []
    for i in sorted(cands, reverse=True)[:k]:  # the last findings of an abstract are its conclusions
        rest = " ".join(sents[j] for j in range(len(sents)) if j != i)[:FINDING_MAX_CHARS].rsplit(" ", 1)[0]
        out.append({C.QUERY: sents[i], C.QUERY_TYPE: "finding", C.PASSAGE: rest, C.RELEVANCE: FINDING_RELEVANCE})
    return out


def _is_acronym(surface: str) -> bool:
    letters = [c for c in surface if c.isalpha()]
    return 2 <= len(surface) <= 8 and len(letters) >= 2 and all(c.isupper() for c in letters)


def salient_terms(sentences: list[str]) -> list[tuple[str, float, int, str]]:
    """Salient terms of a text: (key, score, first sentence index, surface form), best first."""
    counts: Counter = Counter()
    first: dict[str, tuple[int, int, str]] = {}
    bonus: dict[str, float] = {}
    order = 0
    for si, sent in enumerate(sentences):
        for m in _TERM.finditer(sent):
            surface = m.group(0)
            key = surface.lower()
            acronym = _is_acronym(surface)
            if key in STOPWORDS or key in GENERIC or (len(key) < 4 and not acronym) or key.isdigit():
                continue
            counts[key] += 1
            if key not in first:
                first[key] = (si, order, surface)
                order += 1
            b = 2.0 if key.endswith(MEDICAL_SUFFIXES) else 0.0
            b += 1.5 if acronym else 0.0
            bonus[key] = max(bonus.get(key, 0.0), b)
    scored = [(k, counts[k] + bonus[k], first[k][0], first[k][2]) for k in counts]
    scored.sort(key=lambda t: (-t[1], first[t[0]][1]))
    return scored


def _even_pick(candidates: list[int], k: int) -> list[int]:
    if k <= 0 or not candidates:
        return []
    if k >= len(candidates):
        return list(candidates)
    if k == 1:
        return [candidates[len(candidates) // 2]]
    return [candidates[round(i * (len(candidates) - 1) / (k - 1))] for i in range(k)]


def extract_pairs(title: str, text: str, n: int, *, include_title: bool = True, findings: int = 0) -> list[dict]:
    """Candidate pairs (query, query_type, passage, relevance) for one note (part); deterministic.

    After the title pair, up to ``findings`` slots go to finding pairs (when the text has claim-like
    sentences); keyword and inverse-cloze pairs share the rest.
    """
    sents = split_sentences(text)
    if not sents or n <= 0:
        return []
    out: list[dict] = []
    title = " ".join((title or "").split())
    if include_title and title:
        lead: list[str] = []
        for s in sents[:LEAD_SENTENCES]:
            if lead and len(" ".join(lead + [s])) > LEAD_MAX_CHARS:
                break
            lead.append(s)
        out.append({C.QUERY: title, C.QUERY_TYPE: "title", C.PASSAGE: " ".join(lead), C.RELEVANCE: TITLE_RELEVANCE})
    out += finding_pairs(text, min(findings, n - len(out)))
    rest = n - len(out)
    n_ict = rest // 2
    ict_candidates = [i for i, s in enumerate(sents) if ICT_MIN_WORDS <= len(s.split()) <= ICT_MAX_WORDS] \
        if len(sents) >= 3 else []
    n_ict = min(n_ict, len(ict_candidates))
    terms = salient_terms(sents)
    n_kw = min(rest - n_ict, len(terms))
    if n_kw < rest - n_ict:  # too few terms: give the slots back to inverse cloze
        n_ict = min(rest - n_kw, len(ict_candidates))

    used_terms: set[str] = set()
    for key, score, si, surface in terms:
        if n_kw <= 0:
            break
        if key in used_terms:
            continue
        used_terms.add(key)
        companion = ""
        for k2, _, _, s2 in terms:
            if k2 != key and k2 not in used_terms and re.search(rf"(?<![\w-]){re.escape(s2)}(?![\w-])", sents[si]):
                companion = s2
                break
        query = f"{surface} {companion}".strip()
        passage = " ".join(sents[max(0, si - 1): si + 2])
        tf = score - (2.0 if key.endswith(MEDICAL_SUFFIXES) else 0.0) - (1.5 if _is_acronym(surface) else 0.0)
        rel = round(min(0.9, 0.5 + 0.1 * (tf - 1)), 2)
        out.append({C.QUERY: query, C.QUERY_TYPE: "keyword", C.PASSAGE: passage, C.RELEVANCE: rel})
        n_kw -= 1

    for i in _even_pick(ict_candidates, n_ict):
        window = [sents[j] for j in range(max(0, i - ICT_WINDOW), min(len(sents), i + ICT_WINDOW + 1)) if j != i]
        out.append({C.QUERY: sents[i], C.QUERY_TYPE: "inverse_cloze", C.PASSAGE: " ".join(window),
                    C.RELEVANCE: ICT_RELEVANCE})
    return out


@register_backend("extractive")
class ExtractiveBackend(BackendBase):
    """No LLM: title, inverse-cloze and salient-term pairs cut from the note itself."""

    mode = "batch"

    @staticmethod
    def model_name(cfg: SynthConfig) -> str:
        return "heuristic"

    @staticmethod
    def prompt_version_of(cfg: SynthConfig) -> str:
        # the algorithm's version (LLM templates do not apply); finding pairs make a different generator
        return EXTRACTIVE_VERSION + (f"+findings{cfg.extractive_findings}" if cfg.extractive_findings else "")

    def generate(self, requests: list[Request]) -> list[Generation]:
        n, k = self.cfg.queries_per_note, self.cfg.extractive_findings
        return [Generation(items=extract_pairs(r.title, r.text, n, include_title=r.part_index == 0, findings=k),
                           attempts=0) for r in requests]

    def close(self) -> None:
        pass
