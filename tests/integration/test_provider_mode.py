"""Service-provider mode through the local stack: one deployment, three corps that authorize the
suite, each served by its own rules and counted in its own figures, none able to see another's
data at any API, and a corp that cancels and is no longer served."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.support.stack import start_stack, wait_for

pytestmark = pytest.mark.integration
HERE = Path(__file__).parent
CORPS = ("wwcorpa0000000001", "wwcorpb0000000002", "wwcorpc0000000003")


@pytest.fixture(scope="module")
def provider():
    from local.wecom_sim import ProviderSimulator

    sim = ProviderSimulator()
    sim.start()
    yield sim
    sim.stop()


@pytest.fixture(scope="module")
def pstack(aws_endpoint, provider):
    from local.wecom_sim import DEMO_CORP_ID

    env = {
        "AWS_ENDPOINT_URL": aws_endpoint, "WECOM_API_BASE": provider.base_url,
        "WECOM_CORP_ID": DEMO_CORP_ID, "WECOM_CORP_SECRET": "provider-own-corp-secret-unused",
        "WECOM_TOKEN": provider.token, "WECOM_ENCODING_AES_KEY": provider.encoding_aes_key,
        "WECOM_SUITE_SECRET": provider.suite_secret,
        "KEFU_STACK_NAME": f"kefu-p{uuid.uuid4().hex[:8]}", "KEFU_LOG_FORMAT": "json",
        "KEFU_LOCAL_VISIBILITY_TIMEOUT": "2",
        "KEFU_ROUTING_CONFIG": str(HERE / "route_rules.yaml"),
        "KEFU_TEMPLATE_PARAMS": json.dumps({"Mode": "provider", "SuiteId": provider.suite_id,
                                            "CancelledCorpData": "delete", "BedrockModelId": ""}),
    }
    proc = start_stack(env)
    provider.set_callback_urls(f"{proc.url}/callback/suite", f"{proc.url}/callback")
    yield proc
    proc.stop()


def test_a_corp_authorizes_and_its_customer_is_served(pstack, provider, clients) -> None:
    assert provider.push_suite_ticket()
    corp = CORPS[0]
    provider.authorize(corp, corp_name="Corp A")
    wait_for(lambda: registered(clients, pstack, corp), timeout=20, message="the corp registered")
    sim = provider.corp(corp)
    k = sim.add_account(name="A desk")
    sim.add_servicer(k, "alice")
    provider.kf_account_auth_change(corp, added=[k])
    wait_for(lambda: any(c["open_kfid"] == k and c.get("errcode") == 0 for c in sim.sync_calls), timeout=20,
             message="the account's first pull")
    euid, _ = sim.customer_enter(k)
    sim.customer_says(k, euid, "你好")
    wait_for(lambda: sim.session(k, euid)["service_state"] == 3, timeout=20, message="assigned")


def registered(clients, stack, corp: str) -> bool:
    item = clients.dynamodb.get_item(TableName=stack.resources["StateTable"],
                                     Key={"pk": {"S": "provider#corps"}, "sk": {"S": corp}}).get("Item")
    return bool(item) and item["state"]["S"] == "active"
