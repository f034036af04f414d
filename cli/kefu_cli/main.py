"""The `kefu` command: argument parsing and dispatch. Each command lives in its own module and is
imported only when it runs, so `kefu --help` stays quick."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kefu_cli.target import STATE_ENV, CliError, Target, resolve_target

HTTP_TIMEOUT = 15.0
MESSAGES_LIMIT = 100  # items of one conversation
CONVERSATIONS_LIMIT = 20  # conversations of an account
COMMON_DEFAULTS: dict[str, Any] = {"local": False, "stack": None, "region": None, "profile": None, "json": False,
                                   "corp": None}

EPILOG = f"""\
target: with --local, or when the local stack's state file (.kefu/local-stack.json, or ${STATE_ENV})
exists and its process is alive, the local stack (`make dev`); otherwise the deployed stack named
by --stack (default: stack_name in samconfig.toml), read with CloudFormation describe-stacks.
Exit status: 0 success, 1 a check or an operation failed, 2 usage error.
"""


def _common() -> argparse.ArgumentParser:
    """Options accepted before or after the command (SUPPRESS: a subcommand does not reset them)."""
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("target")
    group.add_argument("--local", action="store_true", default=argparse.SUPPRESS,
                       help="use the running local stack (its state file)")
    group.add_argument("--stack", metavar="NAME", default=argparse.SUPPRESS,
                       help="deployed stack name (default: samconfig.toml's stack_name)")
    group.add_argument("--region", default=argparse.SUPPRESS,
                       help="AWS region (default: samconfig.toml's region, else AWS_DEFAULT_REGION)")
    group.add_argument("--profile", default=argparse.SUPPRESS, help="AWS named profile")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="print JSON instead of text")
    common.add_argument("--corp", metavar="CORP_ID", default=argparse.SUPPRESS,
                        help="provider mode: the corp whose data to read (its API key in $KEFU_CORP_KEY for "
                             "stats, send, transfer and end)")
    return common


def positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    from kefu_cli.conversation import parse_key
    from kefu_cli.stats import parse_day

    common = _common()
    parser = argparse.ArgumentParser(
        prog="kefu", parents=[common], epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Operator tools for a Kefu stack (WeCom 微信客服 on AWS), local or deployed.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    commands.add_parser("preflight", parents=[common], help="check WeCom credentials, accounts and the callback URL",
                        description="Check the corp id, the secrets in SSM, gettoken, kf/account/list (which "
                        "accounts this app may manage) and that the callback URL answers as Kefu. On 60020 "
                        "names the IP WeCom saw and what to do.")

    messages = commands.add_parser("messages", parents=[common], help="a customer's conversation, or an account's "
                                   "recent conversations",
                                   description="With EXTERNAL_USERID: the customer's stored conversation, oldest "
                                   "first, times in local time, media as presigned S3 URLs, Kefu's own sends with "
                                   "the rule that sent them. Without --account: the corp's one kf account, or the "
                                   "one account this customer wrote to. Without EXTERNAL_USERID (--account "
                                   "required): the account's recent conversations, newest first.")
    messages.add_argument("external_userid", metavar="EXTERNAL_USERID", nargs="?",
                          help="the customer (omit it to list the account's recent conversations)")
    messages.add_argument("--account", metavar="OPEN_KFID", help="the kf account (open_kfid)")
    messages.add_argument("--limit", type=positive, help=f"the latest N items of a conversation (default "
                          f"{MESSAGES_LIMIT}), or the N most recent conversations (default {CONVERSATIONS_LIMIT})")
    messages.add_argument("--expires", type=positive, default=3600, metavar="SECONDS",
                          help="lifetime of the media URLs (default 3600)")

    customer = commands.add_parser("customer", parents=[common], help="a customer's profile, entries and sessions",
                                   description="A customer's stored profile and, per kf account, their entries "
                                   "(scene, scene_param, 视频号) and routing session. Give EXTERNAL_USERID or "
                                   "--unionid (which may name several customers), not both.")
    customer.add_argument("external_userid", metavar="EXTERNAL_USERID", nargs="?", help="the customer")
    customer.add_argument("--unionid", metavar="UNIONID", help="the customers whose profile carries this unionid")
    customer.add_argument("--account", metavar="OPEN_KFID",
                          help="only this kf account (default: every account kf/account/list names)")
    customer.add_argument("--limit", type=positive, default=20, help="the latest N entries per account (default 20)")

    stats = commands.add_parser("stats", parents=[common], help="the scene funnel and servicer figures (GET /stats)",
                                description="GET /stats as tables. Days are the stack's (its statistics timezone): "
                                "without --from/--to, today; --from alone, that one day.")
    stats.add_argument("--from", dest="day_from", type=parse_day, metavar="YYYY-MM-DD")
    stats.add_argument("--to", dest="day_to", type=parse_day, metavar="YYYY-MM-DD")
    stats.add_argument("--scene", help="only this scene")
    stats.add_argument("--account", metavar="OPEN_KFID", help="only this account")

    dlq = commands.add_parser("dlq", parents=[common], help="show or redrive dead letters",
                              description="Show the dead letters of the sync and route queues; with --redrive, "
                              "move them back to their source queue (same message group, deleted from the DLQ "
                              "only after the send succeeded).")
    dlq.add_argument("--redrive", action="store_true", help="move the dead letters back to their source queue")
    dlq.add_argument("--queue", choices=["sync", "route", "all"], default="all")
    dlq.add_argument("--limit", type=positive, default=20, help="dead letters shown per queue (default 20)")

    upgrade = commands.add_parser("upgrade", parents=[common], help="升级服务: the targets, an offer, a cancel",
                                  description="config: the members, departments and customer groups the enterprise "
                                  "set up for 升级服务 (get_upgrade_service_config). offer: offer the customer a member "
                                  "or a group (a userid / chat_id, or auto: who served them, else the first in range); "
                                  "recorded in the conversation and counted like the route function's offers. "
                                  "cancel: withdraw the customer's offer.")
    upgrade.add_argument("action", choices=["config", "offer", "cancel"])
    upgrade.add_argument("external_userid", metavar="EXTERNAL_USERID", nargs="?", help="the customer (offer, cancel)")
    upgrade.add_argument("--account", metavar="OPEN_KFID", help="the kf account (offer, cancel)")
    upgrade.add_argument("--member", metavar="USERID", help="offer this member (or auto)")
    upgrade.add_argument("--group", metavar="CHAT_ID", help="offer this customer group (or auto)")
    upgrade.add_argument("--wording", default="", help="the invitation's wording")

    send = commands.add_parser("send", parents=[common], help="send a message on an account's behalf "
                               "(conversation API)",
                               description="POST /conversations/EXTERNAL_USERID/messages: send TEXT, or the message "
                               "of --json-message / --file (a JSON string is a text; an object names exactly one "
                               "kind: text, msgmenu, link, miniprogram, image|video|file as {\"s3\": "
                               "\"assets/<key>\"}, business_card, ca_link). The send is named by an idempotency key "
                               "(default: a new one, printed on stderr): retried with --key KEY it is never sent "
                               "twice. Refused by a WeCom rule (state, 48 h window, 5 sends): exit 1.")
    send.add_argument("external_userid", metavar="EXTERNAL_USERID", help="the customer")
    send.add_argument("text", metavar="TEXT", nargs="?", help="a text message")
    send.add_argument("--account", metavar="OPEN_KFID", required=True, help="the kf account (open_kfid)")
    send.add_argument("--json-message", metavar="JSON", help="the message as JSON")
    send.add_argument("--file", type=Path, metavar="MESSAGE.json", help="the message as JSON in a file (- for stdin)")
    send.add_argument("--key", type=parse_key, metavar="IDEMPOTENCY_KEY",
                      help="the send's idempotency key (1-128 printable ASCII): give an earlier send's key to retry it")

    transfer = commands.add_parser("transfer", parents=[common], help="move a session to a servicer, the pool or "
                                   "Kefu's bot (conversation API)",
                                   description="POST /conversations/EXTERNAL_USERID/transfer. Refused by a WeCom rule "
                                   "(the session's state, a userid that is not the account's servicer): exit 1.")
    transfer.add_argument("external_userid", metavar="EXTERNAL_USERID", help="the customer")
    transfer.add_argument("--account", metavar="OPEN_KFID", required=True, help="the kf account (open_kfid)")
    to = transfer.add_mutually_exclusive_group(required=True)
    to.add_argument("--to-servicer", dest="servicer", metavar="USERID", help="to this servicer (state 3)")
    to.add_argument("--to-pool", dest="to", action="store_const", const="pool", help="to the pool (state 2)")
    to.add_argument("--to-bot", dest="to", action="store_const", const="bot",
                    help="to Kefu, held by the API (state 1; only from state 0)")

    end = commands.add_parser("end", parents=[common], help="end a session (conversation API)",
                              description="POST /conversations/EXTERNAL_USERID/end. A session already ended (or "
                              "unknown to Kefu) is refused: exit 1.")
    end.add_argument("external_userid", metavar="EXTERNAL_USERID", help="the customer")
    end.add_argument("--account", metavar="OPEN_KFID", required=True, help="the kf account (open_kfid)")

    link = commands.add_parser("link", parents=[common], help="a scene-tagged contact link (GET /links)",
                               description="A contact URL tagged with SCENE (and --param); --qr writes its QR code.")
    link.add_argument("scene", metavar="SCENE")
    link.add_argument("--param", dest="scene_param", metavar="TEXT", help="scene_param (up to 128 bytes)")
    link.add_argument("--account", help="open_kfid or alias (default: the stack's default account)")
    link.add_argument("--qr", type=Path, metavar="FILE.png", help="write the QR code as PNG")
    link.add_argument("--size", type=positive, help="QR width in pixels (default: the stack's LinkQrSize)")

    accounts = commands.add_parser("accounts", parents=[common], help="kf accounts, servicers and links as "
                                   "config/accounts.yaml says (plan, apply)",
                                   description="plan: compare the file with WeCom (accounts found by name; "
                                   "servicers; the avatar by the digest the last apply recorded; stored links) "
                                   "and show what apply would change. apply: make it so - add and update accounts "
                                   "(avatar uploaded first), servicers in batches of 100 with per-userid results, "
                                   "links through GET /links - then print LinkAccounts. Accounts this app may not "
                                   "manage are never touched; accounts not in the file are deleted only with "
                                   "--delete, and one with open sessions only with --force too.")
    accounts.add_argument("action", choices=["plan", "apply"])
    accounts.add_argument("--file", type=Path, default=Path("config") / "accounts.yaml", metavar="ACCOUNTS.yaml",
                          help="the accounts file (default config/accounts.yaml, else the project's)")
    accounts.add_argument("--delete", action="store_true", help="delete the managed accounts the file does not name")
    accounts.add_argument("--force", action="store_true", help="with --delete: also those with open sessions")
    corps = commands.add_parser("corps", parents=[common], help="provider mode: the corps served, their API keys "
                                "and rules", description="list: the corps that authorized the suite. key CORP: a "
                                "new API key for the corp's systems (X-Kefu-Corp-Key). revoke CORP: its keys stop "
                                "working. rules CORP FILE: check FILE and store it as the corp's routing rules.")
    corps.add_argument("action", choices=["list", "key", "revoke", "rules", "install-link"])
    corps.add_argument("corp", nargs="?", metavar="CORP", help="the corp id (key, revoke, rules)")
    corps.add_argument("file", nargs="?", type=Path, metavar="FILE", help="the rules file (rules)")
    corps.add_argument("--redirect", metavar="URL", help="install-link: where WeCom sends the admin back to")
    corps.add_argument("--state", default="", metavar="S", help="install-link: echoed back to --redirect")
    corps.add_argument("--test", action="store_true", help="install-link: a test authorization")
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "send" and args.text is None and len(extra) == 1 and not extra[0].startswith("-"):
        args.text = extra.pop()  # TEXT after the options: argparse took EUID alone as EUID [TEXT]
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    for name, value in COMMON_DEFAULTS.items():
        if not hasattr(args, name):
            setattr(args, name, value)
    if args.command == "messages":
        if args.external_userid is None and not args.account:
            parser.error("messages: give EXTERNAL_USERID, or --account OPEN_KFID for the account's recent conversations")
        if args.limit is None:
            args.limit = MESSAGES_LIMIT if args.external_userid else CONVERSATIONS_LIMIT
    if args.command == "customer" and (args.external_userid is None) == (args.unionid is None):
        parser.error("customer: give EXTERNAL_USERID or --unionid UNIONID (exactly one)")
    if args.command == "upgrade" and args.action != "config":
        if not args.external_userid or not args.account:
            parser.error(f"upgrade {args.action}: give EXTERNAL_USERID and --account OPEN_KFID")
        if args.action == "offer" and (args.member is None) == (args.group is None):
            parser.error("upgrade offer: give --member USERID|auto or --group CHAT_ID|auto (exactly one)")
    if args.command == "send" and sum(x is not None for x in (args.text, args.json_message, args.file)) != 1:
        parser.error("send: give the message as TEXT, --json-message JSON or --file MESSAGE.json (exactly one)")
    if args.command == "accounts" and args.force and not args.delete:
        parser.error("accounts: --force only matters with --delete (it deletes accounts with open sessions too)")
    if args.command == "corps" and args.action == "install-link" and not args.redirect:
        parser.error("corps install-link needs --redirect URL")
    if args.command == "corps" and args.action not in ("list", "install-link") and not args.corp:
        parser.error(f"corps {args.action} needs the corp id")
    if args.command == "corps" and args.action == "rules" and args.file is None:
        parser.error("corps rules needs the rules file")
    if args.command == "transfer" and args.servicer is not None:
        args.to = "servicer"
    return args


def _http() -> Any:
    import httpx

    return httpx.Client(timeout=HTTP_TIMEOUT)


def _print_json(data: Any) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2, default=str))


def run(args: argparse.Namespace, target: Target) -> int:
    if args.command == "preflight":
        from kefu_cli import preflight

        with _http() as http:
            report = preflight.run(target, http)
        _print_json(report.as_json()) if args.json else print(preflight.render(report))
        return 0 if report.ok else 1

    if args.command == "messages" and args.external_userid is None:
        from kefu_cli import customer, messages

        latest, more = messages.recent(target, args.account, args.limit)
        nicknames = customer.nicknames(target, [str(i["external_userid"]) for i in latest])
        lines = messages.conversation_rows(latest, nicknames)
        if args.json:
            _print_json({"open_kfid": args.account, "conversations": lines, "more": more})
        else:
            print(messages.render_conversations(args.account, lines, more))
        return 0

    if args.command == "messages":
        from kefu_cli import messages

        open_kfid = args.account or messages.find_account(target, args.external_userid)
        items, more = messages.fetch(target, open_kfid, args.external_userid, args.limit)
        lines = messages.rows(items, messages.media_urls(target, items, args.expires))
        if args.json:
            _print_json({"open_kfid": open_kfid, "external_userid": args.external_userid, "items": lines, "more": more})
        else:
            print(messages.render(open_kfid, args.external_userid, lines, more))
        return 0

    if args.command == "customer":
        from kefu_cli import customer

        data = customer.run(target, args.external_userid, args.unionid, args.account, args.limit)
        _print_json(data) if args.json else print(customer.render(data))
        return 0

    if args.command == "stats":
        from kefu_cli import stats

        params = stats.query(args.day_from, args.day_to, args.scene, args.account)
        with _http() as http:
            data = stats.fetch(target, http, params)
        _print_json(data) if args.json else print(stats.render(data))
        return 0

    if args.command == "dlq":
        from kefu_cli import dlq

        names = ["sync", "route"] if args.queue == "all" else [args.queue]
        reports, ok = dlq.run(target, names, args.redrive, args.limit)
        _print_json({"ok": ok, "queues": reports}) if args.json else print(dlq.render(reports))
        return 0 if ok else 1

    if args.command == "upgrade":
        from kefu_cli import upgrade

        if args.action == "config":
            config = upgrade.show_config(target)
            _print_json(config) if args.json else print(upgrade.render_config(config))
            return 0
        if args.action == "offer":
            result = upgrade.offer(target, args.account, args.external_userid, args.member, args.group, args.wording)
        else:
            result = upgrade.cancel(target, args.account, args.external_userid)
        _print_json(result) if args.json else print(upgrade.render_result(result))
        return 0 if result.get("outcome", "sent") == "sent" else 1

    if args.command in ("send", "transfer", "end"):
        from kefu_cli import conversation

        with _http() as http:
            if args.command == "send":
                message = conversation.load_message(args.text, args.json_message, args.file)
                key = args.key or conversation.new_key()
                if not args.key:
                    print(f"kefu: idempotency key {key} (to retry this send without sending twice: --key {key})",
                          file=sys.stderr)
                reply = conversation.send(target, http, args.external_userid, args.account, message, key)
                text = conversation.render_send(reply, args.external_userid, key) if reply.ok else ""
            elif args.command == "transfer":
                reply = conversation.transfer(target, http, args.external_userid, args.account, args.to, args.servicer)
                text = conversation.render_transfer(reply, args.external_userid) if reply.ok else ""
            else:
                reply = conversation.end(target, http, args.external_userid, args.account)
                text = conversation.render_end(reply, args.external_userid) if reply.ok else ""
        if args.json:
            _print_json(reply.body)
        elif reply.ok:
            print(text)
        else:
            print(f"kefu: {reply.problem()}", file=sys.stderr)
        return reply.exit_code

    if args.command == "link":
        from kefu_cli import link

        with _http() as http:
            answer = link.run(target, http, args.scene, args.scene_param, args.account, args.qr, args.size)
        _print_json(answer) if args.json else print(link.render(answer))
        return 0

    if args.command == "accounts":
        from kefu_cli import accounts

        args.file = accounts.resolve_file(args.file)
        if args.action == "plan":
            plan = accounts.plan(target, args.file, args.delete, args.force)
            if args.json:
                _print_json(accounts.plan_json(plan, args.file))
            else:
                print(accounts.render_plan(plan, args.file, target))
            return 1 if plan.blocked else 0
        with _http() as http:
            plan, applied, links = accounts.apply(target, http, args.file, args.delete, args.force)
        result = accounts.apply_json(plan, applied, links, args.file)
        _print_json(result) if args.json else print(accounts.render_apply(plan, applied, links, args.file, target))
        return 0 if result["ok"] else 1

    if args.command == "corps":
        from kefu_cli import corps

        if args.action == "list":
            rows = corps.listed(target)
            _print_json(rows) if args.json else print(corps.render(rows))
        elif args.action == "key":
            api_key = corps.issue_key(target, args.corp)
            _print_json({"corp": args.corp, "api_key": api_key}) if args.json else print(
                f"API key for {args.corp} (shown once; send it as X-Kefu-Corp-Key):\n{api_key}")
        elif args.action == "install-link":
            install = corps.install_link(target, args.redirect, args.state, args.test)
            _print_json(install) if args.json else print(f"{install['url']}\n(valid {install['expires_in']} s)")
        elif args.action == "revoke":
            count = corps.revoke(target, args.corp)
            _print_json({"corp": args.corp, "revoked": count}) if args.json else print(f"{count} key(s) revoked")
        else:
            where = corps.store_rules(target, args.corp, args.file)
            _print_json({"corp": args.corp, "stored": where}) if args.json else print(f"rules stored at {where}")
        return 0

    raise CliError(f"unknown command {args.command}", exit_code=2)  # pragma: no cover - argparse refuses first


def _run_as_corp(args: argparse.Namespace, target: Target) -> int:
    """Provider mode: the command reads and writes the corp's own keys (kefu.tenancy)."""
    import os

    from kefu import tenancy

    if not tenancy.valid_corp_id(args.corp):
        raise CliError(f"--corp {args.corp!r} is not a corp id", exit_code=2)
    os.environ[tenancy.MODE_ENV] = tenancy.PROVIDER
    with tenancy.serving(args.corp):
        return run(args, target)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        target = resolve_target(local=args.local, stack=args.stack, region=args.region, profile=args.profile)
        if args.corp and args.command != "corps":
            return _run_as_corp(args, target)
        return run(args, target)
    except CliError as exc:
        if args.json:
            _print_json({"ok": False, "error": str(exc)})
        print(f"kefu: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("kefu: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # AWS, HTTP and WeCom failures: one line, not a traceback
        if type(exc).__module__.split(".")[0] not in ("botocore", "boto3", "httpx", "kefu"):
            raise
        if args.json:
            _print_json({"ok": False, "error": f"{type(exc).__name__}: {exc}"})
        print(f"kefu: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
