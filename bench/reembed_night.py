"""One nightly `medembed reembed` run after another, each in its own process with its own local Ray instance, on
the table a ``bench/nightly_scale.py --keep`` run left in bench/_work/nightly (benchmark instrument encoder).

Prints one JSON line per run: wall time, the driver's own peak RSS (``driver_peak_rss_mib`` of its manifest,
VmHWM: not ``ru_maxrss``, which carries this parent's high-water mark into the child), where the table-wide steps
ran and their tasks' peak RSS, the documents new / changed / deleted / unchanged, and the job's phases. The
corpora alternate as named: ``--corpora base night base`` is an unchanged night (the table serves the base
version after nightly_scale), then a night with changes, then the changes back.

    MEDEMBED_ALLOW_INSTRUMENT=1 python bench/reembed_night.py --chunks 1000000 --corpora base night base
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from nightly_scale import WORK, overrides  # noqa: E402 - bench/ is on sys.path (run as python bench/<name>.py)


def night(args: argparse.Namespace, corpus: Path, run: str) -> dict:
    """One ``medembed reembed`` with nightly_scale's own overrides (its table, runs folder and encoder)."""
    sets = overrides(args, corpus, run)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(MEDEMBED_ALLOW_INSTRUMENT="1", HF_HUB_OFFLINE="1")
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "medembed.app.cli", "reembed", *[x for s in sets for x in ("--set", s)]],
                       env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    m = json.loads((WORK / "runs" / run / "manifest.json").read_text())
    c = m["counts"]
    return {"run": run, "corpus": corpus.name, "rc": p.returncode, "wall_s": round(time.perf_counter() - t0, 1),
            "error": m.get("error"), "driver_peak_rss_mib": m.get("driver_peak_rss_mib"),
            "indexes_ran_in": m.get("indexes", {}).get("ran_in"),
            "sample_ran_in": m.get("verification", {}).get("sample_ran_in"),
            "new_changed_deleted_unchanged": [c.get(f"documents_{k}") for k in ("new", "changed", "deleted", "unchanged")],
            "durations_s": m.get("durations_s")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chunks", type=int, required=True, help="the nightly_scale corpus size (its corpus folder)")
    ap.add_argument("--corpora", nargs="+", choices=("base", "night"), default=["base", "night", "base"])
    ap.add_argument("--max-tokens", type=int, default=128, help="as the kept table was built (nightly_scale's)")
    ap.add_argument("--overlap", type=int, default=32, help="as the kept table was built")
    ap.add_argument("--dim", type=int, default=384, help="as the kept table was built")
    ap.add_argument("--set", action="append", default=[], help="extra job config overrides")
    args = ap.parse_args()
    corpus_dir = WORK / f"corpus-{args.chunks}"
    if not (WORK / "db").is_dir() or not corpus_dir.is_dir():
        ap.error(f"no kept nightly_scale table or corpus at {WORK} for {args.chunks} chunks "
                 f"(run bench/nightly_scale.py --chunks {args.chunks} --keep first)")
    stamp = time.strftime("%H%M%S")
    for i, name in enumerate(args.corpora):
        print(json.dumps(night(args, corpus_dir / name, f"{name}-{stamp}-{i}")), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
