"""The `kefu` CLI's pure parts: argument parsing, target discovery, WeCom error diagnosis (60020
and the IP WeCom saw), message summaries, dead-letter summaries and the redrive's ordering and
safety, and the local stack's state file."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from kefu.wecom.errors import WeComError
from kefu_cli import dlq, messages
from kefu_cli.main import parse_args
from kefu_cli.output import Progress, table, width
from kefu_cli.target import (
    CliError,
    local_target,
    project_root,
    read_samconfig,
    resolve_target,
    state_file_path,
)
from kefu_cli.wecom import diagnose, egress_ip
from local import state_file

SIM_60020 = ("not allow to access from your ip, hint: [1767225600_0123456789abcdef], from ip: 203.0.113.7, "
             "more info at https://open.work.weixin.qq.com/devtool/query?e=60020")


# -- argument parsing --------------------------------------------------------------------------

def test_target_options_go_before_or_after_the_command() -> None:
    before = parse_args(["--local", "--json", "preflight"])
    after = parse_args(["preflight", "--local", "--json"])
    assert (before.local, before.json) == (after.local, after.json) == (True, True)
    plain = parse_args(["preflight"])
    assert (plain.local, plain.json, plain.stack, plain.region, plain.profile) == (False, False, None, None, None)


def test_an_option_before_the_command_is_not_reset_by_the_command() -> None:
    args = parse_args(["--stack", "prod", "--region", "eu-west-1", "dlq", "--redrive", "--queue", "route"])
    assert (args.stack, args.region, args.redrive, args.queue) == ("prod", "eu-west-1", True, "route")


def test_command_arguments() -> None:
    args = parse_args(["messages", "wmABC", "--account", "wkX", "--limit", "5"])
    assert (args.command, args.external_userid, args.account, args.limit) == ("messages", "wmABC", "wkX", 5)
    assert parse_args(["messages", "wmABC"]).limit == 100
    args = parse_args(["stats", "--from", "2026-01-01", "--to", "2026-01-07", "--scene", "home", "--account", "a"])
    assert (args.day_from, args.day_to, args.scene, args.account) == ("2026-01-01", "2026-01-07", "home", "a")
    args = parse_args(["link", "poster", "--param", "city=上海", "--qr", "q.png", "--size", "300"])
    assert (args.scene, args.scene_param, args.qr, args.size) == ("poster", "city=上海", Path("q.png"), 300)
    assert parse_args(["dlq"]).queue == "all" and parse_args(["dlq"]).redrive is False


def test_messages_limit_defaults_by_mode_and_customer_takes_one_of_two() -> None:
    listed = parse_args(["messages", "--account", "wkA"])
    assert (listed.external_userid, listed.account, listed.limit) == (None, "wkA", 20)
    assert parse_args(["messages", "wmB", "--account", "wkA"]).limit == 100
    assert parse_args(["messages", "--account", "wkA", "--limit", "7"]).limit == 7
    args = parse_args(["customer", "wmB", "--account", "wkA"])
    assert (args.command, args.external_userid, args.unionid, args.account, args.limit) == (
        "customer", "wmB", None, "wkA", 20)
    args = parse_args(["customer", "--unionid", "oU1", "--limit", "3", "--json"])
    assert (args.external_userid, args.unionid, args.limit, args.json) == (None, "oU1", 3, True)


def test_usage_errors_say_what_to_give(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        parse_args(["messages", "--limit", "5"])
    assert exit_.value.code == 2
    assert "give EXTERNAL_USERID, or --account OPEN_KFID" in capsys.readouterr().err
    for argv in (["customer"], ["customer", "wmB", "--unionid", "oU1"]):
        with pytest.raises(SystemExit) as exit_:
            parse_args(argv)
        assert exit_.value.code == 2
        assert "give EXTERNAL_USERID or --unionid UNIONID (exactly one)" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [
    [],
    ["stats", "--from", "2026-1-1"],
    ["stats", "--to", "20260101"],
    ["stats", "--from", "2026-02-30"],
    ["messages"],
    ["messages", "wm", "--limit", "0"],
    ["messages", "--json"],
    ["customer"],
    ["customer", "wm", "--unionid", "oU"],
    ["customer", "wm", "--limit", "0"],
    ["dlq", "--queue", "callback"],
    ["link"],
    ["link", "home", "--size", "big"],
])
def test_bad_arguments_exit_2(argv: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        parse_args(argv)
    assert exit_.value.code == 2


def test_the_console_script_is_declared() -> None:
    import tomllib

    project = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    assert project["project"]["scripts"]["kefu"] == "kefu_cli.main:main"


def test_python_dash_m_runs_the_cli() -> None:
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root / "cli"), str(root / "shared")])}
    done = subprocess.run([sys.executable, "-m", "kefu_cli", "--help"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0
    assert all(command in done.stdout for command in ("preflight", "messages", "customer", "stats", "dlq", "link"))


# -- target discovery ------------------------------------------------------------------------

SAMCONFIG = """\
version = 0.1
[default.global.parameters]
stack_name = "kefu-prod"
[default.deploy.parameters]
region = "ap-east-1"
"""


def write_state(path: Path, pid: int, url: str = "http://127.0.0.1:3999") -> dict[str, Any]:
    state = {"url": url, "aws_endpoint": "http://127.0.0.1:5999", "region": "us-east-1", "stack_name": "kefu-local",
             "resources": {"MessagesTable": "kefu-local-MessagesTable", "SyncDeadLetterQueue": "http://q/sync-dlq",
                           "SyncQueue": "http://q/sync", "MediaBucket": "kefu-local-mediabucket",
                           "SecretsPrefix": "/kefu"},
             "wecom_api_base": "http://127.0.0.1:4999", "corp_id": "wwlocal", "pid": pid}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(state))
    return state


def dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


class FakeCloudFormation:
    def __init__(self) -> None:
        self.asked: list[str] = []

    def describe_stacks(self, StackName: str) -> dict[str, Any]:  # noqa: N803 - boto3's names
        self.asked.append(StackName)
        return {"Stacks": [{
            "Outputs": [{"OutputKey": "ApiBaseUrl", "OutputValue": "https://abc.execute-api.ap-east-1.amazonaws.com"},
                        {"OutputKey": "CallbackUrl", "OutputValue": "https://abc.execute-api.ap-east-1.amazonaws.com/callback"},
                        {"OutputKey": "RouteDeadLetterQueueUrl", "OutputValue": "https://sqs/route-dlq"}],
            "Parameters": [{"ParameterKey": "WeComCorpId", "ParameterValue": "ww123"},
                           {"ParameterKey": "SecretsPrefix", "ParameterValue": "/prod/kefu"},
                           {"ParameterKey": "WeComApiBase", "ParameterValue": "https://qyapi.weixin.qq.com"}],
        }]}


def fake_sessions(cfn: FakeCloudFormation, made: list[dict[str, Any]]):
    def factory(**kwargs: Any) -> Any:
        made.append(kwargs)
        return SimpleNamespace(region_name=kwargs["region_name"], client=lambda service: cfn)

    return factory


def test_samconfig_stack_name_and_region(tmp_path: Path) -> None:
    (tmp_path / "samconfig.toml").write_text(SAMCONFIG)
    assert read_samconfig(tmp_path / "samconfig.toml") == read_samconfig(tmp_path / "samconfig.toml", "default")
    config = read_samconfig(tmp_path / "samconfig.toml")
    assert (config.stack_name, config.region) == ("kefu-prod", "ap-east-1")
    assert read_samconfig(tmp_path / "missing.toml").stack_name is None


def test_the_projects_own_samconfig_names_a_stack() -> None:
    root = Path(__file__).resolve().parents[2]
    assert read_samconfig(root / "samconfig.toml").stack_name


def test_project_root_is_found_from_a_subfolder(tmp_path: Path) -> None:
    (tmp_path / "samconfig.toml").write_text(SAMCONFIG)
    nested = tmp_path / "a" / "b"
    nested.mkdir(parents=True)
    assert project_root(nested) == tmp_path.resolve()


def test_state_file_path_default_and_override(tmp_path: Path) -> None:
    assert state_file_path({}, tmp_path) == tmp_path / ".kefu" / "local-stack.json"
    assert state_file_path({"KEFU_STATE_FILE": "/x/s.json"}, tmp_path) == Path("/x/s.json")
    # the stack writes where the CLI reads
    assert state_file.path_for({}, tmp_path) == (tmp_path / ".kefu" / "local-stack.json", False)
    assert state_file.path_for({"KEFU_STATE_FILE": "/x/s.json"}, tmp_path) == (Path("/x/s.json"), True)


def test_a_live_local_stack_is_used_by_itself(tmp_path: Path) -> None:
    (tmp_path / "samconfig.toml").write_text(SAMCONFIG)
    write_state(tmp_path / ".kefu" / "local-stack.json", os.getpid())
    target = resolve_target(env={}, cwd=tmp_path, session_factory=lambda **_: pytest.fail("no AWS for local"))
    assert target.local and target.stack_name == "kefu-local"
    assert target.outputs["ApiBaseUrl"] == "http://127.0.0.1:3999"
    assert target.outputs["CallbackUrl"] == "http://127.0.0.1:3999/callback"
    assert target.outputs["LinksUrl"] == "http://127.0.0.1:3999/links"
    assert target.outputs["MessagesTableName"] == "kefu-local-MessagesTable"
    assert target.outputs["SyncDeadLetterQueueUrl"] == "http://q/sync-dlq"
    assert target.outputs["SyncQueueUrl"] == "http://q/sync"
    assert (target.corp_id, target.secrets_prefix, target.wecom_api_base) == ("wwlocal", "/kefu", "http://127.0.0.1:4999")
    assert target.aws_endpoint == "http://127.0.0.1:5999"
    assert target.url("/stats", "StatsUrl") == "http://127.0.0.1:3999/stats"


def test_local_corp_id_falls_back_to_the_environment(tmp_path: Path) -> None:
    state = write_state(tmp_path / "s.json", os.getpid())
    del state["corp_id"]
    assert local_target(state, tmp_path / "s.json", {"WECOM_CORP_ID": "wwenv"}).corp_id == "wwenv"


def test_a_stale_state_file_falls_through_to_the_deployed_stack(tmp_path: Path) -> None:
    (tmp_path / "samconfig.toml").write_text(SAMCONFIG)
    write_state(tmp_path / ".kefu" / "local-stack.json", dead_pid())
    cfn, made = FakeCloudFormation(), []
    target = resolve_target(env={}, cwd=tmp_path, session_factory=fake_sessions(cfn, made))
    assert not target.local
    assert cfn.asked == ["kefu-prod"] and made == [{"region_name": "ap-east-1", "profile_name": None}]
    assert target.corp_id == "ww123" and target.secrets_prefix == "/prod/kefu"
    assert target.output("RouteDeadLetterQueueUrl") == "https://sqs/route-dlq"
    assert target.url("/stats", "StatsUrl") == "https://abc.execute-api.ap-east-1.amazonaws.com/stats"
    with pytest.raises(CliError, match="no output MediaBucketName"):
        target.output("MediaBucketName")


def test_explicit_stack_region_and_profile_win(tmp_path: Path) -> None:
    (tmp_path / "samconfig.toml").write_text(SAMCONFIG)
    write_state(tmp_path / ".kefu" / "local-stack.json", os.getpid())  # --stack means deployed even so
    cfn, made = FakeCloudFormation(), []
    target = resolve_target(stack="other", region="us-west-2", profile="ops", env={}, cwd=tmp_path,
                            session_factory=fake_sessions(cfn, made))
    assert not target.local and cfn.asked == ["other"]
    assert made == [{"region_name": "us-west-2", "profile_name": "ops"}]


def test_region_falls_back_to_the_environment(tmp_path: Path) -> None:
    (tmp_path / "samconfig.toml").write_text('[default.global.parameters]\nstack_name = "k"\n')
    cfn, made = FakeCloudFormation(), []
    resolve_target(env={"AWS_DEFAULT_REGION": "eu-central-1"}, cwd=tmp_path, session_factory=fake_sessions(cfn, made))
    assert made[0]["region_name"] == "eu-central-1"
    with pytest.raises(CliError, match="no region") as error:
        resolve_target(env={}, cwd=tmp_path, session_factory=fake_sessions(cfn, made))
    assert error.value.exit_code == 2


def test_local_without_a_running_stack_says_how_to_start_one(tmp_path: Path) -> None:
    (tmp_path / "samconfig.toml").write_text(SAMCONFIG)
    with pytest.raises(CliError, match="make dev"):
        resolve_target(local=True, env={}, cwd=tmp_path)
    write_state(tmp_path / ".kefu" / "local-stack.json", dead_pid())
    with pytest.raises(CliError, match="is gone"):
        resolve_target(local=True, env={}, cwd=tmp_path)


def test_nothing_to_talk_to_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "template.yaml").write_text("Resources: {}\n")
    with pytest.raises(CliError, match="--stack NAME or --local") as error:
        resolve_target(env={}, cwd=tmp_path)
    assert error.value.exit_code == 2


# -- the local stack's state file ----------------------------------------------------------------

def test_state_file_is_written_and_removed_by_its_owner(tmp_path: Path) -> None:
    path = tmp_path / ".kefu" / "local-stack.json"
    assert state_file.write(path, {"url": "u", "pid": os.getpid()}, explicit=False)
    assert json.loads(path.read_text())["url"] == "u"
    assert [p.name for p in path.parent.iterdir()] == ["local-stack.json"]  # no temp file left
    state_file.remove(path)
    assert not path.exists()


def test_default_state_file_of_another_live_stack_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "local-stack.json"
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]) as other:
        try:
            path.write_text(json.dumps({"url": "theirs", "pid": other.pid}))
            assert not state_file.write(path, {"url": "mine", "pid": os.getpid()}, explicit=False)
            assert json.loads(path.read_text())["url"] == "theirs"
            state_file.remove(path)  # not ours: stays
            assert path.exists()
            assert state_file.write(path, {"url": "mine", "pid": os.getpid()}, explicit=True)  # KEFU_STATE_FILE
            assert json.loads(path.read_text())["url"] == "mine"
        finally:
            other.kill()


def test_default_state_file_of_a_dead_stack_is_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "local-stack.json"
    path.write_text(json.dumps({"url": "old", "pid": dead_pid()}))
    assert state_file.write(path, {"url": "new", "pid": os.getpid()}, explicit=False)
    assert json.loads(path.read_text())["url"] == "new"


# -- WeCom errors --------------------------------------------------------------------------------

@pytest.mark.parametrize(("errmsg", "ip"), [
    (SIM_60020, "203.0.113.7"),
    ("not allow to access from your ip, hint: [x], from ip: 2001:db8::7, more info at https://x", "2001:db8::7"),
    ("from ip:198.51.100.20", "198.51.100.20"),
    ("not allow to access from your ip", None),
    ("from ip: not-an-ip, more", None),
    ("", None),
])
def test_egress_ip_is_read_from_errmsg(errmsg: str, ip: str | None) -> None:
    assert egress_ip(errmsg) == ip


def _target(local: bool = False) -> Any:
    if local:
        state = {"url": "http://127.0.0.1:1", "resources": {"SecretsPrefix": "/kefu"}, "corp_id": "ww123",
                 "wecom_api_base": "https://qyapi.weixin.qq.com"}
        return local_target(state, Path("s.json"), {})
    return SimpleNamespace(local=False, secrets_prefix="/kefu", corp_id="ww123",
                           wecom_api_base="https://qyapi.weixin.qq.com")


def test_60020_names_the_ip_and_both_remedies() -> None:
    found = diagnose(WeComError("gettoken", 60020, SIM_60020), _target())
    assert found.egress_ip == "203.0.113.7"
    assert "60020" in found.summary and "203.0.113.7" in found.summary
    remedy = " ".join(found.remedy)
    assert "trusted IP" in remedy and "203.0.113.7" in remedy
    assert "fixed-egress" in remedy and "Elastic IP" in remedy
    assert "this command's machine" in remedy and "Lambda" in remedy


def test_wrong_secret_and_corp_id_say_what_to_check() -> None:
    secret = diagnose(WeComError("gettoken", 40001, "invalid credential"), _target())
    assert "40001" in secret.summary and "secret" in secret.summary
    assert any("/kefu/corp-secret" in step for step in secret.remedy)
    corp = diagnose(WeComError("gettoken", 40013, "invalid corpid"), _target())
    assert "40013" in corp.summary and "ww123" in corp.summary
    assert any("WeComCorpId" in step for step in corp.remedy)
    assert any("WECOM_CORP_ID" in step for step in diagnose(WeComError("gettoken", 40013, ""), _target(True)).remedy)
    unreachable = diagnose(WeComError("gettoken", None, "timed out"), _target())
    assert "could not reach WeCom" in unreachable.summary
    other = diagnose(WeComError("kf/account/list", 95017, "api forbidden"), _target())
    assert other.summary.startswith("95017")


# -- messages ----------------------------------------------------------------------------------

def record(origin: int | None, raw: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"msgid": raw.get("msgid", "m1"), "origin": origin, "msgtype": raw.get("msgtype"),
            "send_time": 1767225600, "raw": json.dumps(raw, ensure_ascii=False), **extra}


def test_who_wrote_each_item() -> None:
    assert messages.who(record(3, {"msgtype": "text"})) == "customer"
    assert messages.who(record(5, {"msgtype": "text"}, servicer_userid="alice")) == "servicer alice"
    assert messages.who(record(5, {"msgtype": "text", "servicer_userid": "bob"})) == "servicer bob"
    assert messages.who(record(5, {"msgtype": "text"})) == "servicer"
    assert messages.who(record(4, {"msgtype": "event"})) == "event"


@pytest.mark.parametrize(("raw", "expected"), [
    ({"msgtype": "text", "text": {"content": "你好，我想问一下价格"}}, "你好，我想问一下价格"),
    ({"msgtype": "text", "text": {"content": "人工", "menu_id": "101"}}, "人工  (menu click 101)"),
    ({"msgtype": "image", "image": {"media_id": "3abc"}}, "[image] (media not stored yet)"),
    ({"msgtype": "location", "location": {"name": "外滩", "latitude": 31.2}}, '[location] name "外滩", latitude 31.2'),
    ({"msgtype": "link", "link": {"title": "T", "url": "https://e.com"}}, '[link] title "T", url "https://e.com"'),
    ({"msgtype": "merged_msg", "merged_msg": {"title": "记录", "item": [{}, {}]}}, '[merged_msg] title "记录", 2 message(s)'),
    ({"msgtype": "msgmenu", "msgmenu": {"head_content": "Pick", "list": [{"type": "click", "click": {"content": "A"}},
                                                                          {"type": "view", "view": {"content": "B"}}]}},
     "[menu] Pick / A | B"),
    ({"msgtype": "meeting", "meeting": {}}, "[meeting]"),
    ({"msgtype": "event", "event": {"event_type": "enter_session", "scene": "spring_sale", "scene_param": "city=上海"}},
     'enter_session: scene "spring_sale", scene_param "city=上海"'),
    ({"msgtype": "event", "event": {"event_type": "session_status_change", "change_type": 2,
                                    "old_servicer_userid": "alice", "new_servicer_userid": "bob"}},
     "session_status_change: transferred, from alice, to bob"),
    ({"msgtype": "event", "event": {"event_type": "servicer_status_change", "servicer_userid": "bob", "status": 2}},
     "servicer_status_change: bob stopped"),
    ({"msgtype": "event", "event": {"event_type": "user_recall_msg", "recall_msgid": "m9"}}, "user_recall_msg: recalled m9"),
    ({"msgtype": "event", "event": {"event_type": "brand_new"}}, "brand_new"),
])
def test_item_summaries(raw: dict[str, Any], expected: str) -> None:
    assert messages.summary(record(3, raw)) == expected


def test_media_with_a_stored_object_shows_its_url() -> None:
    item = record(3, {"msgtype": "voice", "voice": {"media_id": "3x"}}, media_key="media/wk/wm/m1")
    assert messages.summary(item, "https://bucket/media?sig") == "[voice] https://bucket/media?sig"
    broken = {**record(3, {"msgtype": "text"}), "raw": "not json"}
    assert messages.summary(broken) == ""  # a text item whose raw JSON is unreadable


def test_conversation_rendering_is_aligned_and_in_local_time() -> None:
    items = [record(4, {"msgtype": "event", "event": {"event_type": "enter_session", "scene": "home"}}, msgid="a"),
             record(3, {"msgtype": "text", "text": {"content": "hi"}}, msgid="b"),
             record(5, {"msgtype": "text", "text": {"content": "hello"}}, msgid="c", servicer_userid="alice")]
    text = messages.render("wkA", "wmB", messages.rows(items, {}), more=True)
    lines = text.splitlines()
    assert lines[0].startswith("Conversation of wmB with wkA: 3 item(s)") and "raise --limit" in lines[0]
    assert lines[1].endswith('event           enter_session: scene "home"')
    assert lines[2].endswith("customer        hi")
    assert lines[3].endswith("servicer alice  hello")
    assert lines[1].startswith(messages.local_time(1767225600))
    assert "(no stored messages)" in messages.render("wkA", "wmB", [], more=False)


def kefu_send(raw: dict[str, Any], rule: str | None = "welcome", **extra: Any) -> dict[str, Any]:
    """One of Kefu's own sends as stored: no origin, ``sender: "kefu"``, the message as sent."""
    item = {"msgid": "k1", "sender": "kefu", "msgtype": raw.get("msgtype"), "send_time": 1767225600,
            "raw": json.dumps(raw, ensure_ascii=False), "via": "send_msg", "send_state": "sent", **extra}
    if rule:
        item["rule"] = rule
    return item


def test_kefu_sends_show_as_kefus_with_their_rule() -> None:
    text = {"msgtype": "text", "text": {"content": "欢迎光临"}}
    assert messages.who(kefu_send(text)) == "Kefu (welcome)"
    assert messages.who(kefu_send(text, rule="bot keyword '价格'")) == "Kefu (bot keyword '价格')"
    assert messages.who(kefu_send(text, rule=None)) == "Kefu"
    assert messages.summary(kefu_send(text)) == "欢迎光临"


@pytest.mark.parametrize(("raw", "expected"), [
    ({"msgtype": "msgmenu", "msgmenu": {"head_content": "您对本次服务是否满意？", "tail_content": "欢迎再次光临", "list": [
        {"type": "click", "click": {"id": "101", "content": "满意"}},
        {"type": "view", "view": {"url": "https://e.com/faq", "content": "常见问题"}},
        {"type": "miniprogram", "miniprogram": {"appid": "wx123", "pagepath": "pages/i", "content": "下单"}},
        {"type": "text", "text": {"content": "或直接回复", "no_newline": 0}}]}},
     "[menu] 您对本次服务是否满意？ / 满意 | 常见问题 <https://e.com/faq> | 下单 <miniprogram wx123> | 或直接回复 / 欢迎再次光临"),
    ({"msgtype": "msgmenu", "msgmenu": {"list": [{"type": "click", "click": {"id": "1", "content": "A"}}]}}, "[menu] A"),
    ({"msgtype": "link", "link": {"title": "春季上新", "desc": "d", "url": "https://e.com/s", "thumb_media_id": "m"}},
     '[link] title "春季上新", url "https://e.com/s"'),
    ({"msgtype": "miniprogram", "miniprogram": {"appid": "wx1", "title": "商城", "pagepath": "p/i", "thumb_media_id": "m"}},
     '[miniprogram] title "商城", appid "wx1", pagepath "p/i"'),
    ({"msgtype": "image", "image": {"media_id": "2abc"}}, "[image]"),
    ({"msgtype": "video", "video": {"media_id": "2abc"}}, "[video]"),
    ({"msgtype": "file", "file": {"media_id": "2abc"}}, "[file]"),
    ({"msgtype": "business_card", "business_card": {"userid": "alice"}}, '[business_card] userid "alice"'),
    ({"msgtype": "ca_link", "ca_link": {"link_url": "https://work.weixin.qq.com/ca/cawcde"}},
     '[ca_link] link_url "https://work.weixin.qq.com/ca/cawcde"'),
    ({"msgtype": "upgrade_service", "upgrade_service": {"type": 1, "member": {"userid": "alice", "wording": "专属顾问"}}},
     '[upgrade_service] offers servicer alice: "专属顾问"'),
    ({"msgtype": "upgrade_service", "upgrade_service": {"type": 2, "groupchat": {"chat_id": "wrC1", "wording": "进群"}}},
     '[upgrade_service] offers group chat wrC1: "进群"'),
    ({"msgtype": "upgrade_service", "upgrade_service": {"type": 1, "member": {"userid": "bob"}}},
     "[upgrade_service] offers servicer bob"),
])
def test_summaries_of_kefus_sends(raw: dict[str, Any], expected: str) -> None:
    assert messages.summary(kefu_send(raw)) == expected


def test_a_stored_or_lost_media_item_without_a_url() -> None:
    stored = record(3, {"msgtype": "image", "image": {"media_id": "3x"}}, media_key="media/wk/wm/m1")
    assert messages.summary(stored) == "[image]"  # stored; no URL asked for (the list of conversations)
    lost = record(3, {"msgtype": "file", "file": {"media_id": "3x"}}, media_state="failed", media_error="errcode 40007")
    assert messages.summary(lost) == "[file] (media not stored: errcode 40007)"


@pytest.mark.parametrize(("extra", "expected"), [
    ({"send_state": "sent"}, []),
    ({"send_state": "failed", "send_error": "errcode 95018"}, ["[send failed: errcode 95018]"]),
    ({"send_state": "failed"}, ["[send failed]"]),
    ({"send_state": "failed", "fail_type": 4}, ["[send failed: fail_type 4]"]),
    ({"send_state": "failed", "fail_type": -1}, ["[send failed]"]),  # WeCom named no fail_type
    ({"send_state": "pending"}, ["[send pending]"]),
    ({"recalled_at": 1767225700, "recalled_by": "customer"}, ["[recalled by customer]"]),
    ({"recalled_at": 1767225700, "recalled_by": "alice"}, ["[recalled by alice]"]),
    ({"recalled_at": 1767225700}, ["[recalled]"]),
    ({"send_state": "failed", "send_error": "errcode 95018", "recalled_at": 1, "recalled_by": "bob"},
     ["[send failed: errcode 95018]", "[recalled by bob]"]),
])
def test_what_became_of_a_message(extra: dict[str, Any], expected: list[str]) -> None:
    assert messages.marks({"msgid": "m", **extra}) == expected


def test_rows_keep_kefus_fields_and_the_rendering_marks_failures_and_recalls() -> None:
    items = [record(3, {"msgtype": "text", "text": {"content": "价格"}}, msgid="a", recalled_at=1767225605,
                    recalled_by="customer"),
             kefu_send({"msgtype": "text", "text": {"content": "100元"}}, rule="bot keyword '价格'", msgid="b",
                       cause="a", send_state="failed", send_error="errcode 95018"),
             kefu_send({"msgtype": "text", "text": {"content": "稍等"}}, rule="menu 'order'", msgid="c",
                       send_state="pending")]
    lines = messages.rows(items, {})
    assert lines[1]["sender"] == "kefu" and lines[1]["rule"] == "bot keyword '价格'"
    assert (lines[1]["send_state"], lines[1]["send_error"], lines[1]["cause"], lines[1]["via"]) == (
        "failed", "errcode 95018", "a", "send_msg")
    assert lines[0]["recalled_at"] == 1767225605 and lines[0]["sender"] is None and lines[0]["text"] == "价格"
    json.dumps(lines)  # plain JSON
    text = messages.render("wkA", "wmB", lines, more=False).splitlines()
    assert [re.split(r"  +", line)[1:] for line in text[1:]] == [
        ["customer", "价格", "[recalled by customer]"],
        ["Kefu (bot keyword '价格')", "100元", "[send failed: errcode 95018]"],
        ["Kefu (menu 'order')", "稍等", "[send pending]"]]
    assert len({width(line.rsplit("  ", 2)[0]) for line in text[1:]}) == 1  # the text column is aligned


def account_item(euid: str | None, send_time: int, text: str = "hi", **extra: Any) -> dict[str, Any]:
    item = record(3, {"msgtype": "text", "text": {"content": text}}, msgid=f"{euid}-{send_time}", send_time=send_time,
                  open_kfid="wkA", **extra)
    if euid:
        item["external_userid"] = euid
    return item


def test_the_newest_item_of_each_customer_up_to_the_limit() -> None:
    newest_first = [account_item("wm1", 10), account_item(None, 9, msgtype="event"), account_item("wm2", 8),
                    account_item("wm1", 7), account_item("wm3", 6), account_item("wm2", 5), account_item("wm4", 4)]
    latest: dict[str, dict[str, Any]] = {}
    assert messages.keep_newest(newest_first[:4], latest, 3) is False
    assert [i["msgid"] for i in latest.values()] == ["wm1-10", "wm2-8"]
    assert messages.keep_newest(newest_first[4:], latest, 3) is True  # wm4 is beyond the limit
    assert [i["msgid"] for i in latest.values()] == ["wm1-10", "wm2-8", "wm3-6"]
    assert messages.keep_newest(newest_first, {}, 10) is False


def test_conversation_rows_and_their_table() -> None:
    items = [account_item("wmA", 1767225660, "好的，谢谢" * 20),
             kefu_send({"msgtype": "text", "text": {"content": "欢迎"}}, msgid="k", external_userid="wmB",
                       send_state="failed", send_error="errcode 95018"),
             record(5, {"msgtype": "image", "image": {"media_id": "x"}}, external_userid="wmC", servicer_userid="al",
                    media_key="media/k")]
    lines = messages.conversation_rows(items, {"wmA": "小王", "wmC": "Chen"})
    assert [(r["external_userid"], r["nickname"], r["who"]) for r in lines] == [
        ("wmA", "小王", "customer"), ("wmB", None, "Kefu (welcome)"), ("wmC", "Chen", "servicer al")]
    assert lines[1]["marks"] == ["[send failed: errcode 95018]"] and lines[1]["send_state"] == "failed"
    assert lines[0]["time"] == messages.local_time(1767225660)
    text = messages.render_conversations("wkA", lines, more=True).splitlines()
    assert text[0].startswith("Recent conversations of wkA: 3, newest first") and "raise --limit above 3" in text[0]
    assert re.split(r"  +", text[1]) == ["customer", "nickname", "last activity", "last", "message"]
    first = re.split(r"  +", text[3])
    assert first[:4] == ["wmA", "小王", messages.local_time(1767225660), "customer"]
    assert first[4].endswith("…") and 58 <= width(first[4]) <= 60  # a wide character does not straddle the edge
    assert re.split(r"  +", text[4])[1:] == ["-", messages.local_time(1767225600), "Kefu (welcome)", "欢迎",
                                             "[send failed: errcode 95018]"]
    assert re.split(r"  +", text[5])[3:] == ["servicer al", "[image]"]
    assert "(no stored messages)" in messages.render_conversations("wkA", [], more=False)


def test_shorten_cuts_by_columns_and_keeps_one_line() -> None:
    assert messages.shorten("a\nb  c") == "a b c"
    assert messages.shorten("你好" * 40, 10) == "你好你好…"
    assert width(messages.shorten("x" * 100, 20)) == 20


class FakeMessagesTarget:
    """A target whose MessagesTable holds conversations for the given conv keys."""

    def __init__(self, convs: set[str]) -> None:
        self.convs = convs
        self.queried: list[str] = []

    aws_endpoint = None

    def output(self, name: str) -> str:
        return "messages-table"

    def session(self) -> Any:
        return self

    def resource(self, service: str, endpoint_url: str | None = None) -> Any:
        assert service == "dynamodb"
        return self

    def Table(self, name: str) -> Any:  # noqa: N802 - boto3's name
        assert name == "messages-table"
        return self

    def query(self, **kwargs: Any) -> dict[str, Any]:
        assert kwargs["IndexName"] == "conversation"
        conv = kwargs["KeyConditionExpression"].get_expression()["values"][1]
        self.queried.append(conv)
        return {"Items": [{"msgid": "m"}] if conv in self.convs else []}


@pytest.mark.parametrize(("accounts", "convs", "expected"), [
    (["wkONE"], set(), "wkONE"),  # one account: no look-up needed
    (["wkA", "wkB", "wkC"], {"wkB#wmX"}, "wkB"),  # the one account the customer wrote to
])
def test_account_of_a_customer(monkeypatch, accounts: list[str], convs: set[str], expected: str) -> None:
    monkeypatch.setattr(messages, "list_accounts", lambda target: [{"open_kfid": a} for a in accounts])
    target = FakeMessagesTarget(convs)
    assert messages.find_account(target, "wmX") == expected  # type: ignore[arg-type]
    assert target.queried == ([] if len(accounts) == 1 else [f"{a}#wmX" for a in accounts])


def test_account_of_a_customer_asks_when_it_cannot_tell(monkeypatch) -> None:
    monkeypatch.setattr(messages, "list_accounts", lambda target: [{"open_kfid": "wkA"}, {"open_kfid": "wkB"}])
    with pytest.raises(CliError, match="wrote to 2 accounts .*--account"):
        messages.find_account(FakeMessagesTarget({"wkA#wmX", "wkB#wmX"}), "wmX")  # type: ignore[arg-type]
    with pytest.raises(CliError, match="no stored messages of wmX in any of the 2"):
        messages.find_account(FakeMessagesTarget(set()), "wmX")  # type: ignore[arg-type]
    monkeypatch.setattr(messages, "list_accounts", lambda target: [])
    with pytest.raises(CliError, match="no kf account"):
        messages.find_account(FakeMessagesTarget(set()), "wmX")  # type: ignore[arg-type]


# -- dead letters --------------------------------------------------------------------------------

def test_dead_letter_summaries() -> None:
    sync = json.dumps({"open_kfid": "wkA", "token": "T", "create_time": 1767225600})
    assert dlq.summarize(sync).startswith("sync wkA, callback of ") and "(with token)" in dlq.summarize(sync)
    route = json.dumps({"open_kfid": "wkA", "external_userid": "wmB", "items": [
        {"msgid": "1", "item": {"msgtype": "text"}}, {"msgid": "2", "item": {"msgtype": "text"}},
        {"msgid": "3", "item": {"msgtype": "event", "event": {"event_type": "enter_session"}}}]})
    assert dlq.summarize(route) == "route 3 item(s) of wmB: text x2, event/enter_session"
    assert dlq.summarize("x" * 200).endswith("...") and len(dlq.summarize("x" * 200)) == 80


class FakeSqs:
    """Two FIFO queues in memory: the DLQ hands out its messages in order."""

    def __init__(self, bodies: list[tuple[str, str]], fail_send_at: int | None = None,
                 fail_delete_at: int | None = None) -> None:
        self.dlq = [{"MessageId": f"id-{i}", "ReceiptHandle": f"rh-{i}", "Body": body,
                     "Attributes": {"MessageGroupId": group}} for i, (group, body) in enumerate(bodies)]
        self.visible = list(self.dlq)
        self.sent: list[dict[str, Any]] = []
        self.deleted: list[str] = []
        self.released: list[str] = []
        self.fail_send_at = fail_send_at
        self.fail_delete_at = fail_delete_at
        self.calls: list[str] = []

    def receive_message(self, QueueUrl: str, MaxNumberOfMessages: int, **_: Any) -> dict[str, Any]:  # noqa: N803
        batch, self.visible = self.visible[:MaxNumberOfMessages], self.visible[MaxNumberOfMessages:]
        return {"Messages": batch}

    def send_message(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append("send")
        if self.fail_send_at is not None and len(self.sent) == self.fail_send_at:
            raise RuntimeError("throttled")
        self.sent.append(kwargs)
        return {"MessageId": "new"}

    def delete_message(self, QueueUrl: str, ReceiptHandle: str) -> None:  # noqa: N803
        self.calls.append("delete")
        if self.fail_delete_at is not None and len(self.deleted) == self.fail_delete_at:
            raise RuntimeError("network")
        self.deleted.append(ReceiptHandle)

    def change_message_visibility_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> None:  # noqa: N803
        self.released.extend(e["ReceiptHandle"] for e in Entries)


def test_redrive_keeps_group_and_order_and_deletes_after_each_send() -> None:
    sqs = FakeSqs([("g1", "a"), ("g2", "b"), ("g1", "c")] + [("g3", str(i)) for i in range(12)])
    result = dlq.redrive(sqs, "dlq", "src", Progress("t", stream=open(os.devnull, "w")), most=15)
    assert result.moved == 15 and result.error is None
    assert [(s["MessageGroupId"], s["MessageBody"]) for s in sqs.sent][:3] == [("g1", "a"), ("g2", "b"), ("g1", "c")]
    assert all(s["QueueUrl"] == "src" for s in sqs.sent)
    assert [s["MessageDeduplicationId"] for s in sqs.sent][:2] == ["redrive-id-0", "redrive-id-1"]
    assert sqs.calls == ["send", "delete"] * 15  # never a delete before its send
    assert len(sqs.deleted) == 15


def test_a_failed_send_deletes_nothing_more_and_releases_the_rest() -> None:
    sqs = FakeSqs([("g", "a"), ("g", "b"), ("g", "c")], fail_send_at=1)
    result = dlq.redrive(sqs, "dlq", "src", Progress("t", stream=open(os.devnull, "w")), most=3)
    assert result.moved == 1 and "stays in the DLQ" in (result.error or "")
    assert sqs.deleted == ["rh-0"]
    assert sqs.released == ["rh-1", "rh-2"]  # visible again at once, in order


def test_a_failed_delete_stops_with_the_message_counted_and_explained() -> None:
    sqs = FakeSqs([("g", "a"), ("g", "b")], fail_delete_at=0)
    result = dlq.redrive(sqs, "dlq", "src", Progress("t", stream=open(os.devnull, "w")), most=2)
    assert result.moved == 1 and "not deleted" in (result.error or "")
    assert len(sqs.sent) == 1 and sqs.released == ["rh-1"]


def test_redrive_moves_at_most_the_count_it_started_with() -> None:
    sqs = FakeSqs([("g", str(i)) for i in range(5)])
    assert dlq.redrive(sqs, "dlq", "src", Progress("t", stream=open(os.devnull, "w")), most=3).moved == 3
    assert len(sqs.visible) == 2


# -- text output -------------------------------------------------------------------------------

def test_table_aligns_wide_characters() -> None:
    text = table(["scene", "n"], [["上海", 1], ["home", 22]], right=[1])
    lines = text.splitlines()
    assert {width(line) for line in lines} == {width(lines[0])}
    assert lines[2] == "上海    1" and lines[3] == "home   22"


def test_progress_on_a_pipe_prints_whole_lines(tmp_path: Path) -> None:
    out = tmp_path / "err.txt"
    with open(out, "w") as stream:
        progress = Progress("moving", 3, stream=stream, every=0)
        for _ in range(3):
            progress.update()
        progress.done()
    assert out.read_text().splitlines() == ["moving: 1/3", "moving: 2/3", "moving: 3/3", "moving: 3/3"]


def test_quick_work_off_a_terminal_prints_no_progress(tmp_path: Path) -> None:
    out = tmp_path / "err.txt"
    with open(out, "w") as stream:
        progress = Progress("reading messages", stream=stream)
        progress.update(200)
        progress.done()
    assert out.read_text() == ""


class Terminal:
    def __init__(self) -> None:
        self.text = ""

    def isatty(self) -> bool:
        return True

    def write(self, text: str) -> None:
        self.text += text

    def flush(self) -> None:
        pass


def test_progress_on_a_terminal_rewrites_one_line() -> None:
    term = Terminal()
    progress = Progress("redriving route dead letters", 2, stream=term)  # type: ignore[arg-type]
    progress.update()
    progress.update()
    progress.done()
    assert term.text.count("\r") == 3 and term.text.endswith("redriving route dead letters: 2/2\x1b[K\n")
