"""Media function: one media job per account from the media queue -> kefu.media (downloads to S3)."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.batch import process_partial_response

from kefu import observability, tenancy
from kefu.batch import LoggedFifoProcessor
from kefu.config import MediaSettings, load
from kefu.media import MediaRun, download_account
from kefu.queues import enqueue_media
from kefu.store.dynamo import conditionally
from kefu.store.media import MediaStore, PendingMedia
from kefu.store.messages import MessageStore
from kefu.wecom import kf
from kefu.wecom.client import WeComClient
from kefu.wecom.connect import connect

if TYPE_CHECKING:  # the type only: no import at cold start
    from aws_lambda_powertools.utilities.typing import LambdaContext

SERVICE = "media"
settings = load(MediaSettings)
logger = observability.logger(SERVICE)
processor = LoggedFifoProcessor(logger)
_ports: Ports | None = None
_context: Any = None
PROVIDER = settings.mode == "provider"
_corp_ports: dict[str, tuple[WeComClient, Ports]] = {}  # provider mode, per corp: (its WeCom client, its ports)


class DownloadsLeft(RuntimeError):
    """Some downloads failed and stay pending: the job comes back after its visibility timeout."""


class Ports:
    """kefu.media's view of WeCom, the pending items, the messages and the bucket."""

    def __init__(self, wecom: WeComClient) -> None:
        self.wecom = wecom
        self.media = MediaStore(settings.state_table, settings.media_bucket)
        self.messages = MessageStore(settings.messages_table)

    def pending(self, open_kfid: str, limit: int) -> list[PendingMedia]:
        return self.media.pending(open_kfid, limit=limit)

    def download(self, media_id: str) -> tuple[bytes, str]:
        return kf.media_get(self.wecom, media_id)

    def upload(self, key: str, data: bytes, content_type: str) -> None:
        self.media.upload(key, data, content_type)

    def attach(self, msgid: str, key: str) -> bool:
        return conditionally(lambda: self.messages.set_media_key(msgid, key))  # False: not stored yet

    def give_up(self, msgid: str, reason: str) -> None:
        conditionally(lambda: self.messages.set_media_state(msgid, "expired", reason))  # a message never stored: nothing to mark

    def done(self, open_kfid: str, msgid: str) -> None:
        self.media.done(open_kfid, msgid)

    def failed(self, open_kfid: str, msgid: str) -> int:
        return self.media.failed(open_kfid, msgid)


def ports() -> Ports:
    global _ports
    if _ports is None:
        _ports = Ports(connect(settings, on_error=observability.wecom_error_counter(SERVICE)))
    return _ports


def _remaining_ms() -> int:
    return int(_context.get_remaining_time_in_millis()) if _context is not None else 60_000


def corp_ports(corp: str) -> Ports | None:
    """Provider mode: the corp's ports, or None when the corp is not served (any more)."""
    from kefu.provider import CorpNotServed, provider

    try:
        return provider(settings, on_error=observability.wecom_error_counter(SERVICE)).for_corp(corp, _corp_ports, Ports)
    except CorpNotServed as exc:
        logger.warning("media job dropped: corp not served", extra={"corp": corp, "reason": str(exc)})
        return None


def record_handler(record) -> None:  # noqa: ANN001 - Powertools SQSRecord
    body = json.loads(record.body)
    if not PROVIDER:
        _download(ports(), str(body["open_kfid"]))
        return
    corp = str(body.get("corp") or "")
    if not tenancy.valid_corp_id(corp):
        logger.warning("media job dropped: no corp", extra={"corp": corp})
        return
    with tenancy.serving(corp):
        held = corp_ports(corp)
        if held is not None:
            _download(held, str(body["open_kfid"]))


def _download(ports: Ports, open_kfid: str) -> None:
    run = download_account(ports, open_kfid, time.time(), _remaining_ms)
    _report(run)
    if run.left:
        enqueue_media(settings.media_queue_url, open_kfid, "continued")  # the time budget ran out
    if run.failed:
        raise DownloadsLeft(f"{run.failed} download(s) of {open_kfid} failed and stay pending")


def _report(run: MediaRun) -> None:
    logger.info("media downloaded", extra=run.fields())
    from aws_lambda_powertools.metrics import MetricUnit

    m = observability.metrics(SERVICE)
    m.add_metric(name="MediaSaved", unit=MetricUnit.Count, value=run.saved)
    m.add_metric(name="MediaFailed", unit=MetricUnit.Count, value=run.failed)
    m.add_metric(name="MediaExpired", unit=MetricUnit.Count, value=run.expired)


@logger.inject_lambda_context(clear_state=True)
@observability.log_metrics(SERVICE)
def handler(event: dict[str, Any], context: LambdaContext) -> Any:
    global _context
    _context = context
    observability.count(SERVICE, "MediaJobs", len(event.get("Records") or []))
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
