"""The one error type for WeCom API failures."""

from __future__ import annotations

# Every WeCom errcode Kefu acts on, by name (the other modules import them from here).
SYSTEM_BUSY = -1
BAD_SECRET = 40001
BAD_CORP_ID = 40013
INVALID_PARAMETER = 40058
# A send's msgid already used in the kf account (send_msg, send_msg_on_event). The API reference
# (wecom-kf-api.md, 6.1 kf/send_msg: the msgid "must be unique within the kf account or the call
# errors") names no errcode for it, nor does its error list (9. Error codes): Kefu assumes 40058,
# invalid parameter, the code it has met for the case. It is settled on this errcode alone, never
# on errmsg, whose text WeCom says may change (0. Transport conventions). 40058 also answers other
# invalid parameters, so it means "used msgid" only for a send Kefu has already attempted.
USED_MSGID = INVALID_PARAMETER
API_FORBIDDEN = 48002
INVALID_OPEN_KFID = 95000
ACCOUNT_NOT_FOUND = 95004
NOT_A_SERVICER = 95014
INVALID_STATE_TRANSITION = 95016
SEND_WRONG_STATE = 95018
SEND_COUNT_LIMIT = 95001  # 5 sends per customer message within 48 h used up
SEND_TIME_LIMIT = 95002  # the 48 h after the customer's last message are over
TOKEN_ERRORS = frozenset({BAD_SECRET, 40014, 42001})
# WeCom's answers that it did not run the call (busy, API rate limit, concurrency limit): any
# call, read or write, may be repeated after them.
RETRYABLE_ERRORS = frozenset({SYSTEM_BUSY, 45009, 45033})
IP_NOT_TRUSTED = 60020
NO_CONTACT_PERMISSION = 60011  # the app may not read this member or department (its visible range)
# WeCom refused the message itself (a media id it does not know, a field over its limit, a menu
# it cannot show, one business card per 48 h, an appid not linked): the same message is refused
# again on every retry, so the send is settled as failed rather than retried.
MESSAGE_REFUSED = frozenset({40003, 40004, 40005, 40006, 40007, 40008, 40009, 40011, 45001, 45002, 60111, 90207,
                             95008, 95009, 95025})
MSG_TOKEN_INVALID = 95007


class WeComError(Exception):
    """A WeCom call that did not succeed.

    ``errcode`` is WeCom's code, or None when no WeCom answer was read (timeout, connection error,
    HTTP error status); then ``http_status`` tells what happened, if anything came back.
    """

    def __init__(self, path: str, errcode: int | None, errmsg: str, http_status: int | None = None) -> None:
        super().__init__(f"{path}: errcode={errcode} {errmsg}")
        self.path = path
        self.errcode = errcode
        self.errmsg = errmsg
        self.http_status = http_status

    @property
    def transient(self) -> bool:
        """True when the same call may succeed if repeated later."""
        if self.errcode is None:
            return self.http_status is None or self.http_status >= 500 or self.http_status == 429
        return self.errcode in RETRYABLE_ERRORS

    @property
    def not_executed(self) -> bool:
        """True when WeCom answered that it did not run the call (so a write may be repeated)."""
        return self.errcode in RETRYABLE_ERRORS

    @property
    def token_rejected(self) -> bool:
        return self.errcode in TOKEN_ERRORS

    @property
    def metric_code(self) -> str:
        if self.errcode is not None:
            return str(self.errcode)
        return f"http_{self.http_status}" if self.http_status else "transport"
