"""The control client against a real demo fleet (3 instance agents, balancer, load).

One fleet for the module; every test undoes its own changes (rollback) so the
next one starts from the demo's defaults, and uses a route of its own where
it can so a failure does not cascade.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from trimtab.agent.procs import free_port
from trimtab.app.control.client import ControlClient
from trimtab.app.control.types import (
    APPLIED,
    CONFLICT,
    GUARD_RAIL,
    REFUSED,
    SKIPPED,
    UNCHANGED,
    UNKNOWN,
    UNREACHABLE,
    Agent,
    ControlError,
    ServerView,
    disagreements,
    expected_etags,
    preview_weights,
    ttl_table,
)
from trimtab.demo.fleet import DemoFleet

from tests.support import wait_for

SEARCH, ORDERS, PRODUCTS = "/search", "/orders", "/products/{id}"


@pytest.fixture(scope="module")
def fleet() -> Iterator[DemoFleet]:
    fleet = DemoFleet(rps=50)
    try:
        fleet.start()
        yield fleet
    finally:
        fleet.stop()


@pytest.fixture(scope="module")
def instances(fleet: DemoFleet) -> list[Agent]:
    return [Agent.from_target(t) for t in fleet.targets if t.kind == "instance"]


@pytest.fixture(scope="module")
def balancer(fleet: DemoFleet) -> Agent:
    return next(Agent.from_target(t) for t in fleet.targets if t.kind == "balancer")


@pytest.fixture
def client(fleet: DemoFleet, instances: list[Agent], balancer: Agent
           ) -> Iterator[ControlClient]:
    """A write client; afterwards everything the test changed is reverted (newest first)."""
    since = time.time()
    with ControlClient(fleet.write_token) as c:
        try:
            yield c
        finally:
            report = c.revert_since([*instances, balancer], since, "test cleanup")
            # an invalidation is reported, not undone: its dropped entries stay dropped
            assert all(o.status in (APPLIED, UNCHANGED) or (o.status == SKIPPED and r.what == "cache.invalidate")
                       for r, o in report), report
            defaults = ttl_table(c.read_configs(instances))
            assert [defaults[r][a] for r in (SEARCH, ORDERS) for a in instances] == [0.0] * 6
            assert [s.weight for s in c.read_balancer(balancer).servers] == [1, 1, 1]


def ttls(client: ControlClient, agents: list[Agent], route: str) -> dict[str, float | None]:
    """The route's TTL per instance name, read fresh."""
    return {a.name: client.read_config(a).ttl(route) for a in agents}


def test_set_ttl_on_all_is_in_every_config_and_the_merged_journal(
        client: ControlClient, instances: list[Agent]) -> None:
    since = time.time() - 1
    reads = client.read_configs(instances)
    before = ttls(client, instances, SEARCH)
    result = client.set_ttl(instances, SEARCH, 7.5, "test: all", expected_etags(reads))
    try:
        assert {o.status for o in result.outcomes.values()} == {APPLIED}, result
        assert ttls(client, instances, SEARCH) == {a.name: 7.5 for a in instances}
        rows, errors = client.journal(instances, since)
        assert errors == {}
        mine = [r for r in rows if r.reason == "test: all"]
        assert sorted(r.target for r in mine) == sorted(a.name for a in instances)
        assert [r.time for r in rows] == sorted(r.time for r in rows)
        for row in mine:
            change = row.changes[0]
            assert (row.who, row.result, change.path) == ("operator", "accepted",
                                                          f"routes.{SEARCH}.ttl")
            assert (change.old, change.new) == (before[row.target], 7.5)
        for outcome in result.outcomes.values():
            assert outcome.changes[0].new == 7.5 and outcome.journal_ids
    finally:
        undone = client.rollback(result)
    assert {o.status for o in undone.outcomes.values()} == {APPLIED}
    assert ttls(client, instances, SEARCH) == before


def test_same_value_again_is_unchanged_not_applied(client: ControlClient,
                                                   instances: list[Agent]) -> None:
    reads = client.read_configs(instances[:1])
    current = reads[instances[0]].ttl(SEARCH)
    result = client.set_ttl(instances[:1], SEARCH, current, "noop", expected_etags(reads))
    assert result.outcomes[instances[0]].status == UNCHANGED
    assert result.outcomes[instances[0]].journal_ids == ()


def test_canary_on_one_instance_makes_the_others_disagree(
        client: ControlClient, instances: list[Agent]) -> None:
    canary = instances[0]
    reads = client.read_configs(instances)
    assert ORDERS not in disagreements(ttl_table(reads))
    result = client.set_ttl([canary], ORDERS, 3.0, "canary", expected_etags(reads))
    try:
        assert list(result.outcomes) == [canary] and result.ok
        table = ttl_table(client.read_configs(instances))
        assert table[ORDERS][canary] == 3.0
        assert {table[ORDERS][a] for a in instances[1:]} == {0.0}
        # Two instances agree at 0: the canary is the odd one out.
        assert disagreements(table)[ORDERS] == {canary}
    finally:
        client.rollback(result)
    assert ORDERS not in disagreements(ttl_table(client.read_configs(instances)))


def test_stale_etag_is_a_conflict_naming_what_the_other_operator_changed(
        fleet: DemoFleet, client: ControlClient, instances: list[Agent]) -> None:
    reads = client.read_configs(instances)
    with ControlClient(fleet.write_token) as other:
        theirs = other.set_ttl(instances[:1], SEARCH, 11.0, "other operator",
                               expected_etags(other.read_configs(instances[:1])))
    assert theirs.ok
    ours = client.set_ttl(instances, SEARCH, 22.0, "mine", expected_etags(reads))
    conflict = ours.outcomes[instances[0]]
    assert conflict.status == CONFLICT and conflict.http_status == 412
    assert [(c.path, c.old, c.new) for c in conflict.changes] == \
        [(f"routes.{SEARCH}.ttl", 0.0, 11.0)]
    assert f"routes.{SEARCH}.ttl: 0.0 → 11.0" in conflict.message
    assert {ours.outcomes[a].status for a in instances[1:]} == {APPLIED}
    assert ttls(client, instances[:1], SEARCH) == {instances[0].name: 11.0}  # not overwritten
    # After the user saw the diff, a retry with the ETag the conflict reported goes through.
    again = client.retry(ours, include_conflicts=True)
    assert list(again.outcomes) == [instances[0]]
    assert again.outcomes[instances[0]].status == APPLIED
    assert ttls(client, instances, SEARCH) == {a.name: 22.0 for a in instances}


def test_unreachable_instance_reported_while_others_apply_then_rollback(
        client: ControlClient, instances: list[Agent]) -> None:
    ghost = Agent("ghost", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    reads = client.read_configs([*instances, ghost])
    assert isinstance(reads[ghost], ControlError) and reads[ghost].status == 0
    expected = {**expected_etags(reads), ghost: '"1-whatever"'}
    result = client.set_ttl([*instances, ghost], ORDERS, 4.0, "partial", expected)
    assert result.outcomes[ghost].status == UNREACHABLE
    assert "unreachable: ghost" in result.outcomes[ghost].message
    assert result.with_status(APPLIED) == instances and not result.ok
    assert ttls(client, instances, ORDERS) == {a.name: 4.0 for a in instances}
    again = client.retry(result)  # only the failed one is tried again
    assert list(again.outcomes) == [ghost] and again.outcomes[ghost].status == UNREACHABLE
    undone = client.rollback(result)
    assert list(undone.outcomes) == instances
    assert {o.status for o in undone.outcomes.values()} == {APPLIED}
    assert ttls(client, instances, ORDERS) == {a.name: 0.0 for a in instances}


@pytest.mark.parametrize(("route", "ttl", "field"), [
    (SEARCH, -5, "routes['/search'].ttl"),
    (SEARCH, "abc", "routes['/search'].ttl"),
    (SEARCH, 1e12, "routes['/search'].ttl"),
    ("/nope", 5, "routes['/nope']"),
])
def test_bad_ttl_refused_with_the_agents_message_and_nothing_changed(
        client: ControlClient, instances: list[Agent], route: str, ttl: object,
        field: str) -> None:
    reads = client.read_configs(instances)
    result = client.set_ttl(instances, route, ttl, "bad", expected_etags(reads))
    for outcome in result.outcomes.values():
        assert (outcome.status, outcome.http_status, outcome.fields) == (REFUSED, 422, (field,))
        assert outcome.message.startswith(field) and outcome.journal_ids == ()
    after = client.read_configs(instances)
    assert expected_etags(after) == expected_etags(reads)


def test_no_etag_is_refused_locally(client: ControlClient, instances: list[Agent]) -> None:
    result = client.set_ttl(instances[:1], SEARCH, 5, "no read", {})
    assert result.outcomes[instances[0]].status == REFUSED
    assert "read its config first" in result.outcomes[instances[0]].message


@pytest.mark.parametrize(("weights", "field"), [
    ({"api-1": 9000}, "servers.api-1.weight"),
    ({"api-1": -1}, "servers.api-1.weight"),
    ({"api-9": 2}, "servers.api-9"),
])
def test_bad_weights_refused_and_nothing_changed(client: ControlClient, balancer: Agent,
                                                 weights: dict[str, int], field: str) -> None:
    state = client.read_balancer(balancer)
    result = client.set_weights(balancer, weights, "bad", state.etag)
    outcome = result.outcomes[balancer]
    assert (outcome.status, outcome.http_status, outcome.fields) == (REFUSED, 422, (field,))
    assert outcome.message
    assert client.read_balancer(balancer).etag == state.etag


def test_read_only_token_cannot_write(fleet: DemoFleet, instances: list[Agent],
                                      balancer: Agent) -> None:
    with ControlClient(fleet.read_token) as reader:
        assert reader.access(instances[0]).read
        # The agents report the caller's scopes, so no write has to be tried (and journaled
        # as refused) to know the controls must be disabled.
        write, reason = reader.can_write(instances[0])
        assert write is False and reason
        assert reader.can_write(balancer)[0] is False
        reads = reader.read_configs(instances[:1])
        result = reader.set_ttl(instances[:1], SEARCH, 9, "ro", expected_etags(reads))
        outcome = result.outcomes[instances[0]]
        assert (outcome.status, outcome.http_status) == (REFUSED, 403)
        assert "scope 'read'" in outcome.message
        write, reason = reader.can_write(instances[0])
        assert write is False and "read" in reason
        state = reader.read_balancer(balancer)
        refused = reader.set_weights(balancer, {"api-1": 2}, "ro", state.etag)
        assert refused.outcomes[balancer].http_status == 403
        assert reader.can_write(balancer)[0] is False
        assert reader.read_balancer(balancer).etag == state.etag
        assert reader.read_config(instances[0]).etag == reads[instances[0]].etag


def test_weights_3_1_1_match_the_preview_then_revert(client: ControlClient,
                                                     balancer: Agent) -> None:
    state = client.read_balancer(balancer)
    preview = preview_weights(state.servers, {"api-1": 3})
    assert preview == pytest.approx({"api-1": 0.6, "api-2": 0.2, "api-3": 0.2})
    result = client.set_weights(balancer, {"api-1": 3, "api-2": 1, "api-3": 1}, "3:1:1",
                                state.etag)
    outcome = result.outcomes[balancer]
    assert outcome.status == APPLIED
    assert [(c.path, c.old, c.new) for c in outcome.changes] == \
        [("servers.api-1.weight", 1, 3)]  # only what really changed is claimed
    after = client.read_balancer(balancer)
    assert after.etag == outcome.etag
    assert {s.name: s.expected_share for s in after.servers} == pytest.approx(preview)
    rows, _ = client.journal([balancer], time.time() - 30)
    assert any(r.what == "servers.api-1.weight" and (r.old, r.new) == (1, 3) for r in rows)
    entry = next(r for r in rows if r.id == outcome.journal_ids[0])
    reverted = client.revert(entry)
    assert reverted.status == APPLIED
    assert [s.weight for s in client.read_balancer(balancer).servers] == [1, 1, 1]


def test_guard_rail_all_weights_zero_refused_without_force(client: ControlClient,
                                                          balancer: Agent) -> None:
    state = client.read_balancer(balancer)
    zero = {s.name: 0 for s in state.servers}
    outcome = client.set_weights(balancer, zero, "oops", state.etag).outcomes[balancer]
    assert (outcome.status, outcome.http_status) == (GUARD_RAIL, 409)
    assert "every weight to zero" in outcome.message
    forced = client.set_weights(balancer, zero, "", state.etag, force=True).outcomes[balancer]
    assert forced.status == REFUSED and "reason" in forced.fields
    assert client.read_balancer(balancer).etag == state.etag


def test_balancer_stale_etag_and_drain(fleet: DemoFleet, client: ControlClient,
                                       balancer: Agent) -> None:
    state = client.read_balancer(balancer)
    drained = client.set_state(balancer, "api-3", "drain", "slow one", state.etag)
    assert drained.ok
    shares = {s.name: s.expected_share for s in client.read_balancer(balancer).servers}
    assert shares == pytest.approx({"api-1": 0.5, "api-2": 0.5, "api-3": 0.0})
    stale = client.set_weights(balancer, {"api-1": 2}, "late", state.etag).outcomes[balancer]
    assert stale.status == CONFLICT
    assert [(c.path, c.old, c.new) for c in stale.changes] == \
        [("servers.api-3.state", "ready", "drain")]
    undone = client.rollback(drained)
    assert undone.ok
    assert {s.state for s in client.read_balancer(balancer).servers} == {"ready"}


def test_revert_since_undoes_ttls_and_weights_newest_first(
        client: ControlClient, instances: list[Agent], balancer: Agent) -> None:
    since = time.time()
    reads = client.read_configs(instances)
    assert client.set_ttl(instances, SEARCH, 5, "a", expected_etags(reads)).ok
    reads = client.read_configs(instances)
    assert client.set_ttl(instances, SEARCH, 6, "b", expected_etags(reads)).ok
    state = client.read_balancer(balancer)
    assert client.set_weights(balancer, {"api-2": 4}, "c", state.etag).ok
    report = client.revert_since([*instances, balancer], since, "undo all")
    assert [o.status for _, o in report] == [APPLIED] * 7
    assert [r.time for r, _ in report] == sorted((r.time for r, _ in report), reverse=True)
    assert set(ttls(client, instances, SEARCH).values()) == {0.0}
    assert [s.weight for s in client.read_balancer(balancer).servers] == [1, 1, 1]


def test_whatif_and_invalidate(client: ControlClient, instances: list[Agent]) -> None:
    agent = instances[0]

    def has_traffic() -> bool:
        try:
            return client.whatif(agent, PRODUCTS, [5]).requests > 0
        except ControlError:
            return False
    wait_for(has_traffic)
    answer = client.whatif(agent, PRODUCTS, [5, 30, 300])
    assert set(answer.hit_ratio) == {5.0, 30.0, 300.0}
    assert all(0 <= h <= 1 for h in answer.hit_ratio.values())
    assert answer.hit_ratio[300.0] >= answer.hit_ratio[5.0]
    assert answer.current_ttl == 10.0
    with pytest.raises(ControlError) as err:
        client.whatif(agent, "/nope", [5])
    assert err.value.status == 404 and "/nope" in err.value.message
    since = time.time()
    dropped = client.invalidate(instances, route=PRODUCTS, reason="purge")
    assert {o.status for o in dropped.outcomes.values()} == {APPLIED}
    assert {o.message for o in client.rollback(dropped).outcomes.values()} == {"not revertible"}
    bad = client.invalidate(instances[:1], route="/nope", reason="purge")
    assert bad.outcomes[agent].status == REFUSED and bad.outcomes[agent].fields == ("route",)
    # "Revert everything since" says what it did not undo: it was silent about invalidations
    report = client.revert_since(instances, since, "undo")
    assert [(r.source, o.status) for r, o in report] == [(r.source, SKIPPED) for r, _ in report]
    assert sorted(r.source.name for r, _ in report) == sorted(a.name for a in instances)
    assert all(r.what == "cache.invalidate" and "dropped cache entries stay dropped" in o.message
               for r, o in report), report


def test_token_is_never_shown(fleet: DemoFleet) -> None:
    with ControlClient(fleet.write_token) as c:
        assert fleet.write_token not in repr(c) and fleet.write_token not in str(c)


def test_preview_weights_counts_only_servers_up_and_ready() -> None:
    servers = (ServerView("a", 1, "ready", True, 0.0, None),
               ServerView("b", 1, "drain", True, 0.0, None),
               ServerView("c", 1, "ready", False, 0.0, None),
               ServerView("d", 1, "maint", True, 0.0, None))
    assert preview_weights(servers, {"a": 2, "b": 5}) == {"a": 1.0, "b": 0.0, "c": 0.0, "d": 0.0}
    assert preview_weights(servers, {"a": 0}) == {"a": 0.0, "b": 0.0, "c": 0.0, "d": 0.0}
    three = (ServerView("x", 1, "ready", True, 0, None), ServerView("y", 1, "ready", True, 0, None))
    assert preview_weights(three, {"x": 3}) == {"x": 0.75, "y": 0.25}


def test_instance_calls_never_go_to_a_balancer(client: ControlClient, balancer: Agent) -> None:
    # The balancer forwards unknown /_trimtab/ paths to an upstream instance.
    with pytest.raises(ControlError, match="not an instance"):
        client.read_config(balancer)
    result = client.set_ttl([balancer], SEARCH, 5, "wrong target", {balancer: "*"})
    assert result.outcomes[balancer].status == REFUSED
    assert client.rollback(client.invalidate([balancer], route=SEARCH)).outcomes == {}


def test_lost_answer_is_unknown_not_unreachable(fleet: DemoFleet) -> None:
    # A listener that accepts and never answers: the PATCH was sent, its fate is unknown.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        mute = Agent("mute", f"http://127.0.0.1:{silent.getsockname()[1]}")
        with ControlClient(fleet.write_token, timeout=0.3) as c:
            result = c.set_ttl([mute], SEARCH, 5, "lost", {mute: '"1-x"'})
            assert result.outcomes[mute].status == UNKNOWN
            assert "may have been applied" in result.outcomes[mute].message
            assert c.retry(result).outcomes[mute].status == UNKNOWN


def test_revert_since_cancels_a_change_and_its_revert_along_a_chain(
        client: ControlClient, instances: list[Agent]) -> None:
    one = instances[:1]
    since = time.time()
    change = client.set_ttl(one, SEARCH, 5, "A", expected_etags(client.read_configs(one)))
    undo = client.rollback(change)  # back to 0
    rows, _ = client.journal(one, since)
    redo = client.revert(next(r for r in rows if r.id == undo.outcomes[one[0]].journal_ids[0]))
    assert redo.status == APPLIED and ttls(client, one, SEARCH) == {one[0].name: 5.0}
    report = client.revert_since(one, since, "undo")
    # Newest first the redo cancels the undo; only the original change is left to revert.
    assert [(r.id, o.status) for r, o in report] == \
        [(change.outcomes[one[0]].journal_ids[0], APPLIED)]
    assert ttls(client, one, SEARCH) == {one[0].name: 0.0}
