"""Provider mode: each corp's contact links - a LinkService of its own (its WeCom client, account
directory and in-memory links, so nothing one corp was answered can answer another) and its link
settings, from the document ``<corp_id>/links.json`` in the media bucket when it has one:
``{"accounts": "alias=open_kfid,...", "scenes": "home,poster"}`` (the syntax of the template's
LinkAccounts and LinkScenes). Without one, the corp has no aliases and any valid scene; CORS
origins, QR size and cache time are the deployment's. The document is looked at again at most
once a minute (kefu.s3_documents). Each answer is counted at once, inside the corp's scope (not
after the answer)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from kefu import tenancy
from kefu.accounts import AccountDirectory
from kefu.config import ConfigError, LinksSettings, _accounts, _scenes
from kefu.links import LinkConfig, LinkError, LinkMemory, LinkService
from kefu.s3_documents import S3Documents
from kefu.store.links import LinkStore

DOCUMENT = "links.json"


class CorpLinkSettings:
    def __init__(self, bucket: str, deployment: LinkConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self._deployment = deployment
        self._plain = self._config("", "")
        self._documents: S3Documents[LinkConfig] | None = (
            S3Documents(bucket, self._parse, missing_ok=True, clock=clock) if bucket else None)

    def config(self, corp_id: str) -> LinkConfig:
        found = self._documents.get(f"{corp_id}{tenancy.SEPARATOR}{DOCUMENT}") if self._documents else None
        return found if found is not None else self._plain

    def _config(self, accounts: str, scenes: str) -> LinkConfig:
        d = self._deployment
        return LinkConfig.parse(accounts, scenes, ",".join(d.origins), d.qr_size, d.cache_seconds)

    def _parse(self, text: str, source: str) -> LinkConfig:
        try:
            document = json.loads(text)
            return self._config(_accounts(str(document.get("accounts") or "")), _scenes(str(document.get("scenes") or "")))
        except (ValueError, AttributeError, ConfigError) as exc:
            raise LinkError(503, "corp_links_invalid", f"the enterprise's link settings ({source}) are invalid: {exc}") from None


def corp_link_service(settings: LinksSettings, client: Any, on_count_failed: Callable[[Exception], None]) -> LinkService:
    from kefu.wecom import kf

    return LinkService(
        LinkStore(settings.state_table), lambda open_kfid, scene: kf.add_contact_way(client, open_kfid, scene),
        AccountDirectory(lambda: kf.account_list(client)), on_count_failed=on_count_failed,
        timezone=settings.stats_timezone, daily_new_limit=settings.link_daily_new_limit, memory=LinkMemory())
