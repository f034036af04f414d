"""Contact links and the links funnel in the StateTable.

Items (pk / sk):
- link per account and scene: "link#<open_kfid>" / "<scene>" - ``url`` (add_contact_way's answer,
  without any scene_param), ``created_at``. Written once with a conditional put, never changed:
  WeCom's links do not expire, so the first URL stored for a scene is the one every caller gets.
- the funnel's ``links_issued`` counter (see kefu.stats for the keys): one UpdateItem (an ADD,
  no transaction, no read) per link answered - deployed, made after the answer has gone out, in
  the same invocation (kefu.links.LinkService.flush_counts). Answers a CDN or browser serves from
  its cache never reach Kefu, so the counter is the number of links Kefu answered: a lower bound
  of the links shown.
- the day's count of new links: "linkquota#<day>" / "n" - ``made``, expiring two days later.
"""

from __future__ import annotations

import time

from kefu import stats
from kefu.store import keys
from kefu.store.dynamo import TableStore, conditionally, is_conditional_failure
from kefu.store.stats import StatsStore

QUOTA_TTL = 2 * 86400


class LinkStore(TableStore):
    def get(self, open_kfid: str, scene: str) -> str | None:
        """The stored URL. An eventually consistent read: a stored link never changes, and a
        read that misses a just-stored link ends in ``put_first`` returning the stored one."""
        item = self._table.get_item(Key=keys.link(open_kfid, scene), ProjectionExpression="#u",
                                    ExpressionAttributeNames={"#u": "url"}).get("Item")
        return str(item["url"]) if item and item.get("url") else None

    def put_first(self, open_kfid: str, scene: str, url: str) -> str:
        """Store ``url`` unless a URL is stored already; return the one stored (ours or the winner's)."""
        try:
            self._table.put_item(
                Item={**keys.link(open_kfid, scene), "url": url, "created_at": int(time.time())},
                ConditionExpression="attribute_not_exists(pk)",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
            return url
        except Exception as exc:
            if not is_conditional_failure(exc):
                raise
            old = getattr(exc, "response", {}).get("Item") or {}
            stored = old.get("url")
            if isinstance(stored, dict):  # low-level shape {"S": ...} from the client API
                stored = stored.get("S")
            if stored:
                return str(stored)
        found = self._table.get_item(Key=keys.link(open_kfid, scene), ConsistentRead=True).get("Item")
        if not found or not found.get("url"):
            raise RuntimeError(f"link#{open_kfid}/{scene}: conditional put failed but no URL is stored")
        return str(found["url"])

    def take_new_link(self, day: str, limit: int) -> bool:
        """Take one of the day's ``limit`` new links; False when they are all taken."""
        return conditionally(lambda: self._table.update_item(
            Key=keys.link_quota(day), UpdateExpression="ADD made :one SET expires_at = :ttl",
            ConditionExpression="attribute_not_exists(made) OR made < :limit",
            ExpressionAttributeValues={":one": 1, ":limit": limit, ":ttl": int(time.time()) + QUOTA_TTL},
        ))

    def count_issued(self, open_kfid: str, scene: str, day: str, count: int = 1) -> None:
        """Add ``count`` links answered to the day's funnel item of the account and scene: one write."""
        StatsStore(self._name).add([stats.funnel(day, open_kfid, scene, "links_issued", count)])
