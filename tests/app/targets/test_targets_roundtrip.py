"""Adding or removing a target edits the operator's file in place: comments, key order,
formatting and tables trimtab does not know survive byte for byte (issue 20 item 3)."""

from __future__ import annotations

import os
import stat
import tomllib
from pathlib import Path

import pytest
from trimtab.app.targets import file as tf
from trimtab.collectors.scrape import ScrapeTarget

TOP = """\
# trimtab targets for the staging fleet
# owner: platform team

"""
API_1 = """\
[[target]]
url = "http://127.0.0.1:8000/metrics"   # custom key order: url before name
name = "api-1"
interval = 2.0  # slower: this box is small
timeout = 1.5
"""
LB = """\
# the balancer, behind nginx
[[target]]
name = "lb"
kind = "balancer"
url = "http://127.0.0.1:9000/_trimtab/metrics"
"""
RETENTION = """\
[retention]  # read by another tool; trimtab must keep it
raw = "2h"
rollup_1m = "7d"
"""
COMMENTED = TOP + API_1 + "\n" + LB + "\n" + RETENTION
NEW = ScrapeTarget("api-2", "http://127.0.0.1:8001/metrics")
NEW_TABLE = '[[target]]\nname = "api-2"\nurl = "http://127.0.0.1:8001/metrics"\n'


@pytest.fixture()
def commented(tmp_path: Path) -> Path:
    path = tmp_path / "targets.toml"
    path.write_bytes(COMMENTED.encode())
    return path


@pytest.mark.parametrize(("target", "complaint"), [
    (ScrapeTarget("api-1", "http://127.0.0.1:8009/metrics"), "already used"),
    (ScrapeTarget("x", "not a url"), "url"),
    (ScrapeTarget("x", "http://h:1/m", interval=1.0, timeout=2.0), "timeout"),
    (ScrapeTarget("x", "http://h:1/m", token_env="PROM_TOKEN"), "token_env"),
    (ScrapeTarget("", "http://h:1/m"), "name"),
])
def test_an_invalid_target_leaves_the_commented_file_unchanged(commented: Path,
                                                               target: ScrapeTarget,
                                                               complaint: str) -> None:
    with pytest.raises(tf.TargetsError, match=complaint):
        tf.add(commented, target)
    assert commented.read_bytes() == COMMENTED.encode()
    assert not list(commented.parent.glob("*.tmp"))


def test_removing_an_unknown_name_or_editing_a_broken_file_changes_nothing(tmp_path: Path,
                                                                          commented: Path) -> None:
    with pytest.raises(tf.TargetsError, match="no such target"):
        tf.remove(commented, "api-9")
    assert commented.read_bytes() == COMMENTED.encode()
    broken = tmp_path / "broken.toml"
    broken.write_bytes(b"# mine\n[[target]]\nname = 'a'\n")  # no url
    for edit in (lambda: tf.add(broken, NEW), lambda: tf.remove(broken, "a")):
        with pytest.raises(tf.TargetsError, match="broken.toml"):
            edit()
        assert broken.read_bytes() == b"# mine\n[[target]]\nname = 'a'\n"


def test_adding_appends_one_table_with_only_the_non_default_keys(commented: Path) -> None:
    tf.add(commented, NEW)
    assert commented.read_text() == COMMENTED + "\n" + NEW_TABLE
    tf.add(commented, ScrapeTarget("prom", "http://127.0.0.1:9090", "prometheus", 5.0, 4.0,
                                   token_env="PROM_TOKEN", sample_limit=500))
    assert commented.read_text() == (
        COMMENTED + "\n" + NEW_TABLE + '\n[[target]]\nname = "prom"\n'
        'url = "http://127.0.0.1:9090"\nkind = "prometheus"\ninterval = 5.0\ntimeout = 4.0\n'
        'token_env = "PROM_TOKEN"\nsample_limit = 500\n')
    assert [t.name for t in tf.load(commented)] == ["api-1", "lb", "api-2", "prom"]
    assert tomllib.loads(commented.read_text())["retention"] == {"raw": "2h", "rollup_1m": "7d"}


def test_removing_takes_only_that_table_and_its_own_comment(commented: Path) -> None:
    tf.remove(commented, "api-1")
    assert commented.read_text() == TOP + LB + "\n" + RETENTION
    tf.remove(commented, "lb")  # its comment sat right on its header: it goes with it
    assert commented.read_text() == TOP + RETENTION
    assert tf.load(commented) == []


def test_removing_the_table_before_another_table_keeps_the_rest(commented: Path) -> None:
    tf.remove(commented, "lb")
    assert commented.read_text() == TOP + API_1 + "\n" + RETENTION


def test_add_then_remove_gives_back_the_same_bytes(commented: Path) -> None:
    tf.add(commented, NEW)
    tf.remove(commented, "api-2")
    assert commented.read_bytes() == COMMENTED.encode()


def test_a_missing_file_is_created_with_a_header_comment(tmp_path: Path) -> None:
    path = tmp_path / "new" / "targets.toml"
    tf.add(path, NEW)
    text = path.read_text()
    assert text.startswith("# ") and text.endswith("\n\n" + NEW_TABLE)
    assert [t.name for t in tf.load(path)] == ["api-2"]
    tf.remove(path, "api-2")
    assert path.read_text() == text.removesuffix("\n" + NEW_TABLE)  # the header stays


def test_windows_line_endings_and_the_files_mode_are_kept(commented: Path) -> None:
    commented.write_bytes(COMMENTED.replace("\n", "\r\n").encode())
    os.chmod(commented, 0o600)
    tf.add(commented, NEW)
    assert commented.read_bytes() == (COMMENTED + "\n" + NEW_TABLE).replace("\n", "\r\n").encode()
    assert stat.S_IMODE(commented.stat().st_mode) == 0o600
    tf.remove(commented, "api-1")
    assert commented.read_bytes() == (TOP + LB + "\n" + RETENTION + "\n" + NEW_TABLE).replace(
        "\n", "\r\n").encode()


def test_a_file_without_a_final_newline(tmp_path: Path) -> None:
    path = tmp_path / "targets.toml"
    path.write_bytes((TOP + API_1).removesuffix("\n").encode())
    tf.add(path, NEW)
    assert path.read_text() == TOP + API_1 + "\n" + NEW_TABLE


def test_an_inline_array_of_targets_is_edited_in_place(tmp_path: Path) -> None:
    path = tmp_path / "targets.toml"
    original = ('# inline style\ntarget = [\n'
                '  {name = "a", url = "http://127.0.0.1:8000/metrics"},  # first\n'
                ']\n\n[retention]\nraw = "2h"  # keep\n')
    path.write_text(original)
    tf.add(path, NEW)
    text = path.read_text()
    assert text.startswith('# inline style\ntarget = [\n') and text.endswith(
        '\n\n[retention]\nraw = "2h"  # keep\n')
    assert "# first" in text
    assert [t.name for t in tf.load(path)] == ["a", "api-2"]
    tf.remove(path, "api-2")
    tf.remove(path, "a")
    assert tf.load(path) == []
    assert tomllib.loads(path.read_text()) == {"retention": {"raw": "2h"}}
    assert "# inline style" in path.read_text() and "# keep" in path.read_text()


def test_a_header_look_alike_inside_a_string_does_not_confuse_the_edit(tmp_path: Path) -> None:
    path = tmp_path / "targets.toml"
    notes = '[notes]\ntext = """\n[[target]]\nname = "not a target"\n"""\n'
    original = TOP + API_1 + "\n" + notes
    path.write_text(original)
    tf.remove(path, "api-1")
    assert tomllib.loads(path.read_text()) == tomllib.loads(notes)
    assert path.read_text().startswith(TOP) and path.read_text().endswith(notes)


def test_the_target_manager_keeps_the_operators_comments(commented: Path) -> None:
    from trimtab.app.model.fleet import FleetModel
    from trimtab.app.targets.manager import TargetManager
    from trimtab.collectors.scrape import ScrapeEngine

    model = FleetModel()
    engine = ScrapeEngine([], model.ingest, on_cycle=model.tick).start()
    try:
        manager = TargetManager(commented, engine, model, token="secret-token")
        manager.add("api-2", "http://127.0.0.1:8001/metrics")
        assert commented.read_text() == COMMENTED + "\n" + NEW_TABLE  # no token, no defaults
        manager.add("slow", "http://127.0.0.1:8002/metrics", interval=5.0)
        assert commented.read_text().endswith(
            '[[target]]\nname = "slow"\nurl = "http://127.0.0.1:8002/metrics"\n'
            'interval = 5.0\ntimeout = 4.0\n')
        manager.remove("slow")
        manager.remove("api-2")
        assert commented.read_bytes() == COMMENTED.encode()
    finally:
        engine.stop()
