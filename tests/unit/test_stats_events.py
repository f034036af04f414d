"""Counting by event items (kefu.store.stats): one item per event, figures summed when read."""

from __future__ import annotations

from decimal import Decimal

import pytest

from kefu import stats
from kefu.store.stats import day_figures, event_items

DAY = "2026-12-02"


def test_an_event_is_one_item_per_kind_keyed_by_the_event_not_the_figure() -> None:
    increments = [stats.funnel(DAY, "wk1", "ads", "ratings"), stats.funnel(DAY, "wk1", "ads", "rating_sum", 4),
                  stats.servicer(DAY, "wk1", "alice", "ratings"), stats.servicer(DAY, "wk1", "alice", "rating_sum", 4)]
    items = event_items("rating#m1", increments)
    assert [(i["pk"], i["sk"], i["of"], i["n"]) for i in items] == [
        ("funnel#2026-12-02#e", "wk1#rating#m1", "wk1#ads", {"ratings": 1, "rating_sum": 4}),
        ("servicer#2026-12-02#e", "wk1#rating#m1", "wk1#alice", {"ratings": 1, "rating_sum": 4}),
    ]
    assert items[0]["scene"] == "ads" and items[1]["servicer"] == "alice"
    # A retry that sees another scene writes the same key: still one count.
    again = event_items("rating#m1", [stats.funnel(DAY, "wk1", "faq", "ratings")])
    assert (again[0]["pk"], again[0]["sk"]) == (items[0]["pk"], items[0]["sk"])


def test_an_event_adding_to_two_figures_of_one_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="two funnel figures"):
        event_items("e1", [stats.funnel(DAY, "wk1", "a", "ratings"), stats.funnel(DAY, "wk1", "b", "ratings")])


def test_a_days_figures_are_its_counters_plus_its_summed_events() -> None:
    counter = {"pk": "funnel#2026-12-02", "sk": "wk1#ads", "day": DAY, "open_kfid": "wk1", "scene": "ads",
               "links_issued": Decimal(3)}
    events = [item for n, scene in enumerate(["ads", "ads", "faq"])
              for item in event_items(f"entered#m{n}", [stats.funnel(DAY, "wk1", scene, "sessions_entered")])]
    events += event_items("rating#m9", [stats.funnel(DAY, "wk1", "ads", "rating_sum", 5)])
    rows = {r["scene"]: r for r in (stats.funnel_row(f) for f in day_figures([counter], events))}
    assert rows["ads"]["links_issued"] == 3 and rows["ads"]["sessions_entered"] == 2
    assert rows["faq"]["sessions_entered"] == 1 and rows["faq"]["links_issued"] == 0
    assert rows["ads"]["rating_avg"] is None  # a rating_sum without a ratings count: no average
    assert {f["pk"] for f in day_figures([counter], events)} == {"funnel#2026-12-02"}
