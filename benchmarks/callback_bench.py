"""The callback's own work per event - verify, decrypt, parse - Kefu against wechatpy.

    .venv-bench/bin/python benchmarks/callback_bench.py [--events 2000] [--passes 9]

Both libraries get the same randomly generated callbacks: kf_msg_or_event payloads for random
accounts and tokens, encrypted with Kefu's encrypt under a random EncodingAESKey and signed, as
identical (msg_signature, timestamp, nonce, body) tuples. wechatpy (an independent
implementation of WeCom's scheme, using the `cryptography` package for AES) is installed only in
.venv-bench, which `make bench` creates; the app's environments never see it. Both decryptions
are checked against each other before anything is timed.

Three levels are timed, each as the best of several passes over all events (the two sides
alternate which goes first; the best pass is the least disturbed by other work on the machine):
  full    - Kefu's kefu.callback.read_event (size and parameter checks, kefu.xmlsafe's expat parse
            of envelope and payload, signature, AES, the CallbackEvent dataclass) against wechatpy's
            decrypt_message (xmltodict envelope, signature, AES) + parse_message (the event object);
  xml     - the same without the models: parse_flat + verify_and_decrypt + parse_flat against
            decrypt_message + xmltodict.parse of the payload;
  crypto  - signature and decryption of the Encrypt string only: verify_and_decrypt against
            wechatpy's check_signature (the same two steps).
"""

from __future__ import annotations

import argparse
import gc
import random
import secrets
import string
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "shared"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import bench  # noqa: E402

from kefu import callback  # noqa: E402
from kefu.crypto import WXBizMsgCrypt  # noqa: E402
from kefu.xmlsafe import parse_flat  # noqa: E402

ALNUM = string.ascii_letters + string.digits
MAX_BODY = 64 * 1024


def _wechatpy():
    """wechatpy's WeCom crypto and parser (wechatpy.work in 2.x, wechatpy.enterprise in 1.x)."""
    try:
        from wechatpy.work import parse_message
        from wechatpy.work.crypto import WeChatCrypto
    except ImportError:
        from wechatpy.enterprise import parse_message
        from wechatpy.enterprise.crypto import WeChatCrypto
    return WeChatCrypto, parse_message


def cdata(value: str) -> str:
    return f"<![CDATA[{value}]]>"


def make_events(count: int, seed: int) -> tuple[dict[str, str], list[tuple[str, str, str, bytes, str, str]]]:
    rnd = random.Random(seed)
    corp_id = "ww" + "".join(rnd.choice(ALNUM) for _ in range(16))
    keys = {
        "token": "".join(rnd.choice(ALNUM) for _ in range(rnd.randint(8, 32))),
        "aes_key": "".join(rnd.choice(ALNUM) for _ in range(43)),
        "corp_id": corp_id,
    }
    crypt = WXBizMsgCrypt(keys["token"], keys["aes_key"], corp_id)
    events = []
    now = int(time.time())
    for _ in range(count):
        open_kfid = "wk" + "".join(rnd.choice(ALNUM) for _ in range(30))
        token = "ENC" + "".join(rnd.choice(ALNUM) for _ in range(44))
        payload = (f"<xml><ToUserName>{cdata(corp_id)}</ToUserName><CreateTime>{now - rnd.randint(0, 600)}</CreateTime>"
                   f"<MsgType>{cdata('event')}</MsgType><Event>{cdata('kf_msg_or_event')}</Event>"
                   f"<Token>{cdata(token)}</Token><OpenKfId>{cdata(open_kfid)}</OpenKfId></xml>")
        encrypted = crypt.encrypt(payload, secrets.token_bytes(16))
        timestamp, nonce = str(now - rnd.randint(0, 300)), str(rnd.randint(10**9, 10**10 - 1))
        body = (f"<xml><ToUserName>{cdata(corp_id)}</ToUserName><Encrypt>{cdata(encrypted)}</Encrypt>"
                f"<AgentID>{cdata(str(rnd.randint(1000000, 1000099)))}</AgentID></xml>").encode()
        events.append((crypt.sign(timestamp, nonce, encrypted), timestamp, nonce, body, encrypted, open_kfid))
    return keys, events


def check_agreement(kefu: WXBizMsgCrypt, wechat, parse_message, events) -> None:
    import xmltodict

    for signature, timestamp, nonce, body, encrypted, open_kfid in events:
        query = {"msg_signature": signature, "timestamp": timestamp, "nonce": nonce}
        event = callback.read_event(kefu, query, body, MAX_BODY)
        theirs = wechat.decrypt_message(body, signature, timestamp, nonce)
        ours = kefu.verify_and_decrypt(signature, timestamp, nonce, encrypted)
        if theirs != ours or event.open_kfid != open_kfid:
            raise SystemExit("Kefu and wechatpy disagree on an event; nothing timed")
        if xmltodict.parse(theirs)["xml"]["OpenKfId"] != open_kfid or parse_message(theirs) is None:
            raise SystemExit("wechatpy parsed an event differently; nothing timed")
        try:
            wechat.decrypt_message(body, signature[::-1], timestamp, nonce)
        except Exception:  # noqa: BLE001 - wechatpy raises its InvalidSignatureException
            pass
        else:
            raise SystemExit("wechatpy accepted a bad signature; nothing timed")


def time_pass(work: Callable[[tuple], object], events) -> float:
    gc.collect()
    started = time.perf_counter()
    for event in events:
        work(event)
    return (time.perf_counter() - started) / len(events) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--passes", type=int, default=9)
    parser.add_argument("--seed", type=int, default=secrets.randbits(32))
    args = parser.parse_args()

    import xmltodict

    WeChatCrypto, parse_message = _wechatpy()
    keys, events = make_events(args.events, args.seed)
    kefu = WXBizMsgCrypt(keys["token"], keys["aes_key"], keys["corp_id"])
    wechat = WeChatCrypto(keys["token"], keys["aes_key"], keys["corp_id"])
    check_agreement(kefu, wechat, parse_message, events)

    def kefu_full(e):
        return callback.read_event(kefu, {"msg_signature": e[0], "timestamp": e[1], "nonce": e[2]}, e[3], MAX_BODY)

    def wechat_full(e):
        return parse_message(wechat.decrypt_message(e[3], e[0], e[1], e[2]))

    def kefu_xml(e):
        return parse_flat(kefu.verify_and_decrypt(e[0], e[1], e[2], parse_flat(e[3])["Encrypt"]))

    def wechat_xml(e):
        return xmltodict.parse(wechat.decrypt_message(e[3], e[0], e[1], e[2]))["xml"]

    def kefu_crypto(e):
        return kefu.verify_and_decrypt(e[0], e[1], e[2], e[4])

    def wechat_crypto(e):
        return wechat.check_signature(e[0], e[1], e[2], e[4])

    levels = {"full": (kefu_full, wechat_full), "xml": (kefu_xml, wechat_xml), "crypto": (kefu_crypto, wechat_crypto)}
    results: dict[str, tuple[float, float]] = {}
    for level, (ours, theirs) in levels.items():
        for fn in (ours, theirs):  # one untimed pass each: imports, caches
            time_pass(fn, events[:200])
        kefu_times, wechat_times = [], []
        for i in range(args.passes):
            order = ((ours, kefu_times), (theirs, wechat_times))
            for fn, sink in order if i % 2 == 0 else order[::-1]:
                sink.append(time_pass(fn, events))
        results[level] = (min(kefu_times), min(wechat_times))

    import cryptography
    import wechatpy
    from Crypto import __version__ as pycryptodome_version

    backend = _backend_name()
    print(f"callback: {args.events} distinct signed kf_msg_or_event callbacks (seed {args.seed}), "
          f"best of {args.passes} passes, per event")
    print(f"  wechatpy {wechatpy.__version__} (AES via {backend}, cryptography {cryptography.__version__}); "
          f"Kefu (AES via pycryptodome {pycryptodome_version})")
    labels = {"full": "verify + decrypt + parse (read_event vs decrypt_message + parse_message)",
              "xml": "verify + decrypt + XML only (no event model)",
              "crypto": "signature + AES only"}
    for level, (ours, theirs) in results.items():
        print(f"  {labels[level]}: Kefu {ours:.1f} us, wechatpy {theirs:.1f} us, "
              f"Kefu/wechatpy = {ours / theirs:.2f}")
    steps = breakdown(kefu, events)
    print("  where Kefu's time goes (best of 5 passes, per event): " +
          ", ".join(f"{name} {us:.1f} us" for name, us in steps.items()))
    full_k, full_w = results["full"]
    bench("callback.kefu_per_event", round(full_k, 1), "us", "Kefu read_event: verify + decrypt + parse")
    bench("callback.wechatpy_per_event", round(full_w, 1), "us", "wechatpy decrypt_message + parse_message")
    bench("callback.ratio", round(full_k / full_w, 2), "x", "Kefu time / wechatpy time, same inputs, one run")
    for level in ("xml", "crypto"):
        ours, theirs = results[level]
        bench(f"callback.{level}.kefu_per_event", round(ours, 1), "us", labels[level])
        bench(f"callback.{level}.wechatpy_per_event", round(theirs, 1), "us", labels[level])
        bench(f"callback.{level}.ratio", round(ours / theirs, 2), "x", labels[level])


def breakdown(kefu: WXBizMsgCrypt, events, passes: int = 5) -> dict[str, float]:
    """Kefu's path step by step, each step timed over all events."""
    from kefu.callback import CallbackEvent

    envelopes = [parse_flat(e[3]) for e in events]
    plains = [kefu.verify_and_decrypt(e[0], e[1], e[2], e[4]) for e in events]
    payloads = [parse_flat(p) for p in plains]
    steps = {
        "envelope XML (expat)": (lambda i: parse_flat(events[i][3])),
        "signature": (lambda i: kefu.verify(events[i][0], events[i][1], events[i][2], envelopes[i]["Encrypt"])),
        "AES decrypt + checks": (lambda i: kefu.decrypt(envelopes[i]["Encrypt"])),
        "payload XML (expat)": (lambda i: parse_flat(plains[i])),
        "event (dataclass)": (lambda i: CallbackEvent.from_xml_fields(payloads[i])),
    }
    indexes = list(range(len(events)))
    return {name: min(time_pass(step, indexes) for _ in range(passes)) for name, step in steps.items()}


def _backend_name() -> str:
    from wechatpy.crypto import base

    return base.WeChatCipher.__module__.rsplit(".", 1)[-1]


if __name__ == "__main__":
    main()
