"""The writer lease on a local folder: exclusive, renewed by a heartbeat, taken over once expired."""

from __future__ import annotations

import json
import multiprocessing as mp
import time

import pytest

from medembed.index.lease import EXIT_LEASE_HELD, LeaseHeld, LeaseLost, WriterLease, lease_uri


def test_second_writer_is_refused_with_the_holder_named(tmp_path):
    db = str(tmp_path / "db")
    with WriterLease(db, "notes", "run-a", ttl_s=30).acquire():
        with pytest.raises(LeaseHeld) as e:
            WriterLease(db, "notes", "run-b", ttl_s=30).acquire(wait_s=0)
        assert "run-a" in str(e.value) and e.value.exit_code == EXIT_LEASE_HELD == 3
        held = json.loads(open(lease_uri(db, "notes")).read())
        assert held["run_id"] == "run-a"
        # another serving name is another lease
        with WriterLease(db, "other", "run-c", ttl_s=30).acquire():
            pass
    # released: the next run gets it
    with WriterLease(db, "notes", "run-b", ttl_s=30).acquire() as lease:
        assert lease.took_over is None
    assert not (tmp_path / "db" / "_medembed" / "leases" / "notes.json").exists()


def test_heartbeat_keeps_the_lease_alive_past_its_ttl(tmp_path):
    db = str(tmp_path / "db")
    with WriterLease(db, "notes", "run-a", ttl_s=2.0).acquire() as a:
        time.sleep(5)  # > 2 ttl: only the heartbeat keeps it
        with pytest.raises(LeaseHeld):
            WriterLease(db, "notes", "run-b", ttl_s=2.0).acquire(wait_s=0)
        a.check()


def test_expired_lease_of_a_dead_holder_is_taken_over(tmp_path):
    db = str(tmp_path / "db")
    dead = WriterLease(db, "notes", "killed-run", ttl_s=5.0)
    assert dead.try_acquire() is None  # acquired, but no heartbeat: as if the process was SIGKILLed
    with pytest.raises(LeaseHeld):
        WriterLease(db, "notes", "run-b", ttl_s=30).acquire(wait_s=0)
    time.sleep(max(0.0, dead.record.expires_at - time.time()) + 0.2)
    with WriterLease(db, "notes", "run-b", ttl_s=30).acquire() as b:
        assert b.took_over["run_id"] == "killed-run"
        assert b.took_over["expired_for_s"] >= 0
        # the old holder finds out before it commits, and cannot renew or release b's lease
        with pytest.raises(LeaseLost):
            dead.check()
        assert dead.renew() is False
        dead.release()
        assert json.loads(open(lease_uri(db, "notes")).read())["run_id"] == "run-b"


def test_waiting_writer_gets_the_lease_when_it_is_released(tmp_path):
    db = str(tmp_path / "db")
    a = WriterLease(db, "notes", "run-a", ttl_s=30).acquire()
    import threading

    threading.Timer(0.5, a.release).start()
    t0 = time.monotonic()
    with WriterLease(db, "notes", "run-b", ttl_s=30).acquire(wait_s=10, poll_s=0.1):
        assert 0.4 < time.monotonic() - t0 < 5


def _contend(db: str, i: int, start: float, q) -> None:
    while time.time() < start:
        time.sleep(0.001)
    lease = WriterLease(db, "notes", f"p{i}", ttl_s=30)
    q.put((i, lease.try_acquire() is None))


def test_processes_racing_for_the_lease_get_exactly_one_winner(tmp_path):
    db = str(tmp_path / "db")
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    start = time.time() + 2
    procs = [ctx.Process(target=_contend, args=(db, i, start, q)) for i in range(6)]
    for p in procs:
        p.start()
    results = [q.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    winners = [i for i, won in results if won]
    assert len(winners) == 1
    assert json.loads(open(lease_uri(db, "notes")).read())["run_id"] == f"p{winners[0]}"
