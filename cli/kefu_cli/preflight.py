"""`kefu preflight`: is this stack ready for WeCom? Corp id, secrets, gettoken, kf/account/list
(which accounts this app may manage), and the callback URL answering as Kefu does."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from kefu_cli.output import MARKS
from kefu_cli.target import CliError, Target
from kefu_cli.wecom import AES_KEY_RE, WeCom, diagnose, read_secrets


@dataclass
class Check:
    name: str
    status: str  # ok | fail | warn | skip
    detail: str
    remedy: list[str] = field(default_factory=list)


@dataclass
class Report:
    target: str
    checks: list[Check] = field(default_factory=list)
    accounts: list[dict[str, Any]] = field(default_factory=list)
    egress_ip: str | None = None

    @property
    def ok(self) -> bool:
        return all(c.status != "fail" for c in self.checks)

    def add(self, name: str, status: str, detail: str, remedy: list[str] | None = None) -> Check:
        check = Check(name, status, detail, remedy or [])
        self.checks.append(check)
        return check

    def as_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "target": self.target, "checks": [asdict(c) for c in self.checks],
                "accounts": self.accounts, "egress_ip": self.egress_ip}


def run(target: Target, http: Any) -> Report:
    report = Report(target.describe())
    corp_id = target.corp_id
    if corp_id:
        report.add("corp id", "ok", corp_id)
    else:
        where = "WECOM_CORP_ID (or the local state file)" if target.local else "the stack's WeComCorpId parameter"
        report.add("corp id", "fail", "no corp id", [f"Set {where}."])
    secret = _check_secrets(target, report)
    if corp_id and secret:
        _check_wecom(target, secret, report)
    else:
        report.add("access token", "skip", "needs the corp id and the corp secret")
        report.add("kf accounts", "skip", "needs an access token")
    _check_callback(target, http, report)
    return report


def _check_secrets(target: Target, report: Report) -> str | None:
    prefix = target.secrets_prefix
    try:
        values, missing = read_secrets(target)
    except CliError as exc:
        report.add("secrets", "fail", str(exc), ["The caller needs ssm:GetParameters and kms:Decrypt on them."])
        return None
    problems = [f"{name} is missing" for name in missing]
    problems += [f"{prefix}/{name} is empty" for name in ("corp-secret", "callback-token")
                 if name in values and not values[name]]
    aes = values.get("encoding-aes-key")
    if aes is not None and not AES_KEY_RE.fullmatch(aes):
        problems.append(f"{prefix}/encoding-aes-key is not 43 letters and digits")
    if problems:
        report.add("secrets", "fail", "; ".join(problems), [
            f"aws ssm put-parameter --name {prefix}/<name> --type SecureString --overwrite --value '<value>' "
            "(corp-secret: the app's Secret; callback-token and encoding-aes-key: as entered in the app's "
            "API receive settings)"])
    else:
        report.add("secrets", "ok", f"corp-secret, callback-token, encoding-aes-key under {prefix}")
    return values.get("corp-secret") or None


def _check_wecom(target: Target, secret: str, report: Report) -> None:
    from kefu.wecom.errors import WeComError

    wecom = WeCom(target, secret)
    try:
        try:
            wecom.token()
        except WeComError as exc:
            found = diagnose(exc, target)
            report.egress_ip = found.egress_ip
            report.add("access token", "fail", found.summary, found.remedy)
            report.add("kf accounts", "skip", "needs an access token")
            return
        report.add("access token", "ok", f"gettoken at {target.wecom_api_base} (valid {wecom.expires_in} s)")
        try:
            accounts = wecom.accounts()
        except WeComError as exc:
            found = diagnose(exc, target)
            report.egress_ip = report.egress_ip or found.egress_ip
            report.add("kf accounts", "fail", found.summary, found.remedy)
            return
        _check_accounts(accounts, report)
        _check_qualification(wecom, target, report)
        _check_departments(wecom, [str(a.get("open_kfid")) for a in accounts if a.get("manage_privilege")], report)
    finally:
        wecom.close()


def _check_accounts(accounts: list[dict[str, Any]], report: Report) -> None:
    report.accounts = [{"open_kfid": str(a.get("open_kfid")), "name": str(a.get("name") or ""),
                        "manage_privilege": bool(a.get("manage_privilege"))} for a in accounts]
    managed = [a for a in report.accounts if a["manage_privilege"]]
    assign = ("In the admin console, 微信客服 -> 通过API管理微信客服账号: assign the kf accounts to this app "
              "(only API-managed accounts can be synced, routed and linked).")
    if not report.accounts:
        report.add("kf accounts", "fail", "the corp has no kf account", ["Create one in 微信客服, then: " + assign])
    elif not managed:
        report.add("kf accounts", "fail", f"{len(report.accounts)} account(s), none managed by this app", [assign])
    elif len(managed) < len(report.accounts):
        report.add("kf accounts", "warn", f"{len(report.accounts)} account(s), {len(managed)} managed by this app",
                   ["Accounts not managed by this app are ignored; to run one with Kefu: " + assign])
    else:
        report.add("kf accounts", "ok", f"{len(managed)} account(s), all managed by this app")


def _check_qualification(wecom: WeCom, target: Target, report: Report) -> None:
    """kf/get_corp_qualification: how many customers the corp may serve, and what would lift it."""
    from kefu.wecom import kf
    from kefu.wecom.errors import WeComError

    try:
        qualification = kf.corp_qualification(wecom.client)
    except WeComError as exc:
        report.add("qualification", "warn", f"kf/get_corp_qualification: {diagnose(exc, target).summary}")
        return
    if qualification.get("wechat_channels_binding"):
        report.add("qualification", "ok", "a 视频号 is bound: no limit on the customers 微信客服 may serve")
        return
    report.add("qualification", "warn", "no 视频号 is bound: the customers 微信客服 may serve are limited "
               "(WeCom's guide: 100 in all for an unverified corp, 10,000 for a verified one)", [
                   "Verify the corp (企业验证, in the admin console), then bind a 视频号 to 微信客服 "
                   "(微信客服 -> 视频号): a verified corp with a 视频号 bound serves without a limit.",
                   "Until then, links and entries from 视频号 do not reach this corp's kf accounts."])


def _check_departments(wecom: WeCom, managed: list[str], report: Report) -> None:
    """Servicing departments: Kefu routes to their members only where the app may read them."""
    from kefu.wecom import kf
    from kefu.wecom.errors import NO_CONTACT_PERMISSION, WeComError

    unreadable: list[str] = []
    departments = 0
    for open_kfid in managed:
        for department in kf.servicers(wecom.client, open_kfid).departments:
            departments += 1
            try:
                kf.department_members(wecom.client, department)
            except WeComError as exc:
                if exc.errcode != NO_CONTACT_PERMISSION:
                    raise
                unreadable.append(f"{department} ({open_kfid})")
    if unreadable:
        report.add("servicing departments", "warn", f"the app may not read department(s) {', '.join(unreadable)}: "
                   "Kefu cannot route to their members", [
                       "In the admin console, widen the app's visible range (应用管理 -> the app -> 可见范围) to "
                       "those departments, or add their members as servicers one by one."])
    elif departments:
        report.add("servicing departments", "ok", f"{departments} department(s) serve; their members are routed to")


def _check_callback(target: Target, http: Any, report: Report) -> None:
    import httpx

    url = target.outputs.get("CallbackUrl")
    if not url:
        report.add("callback URL", "fail", "the stack has no CallbackUrl output", ["Deploy the current template.yaml."])
        return
    try:
        response = http.get(url)
    except httpx.HTTPError as exc:
        report.add("callback URL", "fail", f"GET {url}: {type(exc).__name__}: {exc}",
                   ["Check the stack is deployed and the URL is reachable from here."])
        return
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        error = None
    if response.status_code == 400 and error == "missing_parameter":
        report.add("callback URL", "ok", f"{url} answers as Kefu (400 missing_parameter without a signature)")
    else:
        report.add("callback URL", "fail", f"GET {url} answered {response.status_code} {response.text[:80]!r}",
                   ["Expected 400 with error missing_parameter: is this URL the stack's CallbackUrl, and is "
                    "the callback function deployed?"])


def render(report: Report) -> str:
    lines = [f"Kefu preflight: {report.target}"]
    name_width = max(len(c.name) for c in report.checks)
    for check in report.checks:
        lines.append(f"{MARKS[check.status]} {check.name.ljust(name_width)}  {check.detail}")
        if check.name == "kf accounts":
            for account in report.accounts:
                mark = MARKS["ok"] if account["manage_privilege"] else MARKS["warn"]
                state = "managed by this app" if account["manage_privilege"] else "NOT managed by this app"
                lines.append(f"    {mark} {account['open_kfid']}  {account['name']}  ({state})")
        for step in check.remedy:
            lines.append(f"    -> {step}")
    failed = sum(c.status == "fail" for c in report.checks)
    lines.append("preflight passed" if report.ok else f"preflight failed: {failed} check(s) failed")
    return "\n".join(lines)
