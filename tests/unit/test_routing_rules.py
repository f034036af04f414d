"""The routing rules file: validation that names the key and its line, the merge of an account's
block over "*", scenes, working hours."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from kefu.routing import outbound
from kefu.routing.rules import RulesError, load_rules_file, parse_rules

ROOT = Path(__file__).resolve().parents[2]


def error(text: str) -> str:
    with pytest.raises(RulesError) as caught:
        parse_rules(text, source="rules.yaml")
    return str(caught.value)


# -- validation --------------------------------------------------------------------------------

def test_unknown_key_in_an_account_block_names_the_key_the_block_and_the_line() -> None:
    message = error("accounts:\n  '*':\n    strategy: round_robin\n    max_active: 3\n")
    assert message.startswith("rules.yaml line 4:")
    assert "'max_active'" in message and "accounts.*" in message
    assert "max_active_per_servicer" in message  # the allowed keys are listed


def test_unknown_key_in_a_scene_and_at_the_top_level() -> None:
    message = error("accounts:\n  wkA:\n    scenes:\n      vip:\n        servicer: [alice]\n")
    assert "line 5" in message and "'servicer'" in message and "accounts.wkA.scenes.vip" in message
    message = error("timezone: UTC\naccount: {}\n")
    assert "line 2" in message and "'account'" in message


@pytest.mark.parametrize("spec", ["09:00-25:00", "18:00-09:00", "9-18", "09:00-09:00", "09:60-10:00"])
def test_a_bad_time_range_is_an_error_naming_working_hours(spec: str) -> None:
    message = error(f"accounts:\n  '*':\n    working_hours:\n      mon: '{spec}'\n")
    assert "accounts.*.working_hours" in message and "mon" in message and spec in message
    assert "line 3" in message  # the line of the key the message names


def test_an_unknown_weekday_is_an_error() -> None:
    assert "unknown weekday 'monday'" in error("accounts:\n  '*':\n    working_hours:\n      monday: '09:00-18:00'\n")


def test_an_unknown_strategy_is_an_error_with_its_line_also_in_a_scene() -> None:
    message = error("accounts:\n  '*':\n    strategy: random\n")
    assert "line 3" in message and "accounts.*.strategy" in message and "round_robin" in message
    message = error("accounts:\n  wkA:\n    scenes:\n      vip:\n        strategy: fastest\n")
    assert "line 5" in message and "accounts.wkA.scenes.vip.strategy" in message


@pytest.mark.parametrize(("text", "names"), [
    ("accounts:\n  '*':\n    max_active_per_servicer: 0\n", "max_active_per_servicer"),
    ("accounts:\n  '*':\n    sticky_hours: -1\n", "sticky_hours"),
    ("accounts:\n  '*':\n    bot:\n      unmatched: maybe\n", "bot.unmatched"),
    ("accounts:\n  '*':\n    bot:\n      replies:\n        - keywords: []\n          text: hi\n", "keywords"),
    ("accounts:\n  '*':\n    closing:\n      text: bye\n      satisfaction:\n        items: [{id: a, content: b}]\n",
     "closing"),
    ("timezone: Mars/Base\naccounts: {}\n", "timezone"),
    ("accounts: [1, 2]\n", "accounts"),
])
def test_other_bad_values_name_their_key(text: str, names: str) -> None:
    assert names in error(text)


def test_a_duplicate_key_names_the_file_key_and_line() -> None:
    message = error("accounts:\n  '*':\n    strategy: round_robin\n    strategy: least_busy\n")
    assert message.startswith("rules.yaml") and "line 4" in message and "'strategy'" in message


def test_empty_and_json_documents() -> None:
    rules = parse_rules("")
    assert rules.policy("wkA").strategy == "round_robin" and rules.policy("wkA").max_active_per_servicer == 10
    rules = parse_rules('{"accounts": {"*": {"strategy": "least_busy"}}}')
    assert rules.policy("wkA").strategy == "least_busy"


# -- merging -----------------------------------------------------------------------------------

MERGED = """
accounts:
  "*":
    strategy: least_busy
    max_active_per_servicer: 4
    welcome: default-welcome
    servicers: [alice, bob]
    scenes:
      vip: {servicers: [carol], welcome: vip-welcome}
      ads: {welcome: ads-welcome}
  wkA:
    max_active_per_servicer: 2
    servicers: [dave]
    scenes:
      vip: {welcome: a-vip-welcome}
      shop: {servicers: [erin]}
"""


def test_an_account_block_overrides_key_by_key_and_keeps_the_rest_of_star() -> None:
    rules = parse_rules(MERGED)
    a = rules.policy("wkA")
    assert (a.strategy, a.max_active_per_servicer, a.welcome and a.welcome.text, a.servicers) == (
        "least_busy", 2, "default-welcome", ["dave"])
    other = rules.policy("wkOther")
    assert (other.max_active_per_servicer, other.servicers) == (4, ["alice", "bob"])


def test_scenes_merge_by_scene_name() -> None:
    rules = parse_rules(MERGED)
    vip = rules.policy("wkA", "vip")  # in both: the account's keys over "*"'s, key by key
    assert vip.welcome == outbound.text("a-vip-welcome") and vip.servicers == ["carol"]
    assert vip.max_active_per_servicer == 2  # the account's value, the scene sets none
    assert rules.policy("wkA", "ads").welcome == outbound.text("ads-welcome")  # only in "*"
    assert rules.policy("wkA", "shop").servicers == ["erin"]  # only in the account
    assert rules.policy("wkOther", "shop").servicers == ["alice", "bob"]  # not a scene there
    assert rules.policy("wkA", "unknown") == rules.policy("wkA") == rules.policy("wkA", None)


# -- working hours -----------------------------------------------------------------------------

def test_working_hours_ranges_lists_and_closed_days() -> None:
    rules = parse_rules("timezone: Asia/Shanghai\naccounts:\n  '*':\n    working_hours:\n"
                        "      mon: '09:00-18:00'\n      tue: ['09:00-12:00', '13:30-24:00']\n")
    hours = rules.policy("wkA").hours()
    assert hours is not None
    tz = ZoneInfo("Asia/Shanghai")
    monday, tuesday, sunday = (datetime(2026, 11, d, tzinfo=tz) for d in (23, 24, 29))
    assert hours.is_open(monday.replace(hour=9)) and not hours.is_open(monday.replace(hour=18))
    assert not hours.is_open(tuesday.replace(hour=12, minute=30))
    assert hours.is_open(tuesday.replace(hour=23, minute=59))
    assert not hours.is_open(sunday.replace(hour=10))  # a missing weekday is closed


def test_no_working_hours_is_always_open_and_an_empty_block_is_always_closed() -> None:
    rules = parse_rules("accounts:\n  '*': {}\n  wkClosed:\n    working_hours: {}\n")
    assert rules.policy("wkA").hours() is None
    closed = rules.policy("wkClosed").hours()
    assert closed is not None
    assert not any(closed.is_open(datetime(2026, 11, 23 + d, h)) for d in range(7) for h in range(24))


def test_local_time_uses_the_rules_timezone() -> None:
    rules = parse_rules("timezone: Asia/Shanghai\n")
    assert rules.local_time(0).hour == 8  # 1970-01-01 00:00 UTC is 08:00 in Shanghai


# -- the files shipped and used --------------------------------------------------------------------

@pytest.mark.parametrize("path", ["config/routing.yaml", "functions/route/routing.yaml",
                                  "tests/integration/route_rules.yaml"])
def test_the_shipped_and_test_rules_files_are_valid(path: str) -> None:
    rules = load_rules_file(str(ROOT / path))
    assert rules.policy("wkAnything").strategy in ("round_robin", "least_busy")


def test_the_route_function_ships_the_assets_its_rules_name() -> None:
    """`sam build` copies functions/route/ with its links followed: the rules' files must be
    found beside functions/route/routing.yaml itself, not only beside the file it links to."""
    shipped = ROOT / "functions" / "route"
    text = (shipped / "routing.yaml").read_text(encoding="utf-8")
    rules = parse_rules(text, source="functions/route/routing.yaml", base_dir=shipped)
    assert rules.policy("wkAnything").strategy in ("round_robin", "least_busy")


# -- messages, menus, 升级服务 -------------------------------------------------------------------------

RICH = """\
timezone: Asia/Shanghai
accounts:
  "*":
    welcome:
      msgmenu:
        items:
          - click: {id: a, content: "A"}
    menu_actions:
      a: {handoff: true}
"""


@pytest.mark.parametrize(("snippet", "line", "key", "says"), [
    ("    queue_notice: {link: {title: t, url: 'https://x', thumb: {s3: assets/a.png}}}\n", 10,
     "accounts.*.queue_notice", "takes only text, not link"),
    ("    welcome_x: 1\n", 10, "accounts.*.welcome_x", "unknown key"),
    ("    off_hours_reply: '" + "字" * 683 + "'\n", 10, "accounts.*.off_hours_reply", "2049 bytes"),
    ("    off_hours_reply: {text: hi, image: a.png}\n", 10, "accounts.*.off_hours_reply", "exactly one of"),
    ("    off_hours_reply: {link: {title: t, url: 'ftp://x', thumb: {s3: assets/a.png}}}\n", 10,
     "accounts.*.off_hours_reply.link.url", "http(s) URL"),
    ("    off_hours_reply: {image: {s3: other/a.png}}\n", 10, "accounts.*.off_hours_reply.image", "assets/"),
    ("    off_hours_reply: {image: missing.png}\n", 10, "accounts.*.off_hours_reply.image", "no file missing.png"),
    ("    off_hours_reply: {ca_link: {link_url: 'https://example.com'}}\n", 10,
     "accounts.*.off_hours_reply.ca_link", "获客链接"),
    ("    bot: {replies: [{keywords: [x], text: hi, reply: hello}]}\n", 10, "accounts.*.bot.replies.0", "not both"),
    ("    bot: {replies: [{keywords: [x]}]}\n", 10, "accounts.*.bot.replies.0", "at least one of"),
    ("    upgrade: {offer: {member: auto}}\n", 10, "accounts.*.upgrade", "say when"),
    ("    upgrade: {offer: {member: auto}, after_rating: 4}\n", 10, "accounts.*.upgrade.after_rating",
     "needs closing.satisfaction"),
    ("    menu_actions:\n      b: {handoff: true, end: true}\n", 10, "accounts.*.menu_actions.b", "not both"),
])
def test_a_bad_message_or_action_names_its_key_and_line(tmp_path, snippet: str, line: int, key: str, says: str) -> None:
    text = RICH + snippet if not snippet.startswith("    menu_actions") else RICH.replace(
        "    menu_actions:\n      a: {handoff: true}\n", "    menu_actions:\n      a: {handoff: true}\n" + snippet.split("\n", 1)[1])
    path = tmp_path / "rules.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(RulesError) as caught:
        load_rules_file(str(path))
    message = str(caught.value)
    assert f"line {line}:" in message and key in message and says in message, message


def test_a_menu_click_without_an_action_is_refused() -> None:
    with pytest.raises(RulesError, match=r"line 4: accounts\.\*\.welcome: the menu's click id 'a' has no entry"):
        parse_rules(RICH.replace("    menu_actions:\n      a: {handoff: true}\n", ""))


def test_assets_are_checked_beside_the_rules_file(tmp_path) -> None:
    (tmp_path / "pic.png").write_bytes(b"not a png at all")
    (tmp_path / "rules.yaml").write_text(RICH + "    off_hours_reply: {image: pic.png}\n", encoding="utf-8")
    with pytest.raises(RulesError, match="pic.png: an image must be a JPG or PNG file"):
        load_rules_file(str(tmp_path / "rules.yaml"))
    (tmp_path / "pic.png").write_bytes((ROOT / "config/assets/card.png").read_bytes())
    rules = load_rules_file(str(tmp_path / "rules.yaml"))
    assert rules.policy("wk").off_hours_reply is not None


def test_rules_from_a_parameter_may_not_name_files() -> None:
    with pytest.raises(RulesError, match="SSM parameter name assets in S3"):
        parse_rules(RICH + "    off_hours_reply: {file: guide.txt}\n")


def test_scene_params_pick_the_longest_prefix_scene_level_last() -> None:
    rules = parse_rules("""\
accounts:
  "*":
    servicers: [a]
    scene_params:
      "sh-": {servicers: [b]}
      "sh-9": {servicers: [c]}
    scenes:
      store:
        servicers: [d]
        scene_params:
          "bj-": {servicers: [e]}
""")
    assert rules.policy("wk", None, "sh-001").servicers == ["b"]
    assert rules.policy("wk", None, "sh-901").servicers == ["c"]
    assert rules.policy("wk", "store", "sh-001").servicers == ["d"]  # the scene's block comes after
    assert rules.policy("wk", "store", "bj-1").servicers == ["e"]
    assert rules.policy("wk", "other", "bj-1").servicers == ["a"]


def test_the_example_rules_show_every_message_kind() -> None:
    rules = load_rules_file(str(ROOT / "config/routing.yaml"))
    kinds = set()
    for scene in [None, *rules.scenes_of("wk")]:
        for _where, message in rules.policy("wk", scene).messages():
            kinds.add(message.kind)
            kinds.update(item.payload()["type"] for item in (message.msgmenu.items if message.msgmenu else []))
    assert kinds >= {"text", "msgmenu", "link", "miniprogram", "image", "video", "file", "business_card", "ca_link",
                     "click", "view"}
