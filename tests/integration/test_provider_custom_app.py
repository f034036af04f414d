"""Provider mode with a 代开发 (custom app built on the enterprise's behalf) template: the permanent
code is the app's secret at the corp, so its tokens come from gettoken, and a reset_permanent_code
replaces it."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.support.stack import start_provider_stack, wait_for

pytestmark = pytest.mark.integration
HERE = Path(__file__).parent
CORP = "wwcustom000000001"


@pytest.fixture(scope="module")
def provider():
    from local.wecom_sim import ProviderSimulator

    sim = ProviderSimulator(app_kind="custom_app")
    sim.start()
    yield sim
    sim.stop()


@pytest.fixture(scope="module")
def cstack(aws_endpoint, provider):
    proc = start_provider_stack(aws_endpoint, provider, HERE.parents[1] / "build" / f"custom-app-{uuid.uuid4().hex[:8]}.json",
                                ProviderAppKind="custom_app")
    yield proc
    proc.stop()


def sealed_code(clients, stack) -> bytes | None:
    item = clients.dynamodb.get_item(TableName=stack.resources["StateTable"], ConsistentRead=True,
                                     Key={"pk": {"S": "provider#corps"}, "sk": {"S": CORP}}).get("Item") or {}
    return item.get("code", {}).get("B")


def test_a_custom_app_corp_is_served_with_tokens_from_its_permanent_code(cstack, provider, clients) -> None:
    provider.push_suite_ticket()
    provider.authorize(CORP, corp_name="Custom Corp")
    first = wait_for(lambda: sealed_code(clients, cstack), timeout=30, message="the corp registered")
    assert provider.permanent_code(CORP).encode() not in first  # sealed, never in clear
    sim = provider.corp(CORP)
    k = sim.add_account(name="desk")
    sim.add_servicer(k, "alice")
    provider.kf_account_auth_change(CORP, added=[k])
    euid, _ = sim.customer_enter(k)
    sim.customer_says(k, euid, "你好")
    wait_for(lambda: sim.session(k, euid)["service_state"] == 3, timeout=30, message="assigned")
    assert sim.gettoken_count >= 1 and provider.corp_token_count(CORP) == 0  # gettoken, not get_corp_token

    # 代开发: the app's secret at the corp is reset; Kefu trades the new auth code for the new code.
    provider.reset_permanent_code(CORP)
    wait_for(lambda: sealed_code(clients, cstack) not in (None, first), timeout=30, message="the new code stored")
    sim.expire_all_tokens()
    other, _ = sim.customer_enter(k)
    sim.customer_says(k, other, "在吗")
    wait_for(lambda: sim.session(k, other)["service_state"] == 3, timeout=30, message="served with the new code")
