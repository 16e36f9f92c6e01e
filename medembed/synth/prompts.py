"""Versioned prompt templates, chat message rendering and the splitting of long notes into parts.

A template ``templates/<version>.txt`` has a ``<<<system>>>`` and a ``<<<user>>>`` section and uses
``string.Template`` placeholders: ``$n`` (queries asked for), ``$title``, ``$note``, ``$part_number``
and ``$n_parts``. Changing a template means adding a new version: the version is part of what a
note is "done" relative to, and it is recorded on every pair.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from string import Template

TEMPLATE_DIR = Path(__file__).parent / "templates"
_SECTION = re.compile(r"^<<<(system|user)>>>[ \t]*$", re.MULTILINE)

# A sentence ends at . ! or ? (optionally closed by a bracket or quote) followed by whitespace and then an upper-case letter, a digit or an
# opening bracket/quote. Deliberately simple and deterministic (no abbreviation dictionary).
_SENTENCE_END = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][)\]\"']))\s+(?=[A-Z0-9(\[\"'])")


def template_path(version: str) -> Path:
    return TEMPLATE_DIR / f"{version}.txt"


@dataclass(frozen=True)
class PromptTemplate:
    version: str
    system: str
    user: Template

    def messages(self, *, title: str, note: str, n: int, part_index: int = 0, n_parts: int = 1) -> list[dict]:
        """OpenAI-format chat messages for one note (part)."""
        user = self.user.substitute(n=n, title=title or "(none)", note=note, part_number=part_index + 1,
                                    n_parts=n_parts)
        return [{"role": "system", "content": self.system}, {"role": "user", "content": user}]


@lru_cache(maxsize=16)
def load_template(version: str) -> PromptTemplate:
    path = template_path(version)
    if not path.is_file():
        raise FileNotFoundError(f"no prompt template {path}")
    raw = path.read_text(encoding="utf-8")
    sections: dict[str, str] = {}
    marks = list(_SECTION.finditer(raw))
    for i, m in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(raw)
        sections[m.group(1)] = raw[m.end():end].strip("\n")
    if "user" not in sections:
        raise ValueError(f"prompt template {path} has no <<<user>>> section")
    return PromptTemplate(version=version, system=sections.get("system", "").strip(),
                          user=Template(sections["user"].rstrip() + "\n"))


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) character spans of the sentences of ``text``, whitespace between them excluded."""
    spans: list[tuple[int, int]] = []
    pos = 0
    for m in _SENTENCE_END.finditer(text):
        if text[pos:m.start()].strip():
            spans.append(_strip_span(text, pos, m.start()))
        pos = m.end()
    if text[pos:].strip():
        spans.append(_strip_span(text, pos, len(text)))
    return spans


def _strip_span(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def split_sentences(text: str) -> list[str]:
    return [text[s:e] for s, e in sentence_spans(text)]


def split_note(text: str, max_chars: int) -> list[str]:
    """Split a note into parts of at most ``max_chars`` characters, each a substring of the note.

    Whole sentences are packed greedily; a sentence longer than ``max_chars`` is cut at the last
    whitespace before the limit (or hard at the limit when it has none). Deterministic.
    """
    text = text or ""
    if len(text.strip()) <= max_chars:
        return [text.strip()] if text.strip() else []
    pieces: list[tuple[int, int]] = []
    for s, e in sentence_spans(text):
        while e - s > max_chars:
            cut = text.rfind(" ", s + 1, s + max_chars + 1)
            cut = cut if cut > s else s + max_chars
            pieces.append(_strip_span(text, s, cut))
            s = cut
            while s < e and text[s].isspace():
                s += 1
        if e > s:
            pieces.append((s, e))
    parts: list[str] = []
    cur_s, cur_e = pieces[0]
    for s, e in pieces[1:]:
        if e - cur_s <= max_chars:
            cur_e = e
        else:
            parts.append(text[cur_s:cur_e])
            cur_s, cur_e = s, e
    parts.append(text[cur_s:cur_e])
    return parts
