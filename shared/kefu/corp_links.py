"""Provider mode: one corp's contact links - its own LinkService (its WeCom client, account
directory and in-memory links, so nothing one corp was answered can answer another) and its link
settings, from the document ``<corp_id>/links.json`` in the media bucket when it has one:
``{"accounts": "alias=open_kfid,...", "scenes": "home,poster"}`` (the syntax of the template's
LinkAccounts and LinkScenes). Without one, the corp has no aliases and any valid scene; CORS
origins, QR size and cache time are the deployment's. The document is looked at again at most
once a minute. Each answer is counted at once, inside the corp's scope (not after the answer)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from kefu import aws, tenancy
from kefu.accounts import AccountDirectory
from kefu.config import ConfigError, LinksSettings, _accounts, _scenes
from kefu.links import LinkConfig, LinkError, LinkMemory, LinkService
from kefu.store.links import LinkStore

DOCUMENT = "links.json"
CHECK_SECONDS = 60


class CorpLinks:
    def __init__(self, corp_id: str, settings: LinksSettings, deployment: LinkConfig,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._corp, self._settings, self._deployment = corp_id, settings, deployment
        self._clock = clock
        self._config = LinkConfig.parse("", "", ",".join(deployment.origins), deployment.qr_size,
                                        deployment.cache_seconds)
        self._checked = float("-inf")
        self._client: Any = None
        self._service: LinkService | None = None

    def config(self) -> LinkConfig:
        now = self._clock()
        if now - self._checked >= CHECK_SECONDS:
            self._checked = now
            self._config = self._read()
        return self._config

    def _read(self) -> LinkConfig:
        from botocore.exceptions import ClientError

        key = f"{self._corp}{tenancy.SEPARATOR}{DOCUMENT}"
        origins = ",".join(self._deployment.origins)
        try:
            body = aws.client("s3").get_object(Bucket=self._settings.media_bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return LinkConfig.parse("", "", origins, self._deployment.qr_size, self._deployment.cache_seconds)
            raise
        try:
            document = json.loads(body)
            accounts = _accounts(str(document.get("accounts") or ""))
            scenes = _scenes(str(document.get("scenes") or ""))
            return LinkConfig.parse(accounts, scenes, origins, self._deployment.qr_size, self._deployment.cache_seconds)
        except (ValueError, AttributeError, ConfigError) as exc:
            raise LinkError(503, "corp_links_invalid", f"the enterprise's link settings ({key}) are invalid: {exc}") from None

    def service(self, client: Any, on_count_failed: Callable[[Exception], None]) -> LinkService:
        """The corp's service, made again when its WeCom client changed (a new permanent code)."""
        if self._service is None or client is not self._client:
            from kefu.wecom import kf

            self._client = client
            self._service = LinkService(
                LinkStore(self._settings.state_table), lambda open_kfid, scene: kf.add_contact_way(client, open_kfid, scene),
                AccountDirectory(lambda: kf.account_list(client)), on_count_failed=on_count_failed,
                timezone=self._settings.stats_timezone, daily_new_limit=self._settings.link_daily_new_limit,
                memory=LinkMemory())
        return self._service
