"""Where the repository, its bundled sample and the shared real data are."""

from __future__ import annotations

import json
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "medembed" / "data" / "sample_notes.jsonl"
SHARED_DATA = Path(os.environ.get("MEDEMBED_SHARED_DATA", REPO.parent / "shared" / "data"))
# Ray rewrites 127.0.0.1 to the machine's network address; other loopback addresses stay loopback
LOOPBACK = "127.0.0.2"


def sample_notes() -> list[dict]:
    """The bundled sample corpus's notes (JSON lines; ``#`` lines are comments)."""
    return [json.loads(ln) for ln in SAMPLE.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
