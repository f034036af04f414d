"""Which Kefu stack a command talks to, and how to reach its parts.

Local: the state file the local stack writes once it serves (``.kefu/local-stack.json`` under the
project root, or the path in ``KEFU_STATE_FILE``); it is used with ``--local``, or by itself when
it exists and the process that wrote it is alive. AWS calls then go to the stack's emulator with
dummy credentials.

Deployed: ``--stack NAME`` (default: ``stack_name`` from samconfig.toml) in ``--region`` (default:
samconfig.toml's region, else AWS_REGION / AWS_DEFAULT_REGION), read with CloudFormation
describe-stacks: its Outputs name the URLs, tables, queues and bucket; its Parameters the corp id,
the secrets prefix and the WeCom API base.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STATE_ENV = "KEFU_STATE_FILE"
STATE_RELATIVE = Path(".kefu") / "local-stack.json"
SAMCONFIG = "samconfig.toml"
DEFAULT_API_BASE = "https://qyapi.weixin.qq.com"
LOCAL_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}  # nosec B105 - the emulator's dummy

# Stack outputs that the local stack has as resources (output name -> logical id).
LOCAL_OUTPUTS = {
    "SyncQueueUrl": "SyncQueue",
    "SyncDeadLetterQueueUrl": "SyncDeadLetterQueue",
    "RouteQueueUrl": "RouteQueue",
    "RouteDeadLetterQueueUrl": "RouteDeadLetterQueue",
    "StateTableName": "StateTable",
    "MessagesTableName": "MessagesTable",
    "MediaBucketName": "MediaBucket",
}


class CliError(Exception):
    """A problem the operator can fix; the message says what to do. Exit code 1 (2 for usage)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def project_root(start: Path | None = None) -> Path:
    """The nearest folder, from ``start`` (the working directory) up, holding samconfig.toml or
    template.yaml; else the checkout this package was installed from; else ``start``."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / SAMCONFIG).is_file() or (folder / "template.yaml").is_file():
            return folder
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "template.yaml").is_file():
        return checkout
    return here


def state_file_path(env: Mapping[str, str], root: Path) -> Path:
    explicit = env.get(STATE_ENV)
    return Path(explicit) if explicit else root / STATE_RELATIVE


def pid_alive(pid: Any) -> bool:
    try:
        number = int(pid)
    except (TypeError, ValueError):
        return False
    if number <= 0:
        return False
    try:
        os.kill(number, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    except OSError:
        return False
    return True


def read_state(path: Path) -> dict[str, Any] | None:
    """The state file's content, or None when there is none or it is not a state file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not data.get("url") or not isinstance(data.get("resources"), dict):
        return None
    return data


@dataclass(frozen=True)
class SamConfig:
    stack_name: str | None = None
    region: str | None = None


def read_samconfig(path: Path, config_env: str = "default") -> SamConfig:
    """stack_name and region of samconfig.toml's environment (deploy's section wins over global)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return SamConfig()
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise CliError(f"cannot read {path}: {exc}") from None
    section = data.get(config_env) or {}
    values: dict[str, Any] = {}
    for command in ("global", "deploy"):
        values.update((section.get(command) or {}).get("parameters") or {})
    stack = values.get("stack_name")
    region = values.get("region")
    return SamConfig(str(stack) if stack else None, str(region) if region else None)


@dataclass
class Target:
    """A stack: its outputs and parameters, and boto3 access to its account (or emulator)."""

    local: bool
    stack_name: str
    region: str
    outputs: dict[str, str]
    parameters: dict[str, str]
    aws_endpoint: str | None = None
    profile: str | None = None
    state_file: Path | None = None
    _session: Any = field(default=None, repr=False)

    def describe(self) -> str:
        if self.local:
            return f"local stack {self.outputs.get('ApiBaseUrl', '')} ({self.stack_name}, {self.region})"
        return f"stack {self.stack_name} ({self.region})"

    def output(self, name: str) -> str:
        value = self.outputs.get(name)
        if not value:
            raise CliError(f"{self.describe()} has no output {name}: deploy the current template.yaml")
        return value

    def url(self, path: str, output: str | None = None) -> str:
        """A route of the HTTP API: the named output when the stack has it, else ApiBaseUrl + path."""
        if output and self.outputs.get(output):
            return self.outputs[output]
        return self.output("ApiBaseUrl").rstrip("/") + path

    @property
    def corp_id(self) -> str:
        return self.parameters.get("WeComCorpId", "")

    @property
    def secrets_prefix(self) -> str:
        return self.parameters.get("SecretsPrefix") or "/kefu"

    @property
    def wecom_api_base(self) -> str:
        return self.parameters.get("WeComApiBase") or DEFAULT_API_BASE

    def session(self) -> Any:
        if self._session is None:
            import boto3

            if self.local:
                self._session = boto3.Session(region_name=self.region, **LOCAL_CREDENTIALS)
            else:
                self._session = boto3.Session(region_name=self.region, profile_name=self.profile)
        return self._session

    def client(self, service: str) -> Any:
        from botocore.config import Config

        config = Config(connect_timeout=5, read_timeout=20, retries={"max_attempts": 3, "mode": "standard"})
        return self.session().client(service, endpoint_url=self.aws_endpoint or None, config=config)


def local_target(state: Mapping[str, Any], path: Path, env: Mapping[str, str]) -> Target:
    url = str(state["url"]).rstrip("/")
    resources = {str(k): str(v) for k, v in (state.get("resources") or {}).items()}
    outputs = {"ApiBaseUrl": url, "CallbackUrl": f"{url}/callback", "LinksUrl": f"{url}/links"}
    outputs.update({name: resources[lid] for name, lid in LOCAL_OUTPUTS.items() if lid in resources})
    parameters = {
        "WeComCorpId": str(state.get("corp_id") or env.get("WECOM_CORP_ID") or ""),
        "SecretsPrefix": resources.get("SecretsPrefix", "/kefu"),
        "WeComApiBase": str(state.get("wecom_api_base") or ""),
        "SuiteId": str(state.get("suite_id") or ""),
    }
    return Target(local=True, stack_name=str(state.get("stack_name") or "kefu-local"),
                  region=str(state.get("region") or "us-east-1"), outputs=outputs, parameters=parameters,
                  aws_endpoint=str(state.get("aws_endpoint") or "") or None, state_file=path)


def describe_stack(session: Any, stack_name: str) -> tuple[dict[str, str], dict[str, str]]:
    """(outputs, parameters) of a deployed stack."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        stacks = session.client("cloudformation").describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise CliError(f"cannot read stack {stack_name!r} in {session.region_name}: {error.get('Code')}: "
                       f"{error.get('Message')} (deploy it, or give --stack / --region / --profile)") from None
    except BotoCoreError as exc:
        raise CliError(f"cannot reach CloudFormation in {session.region_name}: {exc} "
                       "(set AWS credentials, or give --profile / --region)") from None
    if not stacks:
        raise CliError(f"stack {stack_name!r} not found in {session.region_name}")
    stack = stacks[0]
    outputs = {o["OutputKey"]: o.get("OutputValue", "") for o in stack.get("Outputs") or []}
    parameters = {p["ParameterKey"]: p.get("ResolvedValue") or p.get("ParameterValue", "")
                  for p in stack.get("Parameters") or []}
    return outputs, parameters


def resolve_target(local: bool = False, stack: str | None = None, region: str | None = None,
                   profile: str | None = None, env: Mapping[str, str] | None = None,
                   cwd: Path | None = None, session_factory: Any = None) -> Target:
    """The target of a command, from its options, the state file and samconfig.toml."""
    env = os.environ if env is None else env
    root = project_root(cwd)
    path = state_file_path(env, root)
    state = read_state(path) if local or not stack else None
    if state is not None and pid_alive(state.get("pid")):
        return local_target(state, path, env)
    if local:
        why = "no local stack state" if state is None else f"the stack that wrote it (pid {state.get('pid')}) is gone"
        raise CliError(f"{path}: {why}; start one with `make dev` (or set {STATE_ENV})")
    sam = read_samconfig(root / SAMCONFIG)
    stack_name = stack or sam.stack_name
    if not stack_name:
        raise CliError(f"no stack to talk to: no running local stack ({path}) and no stack_name in "
                       f"{root / SAMCONFIG}; give --stack NAME or --local", exit_code=2)
    region = region or sam.region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if not region:
        raise CliError("no region: give --region, or set region in samconfig.toml or AWS_DEFAULT_REGION", exit_code=2)
    if session_factory is None:
        import boto3

        session_factory = boto3.Session
    try:
        session = session_factory(region_name=region, profile_name=profile)
    except Exception as exc:  # botocore's ProfileNotFound and friends
        raise CliError(f"cannot set up AWS access: {exc}") from None
    outputs, parameters = describe_stack(session, stack_name)
    return Target(local=False, stack_name=stack_name, region=region, outputs=outputs, parameters=parameters,
                  profile=profile, _session=session)
