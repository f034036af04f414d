"""Service-provider mode: the corps that authorized the provider's suite, their WeCom clients, and
what the suite's command callbacks do (kefu.tenancy says how each corp's data is kept apart).

- ``create_auth`` (and 代开发's ``reset_permanent_code``): the auth code is traded for the corp's
  permanent code, which is stored encrypted with the deployment's KMS key, bound to the corp by
  the encryption context (a ciphertext copied to another corp's item does not decrypt).
- ``change_auth``: the corp's name and agent are read again.
- ``cancel_auth``: the callback marks the corp cancelled at once (nothing of it is served from
  then on); the queued command then revokes its API keys, drops its stored token and, when the
  deployment says so (``CancelledCorpData: delete``), deletes every item and object of the corp,
  logging what it deleted.

Each corp's access_token is shared through DynamoDB like a single corp's: fetched with
``service/get_corp_token`` (third-party app) or ``gettoken`` with the permanent code as the
secret (代开发), under the corp's own key.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from kefu import aws, tenancy
from kefu.callback import CANCEL_AUTH, CHANGE_AUTH, CREATE_AUTH, RESET_PERMANENT_CODE, SuiteCommand
from kefu.config import Settings
from kefu.store import keys
from kefu.store.tenants import Tenant, TenantStore
from kefu.store.tokens import TokenTable
from kefu.wecom.client import WeComClient, new_pool
from kefu.wecom.errors import WeComError
from kefu.wecom.suite import SuiteApi
from kefu.wecom.tokens import AccessTokens, token_key

T = TypeVar("T")
CONTEXT_KEY = "kefu:corp"
COMMAND = "command"  # a sync-queue body {"command": {...}} is a suite command, not a pull


class CorpNotServed(Exception):
    """A corp that never authorized the suite, or cancelled: its work is dropped, not retried."""


class PermanentCodes:
    """Permanent codes sealed with KMS, each bound to its corp by the encryption context."""

    def __init__(self, key_id: str) -> None:
        self._key_id = key_id

    def seal(self, corp_id: str, code: str) -> bytes:
        answer = aws.client("kms").encrypt(KeyId=self._key_id, Plaintext=code.encode("utf-8"),
                                           EncryptionContext={CONTEXT_KEY: corp_id})
        return bytes(answer["CiphertextBlob"])

    def open(self, corp_id: str, sealed: bytes) -> str:
        answer = aws.client("kms").decrypt(KeyId=self._key_id, CiphertextBlob=sealed,
                                           EncryptionContext={CONTEXT_KEY: corp_id})
        return bytes(answer["Plaintext"]).decode("utf-8")


def command_body(command: SuiteCommand) -> dict[str, Any]:
    fields = {"info_type": command.info_type, "timestamp": command.timestamp, "auth_code": command.auth_code,
              "auth_corp_id": command.auth_corp_id, "state": command.state}
    return {COMMAND: {k: v for k, v in fields.items() if v is not None}}


@dataclass
class Provider:
    """A container's view of the provider: the registry, the suite's calls, and a WeCom client per
    corp (made on first use, rebuilt when the corp's permanent code changes)."""

    settings: Settings
    tenants: TenantStore
    codes: PermanentCodes
    suite: SuiteApi
    http: Any
    on_error: Callable[[WeComError], None] | None = None
    _clients: dict[str, tuple[bytes, WeComClient]] = field(default_factory=dict)

    def tenant(self, corp_id: str) -> Tenant:
        """The corp, if it is served now (a consistent read: a cancellation counts at once)."""
        tenant = self.tenants.get(corp_id) if tenancy.valid_corp_id(corp_id) else None
        if tenant is None or not tenant.active:
            raise CorpNotServed(f"corp {corp_id} is not served ({'cancelled' if tenant else 'never authorized'})")
        return tenant

    def client(self, tenant: Tenant) -> WeComClient:
        held = self._clients.get(tenant.corp_id)
        if held is not None and held[0] == tenant.code:
            return held[1]
        code = self.codes.open(tenant.corp_id, tenant.code)
        with tenancy.serving(tenant.corp_id):  # the token item is the corp's own
            store = TokenTable(self.settings.state_table, token_key(tenant.corp_id, code))
        bare = WeComClient(self.settings.wecom_api_base, http=self.http, on_error=self.on_error)
        corp = tenant.corp_id
        if self.settings.provider_app == "custom_app":
            tokens = AccessTokens(store, lambda: bare.gettoken(corp, code))
        else:
            tokens = AccessTokens(store, lambda: self.suite.corp_token(corp, code))
        client = WeComClient(self.settings.wecom_api_base, token_source=tokens.get,
                             on_token_rejected=tokens.invalidate, http=self.http, on_error=self.on_error)
        self._clients[corp] = (tenant.code, client)
        return client

    def for_corp(self, corp_id: str, cache: dict[str, tuple[WeComClient, T]], build: Callable[[WeComClient], T]) -> T:
        """What ``build`` makes of the served corp's WeCom client (its routing engine, its ports...),
        kept in the caller's ``cache`` until the client changes (a new permanent code). Raises
        CorpNotServed for a corp that is not served now."""
        client = self.client(self.tenant(corp_id))
        held = cache.get(corp_id)
        if held is None or held[0] is not client:
            held = cache[corp_id] = (client, build(client))
        return held[1]

    # -- the suite's commands (queued by the callback, run by the sync function) ---------------------

    def run_command(self, command: dict[str, Any], log: Callable[..., None]) -> None:
        kind = str(command.get("info_type") or "")
        if kind in (CREATE_AUTH, RESET_PERMANENT_CODE):
            self._authorize(str(command["auth_code"]), log)
        elif kind == CHANGE_AUTH:
            corp = str(command["auth_corp_id"])
            try:
                self._reread(corp, log)
            except CorpNotServed:  # cancelled meanwhile: nothing left to read again
                log("authorization change of a corp not served, ignored", corp=corp)
            except WeComError:
                # A cancellation revokes the permanent code at WeCom before its callback arrives
                # (40084): a change queued just before it is then moot. Anything else is retried.
                if self._still_served(corp):
                    raise
                log("authorization change of a corp cancelled meanwhile, ignored", corp=corp)
        elif kind == CANCEL_AUTH:
            self.cancelled(str(command["auth_corp_id"]), log)
        else:
            log("suite command ignored", info_type=kind)

    def _still_served(self, corp_id: str) -> bool:
        try:
            self.tenant(corp_id)
        except CorpNotServed:
            return False
        return True

    def _authorize(self, auth_code: str, log: Callable[..., None]) -> None:
        auth = self.suite.permanent_code(auth_code)
        if not tenancy.valid_corp_id(auth.corp_id):
            raise WeComError("service/get_permanent_code", None, "answer's corpid is not a corp id")
        sealed = self.codes.seal(auth.corp_id, auth.permanent_code)
        self.tenants.authorized(auth.corp_id, auth.corp_name, auth.agent_id, sealed, int(time.time()))
        self._clients.pop(auth.corp_id, None)
        log("corp authorized", corp=auth.corp_id, corp_name=auth.corp_name, agent_id=auth.agent_id)

    def _reread(self, corp_id: str, log: Callable[..., None]) -> None:
        tenant = self.tenant(corp_id)
        info = self.suite.auth_info(corp_id, self.codes.open(corp_id, tenant.code))
        agents = (info.get("auth_info") or {}).get("agent") or []
        agent = agents[0].get("agentid") if agents and isinstance(agents[0], dict) else None
        name = str((info.get("auth_corp_info") or {}).get("corp_name") or tenant.corp_name)
        if not self.tenants.renamed(corp_id, name, agent if isinstance(agent, int) else tenant.agent_id):
            raise CorpNotServed(f"corp {corp_id} cancelled while its authorization was read again")
        log("corp authorization changed", corp=corp_id, corp_name=name, agent_id=agent)

    def cancelled(self, corp_id: str, log: Callable[..., None]) -> None:
        """After a cancel_auth (the corp is already marked cancelled): its API keys are revoked, and
        its data deleted when the deployment deletes cancelled corps' data."""
        if not tenancy.valid_corp_id(corp_id):
            return
        self.tenants.cancel(corp_id, int(time.time()))  # a repeat of what the callback did; no-op then
        self._clients.pop(corp_id, None)
        revoked = self.tenants.revoke_keys(corp_id)
        if self.settings.cancelled_corp_data == "delete":
            counts = CorpData(self.settings.state_table, self._messages_table(), self._bucket()).delete(corp_id)
            log("corp data deleted", corp=corp_id, api_keys_revoked=revoked, **counts)
        else:
            log("corp cancelled, data kept", corp=corp_id, api_keys_revoked=revoked)

    def _messages_table(self) -> str:
        return str(getattr(self.settings, "messages_table", "") or "")

    def _bucket(self) -> str:
        return str(getattr(self.settings, "media_bucket", "") or "")


class CorpData:
    """Deletes everything one corp left: its state items, its messages and its S3 objects."""

    def __init__(self, state_table: str, messages_table: str, bucket: str) -> None:
        self._state, self._messages, self._bucket = state_table, messages_table, bucket

    def delete(self, corp_id: str) -> dict[str, int]:
        from boto3.dynamodb.conditions import Attr, Key

        prefix = corp_id + tenancy.SEPARATOR
        counts = {"state_items": self._delete_scanned(self._state, Key("pk").begins_with(prefix), ("pk", "sk"))}
        if self._messages:
            counts["messages"] = self._delete_scanned(self._messages, Attr("corp").eq(corp_id), ("msgid",))
        if self._bucket:
            counts["objects"] = self._delete_objects(prefix)
        return counts

    @staticmethod
    def _delete_scanned(table_name: str, condition: Any, key_names: tuple[str, ...]) -> int:
        table = aws.table(table_name)
        args: dict[str, Any] = {"FilterExpression": condition, "ProjectionExpression": ", ".join(key_names)}
        deleted = 0
        with table.batch_writer() as writer:
            while True:
                page = table.scan(**args)
                for item in page.get("Items", []):
                    writer.delete_item(Key={name: item[name] for name in key_names})
                    deleted += 1
                if not page.get("LastEvaluatedKey"):
                    return deleted
                args["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _delete_objects(self, prefix: str) -> int:
        s3 = aws.client("s3")
        deleted = 0
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=self._bucket, Prefix=prefix):
            objects = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if objects:
                s3.delete_objects(Bucket=self._bucket, Delete={"Objects": objects, "Quiet": True})
                deleted += len(objects)
        return deleted


_provider: Provider | None = None


def provider(settings: Settings, on_error: Callable[[WeComError], None] | None = None) -> Provider:
    """The container's Provider (built on first use)."""
    global _provider
    if _provider is None:
        from kefu.secrets import load_suite_secrets

        settings.require_provider()
        tenants = TenantStore(settings.state_table)
        http = new_pool()
        bare = WeComClient(settings.wecom_api_base, http=http, on_error=on_error)
        suite_key = token_key(settings.suite_id, "suite")
        suite = SuiteApi(
            bare, settings.suite_id, lambda: load_suite_secrets(settings.secrets_prefix).suite_secret, tenants.ticket,
            lambda fetch: AccessTokens(TokenTable(settings.state_table, "", item_key=keys.suite_token(suite_key)), fetch))
        _provider = Provider(settings, tenants, PermanentCodes(settings.permanent_code_key), suite, http, on_error)
    return _provider
