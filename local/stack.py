"""The local stack: `python -m local.stack` (what `make dev` runs).

Starts the AWS emulator (moto server on loopback) unless AWS_ENDPOINT_URL names one, the WeCom
simulator unless WECOM_API_BASE names a WeCom-compatible base URL, the Bedrock stand-in
(local/bedrock_standin.py, the Converse API on loopback) unless AWS_ENDPOINT_URL_BEDROCK_RUNTIME
names one (boto3's bedrock-runtime clients in this process then use it), creates the template's
resources in the emulator, writes the WeCom secrets to its SSM, serves every HttpApi route of
template.yaml on 127.0.0.1:$PORT and runs a poller per SQS event source. Prints
"kefu local stack ready: http://127.0.0.1:PORT" once it serves. Ctrl-C stops it cleanly.

Local-only knobs: KEFU_STACK_NAME (resource name prefix, default kefu-local),
KEFU_LOCAL_WORKERS (concurrent batches per queue, default 2), KEFU_LOCAL_VISIBILITY_TIMEOUT
(seconds a failed record stays hidden; default: the queue's own), KEFU_LOCAL_PAUSED (function
names whose queue pollers do not run, so a test can inspect the queue), KEFU_DEMO=1 (run the demo),
KEFU_TEMPLATE_PARAMS (a JSON object of template parameter values, as `sam deploy
--parameter-overrides` would give them, e.g. {"LinkScenes": "home,poster"}; values keep their commas),
KEFU_STATE_FILE (where the state file the `kefu` CLI reads goes; default .kefu/local-stack.json),
KEFU_LOCAL_SCHEDULE_SECONDS (run every Schedule event this often instead of its rate; "off": never).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "shared") not in sys.path:  # the layer's content, as Lambda puts it on the path
    sys.path.insert(0, str(ROOT / "shared"))
READY = "kefu local stack ready: http://127.0.0.1:{port}"
HOST = "127.0.0.1"
LOCAL_MODEL = "amazon.nova-lite-v1:0"  # BedrockModelId when the stack serves its own Bedrock stand-in


def log(line: str) -> None:
    print(line, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@dataclass
class LocalStack:
    env: dict[str, str]
    port: int = 3000
    aws_endpoint: str = ""
    wecom_base: str = ""
    template: Any = None
    simulator: Any = None
    bedrock: Any = None  # the BedrockStandIn this stack started, or None when the env named an endpoint
    bedrock_endpoint: str = ""
    _closers: list[Any] = field(default_factory=list)
    pollers: list[Any] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> None:
        from local.credentials import resolve_credentials

        region = self.env.setdefault("AWS_DEFAULT_REGION", "us-east-1")
        os.environ["AWS_DEFAULT_REGION"] = region
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            os.environ.setdefault(key, "testing")
        self.port = int(self.env.get("PORT") or 3000)
        self._start_emulator()
        creds = resolve_credentials(self.env, builtin_simulator=not self.env.get("WECOM_API_BASE"),
                                    provider=self.provider_mode)
        self._start_simulator(creds)
        self._start_bedrock()
        self._provision(creds, region)

    def _start_emulator(self) -> None:
        self.aws_endpoint = self.env.get("AWS_ENDPOINT_URL", "")
        if not self.aws_endpoint:
            from local.emulator import start_moto

            port = free_port()
            server = start_moto(HOST, port)
            self._closers.append(server.stop)
            self.aws_endpoint = f"http://{HOST}:{port}"
            log(f"kefu local stack: AWS emulator (moto server) at {self.aws_endpoint}")
        os.environ["AWS_ENDPOINT_URL"] = self.aws_endpoint

    @property
    def provider_mode(self) -> bool:
        return json.loads(self.env.get("KEFU_TEMPLATE_PARAMS") or "{}").get("Mode") == "provider"

    def _start_simulator(self, creds: Any) -> None:
        self.wecom_base = self.env.get("WECOM_API_BASE", "")
        if not self.wecom_base and self.provider_mode:
            from local.wecom_sim import ProviderSimulator

            # The provider's side of WeCom: the suite's token and key are the stack's callback
            # credentials (resolve_credentials gives the suite's demo values in provider mode).
            self.simulator = ProviderSimulator(suite_id=self._suite_id(), token=creds.token,
                                               encoding_aes_key=creds.encoding_aes_key)
            self.wecom_base = self.simulator.start()
            self._closers.append(self.simulator.stop)
            log(f"kefu local stack: WeCom provider simulator (suite {self._suite_id()}) at {self.wecom_base}")
        elif not self.wecom_base:
            from local.wecom_sim import WeComSimulator

            self.simulator = WeComSimulator(
                corp_id=creds.corp_id, corp_secret=creds.corp_secret, token=creds.token,
                encoding_aes_key=creds.encoding_aes_key,
            )
            self.wecom_base = self.simulator.start()
            self._closers.append(self.simulator.stop)
            log(f"kefu local stack: WeCom simulator at {self.wecom_base}")

    def _suite_id(self) -> str:
        from local.wecom_sim import DEMO_SUITE_ID

        params = json.loads(self.env.get("KEFU_TEMPLATE_PARAMS") or "{}")
        return str(params.get("SuiteId") or self.env.get("WECOM_SUITE_ID") or DEMO_SUITE_ID)

    def _start_bedrock(self) -> None:
        self.bedrock_endpoint = self.env.get("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", "")
        if not self.bedrock_endpoint:
            from local.bedrock_standin import BedrockStandIn

            self.bedrock = BedrockStandIn(host=HOST)
            self.bedrock_endpoint = self.bedrock.start()
            self._closers.append(self.bedrock.stop)
            log(f"kefu local stack: Bedrock stand-in at {self.bedrock_endpoint}")
        os.environ["AWS_ENDPOINT_URL_BEDROCK_RUNTIME"] = self.bedrock_endpoint

    def _provision(self, creds: Any, region: str) -> None:
        import boto3

        from kefu.secrets import parameter_names
        from local.functions import apply_environment, load_functions
        from local.provision import provision, put_secrets
        from local.template import Template

        stack_name = self.env.get("KEFU_STACK_NAME", "kefu-local")
        params = json.loads(self.env.get("KEFU_TEMPLATE_PARAMS") or "{}")
        if self.bedrock is not None and "BedrockModelId" not in params:
            # The stack's own stand-in answers for a model, so `make dev` shows the AI answerer
            # (the rules' bot.ai); KEFU_TEMPLATE_PARAMS {"BedrockModelId": ""} turns the model off.
            params["BedrockModelId"] = LOCAL_MODEL
            log(f"kefu local stack: the AI answerer asks {LOCAL_MODEL} (the stand-in)")
        if self.provider_mode:
            params["SuiteId"] = self._suite_id()
        self.template = Template.load(
            ROOT / "template.yaml",
            overrides={**params, "WeComCorpId": creds.corp_id, "WeComApiBase": self.wecom_base},
            region=region,
        )
        session = boto3.Session(region_name=region)
        created = provision(self.template, stack_name, session)
        prefix = self.template.parameters["SecretsPrefix"]
        put_secrets(session, parameter_names(prefix), creds.secret_values())
        if self.provider_mode:
            from kefu.secrets import SUITE_SECRET
            from local.wecom_sim import DEMO_SUITE_SECRET

            secret = self.env.get("WECOM_SUITE_SECRET") or (DEMO_SUITE_SECRET if self.simulator is not None else "")
            if not secret:
                raise RuntimeError("set WECOM_SUITE_SECRET (provider mode with an external WeCom)")
            put_secrets(session, {SUITE_SECRET: f"{prefix}/{SUITE_SECRET}"}, {SUITE_SECRET: secret})
        log(f"kefu local stack: created {', '.join(f'{k} {len(v)}' for k, v in created.items())} "
            f"from template.yaml; secrets in SSM under {prefix}")
        log("kefu local stack resources: " + json.dumps({**self.template.physical, "SecretsPrefix": prefix}))
        self.functions, self.routes, self.sources = load_functions(self.template, ROOT)
        apply_environment(self.functions)
        # The rules file: KEFU_ROUTING_CONFIG, else the example the route function ships with.
        os.environ["KEFU_ROUTING_CONFIG"] = self.env.get("KEFU_ROUTING_CONFIG") or str(ROOT / "config" / "routing.yaml")
        for fn in self.functions.values():
            fn.load()  # a configuration error fails here, naming the setting
        self._session = session
        self._region = region

    def serve(self) -> None:
        from local.http_api import HttpApiServer
        from local.sqs_poller import QueuePoller

        api = HttpApiServer(HOST, self.port, self.routes, self.functions, log)
        api.start()
        self.port = api.port
        self._closers.insert(0, api.stop)
        arn_to_url = {
            self.template.attributes[(lid, "Arn")]: url
            for lid, url in ((lid, self.template.physical[lid]) for lid in self.template.resources("AWS::SQS::Queue"))
        }
        workers = int(self.env.get("KEFU_LOCAL_WORKERS") or 2)
        visibility = self.env.get("KEFU_LOCAL_VISIBILITY_TIMEOUT")
        paused = {name.strip() for name in self.env.get("KEFU_LOCAL_PAUSED", "").split(",") if name.strip()}
        for source in self.sources:
            if source.function in paused:
                log(f"kefu local stack: {source.function} poller paused (KEFU_LOCAL_PAUSED)")
                continue
            poller = QueuePoller(
                source, arn_to_url[source.queue_arn], self.functions[source.function], self._session, self._region,
                log, workers=workers, visibility_timeout=int(visibility) if visibility else None,
            )
            poller.start()
            self.pollers.append(poller)
            self._closers.insert(0, poller.stop)
        self._start_schedules()
        for route in self.routes:
            log(f"kefu local stack: {route.method} {route.path} -> {route.function}")
        if self.simulator is not None and self.provider_mode:
            self.simulator.set_callback_urls(f"{self.url}/callback", f"{self.url}/callback")  # one URL takes both
            self.simulator.push_suite_ticket()  # WeCom pushes one every 10 minutes; the first at once here
        elif self.simulator is not None:
            self.simulator.set_callback_url(f"{self.url}/callback")

    def _start_schedules(self) -> None:
        from local.functions import load_schedules
        from local.scheduler import ScheduleRunner

        override = (self.env.get("KEFU_LOCAL_SCHEDULE_SECONDS") or "").strip()
        if override == "off":
            log("kefu local stack: schedules off (KEFU_LOCAL_SCHEDULE_SECONDS=off)")
            return
        for source in load_schedules(self.template):
            runner = ScheduleRunner(source, self.functions[source.function], self._region, log,
                                    period=float(override) if override else None)
            runner.start()
            self._closers.insert(0, runner.stop)

    def stop(self) -> None:
        for close in self._closers:
            try:
                close()
            except Exception as exc:  # keep closing the rest
                print(f"kefu local stack: error while stopping: {exc}", file=sys.stderr)
        self._closers.clear()


def main() -> int:
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    from local.console import Console

    log_file = Path(os.environ.get("KEFU_LOG_FILE") or ROOT / ".kefu" / "logs" /
                    f"{os.environ.get('KEFU_STACK_NAME') or 'kefu-local'}.log")
    sys.stdout = Console(sys.__stdout__ or sys.stderr, log_file, full_json=os.environ.get("KEFU_LOG_FORMAT") == "json")
    log(f"kefu local stack: function logs, whole JSON, in {log_file} (KEFU_LOG_FORMAT=json shows them here)")
    stack = LocalStack(env=dict(os.environ))
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    try:
        stack.start()
        stack.serve()
    except Exception as exc:
        stack.stop()
        print(f"kefu local stack failed to start: {exc}", file=sys.stderr)
        return 1
    from local import state_file

    state_path = state_file.publish(stack, ROOT)  # for the kefu CLI; before the ready line, so it is there
    log(READY.format(port=stack.port))
    if stack.simulator is not None and os.environ.get("KEFU_DEMO") == "1":
        from local.demo import run_demo

        threading.Thread(target=run_demo, args=(stack,), name="demo", daemon=True).start()
    stopping.wait()
    log("kefu local stack: stopping")
    stack.stop()
    if state_path is not None:
        state_file.remove(state_path)
    log("kefu local stack: stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
