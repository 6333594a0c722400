"""Top limited keys across workers (issue 18): one list per instance, stable API-key ids.

Attacking cases first: the same API key in two processes (Python's ``hash`` differs per
process, so it used to get one id per worker), a greedy client whose requests land on
several uvicorn workers (each GET used to show one worker's share), raw key values on disk.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from trimtab.agent.ratelimit_topkeys import SECRET_FILE, KeyIds, MergedTop, TopKeys

from tests.agent.ratelimit.test_limits_live import ITEMS, R, agent, fresh, set_limits
from tests.support import ROOT, poll

GREEDY = "sk_live_greedy_0123456789"
ID_OF = "from trimtab.agent.ratelimit_topkeys import KeyIds; import sys; " \
        "print(KeyIds(sys.argv[1])(sys.argv[2]))"


def id_in_process(state: Path, value: str) -> str:
    return subprocess.run([sys.executable, "-c", ID_OF, str(state), value], cwd=ROOT,
                          capture_output=True, text=True, check=True, timeout=60).stdout.strip()


def test_an_api_key_has_one_id_in_every_process_of_a_state_dir(tmp_path: Path) -> None:
    ids = {id_in_process(tmp_path / "a", GREEDY) for _ in range(3)}
    assert len(ids) == 1 and KeyIds(tmp_path / "a")(GREEDY) in ids
    (only,) = ids
    assert only.startswith("#") and len(only) == 9 and GREEDY not in only
    assert (tmp_path / "a" / SECRET_FILE).stat().st_mode & 0o777 == 0o600
    # Another state dir (another instance) has another secret: ids do not match across.
    assert id_in_process(tmp_path / "b", GREEDY) != only
    assert KeyIds(None)(GREEDY) != KeyIds(None)(GREEDY)  # no state dir: per process


def test_a_truncated_secret_is_refused_not_used(tmp_path: Path) -> None:
    (tmp_path / SECRET_FILE).write_bytes(b"short")
    with pytest.raises(OSError, match="32-byte"):
        KeyIds(tmp_path)("k")


def test_a_fleet_secret_gives_one_id_on_every_instance(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # Each instance's own secret shows the one greedy client as one key per instance (the
    # cockpit's panel then listed three "clients" at a third each). TRIMTAB_KEYID_SECRET,
    # set alike on every instance, makes the id fleet-wide; it wins over the state dir's.
    monkeypatch.setenv("TRIMTAB_KEYID_SECRET", "fleet-wide secret of the test")
    one = KeyIds(tmp_path / "a")(GREEDY)
    assert KeyIds(tmp_path / "b")(GREEDY) == one == KeyIds(None)(GREEDY)
    assert one.startswith("#") and len(one) == 9
    assert not (tmp_path / "a" / SECRET_FILE).exists()  # nothing of it written to disk
    monkeypatch.setenv("TRIMTAB_KEYID_SECRET", "fleet-wide secret of the test\n")
    assert KeyIds(None)(GREEDY) == one  # a trailing newline (a mounted secret) is no other
    monkeypatch.setenv("TRIMTAB_KEYID_SECRET", "another fleet's secret")
    assert KeyIds(None)(GREEDY) != one


@pytest.mark.parametrize("bad", ["", "short", " " * 20])
def test_a_weak_fleet_secret_is_refused_at_start(bad: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Refused when the agent starts (KeyIds is made then), not at the first refusal, and
    # the message names the variable but never echoes its value.
    monkeypatch.setenv("TRIMTAB_KEYID_SECRET", bad)
    with pytest.raises(ValueError, match="TRIMTAB_KEYID_SECRET") as err:
        KeyIds(None)
    assert bad.strip() == "" or bad not in str(err.value)


def test_merged_tallies_sum_by_key_and_drop_old_ones() -> None:
    class Clock:
        t = 0.0

        def __call__(self) -> float:
            return self.t

    from trimtab.agent.ratelimit import SHADOW, Limit
    lim = Limit("pk", "/s", "ip", 1.0, 1, SHADOW)
    workers = [TopKeys(clock=Clock()) for _ in range(2)]
    for n, top in zip((3, 4), workers, strict=True):
        for _ in range(n):
            top.refused(lim, {"client": ("10.0.0.1", 1), "headers": []})
    merged = MergedTop()
    for top in workers:
        merged.add(top.dump())
    assert merged.top("pk") == [{"key": "10.0.0.1", "limited": 0, "shadow_limited": 7,
                                 "error": 0}]
    stale = workers[0].dump()
    stale["written"] -= 601.0  # a worker gone for longer than the span
    late = MergedTop()
    late.add(stale)
    late.add(workers[1].dump())
    assert late.top("pk")[0]["shadow_limited"] == 4


@pytest.mark.slow
def test_a_greedy_client_on_several_workers_appears_once_with_its_sum(tmp_path: Path) -> None:
    with agent(tmp_path, "topw", state=True, workers=3) as base:
        set_limits(base, {"per-key": {"route": ITEMS, "key": "header:X-Api-Key",
                                      "rate": 0.001, "burst": 1, "mode": "shadow"}})
        pids: set[int] = set()
        sent = 0
        # Shadow: every request is served (the answer names its worker); all but the
        # first are would-be-limited (the workers share one bucket through the state dir).
        while sent < 200 and (len(pids) < 2 or sent < 40):
            pids.update(r.json()["pid"] for r in fresh(base, 10, headers={"x-api-key": GREEDY}))
            sent += 10
        assert len(pids) >= 2, "uvicorn never spread the greedy client over two workers"
        for polite in ("polite-1", "polite-2"):
            fresh(base, 2, headers={"x-api-key": polite})

        def top() -> list[dict[str, object]]:
            with httpx.Client(base_url=base, timeout=30) as c:  # a new connection: any worker
                return c.get("/_trimtab/limits", headers=R).json()["limits"]["per-key"][
                    "top_keys"]

        want = sent - 1
        got = poll(top, lambda t: bool(t) and t[0]["shadow_limited"] == want
                   and len(t) == 3, timeout=60)
        assert got[0]["shadow_limited"] == want, got
        assert [e["shadow_limited"] for e in got] == [want, 1, 1], got
        assert len({e["key"] for e in got}) == 3  # one id per key, whichever worker decided
        for _ in range(6):  # every worker answers the same list
            assert top()[0] == got[0]
        # The what-if names the greedy key by the same id (every worker: one secret).
        # (The what-if is per worker: ask until a worker that saw the greedy client answers.)
        def whatif_top() -> dict[str, object]:
            with httpx.Client(base_url=base, timeout=30) as c:
                return c.get("/_trimtab/limits/whatif", headers=R, params={
                    "route": ITEMS, "key": "header:x-api-key", "rate": 0.001,
                    "burst": 1}).json()

        whatif = poll(whatif_top, lambda w: bool(w["top_limited"])
                      and w["top_limited"][0]["limited"] > 1, timeout=30)
        assert whatif["top_limited"][0]["key"] == got[0]["key"], whatif
        text = json.dumps(got) + json.dumps(whatif)
        on_disk = b"".join(p.read_bytes() for p in (tmp_path / "state-topw").rglob("*")
                           if p.is_file())
    assert GREEDY not in text and b"polite-1" not in on_disk and GREEDY.encode() not in on_disk
