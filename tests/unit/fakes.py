"""In-memory stand-ins for the routing engine's ports (kefu.routing.ports): WeCom's kf session
API and the four routing stores, with a settable clock. They keep the rules the real ones keep -
WeCom's state transitions, a send's msgid used once, the capacity reservation's conditions - so
the engine's unit tests fail where the deployed engine would."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kefu.routing.decide import Routed
from kefu.routing.session import Session
from kefu.store.routing_state import SEND_LIMIT, SEND_WINDOW, PoolEntry
from kefu.wecom.errors import INVALID_PARAMETER, INVALID_STATE_TRANSITION, NOT_A_SERVICER, SEND_WRONG_STATE, WeComError

ALLOWED = {0: {1, 2, 3, 4}, 1: {2, 3, 4}, 2: {3, 4}, 3: {3, 4}, 4: set()}


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeWeCom:
    """kf/service_state get and trans, send_msg, send_msg_on_event, servicer/list."""

    states: dict[tuple[str, str], tuple[int, str | None]] = field(default_factory=dict)
    servicers: dict[str, dict[str, bool]] = field(default_factory=dict)  # open_kfid -> userid -> receiving
    faults: dict[str, list[tuple[WeComError, bool]]] = field(default_factory=dict)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)
    msgids: set[str] = field(default_factory=set)
    upgrade_range: dict[str, list[str]] = field(default_factory=lambda: {"userids": [], "chat_ids": []})
    departments: dict[str, list[int]] = field(default_factory=dict)  # open_kfid -> servicing departments
    members: dict[int, list[str]] = field(default_factory=dict)  # department -> userids
    hidden: set[int] = field(default_factory=set)  # departments the app may not read (60011)
    offers: list[dict[str, Any]] = field(default_factory=list)

    def fail(self, path: str, error: WeComError, executed: bool = False) -> None:
        """The next call to ``path`` fails with ``error``; ``executed``: after doing its work."""
        self.faults.setdefault(path, []).append((error, executed))

    def read(self, path: str, body: dict[str, Any] | None = None, *, params: dict[str, str] | None = None) -> dict[str, Any]:
        self.calls.append((path, dict(body or params or {})))
        if path == "kf/service_state/get":
            query = body or {}
            state, servicer = self.states.get((query["open_kfid"], query["external_userid"]), (0, None))
            return {"errcode": 0, "service_state": state, "servicer_userid": servicer or ""}
        if path == "kf/servicer/list":
            open_kfid = (params or {})["open_kfid"]
            on = self.servicers.get(open_kfid, {})
            return {"errcode": 0, "servicer_list": [{"userid": u, "status": 0 if r else 1} for u, r in on.items()]
                    + [{"department_id": d} for d in self.departments.get(open_kfid, [])]}
        if path == "user/simplelist":
            department = int((params or {})["department_id"])
            if department in self.hidden:
                raise WeComError(path, 60011, "no privilege to access/modify contact/party/agent")
            return {"errcode": 0, "userlist": [{"userid": u} for u in self.members.get(department, [])]}
        if path == "kf/customer/get_upgrade_service_config":
            return {"errcode": 0, "member_range": {"userid_list": list(self.upgrade_range["userids"])},
                    "groupchat_range": {"chat_id_list": list(self.upgrade_range["chat_ids"])}}
        raise AssertionError(f"unexpected read {path}")

    def write(self, path: str, body: dict[str, Any], *, retry_not_executed: bool = False) -> dict[str, Any]:
        self.calls.append((path, dict(body)))
        queued = self.faults.get(path)
        error, executed = queued.pop(0) if queued else (None, False)
        if error is not None and not executed:
            raise error
        answer = self._apply(path, body)
        if error is not None:
            raise error
        return answer

    def _apply(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        if path == "kf/service_state/trans":
            key = (body["open_kfid"], body["external_userid"])
            current, holder = self.states.get(key, (0, None))
            target, servicer = body["service_state"], body.get("servicer_userid")
            if target not in ALLOWED[current] or (target == 3 and current == 3 and holder == servicer):
                raise WeComError(path, INVALID_STATE_TRANSITION, f"invalid service state transition {current} -> {target}")
            by_department = any(servicer in self.members.get(d, []) for d in self.departments.get(body["open_kfid"], []))
            if target == 3 and not (self.servicers.get(body["open_kfid"], {}).get(servicer or "") or by_department):
                raise WeComError(path, NOT_A_SERVICER, "user is not servicer")
            self.states[key] = (target, servicer if target == 3 else None)
            return {"errcode": 0, "msg_code": f"code-{key[1]}-{target}" if target in (2, 3, 4) else ""}
        if path in ("kf/send_msg", "kf/send_msg_on_event"):
            if path == "kf/send_msg":
                key = (body["open_kfid"], body["touser"])
                state = self.states.get(key, (0, None))[0]
                if state not in (0, 1):
                    raise WeComError(path, SEND_WRONG_STATE, "send msg session status invalid")
                self.states[key] = (1, None)
            if body["msgid"] in self.msgids:
                raise WeComError(path, INVALID_PARAMETER, "duplicate msgid")
            self.msgids.add(body["msgid"])
            self.sent.append({"path": path, **body})
            return {"errcode": 0, "msgid": body["msgid"]}
        if path == "kf/customer/upgrade_service":
            self.offers.append(dict(body))
            return {"errcode": 0}
        raise AssertionError(f"unexpected write {path}")

    def paths(self) -> list[str]:
        return [path for path, _ in self.calls]


class FakeSessions:
    def __init__(self) -> None:
        self.items: dict[tuple[str, str], dict[str, Any]] = {}

    def get(self, open_kfid: str, euid: str) -> Session:
        return Session.from_item(self.items.get((open_kfid, euid)))

    def update(self, open_kfid: str, euid: str, set_fields: dict[str, Any] | None = None,
               remove: tuple[str, ...] = ()) -> None:
        item = self.items.setdefault((open_kfid, euid), {})
        item.update({k: (int(v) if isinstance(v, int) else v) for k, v in (set_fields or {}).items()})
        for name in remove:
            item.pop(name, None)

    def mark_routed(self, open_kfid: str, euid: str, routed: Routed, also: dict[str, Any] | None = None) -> None:
        self.update(open_kfid, euid, {**(also or {}), "routed": list(routed.tags)})

    def take_send(self, open_kfid: str, euid: str, now: float, send_id: str) -> int:
        """The ledger in send_ids: 1 for a send's first attempt (one unit taken), 2 for a later
        one (no unit), 0 when refused - as SessionStore.take_send."""
        item = self.items.setdefault((open_kfid, euid), {})
        taken = item.setdefault("send_ids", set())
        if send_id in taken:
            return 2
        if item.get("state") not in (0, 1) or item.get("sends", 0) >= SEND_LIMIT or item.get("window_at", 0) <= now - SEND_WINDOW:
            return 0
        item["sends"] = item.get("sends", 0) + 1
        taken.add(send_id)
        return 1


class FakeLoads:
    def __init__(self, sessions: FakeSessions) -> None:
        self.active: dict[tuple[str, str], int] = {}
        self._sessions = sessions

    def get(self, open_kfid: str) -> dict[str, int]:
        return {u: n for (k, u), n in self.active.items() if k == open_kfid}

    def reserve(self, open_kfid: str, euid: str, servicer: str, max_active: int) -> str:
        item = self._sessions.items.setdefault((open_kfid, euid), {})
        if self.active.get((open_kfid, servicer), 0) >= max_active:
            return "full"
        if item.get("counted"):
            return "counted"
        self.active[(open_kfid, servicer)] = self.active.get((open_kfid, servicer), 0) + 1
        item["counted"] = servicer
        return "ok"

    def move(self, open_kfid: str, euid: str, old: str | None, new: str | None) -> bool:
        item = self._sessions.items.setdefault((open_kfid, euid), {})
        if old == new or item.get("counted") != old:
            return False
        if old:
            self.active[(open_kfid, old)] -= 1
        if new:
            self.active[(open_kfid, new)] = self.active.get((open_kfid, new), 0) + 1
            item["counted"] = new
        else:
            item.pop("counted", None)
        return True


class FakeRosters:
    def __init__(self) -> None:
        self.rosters: dict[str, tuple[dict[str, bool], float]] = {}
        self.rotation = 0

    def get(self, open_kfid: str) -> tuple[dict[str, bool], float] | None:
        return self.rosters.get(open_kfid)

    def save(self, open_kfid: str, on: dict[str, bool], now: float) -> None:
        self.rosters[open_kfid] = (dict(on), now)

    def set_servicer(self, open_kfid: str, userid: str, receiving: bool) -> bool:
        if open_kfid not in self.rosters:
            return False
        self.rosters[open_kfid][0][userid] = receiving
        return True

    def next_rotation(self, open_kfid: str) -> int:
        self.rotation += 1
        return self.rotation


class FakePool:
    def __init__(self) -> None:
        self.entries: dict[str, dict[str, str]] = {}

    def add(self, open_kfid: str, euid: str, now: float) -> str:
        key = f"{int(now * 1000):015d}#{euid}"
        self.entries.setdefault(open_kfid, {})[key] = euid
        return key

    def oldest(self, open_kfid: str, limit: int = 25) -> list[PoolEntry]:
        return [PoolEntry(k, e) for k, e in sorted(self.entries.get(open_kfid, {}).items())][:limit]

    def remove(self, open_kfid: str, sort_key: str) -> None:
        self.entries.get(open_kfid, {}).pop(sort_key, None)


@dataclass
class FakeState:
    sessions: FakeSessions = field(default_factory=FakeSessions)
    rosters: FakeRosters = field(default_factory=FakeRosters)
    pool: FakePool = field(default_factory=FakePool)
    loads: FakeLoads = field(init=False)

    def __post_init__(self) -> None:
        self.loads = FakeLoads(self.sessions)


class FakeTranscript:
    """The conversation record's sends (kefu.store.messages.MessageStore.begin_send/settle_send)."""

    def __init__(self) -> None:
        self.records: dict[str, dict[str, Any]] = {}

    def begin_send(self, record: dict[str, Any]) -> str | None:
        held = self.records.get(record["msgid"])
        if held is not None:
            return str(held["send_state"])
        self.records[record["msgid"]] = dict(record)
        return None

    def send_record(self, msgid: str) -> dict[str, Any] | None:
        held = self.records.get(msgid)
        return dict(held) if held is not None else None

    def settle_send(self, msgid: str, state: str, error: str | None = None) -> None:
        if msgid in self.records:
            self.records[msgid]["send_state"] = state
            if error:
                self.records[msgid]["send_error"] = error

    def sent(self) -> list[dict[str, Any]]:
        """The settled sends, in the order they were made (json-decoded messages under ``message``)."""
        import json

        return [{**r, "message": json.loads(r["raw"])} for r in self.records.values()]
