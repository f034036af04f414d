"""WeCom from the operator's machine: the stack's secrets (SSM), gettoken, kf/account/list, and
what a WeCom error code means for the operator (above all 60020 and the IP WeCom saw)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

from kefu.wecom.errors import API_FORBIDDEN, BAD_CORP_ID, BAD_SECRET, IP_NOT_TRUSTED
from kefu_cli.target import CliError, Target

_FROM_IP = re.compile(r"from ip:\s*\[?([0-9A-Fa-f:.]+)")
AES_KEY_RE = re.compile(r"[A-Za-z0-9]{43}")


def egress_ip(errmsg: str) -> str | None:
    """The caller's IP WeCom names in an errmsg ("..., from ip: 203.0.113.7, more info at ...")."""
    match = _FROM_IP.search(errmsg or "")
    if not match:
        return None
    candidate = match.group(1).rstrip(".:")
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return None


@dataclass
class Diagnosis:
    summary: str
    remedy: list[str] = field(default_factory=list)
    egress_ip: str | None = None


def diagnose(exc: Any, target: Target) -> Diagnosis:
    """Turn a WeComError into what happened and what to do about it."""
    code, errmsg = exc.errcode, exc.errmsg
    prefix = target.secrets_prefix
    if code == IP_NOT_TRUSTED:
        ip = egress_ip(errmsg)
        shown = ip or "(WeCom named no IP)"
        return Diagnosis(
            f"60020: WeCom refused calls from IP {shown} (not in the app's trusted IPs)",
            [
                f"WeCom saw the request come from {shown}: the address this command's machine used, unless "
                "it runs inside the Lambda functions' network. The deployed functions call WeCom from their "
                "own egress address, which may differ.",
                f"Add {shown} to the app's trusted IPs: WeCom admin console -> 应用管理 -> your self-built app "
                "-> 企业可信IP (trusted IPs).",
                "For the Lambda functions, whose AWS egress addresses change: deploy with the template's "
                "fixed-egress mode (VPC + NAT gateway + Elastic IP; see README) and add that Elastic IP.",
            ],
            ip,
        )
    if code == BAD_SECRET:
        return Diagnosis(
            "40001: WeCom rejected the corp secret",
            [
                f"{prefix}/corp-secret must hold the Secret of the self-built app that manages the kf accounts "
                f"of corp {target.corp_id} (应用管理 -> the app -> Secret); the 微信客服 system app's secret "
                "is refused for corps that started after 2023-12.",
                f"Replace it: aws ssm put-parameter --name {prefix}/corp-secret --type SecureString "
                "--overwrite --value '<Secret>'",
            ],
        )
    if code == BAD_CORP_ID:
        where = "WECOM_CORP_ID of the local stack" if target.local else "the stack's WeComCorpId parameter"
        return Diagnosis(
            f"40013: WeCom does not know corp id {target.corp_id!r}",
            [f"Check {where} against WeCom admin console -> 我的企业 -> 企业信息 -> 企业ID, and redeploy with it."],
        )
    if code == API_FORBIDDEN:
        return Diagnosis(
            f"48002: the app may not call {exc.path}",
            ["List the app under 微信客服 -> 可调用接口的应用 (apps that may call the API) in the admin console."],
        )
    if code is None:
        return Diagnosis(f"could not reach WeCom at {target.wecom_api_base}: {errmsg}",
                         ["Check the network path to WeCom (and the WeComApiBase parameter)."])
    return Diagnosis(f"{code}: {errmsg}", [f"See https://open.work.weixin.qq.com/devtool/query?e={code}"])


def read_secrets(target: Target) -> tuple[dict[str, str], list[str]]:
    """(values by short name, full names missing) of the WeCom secrets in the stack's SSM."""
    from botocore.exceptions import BotoCoreError, ClientError

    from kefu.secrets import parameter_names

    names = parameter_names(target.secrets_prefix)
    try:
        response = target.client("ssm").get_parameters(Names=list(names.values()), WithDecryption=True)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise CliError(f"cannot read {target.secrets_prefix}/* from SSM: {error.get('Code')}: {error.get('Message')}") from None
    except BotoCoreError as exc:
        raise CliError(f"cannot reach SSM: {exc}") from None
    found = {p["Name"]: str(p.get("Value", "")) for p in response.get("Parameters", [])}
    values = {short: found[full] for short, full in names.items() if full in found}
    return values, [full for full in names.values() if full not in found]


class WeCom:
    """gettoken once, then kf calls with that token."""

    def __init__(self, target: Target, corp_secret: str) -> None:
        from kefu.wecom.client import WeComClient

        self.target = target
        self._secret = corp_secret
        self._token: str | None = None
        self.expires_in = 0
        self.client = WeComClient(target.wecom_api_base, token_source=self.token, max_attempts=2)

    def token(self) -> str:
        if self._token is None:
            self._token, self.expires_in = self.client.gettoken(self.target.corp_id, self._secret)
        return self._token

    def accounts(self) -> list[dict[str, Any]]:
        from kefu.wecom import kf

        return kf.account_list(self.client)

    def close(self) -> None:
        self.client.close()


def list_accounts(target: Target) -> list[dict[str, Any]]:
    """The corp's kf accounts as WeCom lists them; a CliError saying why when that fails."""
    from kefu.wecom.errors import WeComError

    values, missing = read_secrets(target)
    if not values.get("corp-secret"):
        raise CliError(f"no corp secret in SSM ({', '.join(missing) or target.secrets_prefix}); run `kefu preflight`")
    wecom = WeCom(target, values["corp-secret"])
    try:
        wecom.token()
        return wecom.accounts()
    except WeComError as exc:
        raise CliError(f"cannot list the kf accounts: {diagnose(exc, target).summary}; "
                       "give --account OPEN_KFID, or run `kefu preflight`") from None
    finally:
        wecom.close()
