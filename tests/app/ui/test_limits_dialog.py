"""The Change limit… dialog on its own: what it sends, when it asks for a what-if, stale
answers ignored, the reason rules, and that it fits a laptop screen."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from trimtab.widgets.limit_dialog import LimitDialog, LimitSettings

from tests.app.ui.test_dialog_fit import LAPTOP, assert_fits

NOW = LimitSettings("/search", "header:x-api-key", 2.0, 10, "shadow")
NAMES = [f"checkout-api-{n}.eu-west-1.internal" for n in range(1, 13)]


@pytest.fixture()
def dialog(qtbot) -> Iterator[LimitDialog]:
    dialog = LimitDialog("per-key", {name: NOW for name in NAMES})
    dialog.screen_area = LAPTOP
    qtbot.addWidget(dialog)
    yield dialog
    dialog.close()


def test_it_sends_the_settings_as_typed_and_needs_a_reason_everywhere(dialog) -> None:
    assert dialog.choice() is None and dialog.problem().startswith("Nothing changes")
    dialog.rate.setText("6.5")
    assert "needs a reason" in dialog.problem()  # every instance
    dialog.scope_one.setChecked(True)
    dialog.instance.setCurrentText(NAMES[3])
    assert dialog.choice() == ([NAMES[3]], {"key": "header:x-api-key", "rate": 6.5,
                                            "burst": 10, "mode": "shadow"}, "")
    dialog.mode.setCurrentText("enforce")  # even on one instance: enforcing needs a reason
    assert "Enforcing a limit refuses requests" in dialog.problem()
    dialog.reason.setText("greedy client")
    assert dialog.choice() == ([NAMES[3]], {"key": "header:x-api-key", "rate": 6.5,
                                            "burst": 10, "mode": "enforce"}, "greedy client")
    assert f"{NAMES[3]}: rate 2 → 6.5, mode shadow → enforce" in dialog.summary.text()


def test_the_whatif_is_asked_for_valid_values_only_and_stale_answers_are_dropped(
        qtbot, dialog) -> None:
    asked: list[tuple[str, float, int]] = []
    dialog.preview_wanted.connect(lambda *args: asked.append(args))
    dialog.show()  # the first what-if is asked for once shown
    qtbot.waitUntil(lambda: bool(asked), timeout=5_000)
    assert asked == [("header:x-api-key", 2.0, 10)], asked
    dialog.rate.setText("0")  # invalid: nothing asked, the preview says why
    qtbot.wait(800)
    assert len(asked) == 1 and "nothing until" in dialog.preview.text()
    dialog.rate.setText("4")
    qtbot.waitUntil(lambda: len(asked) == 2, timeout=5_000)
    assert asked[-1] == ("header:x-api-key", 4.0, 10)
    dialog.set_whatif("header:x-api-key", 2.0, 10, 4100, 312, 3, 600.0)  # for the old values
    assert "asking the agents" in dialog.preview.text()
    dialog.set_whatif("header:x-api-key", 4.0, 10, 4100, 312, 3, 600.0)
    assert ("would have refused 312 of 4,100 requests in the last 10 min, from 3 clients."
            in dialog.preview.text())


@pytest.mark.parametrize(("field", "text", "named"), [
    ("rate", "0", "above 0, up to 1,000,000 req/s"),
    ("rate", "nan", "above 0, up to 1,000,000 req/s"),
    ("rate", "1000000.5", "above 0, up to 1,000,000 req/s"),
    ("burst", "1000001", "a whole number from 1 to 1,000,000 requests"),
    ("burst", "-1", "a whole number from 1 to 1,000,000 requests"),
    ("key", "header:", "ip, global, header:<name> or jwt:<claim>"),
    ("key", "header:x api key", "ip, global, header:<name> or jwt:<claim>"),
])
def test_bad_input_is_refused_naming_the_range(dialog, field: str, text: str,
                                               named: str) -> None:
    dialog.reason.setText("why")
    getattr(dialog, field).setText(text)
    assert named in dialog.problem()
    assert dialog.choice() is None and not dialog.apply.isEnabled()
    assert named in dialog.blocked.text()
    dialog.accept()
    assert dialog.result() == 0  # never accepted


def test_it_fits_a_laptop_with_the_whatif_and_an_error(qtbot, dialog) -> None:
    dialog.show()
    dialog.rate.setText("99999999999")
    dialog.key.setText("cookie:" + "x" * 60)
    assert_fits(qtbot, dialog, [dialog.apply, *dialog.buttons.buttons()])
    dialog.rate.setText("3")
    dialog.key.setText("header:x-api-key")
    dialog.set_whatif("header:x-api-key", 3.0, 10, 123_456, 7_890, 12, 600.0)
    assert_fits(qtbot, dialog, [dialog.apply, *dialog.buttons.buttons()])
