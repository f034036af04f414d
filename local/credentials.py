"""The WeCom credentials the local stack runs with: from the environment, or demo values when the
built-in simulator stands in for WeCom."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from kefu.secrets import CALLBACK_TOKEN, CORP_SECRET, ENCODING_AES_KEY

VARIABLES = ("WECOM_CORP_ID", "WECOM_CORP_SECRET", "WECOM_TOKEN", "WECOM_ENCODING_AES_KEY")


@dataclass(frozen=True)
class Credentials:
    corp_id: str
    corp_secret: str = field(repr=False)
    token: str = field(repr=False)
    encoding_aes_key: str = field(repr=False)

    def secret_values(self) -> dict[str, str]:
        return {CORP_SECRET: self.corp_secret, CALLBACK_TOKEN: self.token, ENCODING_AES_KEY: self.encoding_aes_key}


def resolve_credentials(env: Mapping[str, str], *, builtin_simulator: bool, provider: bool = False) -> Credentials:
    """In provider mode the token and key are the suite's (its callbacks are signed with them)."""
    if builtin_simulator:
        from local import wecom_sim

        token, key = ((wecom_sim.DEMO_SUITE_TOKEN, wecom_sim.DEMO_SUITE_AES_KEY) if provider
                      else (wecom_sim.DEMO_TOKEN, wecom_sim.DEMO_AES_KEY))
        defaults = dict(zip(VARIABLES, (wecom_sim.DEMO_CORP_ID, wecom_sim.DEMO_CORP_SECRET, token, key), strict=True))
    else:
        defaults = {}
    values = {name: env.get(name) or defaults.get(name, "") for name in VARIABLES}
    missing = [name for name, value in values.items() if not value]
    if missing:
        raise RuntimeError(f"set {', '.join(missing)} (needed when WECOM_API_BASE names an external WeCom)")
    return Credentials(*(values[name] for name in VARIABLES))
