"""A service provider's calls to WeCom (``/cgi-bin/service/...``) for its suite (第三方应用 or
代开发 template): the suite_access_token, permanent codes, per-corp tokens and the install link.

The suite_access_token is shared like a corp's access_token (kefu.wecom.tokens.AccessTokens: one
item in DynamoDB, one refresher at a time); it is fetched with the latest suite_ticket WeCom pushed
to the command callback. A call WeCom answers with 40082 (invalid suite_access_token) or 42009
(expired) drops the shared token and is made once more with a fresh one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from kefu.wecom.client import WeComClient
from kefu.wecom.errors import WeComError
from kefu.wecom.tokens import AccessTokens

SUITE_TOKEN_REJECTED = frozenset({40082, 42009})
INSTALL_URL = "https://open.work.weixin.qq.com/3rdapp/install"


@dataclass(frozen=True)
class Authorization:
    """What get_permanent_code answers for a corp that authorized the suite."""

    corp_id: str
    corp_name: str
    permanent_code: str
    agent_id: int | None

    @classmethod
    def from_answer(cls, data: dict[str, Any]) -> Authorization:
        corp = data.get("auth_corp_info") or {}
        agents = (data.get("auth_info") or {}).get("agent") or []
        agent = agents[0].get("agentid") if agents and isinstance(agents[0], dict) else None
        corp_id, code = corp.get("corpid"), data.get("permanent_code")
        if not isinstance(corp_id, str) or not corp_id or not isinstance(code, str) or not code:
            raise WeComError("service/get_permanent_code", None, "answer has no auth_corp_info.corpid or permanent_code")
        return cls(corp_id, str(corp.get("corp_name") or ""), code, int(agent) if isinstance(agent, int) else None)


class SuiteApi:
    def __init__(self, client: WeComClient, suite_id: str, suite_secret: Callable[[], str],
                 ticket: Callable[[], str | None], tokens: Callable[[Callable[[], tuple[str, int]]], AccessTokens]) -> None:
        """``client``: a WeComClient with no token source (each call carries its own credential);
        ``ticket``: the latest suite_ticket stored; ``tokens``: builds the shared token holder
        around a fetch."""
        self._client = client
        self.suite_id = suite_id
        self._secret = suite_secret
        self._ticket = ticket
        self._tokens = tokens(self._fetch_suite_token)

    def _fetch_suite_token(self) -> tuple[str, int]:
        ticket = self._ticket()
        if not ticket:
            raise WeComError("service/get_suite_token", None,
                             "no suite_ticket stored yet: WeCom pushes one to the command callback every 10 minutes")
        data = self._client.call_with("service/get_suite_token", {
            "suite_id": self.suite_id, "suite_secret": self._secret(), "suite_ticket": ticket}, {},
            retry_transient=True)
        return str(data["suite_access_token"]), int(data.get("expires_in", 7200))

    def _call(self, path: str, body: dict[str, Any] | None, *, retry_transient: bool = True) -> dict[str, Any]:
        token = self._tokens.get()
        try:
            return self._client.call_with(path, body, {"suite_access_token": token}, retry_transient=retry_transient)
        except WeComError as exc:
            if exc.errcode not in SUITE_TOKEN_REJECTED:
                raise
            self._tokens.invalidate(token)
            return self._client.call_with(path, body, {"suite_access_token": self._tokens.get()},
                                          retry_transient=retry_transient)

    def permanent_code(self, auth_code: str) -> Authorization:
        """Trade a create_auth's auth code (once, within 10 minutes) for the corp's permanent code.
        Not repeated on a timeout: the code may have been used."""
        return Authorization.from_answer(self._call("service/get_permanent_code", {"auth_code": auth_code},
                                                    retry_transient=False))

    def corp_token(self, corp_id: str, permanent_code: str) -> tuple[str, int]:
        data = self._call("service/get_corp_token", {"auth_corpid": corp_id, "permanent_code": permanent_code})
        return str(data["access_token"]), int(data.get("expires_in", 7200))

    def auth_info(self, corp_id: str, permanent_code: str) -> dict[str, Any]:
        return self._call("service/get_auth_info", {"auth_corpid": corp_id, "permanent_code": permanent_code})

    def install_link(self, redirect_uri: str, state: str = "", test: bool = False) -> tuple[str, int]:
        """A pre-auth code (set for a test authorization when ``test``) and the install URL a
        provider's page sends an enterprise's admin to; returns (url, seconds it lives)."""
        data = self._call("service/get_pre_auth_code", None)
        code, lives = str(data["pre_auth_code"]), int(data.get("expires_in", 1200))
        if test:
            self._call("service/set_session_info", {"pre_auth_code": code, "session_info": {"auth_type": 1}},
                       retry_transient=False)
        query = {"suite_id": self.suite_id, "pre_auth_code": code, "redirect_uri": redirect_uri, "state": state}
        return f"{INSTALL_URL}?{urlencode(query)}", lives
