"""The journal: append-only, durable across restarts, shared by processes, survives torn lines."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest
from trimtab.agent.journal import ACCEPTED, REFUSED, Journal


def _rec(journal: Journal, n: int, result: str = ACCEPTED) -> None:
    journal.record(who="alice", target="api-1", what="routes./a.ttl", old=n, new=n + 1,
                   reason="test", result=result)


def test_entries_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    first = Journal(path)
    _rec(first, 1)
    _rec(first, 2, REFUSED)
    again = Journal(path)
    assert [(e.id, e.old, e.result) for e in again.list()] == [(1, 1, ACCEPTED), (2, 2, REFUSED)]
    _rec(again, 3)
    assert [e.id for e in Journal(path).list(since_id=1)] == [2, 3]


def test_list_since_and_limit_and_get() -> None:
    journal = Journal(None)
    for n in range(5):
        _rec(journal, n)
    assert [e.id for e in journal.list(since_id=2, limit=2)] == [3, 4]
    assert journal.list(since_id=5) == []
    entry = journal.get(3)
    assert entry is not None and entry.old == 2
    assert journal.get(99) is None


def test_revert_is_a_new_entry() -> None:
    journal = Journal(None)
    _rec(journal, 10)
    original = journal.get(1)
    assert original is not None
    undo = journal.record(who="bob", target="api-1", what=original.what, old=original.new,
                          new=original.old, reason="undo", reverts=original.id)
    assert undo.id == 2 and undo.reverts == 1 and len(journal.list()) == 2


def test_bad_result_is_refused_and_nothing_written(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.jsonl")
    with pytest.raises(ValueError):
        _rec(journal, 1, result="maybe")
    assert journal.list() == [] and Journal(tmp_path / "j.jsonl").list() == []


def test_torn_last_line_is_skipped_and_sealed(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    _rec(Journal(path), 1)
    with open(path, "ab") as fh:
        fh.write(b'{"id": 2, "time": 1.0, "who": "crash')  # a write cut short
    journal = Journal(path)
    assert [e.id for e in journal.list()] == [1]
    _rec(journal, 2)
    reopened = Journal(path)
    assert [e.id for e in reopened.list()] == [1, 2]
    assert reopened.skipped_lines == 1


def _writer(path: str, count: int) -> None:
    journal = Journal(path)
    for n in range(count):
        _rec(journal, n)


def test_several_processes_get_unique_ascending_ids(tmp_path: Path) -> None:
    path = str(tmp_path / "j.jsonl")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, 25)) for _ in range(2)]
    try:
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join(60)
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
                proc.join()
    ids = [e.id for e in Journal(path).list()]
    assert ids == list(range(1, 51))


@pytest.mark.parametrize("file_backed", [True, False])
def test_values_json_cannot_encode_are_stored_safely(tmp_path: Path, file_backed: bool) -> None:
    # A refused change is refused *because* its value is bad; recording it must not fail.
    journal = Journal(tmp_path / "j.jsonl" if file_backed else None)
    deep: list[object] = []
    for _ in range(100):
        deep = [deep]
    bad = {"ttl": float("inf"), "neg": float("-inf"), "nan": float("nan"), "big": 10**400,
           "deep": deep, "obj": object}
    entry = journal.record(who="alice", target="api-1", what="config", old=None, new=bad,
                           result=REFUSED)
    new = entry.new
    assert (new["ttl"], new["neg"], new["nan"]) == ("inf", "-inf", "nan")
    assert isinstance(new["big"], str) and len(new["big"]) <= 80
    assert "nested deeper than" in str(new["deep"]) and "object" in new["obj"]
    if file_backed:
        assert Journal(tmp_path / "j.jsonl").list()[0].new == new
