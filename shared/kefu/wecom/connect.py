"""Build the WeCom client a function uses: secrets from SSM, the shared token in DynamoDB."""

from __future__ import annotations

from collections.abc import Callable

from kefu.config import Settings
from kefu.secrets import load_secrets
from kefu.store.tokens import TokenTable
from kefu.wecom.client import WeComClient, new_pool
from kefu.wecom.errors import WeComError
from kefu.wecom.tokens import AccessTokens, token_key


def connect(settings: Settings, on_error: Callable[[WeComError], None] | None = None) -> WeComClient:
    secrets = load_secrets(settings.secrets_prefix)
    store = TokenTable(settings.state_table, token_key(settings.corp_id, secrets.corp_secret))
    http = new_pool()  # one connection pool for token fetches and calls
    bare = WeComClient(settings.wecom_api_base, http=http, on_error=on_error)
    tokens = AccessTokens(store, lambda: bare.gettoken(settings.corp_id, secrets.corp_secret))
    return WeComClient(
        settings.wecom_api_base,
        token_source=tokens.get,
        on_token_rejected=tokens.invalidate,
        http=http,
        on_error=on_error,
    )
