"""The AWS emulator is as strict as DynamoDB where Kefu's correctness depends on it: concurrent
transactions on the same item are cancelled with TransactionConflict (not serialised), and
Kefu's stores retry those conflicts without losing or doubling a count."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from local.provision import create_tables
from local.template import Template

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def state_table(aws_endpoint: str, monkeypatch_module) -> str:
    session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
    template = Template.load(ROOT / "template.yaml", overrides={"WeComCorpId": "ww"})
    tables = create_tables(template, f"kefu-e{uuid.uuid4().hex[:8]}", session)
    return tables["StateTable"]


@pytest.fixture(scope="module")
def monkeypatch_module(aws_endpoint: str):
    mp = pytest.MonkeyPatch()
    for key, value in {"AWS_ENDPOINT_URL": aws_endpoint, "AWS_DEFAULT_REGION": "us-east-1",
                       "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        mp.setenv(key, value)
    yield mp
    mp.undo()


def hammer(work, threads: int = 8) -> None:
    start = threading.Barrier(threads)
    errors: list[BaseException] = []

    def run(index: int) -> None:
        start.wait()
        try:
            work(index)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    pool = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert not errors, errors


def test_a_transaction_on_an_item_another_one_holds_is_cancelled_as_in_dynamodb(state_table: str,
                                                                                   aws_endpoint: str) -> None:
    from local.emulator import transactions_held

    client = boto3.client("dynamodb", endpoint_url=aws_endpoint, region_name="us-east-1",
                          config=Config(retries={"max_attempts": 1}))
    key = {"pk": {"S": "emulator#conflict"}, "sk": {"S": "n"}}
    other = {"pk": {"S": "emulator#other"}, "sk": {"S": "n"}}

    def add(*keys_: dict) -> None:
        client.transact_write_items(TransactItems=[{"Update": {
            "TableName": state_table, "Key": k, "UpdateExpression": "ADD n :one",
            "ExpressionAttributeValues": {":one": {"N": "1"}}}} for k in keys_])

    with transactions_held():  # the first transaction stays in progress...
        add(key)
        with pytest.raises(client.exceptions.TransactionCanceledException) as caught:
            add(other, key)  # ...so one that overlaps it is cancelled, item by item
        assert [r["Code"] for r in caught.value.response["CancellationReasons"]] == ["None", "TransactionConflict"]
    stored = {k["pk"]["S"]: client.get_item(TableName=state_table, Key=k, ConsistentRead=True).get("Item")
              for k in (key, other)}
    assert stored["emulator#conflict"]["n"]["N"] == "1" and stored["emulator#other"] is None  # nothing of the cancelled one
    time.sleep(0.05)
    add(other, key)  # one after the other: no conflict
    assert client.get_item(TableName=state_table, Key=key, ConsistentRead=True)["Item"]["n"]["N"] == "2"


def test_loads_stay_exact_under_conflicting_reservations_and_moves(state_table: str) -> None:
    from kefu.store.routing_state import LoadStore

    loads = LoadStore(state_table)
    results: dict[int, str] = {}

    def reserve(index: int) -> None:
        results[index] = loads.reserve("wkEMU", f"c{index}", "alice", 5)

    hammer(reserve, threads=12)
    assert sorted(results.values()).count("ok") == 5 and loads.get("wkEMU") == {"alice": 5}
    winners = [i for i, r in results.items() if r == "ok"]
    moved: dict[int, bool] = {}

    def move(index: int) -> None:
        moved[index] = loads.move("wkEMU", f"c{winners[index % len(winners)]}", "alice", "bob" if index < 5 else None)

    hammer(move, threads=10)  # each winner moved twice at once: to bob, and (a repeat) to nobody
    assert loads.get("wkEMU")["alice"] == 0 and sum(moved.values()) == 5  # each count moved exactly once
    assert loads.get("wkEMU").get("bob", 0) + sum(1 for i, ok in moved.items() if ok and i >= 5) == 5
