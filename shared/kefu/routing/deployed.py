"""The routing engine as the deployed functions build it (route queue, conversation API): WeCom
through the shared token, the state and messages tables, statistics, events and the rules'
assets. One place, so the two cannot drift apart."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
    from kefu.routing.corp_rules import CorpRulesSource
    from kefu.wecom.client import WeComClient

if TYPE_CHECKING:
    from kefu.answerer import Answerer


def build_engine(settings: RouteSettings, rules: RulesSource | CorpRulesSource, record: Callable[[Decision], None],
                 service: str, time_left: Callable[[], float] | None = None,
                 wecom: WeComClient | None = None) -> RoutingEngine:
    """``time_left``: the seconds the current invocation has left - given by the route function,
    whose bot may ask the AI answerer (kefu.answerer); the other callers run no bot. ``wecom``: a
    corp's client in provider mode (kefu.provider); by default the single corp's."""
    if wecom is None:
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
        answerer=_answerer(settings, rules, time_left) if time_left is not None else None,
    )


def _answerer(settings: RouteSettings, rules: RulesSource | CorpRulesSource, time_left: Callable[[], float]) -> Answerer:
    from kefu.answerer import Answerer, Prices
    from kefu.bedrock import BedrockModel
    from kefu.knowledge_files import KnowledgeFiles
    from kefu.store.ai_usage import AiUsage

    return Answerer(
        knowledge=KnowledgeFiles(lambda: rules.base_dir, settings.media_bucket),
        usage=AiUsage(settings.state_table),
        model=BedrockModel(settings.ai_model_id) if settings.ai_model_id else None,
        prices=Prices(settings.ai_input_price_per_mtok, settings.ai_output_price_per_mtok),
        monthly_budget_usd=settings.ai_monthly_budget_usd,
        max_answer_tokens=settings.ai_max_answer_tokens,
        time_left=time_left,
    )
