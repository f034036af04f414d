"""A chaos run of the whole local stack: WeCom faults on every endpoint, the stack's process killed
at random moments (functions die between their steps, in-flight queue records come back after
their visibility timeout), callbacks repeated and lost, sessions ended at WeCom with no event, the
emulator's transaction conflicts, and many customers at once. The sweep runs every 2 s (it is what
recovers lost callbacks and unseen ends). At the end, with the faults lifted and the backlog
settled, the invariants must hold:

- nobody waits in a pool while a servicer on duty has room;

- every item WeCom holds is stored exactly once, and the stored cursor is the last one WeCom gave;
- no servicer ever held more sessions than the limit, and the stored loads match WeCom's sessions;
- no send or transfer was done twice, and WeCom never refused a send or transfer for state,
  budget or servicer (95018, 95001, 95014);
- the dead-letter queues are empty.
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.stack import StackProcess, max_receive_count, stack_env, start_stack, wait_for
from tests.support.store import stored_count, stored_msgids

pytestmark = pytest.mark.integration
RULES = Path(__file__).with_name("chaos_rules.yaml")
SEED = 20261125
MAX_ACTIVE = 3
# The receive budget. A kill costs a receive to every record in flight, and a record can be in
# flight at every kill: it comes back after the visibility timeout (3 s here), within the next
# stack's life on a slow machine. So a record may spend KILLS receives on kills alone; beside
# them it must keep FAULT_RECEIVES for WeCom faults that outlast the in-process retries (HTTP 5xx
# on a transfer, a fault burst on both the call and its reconciliation). The template's
# maxReceiveCount must exceed both together, or the chaos run measures the machine's speed.
KILLS = 6
FAULT_RECEIVES = 3
ENDPOINTS = ["kf/sync_msg", "kf/service_state/get", "kf/service_state/trans", "kf/send_msg",
             "kf/send_msg_on_event", "kf/servicer/list", "kf/customer/batchget", "media/get", "gettoken"]
BUSY = ["kf/sync_msg", "kf/service_state/get", "kf/service_state/trans", "kf/send_msg"]  # called most
FAULTS = [{"errcode": -1}, {"errcode": 45009}, {"http_status": 502}, {"delay": 0.3}]


class Chaos:
    """The stack, restarted after each kill with the same resources, emulator and simulator."""

    def __init__(self, env: dict[str, str], simulator) -> None:
        self.env = env
        self.sim = simulator
        self.proc: StackProcess | None = None
        self.kills = 0
        self.logs: list[Path] = []  # every stack's output, killed ones too

    def start(self) -> None:
        self.proc = start_stack(self.env)
        self.sim.set_callback_url(f"{self.proc.url}/callback")

    def kill(self) -> None:
        assert self.proc is not None
        self.logs.append(self.proc.kill())  # no clean shutdown: whatever ran stops between two steps
        self.kills += 1
        self.start()

    def restart(self) -> None:
        """A clean stop and start (a new configuration, the same resources)."""
        self.stop()
        self.start()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self.logs.append(self.proc.save())

    def error_lines(self) -> list[str]:
        """The ERROR lines every stack of the run logged (a failed record logs one)."""
        lines = [self.proc.output()] if self.proc is not None else []
        lines += [path.read_text(encoding="utf-8") for path in self.logs]
        return [line for text in lines for line in text.splitlines() if '"level":"ERROR"' in line]


@pytest.fixture(scope="module")
def chaos(aws_endpoint: str, simulator) -> Iterator[Chaos]:
    env = stack_env(aws_endpoint, simulator, f"kefu-c{uuid.uuid4().hex[:8]}", KEFU_ROUTING_CONFIG=str(RULES),
                    KEFU_LOCAL_WORKERS="6", KEFU_LOCAL_VISIBILITY_TIMEOUT="3", KEFU_LOCAL_SCHEDULE_SECONDS="2",
                    KEFU_TEMPLATE_PARAMS=json.dumps({"ResyncMinutes": "0.05", "ReconcileMinutes": "0.05"}))
    run = Chaos(env, simulator)
    run.start()
    yield run
    run.stop()


def test_the_receive_budget_covers_the_kills_and_the_faults() -> None:
    for queue in ("SyncQueue", "RouteQueue"):
        assert max_receive_count(queue) > KILLS + FAULT_RECEIVES, queue


def test_invariants_hold_through_faults_kills_and_repeats(chaos: Chaos, simulator, clients) -> None:
    rng = random.Random(SEED)
    sim = simulator
    accounts = [sim.add_account(open_kfid=("wkCHAOS" + str(i)).ljust(32, "0"), name=f"chaos{i}") for i in range(2)]
    for k in accounts:
        for userid in ("alice", "bob"):
            sim.add_servicer(k, userid)
        sim.customer_enter(k)  # each account's first pull (a replay) before the chaos starts
    wait_for(lambda: all(any(c["open_kfid"] == k and c.get("errcode") == 0 for c in sim.sync_calls) for k in accounts),
             timeout=30, message="first pulls")

    stop = threading.Event()

    def faults() -> None:
        # Faults follow the calls, not the clock: an endpoint holds at most one pending burst, so
        # a slower machine (fewer calls a second) does not meet a growing backlog of faults that
        # fails every call for the whole run - a storm no retry budget could outlast.
        while not stop.is_set():
            path = rng.choice(BUSY if rng.random() < 0.6 else ENDPOINTS)
            times, fault = rng.randint(1, 2), rng.choice(FAULTS)
            if not sim.pending_faults(path):
                sim.inject_fault(path, times=times, **fault)
            time.sleep(rng.uniform(0.05, 0.3))

    injector = threading.Thread(target=faults, daemon=True)
    injector.start()
    sim.configure(callback_loss=0.2, seed=SEED)  # one callback in five never arrives
    silent: Counter = Counter()  # (account, customer) -> sessions ended at WeCom with no event
    ended = 0  # sessions the servicers ended, either way
    customers: list[tuple[str, str]] = []
    try:
        for round_no in range(KILLS):
            for _ in range(5):
                k = rng.choice(accounts)
                euid, _ = sim.customer_enter(k, scene=rng.choice(["ad", "poster", ""]))
                customers.append((k, euid))
            for k, euid in rng.sample(customers, min(8, len(customers))):
                if rng.random() < 0.3:
                    sim.customer_sends_media(k, euid, "image")
                else:
                    sim.customer_says(k, euid, rng.choice(["你好", "价格", "转人工", "hello"]))
            for k in accounts:
                sim.fire_callback(k, repeat=rng.randint(1, 3))
            time.sleep(rng.uniform(0.2, 1.0))
            chaos.kill()
            if round_no % 2 == 1:  # servicers end some sessions, freeing room for the pool
                # Some session must be with a servicer first: on a slow machine the killed stack
                # may not have transferred anyone yet, and then no end, silent or not, is tested.
                wait_for(lambda: any(sim.session(k, e)["service_state"] == 3 for k, e in customers), timeout=60,
                         interval=0.5, message="a session with a servicer to end")
                for k, euid in customers:
                    session = sim.session(k, euid)
                    if session["service_state"] == 3 and rng.random() < 0.5:
                        if sum(silent.values()) * 2 <= ended:  # about half the ends: no event, only the sweep sees it
                            sim.end_session_silently(k, euid)
                            silent[(k, euid)] += 1
                        else:
                            sim.end_session(k, euid, session["servicer_userid"])
                        ended += 1
    finally:
        stop.set()
        injector.join()
        sim.clear_faults()
        sim.configure(callback_loss=0)

    def pools_served() -> bool:
        """Nobody waits while a servicer (both are on duty all along) has room."""
        for k in accounts:
            sessions = [sim.session(k, e) for kk, e in customers if kk == k]
            held = Counter(s["servicer_userid"] for s in sessions if s["service_state"] == 3)
            if any(s["service_state"] == 2 for s in sessions) and any(held[u] < MAX_ACTIVE for u in ("alice", "bob")):
                return False
        return True

    # With no callback at all, the sweep pulls what lost callbacks left behind and repairs what
    # unseen ends left: every item stored, and the pools drained while servicers have room.
    wait_for(lambda: all(stored_count(clients.dynamodb, chaos.proc.resources["MessagesTable"], k) == len(sim.messages(k))
                         for k in accounts) and pools_served(),
             timeout=120, interval=2.0, message="the sweep to store every item and drain the pools")
    # Then without the sweep (its tasks keep the queues busy), so the backlog can be seen to end.
    chaos.env["KEFU_LOCAL_SCHEDULE_SECONDS"] = "off"
    chaos.restart()

    # Settle: WeCom's next callbacks bring whatever a dead stack missed.
    def settled() -> bool:
        for k in accounts:
            sim.fire_callback(k)
        return all(stored_count(clients.dynamodb, chaos.proc.resources["MessagesTable"], k) == len(sim.messages(k)) for k in accounts) and queues_empty(clients, chaos)

    wait_for(settled, timeout=90, interval=2.0, message="everything stored and every queue drained")
    # The chaos really happened: kills, faults answered on many endpoints, sessions of every kind.
    assert chaos.kills == KILLS
    assert silent and sim.lost_callbacks() > 0, (silent, sim.lost_callbacks())
    faulted = Counter(c["path"] for c in sim.calls if c.get("errcode") in (-1, 45009) or c.get("http_status") == 502)
    assert sum(faulted.values()) >= 3 and len(faulted) >= 2, faulted
    states = Counter(sim.session(k, e)["service_state"] for k, e in customers)
    assert states[3] and (states[2] or states[4]), states

    # Every item stored exactly once (the key is the msgid, so: exactly the items WeCom holds).
    for k in accounts:
        stored = stored_msgids(clients.dynamodb, chaos.proc.resources["MessagesTable"], k)
        assert sorted(stored) == sorted(m["msgid"] for m in sim.messages(k))
    # The cursor is where WeCom's last successful pull left it: never rewound.
    for k in accounts:
        pulls = [c for c in sim.sync_calls if c["open_kfid"] == k and c.get("errcode") == 0]
        cursor = clients.dynamodb.get_item(TableName=chaos.proc.resources["StateTable"],
                                           Key={"pk": {"S": f"cursor#{k}"}, "sk": {"S": "cursor"}})["Item"]["cursor"]["S"]
        assert cursor == pulls[-1]["next_cursor"]
    # Capacity: never over the limit, and the stored loads agree with WeCom's sessions.
    for k in accounts:
        held = Counter(sim.session(k, e)["servicer_userid"] for kk, e in customers
                       if kk == k and sim.session(k, e)["service_state"] == 3)
        loads = clients.dynamodb.query(TableName=chaos.proc.resources["StateTable"], ConsistentRead=True,
                                       KeyConditionExpression="pk = :p",
                                       ExpressionAttributeValues={":p": {"S": f"rload#{k}"}})["Items"]
        if not all(n <= MAX_ACTIVE for n in held.values()):
            report = {"held": held, "loads": {i["sk"]["S"]: int(i["active"]["N"]) for i in loads},
                      "sessions": {e: (sim.session(k, e)["service_state"], sim.session(k, e)["servicer_userid"],
                                       session_item(clients, chaos, k, e)) for kk, e in customers if kk == k},
                      "transfers": [(round(c.get("time", 0), 3), c["body"].get("external_userid"),
                                     c["body"].get("service_state"), c["body"].get("servicer_userid"), c.get("errcode"))
                                    for c in sim.calls_to("kf/service_state/trans") if c["body"].get("open_kfid") == k],
                      "silent": [list(key) for key in silent], "stack logs": [str(p) for p in chaos.logs]}
            path = Path("build") / "chaos-capacity.json"
            path.parent.mkdir(exist_ok=True)
            path.write_text(json.dumps(report, indent=1, default=str))
            raise AssertionError(f"a servicer over capacity: {held}; details in {path}")
        assert {i["sk"]["S"]: int(i["active"]["N"]) for i in loads if int(i["active"]["N"])} == dict(held)
    # No send or transfer twice; no refusal for state, budget or servicer.
    sends = Counter(s["msgid"] for s in sim.sent_messages())
    assert all(n == 1 for n in sends.values())
    refused = [c for c in sim.calls if c.get("errcode") in (95018, 95001, 95014)]
    assert refused == []
    to_human = Counter((c["body"]["open_kfid"], c["body"]["external_userid"], c["body"].get("servicer_userid"))
                       for c in sim.calls_to("kf/service_state/trans")
                       if c.get("errcode") == 0 and c["body"].get("service_state") == 3)
    assert all(n == 1 for n in to_human.values()) or _reassignments_explained(to_human, sim, silent)
    # Dead letters: none. Otherwise show what reached them and every ERROR line that explains it.
    dead = {dlq: dead_letters(clients, chaos.proc.resources[dlq]) for dlq in ("SyncDeadLetterQueue", "RouteDeadLetterQueue")}
    assert not any(dead.values()), (
        "dead letters:\n" + json.dumps(dead, ensure_ascii=False, indent=1)
        + "\nERROR lines of every stack:\n" + "\n".join(chaos.error_lines())
        + "\nstack logs: " + " ".join(str(p) for p in chaos.logs))
    # Records routed after the sweep was turned off may have pooled a customer on a count the
    # sweep had not yet reconciled: with the sweep back, nobody waits while a servicer has room.
    chaos.env["KEFU_LOCAL_SCHEDULE_SECONDS"] = "2"
    chaos.restart()
    wait_for(pools_served, timeout=60, interval=1.0, message="the pools drained with the sweep running")


def _reassignments_explained(to_human: Counter, sim, silent: Counter) -> bool:
    """A customer may be transferred to the same servicer twice only in two different sessions
    (an ended session, with or without its event, and a later one)."""
    for (k, euid, _servicer), n in to_human.items():
        ends = [c for c in sim.messages(k) if c.get("event", {}).get("external_userid") == euid
                and c.get("event", {}).get("change_type") == 3]
        if n > len(ends) + silent[(k, euid)] + 1:
            return False
    return True


def session_item(clients, chaos: Chaos, k: str, euid: str) -> dict:
    """Kefu's cached session, the fields that say who holds it."""
    item = clients.dynamodb.get_item(TableName=chaos.proc.resources["StateTable"], ConsistentRead=True,
                                     Key={"pk": {"S": f"rsession#{k}#{euid}"}, "sk": {"S": "s"}}).get("Item", {})
    return {f: list(item[f].values())[0] for f in ("state", "servicer", "counted") if f in item}


def dead_letters(clients, queue_url: str) -> list[dict]:
    """Every message on a dead-letter queue: its body and how often it was received."""
    found: dict[str, dict] = {}
    for _ in range(5):
        got = clients.sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=30,
                                          MessageSystemAttributeNames=["All"]).get("Messages", [])
        for m in got:
            found[m["MessageId"]] = {"body": json.loads(m["Body"]),
                                     "receives": m["Attributes"].get("ApproximateReceiveCount")}
        if not got:
            break
    return list(found.values())


def queues_empty(clients, chaos: Chaos) -> bool:
    for name in ("SyncQueue", "RouteQueue"):
        attrs = clients.sqs.get_queue_attributes(
            QueueUrl=chaos.proc.resources[name],
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        if any(int(v) for v in attrs.values()):
            return False
    return True
