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
* A repeated ``msgid`` (send_msg or send_msg_on_event, unique per open_kfid) answers 40058, with
  an errmsg that never says "duplicate" (WeCom documents no text for it, and errmsg may change:
  callers must settle by errcode); a malformed msgid answers 40058 "invalid msgid".
* ``send_msg_on_event`` with an unknown, used or expired code answers 40058 "invalid code"; a
  valid code whose session has left the state that produced it answers 95018.
* A forged, garbled or foreign (other open_kfid) sync cursor answers 40058 "invalid cursor".
* ``sync_msg`` ``limit`` 0 or absent means 1000, above 1000 is capped, negative is 40058.
* Wrong HTTP method answers 43001 (GET required) / 43002 (POST required); a body that is not a
  JSON object answers 47001; a body with ``\\uXXXX`` escapes answers 40033, as WeCom does.
* Unknown paths answer HTTP 404 with a JSON body carrying errcode 40058.
* A session does not end by itself after 48 h (sends then fail with 95002) unless a test ends it
  with ``end_session_silently`` (below).
* Welcome codes are given on enter when the customer has neither received a welcome message nor
  written to that account within the last 48 h.
* ``media/upload``: a bad ``type`` answers 40004, content not of that type (image: JPG/PNG,
  voice: AMR-NB, video: MP4, by their magic bytes) 40005, a file of 5 bytes or less 40006, one
  over its type's size (or a voice over 60 s) 45001; a body that is not multipart 47001.
* Sends: a field missing or of the wrong type answers 40058, one over its byte limit 45002
  (even link.title, which WeCom is said to truncate), each naming the field (a menu item by its
  index). A media_id must be one the corp stored (media/upload or ``add_media``), unexpired and of
  the message's type (a link's or mini program's thumb: an image), else 40007; a customer's
  media_id is refused. A mini program appid must be linked (``link_miniprogram``), else 90207;
  a business card's userid a known member (a servicer, or ``add_member``), else 60111, and one
  business card per customer (whichever account) in 48 h, else 95025. A menu needs 1..10 items,
  click ids unique within it.
* 升级服务 (``set_upgrade_config``, ``upgrade_offers``): a target outside the configured range
  answers 40058; an offer needs the customer to have entered or written to that account within
  48 h, else 95002; cancelling with no offer outstanding answers 40058.

* Accounts: ``kf/account/add`` works only once the app manages an account (48002 before), takes
  a name of 1..16 printable characters, not blank (95006) and an unexpired image the corp stored
  as avatar (40007); 5000 accounts per corp (95005), 10 while unverified (95027). The avatar URL in
  account/list is derived from the media_id. An account the app does not manage
  (``add_account(manage_privilege=False)``) shows in account/list only: every call naming it
  answers 48002, unfiltered sync_msg leaves out its items and no callback is sent for it.
  ``kf/account/update`` with nothing to change answers 40058. ``kf/account/del`` refuses an
  account with a session in state 1, 2 or 3 (95013); after it, the account answers 95004.
* Servicers: per-item results (60111 unknown userid, 60123 unknown department, 60011 outside the
  app's visible range, errmsg "ignored" when already as asked); more than 100 ids in a list, or
  no id at all, answers 40058. An account has at most 500 servicers, counting the members of
  servicing departments and their sub-departments (95020, an unpublished code). Only a servicing
  department's own members serve (service_state/trans, driver); they start receiving and
  ``set_servicer_status`` changes them. trans to a servicer outside the visible range answers 60011.
* Contact list (``add_department``, ``add_member``, ``set_visible_departments``): department 1 is
  the root; a member in no department is in it; a member's name is their userid. user/simplelist
  answers 60123 for an unknown department and 60011 outside the visible range.
* Statistics (``set_statistic``): days in China time, from yesterday back 180 days, at most 31
  days a query (40058); a day's figures show from 06:00 the next day. get_servicer_statistic
  needs open_kfid, and a servicer_userid must be a known member (60111).
* Qualification (``set_qualification``): get_corp_qualification answers wechat_channels_binding
  only. Sends to a customer past the corp's cap (100 unverified, 10,000 without a bound 视频号,
  counted in the order the simulator first knew customers) answer 95003.

What WeCom does that a client cannot see, for tests of a client whose cache drifts from WeCom
(the client must recover by asking WeCom, e.g. service_state/get, or by pulling with sync_msg):

* ``end_session_silently(open_kfid, external_userid)``: the session ends (state 4) with no
  session_status_change event, no callback and no msg_code, as when a session times out at
  WeCom. The customer's next message starts a new session in state 0, as after any end.
* ``move_session_silently(open_kfid, external_userid, servicer_userid)``: the session goes to
  that servicer (state 3) with no event, no callback and no msg_code, as when a servicer picks
  it in WeCom's own client or an admin moves it and no event reaches the client.
* Lost callbacks: ``lose_callbacks(count, open_kfid=None)`` drops the next ``count`` automatic
  callbacks (for that account, else any), and ``configure(callback_loss=p, seed=n)`` drops each
  automatic callback with probability ``p``, drawn from the simulator's own RNG (seeded by
  ``seed``, also a constructor argument, so a chaos run is repeatable). A lost callback is never
  POSTed and issues no token; its items stay in sync_msg. ``fire_callback`` is never lost.
  ``lost_callbacks(open_kfid=None)`` and ``state()["lost_callbacks"]`` count the losses;
  ``clear_faults`` drops the counted losses still pending.

Each of these is also a ``/sim/<action>`` admin endpoint.

Service-provider mode (服务商: a third-party app or a custom app built for many corps) is
``ProviderSimulator`` in ``provider``: the suite's ``/cgi-bin/service/...`` endpoints (suite
ticket and token, pre-auth and auth codes, permanent codes, corp tokens), its command callbacks
(suite_ticket, create_auth, change_auth, cancel_auth, reset_permanent_code) and one
``WeComSimulator`` per authorized corp, whose kf calls it routes by access_token and whose data
callbacks carry the suite's token and key. Its module docstring lists its own choices.

Layout: ``state`` (limits, ERRMSG, the records kept), ``core`` (the state and the helpers that
change it), ``api`` (the ``/cgi-bin/...`` endpoints), ``management`` (accounts, servicers, contact list,
statistics, qualification), ``server`` (HTTP and ``/sim/...`` admin),
``driver`` (the customer side), ``callbacks`` (signed callback POSTs) and ``simulator`` (the
``WeComSimulator`` facade that puts them together, and ``main``).
"""

from __future__ import annotations

from local.wecom_sim.provider import (
    DEMO_SUITE_AES_KEY,
    DEMO_SUITE_ID,
    DEMO_SUITE_SECRET,
    DEMO_SUITE_TOKEN,
    ProviderSimulator,
)
from local.wecom_sim.simulator import WeComSimulator, main
from local.wecom_sim.state import DEMO_AES_KEY, DEMO_AGENT_ID, DEMO_CORP_ID, DEMO_CORP_SECRET, DEMO_TOKEN, ApiError

__all__ = ["DEMO_AES_KEY", "DEMO_AGENT_ID", "DEMO_CORP_ID", "DEMO_CORP_SECRET", "DEMO_SUITE_AES_KEY", "DEMO_SUITE_ID",
           "DEMO_SUITE_SECRET", "DEMO_SUITE_TOKEN", "DEMO_TOKEN", "ApiError", "ProviderSimulator", "WeComSimulator",
           "main"]
