"""A local stand-in for the WeCom 微信客服 (kf) API, served over real HTTP.

The simulator keeps a corp with kf accounts, servicers, customers, sessions and a message log,
and answers the ``/cgi-bin/...`` endpoints the way the kf API does (see
``docs/wecom-kf-api.md`` in the shared docs for the rules it follows). Tests and the local stack
drive the customer side through Python methods (or the ``/sim/<action>`` admin endpoints from
another process) and inspect what a client did afterwards.

Choices made where WeCom documents nothing (kept in one place so clients can rely on them):

* ``kf/service_state/get`` for a customer with no session yet answers state 0 (new). A customer
  who only entered the chat has a session in state 0 too; an ended session stays 4 until the
  customer writes again.
* ``kf/service_state/trans`` and ``kf/send_msg`` for an external_userid the simulator never saw
  answer 40096 (invalid external userid).
* An illegal or no-op state transition answers 95016.
* A repeated ``msgid`` (send_msg or send_msg_on_event, unique per open_kfid) answers 40058 with
  "duplicate msgid" in errmsg; a malformed msgid answers 40058 "invalid msgid".
* ``send_msg_on_event`` with an unknown, used or expired code answers 40058 "invalid code"; a
  valid code whose session has left the state that produced it answers 95018.
* A forged, garbled or foreign (other open_kfid) sync cursor answers 40058 "invalid cursor".
* ``sync_msg`` ``limit`` 0 or absent means 1000, above 1000 is capped, negative is 40058.
* Wrong HTTP method answers 43001 (GET required) / 43002 (POST required); a body that is not a
  JSON object answers 47001; a body with ``\\uXXXX`` escapes answers 40033, as WeCom does.
* Unknown paths answer HTTP 404 with a JSON body carrying errcode 40058.
* A session does not end by itself after 48 h; sends then fail with 95002.
* Welcome codes are given on enter when the customer has neither received a welcome message nor
  written to that account within the last 48 h.

Layout: ``state`` (limits, ERRMSG, the records kept), ``core`` (the state and the helpers that
change it), ``api`` (the ``/cgi-bin/...`` endpoints), ``server`` (HTTP and ``/sim/...`` admin),
``driver`` (the customer side), ``callbacks`` (signed callback POSTs) and ``simulator`` (the
``WeComSimulator`` facade that puts them together, and ``main``).
"""

from __future__ import annotations

from local.wecom_sim.simulator import WeComSimulator, main
from local.wecom_sim.state import DEMO_AES_KEY, DEMO_AGENT_ID, DEMO_CORP_ID, DEMO_CORP_SECRET, DEMO_TOKEN, ApiError

__all__ = ["DEMO_AES_KEY", "DEMO_AGENT_ID", "DEMO_CORP_ID", "DEMO_CORP_SECRET", "DEMO_TOKEN", "ApiError",
           "WeComSimulator", "main"]
