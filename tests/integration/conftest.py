from __future__ import annotations

import uuid
from collections.abc import Iterator


import boto3
import pytest

from tests.support.stack import StackProcess, free_port, stack_env, start_stack


@pytest.fixture(scope="session")
def aws_endpoint() -> Iterator[str]:
    from local.emulator import start_moto

    port = free_port()
    server = start_moto("127.0.0.1", port)
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture(scope="session")
def aws(aws_endpoint: str) -> boto3.Session:
    return boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")


@pytest.fixture(scope="session")
def clients(aws: boto3.Session, aws_endpoint: str):
    class Clients:
        sqs = aws.client("sqs", endpoint_url=aws_endpoint)
        dynamodb = aws.client("dynamodb", endpoint_url=aws_endpoint)
        ssm = aws.client("ssm", endpoint_url=aws_endpoint)
        s3 = aws.client("s3", endpoint_url=aws_endpoint)

    return Clients


@pytest.fixture(scope="module")
def simulator():
    from local.wecom_sim import WeComSimulator

    sim = WeComSimulator()
    sim.start()
    yield sim
    sim.stop()


@pytest.fixture(scope="module")
def stack(request, aws_endpoint: str, simulator) -> Iterator[StackProcess]:
    """One local stack per test module, with its own resource names; a module may set
    STACK_ENV (extra environment for the stack) to run it in another configuration."""
    settings = {"KEFU_LOCAL_VISIBILITY_TIMEOUT": "2", **getattr(request.module, "STACK_ENV", {})}  # the module's win
    proc = start_stack(stack_env(aws_endpoint, simulator, f"kefu-t{uuid.uuid4().hex[:8]}", **settings))
    simulator.set_callback_url(f"{proc.url}/callback")
    yield proc
    proc.stop()


# -- a simulator of its own per test, on a fake clock (the simulator's own tests) ------------------

@pytest.fixture()
def sim():
    from local.wecom_sim import WeComSimulator
    from tests.integration.test_simulator import FakeClock

    simulator = WeComSimulator(clock=FakeClock())
    simulator.start()
    yield simulator
    simulator.stop()


@pytest.fixture()
def http(sim):
    import httpx

    with httpx.Client(base_url=sim.base_url, timeout=10) as client:
        yield client


@pytest.fixture()
def api(http):
    from tests.integration.test_simulator import Api

    return Api(http)


@pytest.fixture()
def client(sim, api):
    """Kefu's own WeCom client against the simulator (its token refreshed when refused)."""
    from kefu.wecom.client import WeComClient

    def refresh(_rejected: str) -> None:
        api.token = api.gettoken()["access_token"]

    wecom = WeComClient(sim.base_url, token_source=lambda: api.token, on_token_rejected=refresh,
                        timeout=10, backoff=0.01)
    yield wecom
    wecom.close()


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium (tests/support/browser.py), one per test module."""
    from tests.support.browser import CHROMIUM, CHROMIUM_ARGS

    sync_api = pytest.importorskip("playwright.sync_api", reason="needs the playwright package (requirements-dev.txt)")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
