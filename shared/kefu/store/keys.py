"""Every DynamoDB key Kefu writes, in one place (the CLI and the tests read the same formats).

StateTable items (pk / sk):
- ``token#<hash of corp and secret>`` / ``token`` - the shared access_token and its refresh lease
- ``cursor#<open_kfid>`` / ``cursor`` - the sync cursor (and the catch-up state)
- ``customer#<external_userid>`` / ``profile`` - a customer's profile
- ``link#<open_kfid>`` / ``<scene>`` - a contact URL
- ``linkquota#<day>`` / ``n`` - how many new contact URLs were made that day (the /links cap)
- ``media#<open_kfid>`` / ``<msgid>`` - media waiting to be downloaded
- ``rsession#<open_kfid>#<external_userid>`` / ``s`` - the routing session (kefu.routing.session);
  while it is open it carries ``active_of`` / ``active_at``, its entry in the sparse ``active`` index
- ``rload#<open_kfid>`` / ``<userid>`` - sessions counted against a servicer
- ``roster#<open_kfid>`` / ``roster`` - who is on duty, and when it was fetched
- ``rrot#<open_kfid>`` / ``rr`` - the round-robin counter
- ``rpool#<open_kfid>`` / ``<pooled_at ms, 15 digits>#<external_userid>`` - the waiting pool, oldest first
- ``counted#<event id>`` / ``c`` - a statistics event already counted
- ``upload#<digest of the asset>`` / ``m`` - a rules asset's media_id at WeCom, while it lives
- ``wecom#<day>`` / ``<open_kfid>#-`` and ``<open_kfid>#<userid>`` - WeCom's own statistics of the day (T+1)
- ``kfaccount#<open_kfid>`` / ``applied`` - what `kefu accounts apply` last made of an account: its
  alias, name and the SHA-256 of the avatar it uploaded (kefu.accounts_plan)
- ``aicalls#<day>`` / ``<open_kfid>`` and ``<open_kfid>#<external_userid>`` - the AI answerer's model
  calls of a day, for the account and per customer (``calls``: a set of the questions' tags)
- ``aispend#<month>`` / ``usd`` - the AI answerer's model spend of a month (``micro_usd``)
- ``funnel#<day>`` / ``<open_kfid>#<scene>`` and ``servicer#<day>`` / ``<open_kfid>#<userid>`` - figures
MessagesTable: ``msgid``; its ``conv`` attribute is ``<open_kfid>#<external_userid>``.

Provider mode (kefu.tenancy): every key above, the ``msgid`` and the values of index keys
(``conv``, ``entry_of``, ``active_of``, ``unionid``) are qualified with the corp in scope
(``<corp_id>/token#...``), and records carry a ``corp`` attribute. The provider's own items are
not corp data and are never qualified:
- ``provider#suite`` / ``ticket`` - the latest suite_ticket WeCom pushed (and the one before it)
- ``provider#token#<hash of suite and secret>`` / ``token`` - the shared suite_access_token
- ``provider#corps`` / ``<corp_id>`` - an authorized corp: its permanent code (KMS-encrypted),
  agent, state (active / cancelled) and the kf accounts it granted
- ``provider#apikey#<SHA-256 of a corp's API key>`` / ``key`` - which corp an API key speaks for
"""

from __future__ import annotations

from kefu.tenancy import qualify

Key = dict[str, str]


def token(key: str) -> Key:
    return {"pk": qualify(f"token#{key}"), "sk": "token"}


def cursor(open_kfid: str) -> Key:
    return {"pk": qualify(f"cursor#{open_kfid}"), "sk": "cursor"}


def customer(external_userid: str) -> Key:
    return {"pk": qualify(f"customer#{external_userid}"), "sk": "profile"}


def link(open_kfid: str, scene: str) -> Key:
    return {"pk": qualify(f"link#{open_kfid}"), "sk": scene}


def link_quota(day: str) -> Key:
    return {"pk": qualify(f"linkquota#{day}"), "sk": "n"}


def media_pk(open_kfid: str) -> str:
    return qualify(f"media#{open_kfid}")


def session(open_kfid: str, external_userid: str) -> Key:
    return {"pk": qualify(f"rsession#{open_kfid}#{external_userid}"), "sk": "s"}


def session_customer(pk: str, open_kfid: str) -> str | None:
    """The external_userid of a session item's ``pk`` (None if it is another account's)."""
    prefix = qualify(f"rsession#{open_kfid}#")
    return pk[len(prefix):] if pk.startswith(prefix) else None


def load_pk(open_kfid: str) -> str:
    return qualify(f"rload#{open_kfid}")


def load(open_kfid: str, userid: str) -> Key:
    return {"pk": load_pk(open_kfid), "sk": userid}


def roster(open_kfid: str) -> Key:
    return {"pk": qualify(f"roster#{open_kfid}"), "sk": "roster"}


def rotation(open_kfid: str) -> Key:
    return {"pk": qualify(f"rrot#{open_kfid}"), "sk": "rr"}


def pool_pk(open_kfid: str) -> str:
    return qualify(f"rpool#{open_kfid}")


def pool_entry(open_kfid: str, sort_key: str) -> Key:
    return {"pk": pool_pk(open_kfid), "sk": sort_key}


def pool_sort_key(pooled_at: float, external_userid: str) -> str:
    return f"{int(pooled_at * 1000):015d}#{external_userid}"


def counted(event_id: str) -> Key:
    return {"pk": qualify(f"counted#{event_id}"), "sk": "c"}


def figures_pk(kind: str, day: str) -> str:
    """``funnel`` or ``servicer`` figures of one day."""
    return qualify(f"{kind}#{day}")


def conversation(open_kfid: str, external_userid: str) -> str:
    return qualify(f"{open_kfid}#{external_userid}")


def upload(digest: str) -> Key:
    """A rules asset uploaded to WeCom (kefu.assets): its media_id while it lives."""
    return {"pk": qualify(f"upload#{digest}"), "sk": "m"}


def ai_calls(day: str, open_kfid: str, external_userid: str | None = None) -> Key:
    """The AI answerer's model calls of ``day``: the account's, or one customer's."""
    return {"pk": qualify(f"aicalls#{day}"), "sk": f"{open_kfid}#{external_userid}" if external_userid else open_kfid}


def ai_spend(month: str) -> Key:
    return {"pk": qualify(f"aispend#{month}"), "sk": "usd"}


def indexed(value: str) -> str:
    """A value of a state-table index key (``active_of``, ``unionid``), the corp's own."""
    return qualify(value)


def message(msgid: str) -> dict[str, str]:
    """A MessagesTable key."""
    return {"msgid": qualify(msgid)}


PROVIDER_CORPS = "provider#corps"


def suite_ticket() -> Key:
    return {"pk": "provider#suite", "sk": "ticket"}


def suite_token(key: str) -> Key:
    return {"pk": f"provider#token#{key}", "sk": "token"}


def tenant(corp_id: str) -> Key:
    return {"pk": PROVIDER_CORPS, "sk": corp_id}


def corp_api_key(digest: str) -> Key:
    return {"pk": f"provider#apikey#{digest}", "sk": "key"}


def kf_account(open_kfid: str) -> Key:
    """What `kefu accounts apply` last made of an account (kefu.accounts_plan.Applied)."""
    return {"pk": qualify(f"kfaccount#{open_kfid}"), "sk": "applied"}
