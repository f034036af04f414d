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

    def _notify(self, open_kfid: str) -> None:
        if self.auto_callback and self.callback_url:
            self.fire_callback(open_kfid)

