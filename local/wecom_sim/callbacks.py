"""Callbacks: kf_msg_or_event tokens, and encrypting, signing and POSTing callbacks to the client."""

from __future__ import annotations

import secrets
import string

import httpx

from local.wecom_sim.core import SimulatorCore
from local.wecom_sim.state import CALLBACK_TOKEN_TTL, DEMO_AGENT_ID


def _cdata(value: str) -> str:
    return "<![CDATA[" + value.replace("]]>", "]]]]><![CDATA[>") + "]]>"


class CallbackSender(SimulatorCore):
    """Sends the callbacks WeCom posts when a kf account has new messages or events."""

    # ------------------------------------------------------------------ callbacks

    def issue_callback_token(self, open_kfid: str) -> str:
        """A fresh sync_msg token for the account, as a kf_msg_or_event callback would carry."""
        with self._lock:
            self._require_account(open_kfid)
            token = "ENC" + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(44))
            self._callback_tokens[token] = (open_kfid, self.now() + CALLBACK_TOKEN_TTL)
            return token

    def callback_xml(self, open_kfid: str, token: str) -> str:
        return (
            f"<xml><ToUserName>{_cdata(self.corp_id)}</ToUserName>"
            f"<CreateTime>{int(self.now())}</CreateTime>"
            f"<MsgType>{_cdata('event')}</MsgType>"
            f"<Event>{_cdata('kf_msg_or_event')}</Event>"
            f"<Token>{_cdata(token)}</Token>"
            f"<OpenKfId>{_cdata(open_kfid)}</OpenKfId></xml>"
        )

    def fire_callback(self, open_kfid: str, repeat: int = 1) -> list[int]:
        """POST a kf_msg_or_event callback ``repeat`` times (identical, like WeCom retries).

        Returns the HTTP statuses; 0 stands for a transport failure (refused, timed out)."""
        token = self.issue_callback_token(open_kfid)
        return self.post_callback_xml(self.callback_xml(open_kfid, token), repeat=repeat)

    def post_callback_xml(self, xml_plaintext: str, repeat: int = 1) -> list[int]:
        """Encrypt, sign and POST any plaintext event XML to the callback URL."""
        url = self.callback_url
        if not url:
            raise ValueError("no callback URL set")
        query, body = self.signed_callback_request(xml_plaintext)
        statuses: list[int] = []
        client = self._http or httpx.Client(timeout=self.callback_timeout)
        try:
            for _ in range(max(1, repeat)):
                try:
                    status = client.post(
                        url, params=query, content=body, headers={"Content-Type": "text/xml"}
                    ).status_code
                except httpx.HTTPError:
                    status = 0
                statuses.append(status)
                with self._lock:
                    self.callbacks.append(
                        {"url": url, "query": dict(query), "xml": xml_plaintext, "status": status, "time": self.now()}
                    )
        finally:
            if client is not self._http:
                client.close()
        return statuses

    def signed_callback_request(self, xml_plaintext: str) -> tuple[dict[str, str], bytes]:
        """(query params, body) of an encrypted callback POST carrying ``xml_plaintext``."""
        encrypted = self._crypt.encrypt(xml_plaintext)
        timestamp, nonce = str(int(self.now())), str(secrets.randbelow(9 * 10**9) + 10**9)
        body = (
            f"<xml><ToUserName>{_cdata(self.corp_id)}</ToUserName>"
            f"<Encrypt>{_cdata(encrypted)}</Encrypt>"
            f"<AgentID>{_cdata(DEMO_AGENT_ID)}</AgentID></xml>"
        )
        query = {"msg_signature": self._crypt.sign(timestamp, nonce, encrypted), "timestamp": timestamp, "nonce": nonce}
        return query, body.encode("utf-8")

    def signed_echo(self, echostr_plain: str) -> dict[str, str]:
        """Query params of a GET URL verification whose echostr decrypts to ``echostr_plain``."""
        encrypted = self._crypt.encrypt(echostr_plain)
        timestamp, nonce = str(int(self.now())), str(secrets.randbelow(9 * 10**9) + 10**9)
        return {
            "msg_signature": self._crypt.sign(timestamp, nonce, encrypted),
            "timestamp": timestamp,
            "nonce": nonce,
            "echostr": encrypted,
        }

    # ------------------------------------------------------------------ lost callbacks

    def lose_callbacks(self, count: int, open_kfid: str | None = None) -> int:
        """Lose the next ``count`` automatic callbacks for ``open_kfid`` (None: for any account).

        WeCom does not promise delivery: a callback can be dropped on the way (network trouble, a
        timeout WeCom does not retry) and nothing tells the client. A lost callback is never
        POSTed and no sync_msg token is issued for it; the items it announced stay pullable with
        kf/sync_msg (with no token), as at WeCom. Counts add up; a loss for the account is spent
        before a loss for any account. Only automatic callbacks are lost (fire_callback, which a
        test calls on purpose, always posts); a callback that would not be sent anyway (no
        callback URL, auto_callback off) spends nothing. clear_faults drops the pending counts.
        Returns the pending count for that scope."""
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError("count must be an integer of at least 1")
        with self._lock:
            if open_kfid is not None:
                self._require_account(open_kfid)
            self._callback_losses[open_kfid] = self._callback_losses.get(open_kfid, 0) + count
            return self._callback_losses[open_kfid]

    def pending_callback_losses(self, open_kfid: str | None = None) -> int:
        """How many automatic callbacks lose_callbacks will still drop for ``open_kfid`` (None: for any
        account, the pool every account draws on after its own)."""
        with self._lock:
            return self._callback_losses.get(open_kfid, 0)

    def lost_callbacks(self, open_kfid: str | None = None) -> int:
        """How many automatic callbacks were lost so far (counted by lose_callbacks or drawn by the
        ``callback_loss`` probability), for ``open_kfid`` or for all accounts."""
        with self._lock:
            return sum(1 for lost in self._lost_callbacks if open_kfid in (None, lost["open_kfid"]))

    def _lose_callback(self, open_kfid: str) -> str | None:
        """Whether this callback is lost, and why ("counted" or "random"); lock held."""
        for scope in (open_kfid, None):
            pending = self._callback_losses.get(scope, 0)
            if pending > 0:
                if pending == 1:
                    del self._callback_losses[scope]
                else:
                    self._callback_losses[scope] = pending - 1
                return "counted"
        if self.callback_loss > 0 and self._rng.random() < self.callback_loss:
            return "random"
        return None

    def _notify(self, open_kfid: str) -> None:
        with self._lock:
            account = self._accounts.get(open_kfid)
            # WeCom tells an app only of the accounts it manages.
            if not (self.auto_callback and self.callback_url) or account is None or not account.manage_privilege:
                return
            reason = self._lose_callback(open_kfid)
            if reason is not None:
                self._lost_callbacks.append({"open_kfid": open_kfid, "time": self.now(), "reason": reason})
                return
        self.fire_callback(open_kfid)

