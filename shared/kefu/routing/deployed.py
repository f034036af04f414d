"""The routing engine as the deployed functions build it (route queue, conversation API): WeCom
through the shared token, the state and messages tables, statistics, events and the rules'
assets. One place, so the two cannot drift apart."""

from __future__ import annotations

import time
from collections.abc import Callable

from kefu import observability
from kefu.assets import Assets
from kefu.config import RouteSettings
from kefu.events import publisher
from kefu.routing.accounting import Accounting
from kefu.routing.assigner import EngineSettings
from kefu.routing.engine import RoutingEngine
from kefu.routing.outcome import Decision
from kefu.routing.source import RulesSource
from kefu.store.messages import MessageStore
from kefu.store.routing_state import RoutingState
from kefu.store.stats import StatsStore
from kefu.wecom.connect import connect


def build_engine(settings: RouteSettings, rules: RulesSource, record: Callable[[Decision], None],
                 service: str) -> RoutingEngine:
    wecom = connect(settings, on_error=observability.wecom_error_counter(service))
    return RoutingEngine(
        wecom=wecom,
        state=RoutingState.in_table(settings.state_table),
        rules=rules,
        settings=EngineSettings(welcome_max_age=settings.welcome_max_age_seconds, roster_ttl=settings.roster_ttl_seconds),
        record=record,
        transcript=MessageStore(settings.messages_table),
        accounting=Accounting(StatsStore(settings.state_table), settings.stats_timezone,
                              publisher(settings.event_bus or None, time.time), content=settings.event_content == "full"),
        media_id=Assets(settings.state_table, wecom, rules.base_dir, settings.media_bucket),
        retention_days=settings.message_retention_days,
    )
