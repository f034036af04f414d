"""WXBizMsgCrypt against the two published vector sets, plus random round-trips."""

from __future__ import annotations

import base64
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kefu.crypto import BLOCK, CryptoError, WXBizMsgCrypt, _cbc_decrypt, signature
from kefu.xmlsafe import parse_flat

# Tencent's official sample vector (WeCom doc 90968 / WXBizMsgCrypt samples).
TENCENT = WXBizMsgCrypt("QDG6eK", "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C", "wx5823bf96d3bd56c7")
TENCENT_ECHO = "P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ=="
TENCENT_POST = (
    "RypEvHKD8QQKFhvQ6QleEB4J58tiPdvo+rtK1I9qca6aM/wvqnLSV5zEPeusUiX5L5X/0lWfrf0QADHHhGd3QczcdCUpj911L3vg3W/sYYvuJT"
    "s3TUUkSUXxaccAS0qhxchrRYt66wiSpGLYL42aM6A8dTT+6k4aSknmPj48kzJs8qLjvd4Xgpue06DOdnLxAUHzM6+kDZ+HMZfJYuR+LtwGc2hgf5"
    "gsijff0ekUNXZiqATP7PF5mZxZ3Izoun1s4zG4LUMnvw2r+KqCKIw+3IQH03v+BCA9nMELNqbSf6tiWSrXJB3LAVGUcallcrw8V2t9EL4EhzJWrQ"
    "Uax5wLVMNS0+rUPA3k22Ncx4XXZS9o0MBH27Bo6BpNelZpS+/uh9KsNlY6bHCmJU9p8g7m3fVKn28H3KDYA5Pl/T8Z1ptDAVe0lXdQ2YoyyH2uyP"
    "IGHBZZIs2pDBS8R07+qN+E7Q=="
)
TENCENT_POST_PLAIN = (
    "<xml><ToUserName><![CDATA[wx5823bf96d3bd56c7]]></ToUserName>\n<FromUserName><![CDATA[mycreate]]></FromUserName>\n"
    "<CreateTime>1409659813</CreateTime>\n<MsgType><![CDATA[text]]></MsgType>\n<Content><![CDATA[hello]]></Content>\n"
    "<MsgId>4561255354251345929</MsgId>\n<AgentID>218</AgentID>\n</xml>"
)

# wechatpy's tests/test_crypto.py vector.
WECHATPY = WXBizMsgCrypt("123456", "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR", "wx49f0ab532d5d035a")
WECHATPY_ECHO = "4ByGGj+sVCYcvGeQYhaKIk1o0pQRNbRjxybjTGblXrBaXlTXeOo1+bXFXDQQb1o6co6Yh9Bv41n7hOchLF6p+Q=="
WECHATPY_POST = (
    "RgqEoJj5A4EMYlLvWO1F86ioRjZfaex/gePD0gOXTxpsq5Yj4GNglrBb8I2BAJVODGajiFnXBu7mCPatfjsu6IHCrsTyeDXzF6Bv283dGymzxh6y"
    "dJRvZsryDyZbLTE7rhnus50qGPMfp2wASFlzEgMW9z1ef/RD8XzaFYgm7iTdaXpXaG4+BiYyolBug/gYNx410cvkKR2/nPwBiT+P4hIiOAQqGp/T"
    "ywZBtDh1yCF2KOd0gpiMZ5jSw3e29mTvmUHzkVQiMS6td7vXUaWOMZnYZlF3So2SjHnwh4jYFxdgpkHHqIrH/54SNdshoQgWYEvccTKe7FS709/5"
    "t6NMxuGhcUGAPOQipvWTT4dShyqio7mlsl5noTrb++x6En749zCpQVhDpbV6GDnTbcX2e8K9QaNWHp91eBdCRxthuL0="
)
WECHATPY_REPLY = (
    "<xml>\n<MsgType><![CDATA[text]]></MsgType>\n<Content><![CDATA[test]]></Content>\n"
    "<FromUserName><![CDATA[wx49f0ab532d5d035a]]></FromUserName>\n<ToUserName><![CDATA[messense]]></ToUserName>\n"
    "<AgentID>1</AgentID>\n<CreateTime>1411525903</CreateTime>\n</xml>"
)


def _pad_length(crypto: WXBizMsgCrypt, encrypted: str) -> int:
    from Crypto.Cipher import AES

    key = crypto._key  # noqa: SLF001 - the test inspects the padding the vector carries
    return AES.new(key, AES.MODE_CBC, key[:16]).decrypt(base64.b64decode(encrypted))[-1]


def test_tencent_url_verification() -> None:
    plain = TENCENT.verify_and_decrypt("5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3", "1409659589", "263014780", TENCENT_ECHO)
    assert plain == "1616140317555161061"
    assert _pad_length(TENCENT, TENCENT_ECHO) == 7


def test_tencent_post_with_pad_30() -> None:
    plain = TENCENT.verify_and_decrypt("477715d11cdb4164915debcba66cb864d751f3e6", "1409659813", "1372623149", TENCENT_POST)
    assert plain == TENCENT_POST_PLAIN
    assert _pad_length(TENCENT, TENCENT_POST) == 30  # a 16-byte unpadder would reject this
    assert parse_flat(plain)["Content"] == "hello"


def test_wechatpy_url_verification_and_wrong_nonce() -> None:
    sig = "dd6b9c95b495b3f7e2901bfbc76c664930ffdb96"
    assert WECHATPY.verify_and_decrypt(sig, "1411443780", "437374425", WECHATPY_ECHO) == "5927782489442352469"
    with pytest.raises(CryptoError) as info:
        WECHATPY.verify_and_decrypt(sig, "1411443780", "437374424", WECHATPY_ECHO)
    assert info.value.reason == "bad_signature"


def test_wechatpy_post_with_pad_1() -> None:
    plain = WECHATPY.verify_and_decrypt("74d92dfeb87ba7c714f89d98870ae5eb62dff26d", "1411525903", "461056294", WECHATPY_POST)
    fields = parse_flat(plain)
    assert (fields["FromUserName"], fields["Content"]) == ("messense", "test")
    assert _pad_length(WECHATPY, WECHATPY_POST) == 1


def test_wechatpy_encrypt_direction_is_reproduced_exactly() -> None:
    encrypted = WECHATPY.encrypt(WECHATPY_REPLY, random16=b"1234567890123456")
    assert encrypted.startswith("9s4gMv99m88kKTh/H8IdkOiMg6bis")
    assert encrypted.endswith("v3kFxtAGVRe3ypD3WeK2XeFYFMNMpatF9XiKzHo3")
    assert WECHATPY.sign("1411525903", "461056294", encrypted) == "407518b7649e86ef23978113f92d27afa9296533"


def test_signature_sorts_the_four_strings() -> None:
    assert signature("b", "a", "d", "c") == signature("a", "b", "c", "d")
    assert signature("a", "b", "c", "d") != signature("a", "b", "c", "e")


def test_uppercase_signature_is_accepted() -> None:
    TENCENT.verify("5C45FF5E21C57E6AD56BAC8758B79B1D9AC89FD3", "1409659589", "263014780", TENCENT_ECHO)


def test_wrong_receiveid_is_rejected() -> None:
    other = WXBizMsgCrypt("QDG6eK", "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C", "wwsomeoneelse")
    with pytest.raises(CryptoError) as info:
        other.decrypt(TENCENT_POST)
    assert info.value.reason == "bad_receiveid"


@pytest.mark.parametrize(
    ("ciphertext", "reason"),
    [
        ("not base64!!", "bad_base64"),
        (base64.b64encode(b"short").decode(), "bad_ciphertext"),
        (base64.b64encode(bytes(32)).decode(), "bad_padding"),  # decrypts to garbage with a bad pad byte
    ],
)
def test_garbage_ciphertext_is_rejected(ciphertext: str, reason: str) -> None:
    with pytest.raises(CryptoError) as info:
        WECHATPY.decrypt(ciphertext)
    assert info.value.reason in {reason, "bad_padding", "bad_ciphertext"}


def _encrypt_raw(crypto: WXBizMsgCrypt, plain: bytes) -> str:
    from Crypto.Cipher import AES

    key = crypto._key  # noqa: SLF001
    return base64.b64encode(AES.new(key, AES.MODE_CBC, key[:16]).encrypt(plain)).decode()


@pytest.mark.parametrize("pad", [0, 33, 255])
def test_pad_value_out_of_range_is_rejected(pad: int) -> None:
    body = b"x" * 16 + struct.pack(">I", 2) + b"hi" + b"wx49f0ab532d5d035a"
    body += b"\x00" * (-len(body) % BLOCK)
    body = body[:-1] + bytes([pad])
    with pytest.raises(CryptoError) as info:
        WECHATPY.decrypt(_encrypt_raw(WECHATPY, body))
    assert info.value.reason == "bad_padding"


def test_length_prefix_beyond_payload_is_rejected() -> None:
    body = b"x" * 16 + struct.pack(">I", 10_000) + b"hi"
    n = BLOCK - len(body) % BLOCK
    with pytest.raises(CryptoError) as info:
        WECHATPY.decrypt(_encrypt_raw(WECHATPY, body + bytes([n]) * n))
    assert info.value.reason == "bad_ciphertext"


@pytest.mark.parametrize("size", range(0, 40))
def test_every_pad_length_round_trips(size: int) -> None:
    # random(16) + length(4) + corpid(18) + size bytes: sizes 0..39 cover pad values 1..32
    message = "中" * (size // 3) + "a" * (size % 3)
    encrypted = WECHATPY.encrypt(message)
    assert WECHATPY.decrypt(encrypted) == message


def test_pad_values_1_and_32_both_occur() -> None:
    seen = {_pad_length(WECHATPY, WECHATPY.encrypt("a" * n)) for n in range(40)}
    assert {1, 32} <= seen


@settings(max_examples=300, deadline=None)
@given(message=st.text(), token=st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=32),
       timestamp=st.integers(min_value=0, max_value=2**32).map(str), nonce=st.text(alphabet="0123456789", min_size=1, max_size=12))
def test_random_round_trip_with_signature(message: str, token: str, timestamp: str, nonce: str) -> None:
    crypto = WXBizMsgCrypt(token, "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR", "ww测试corp")
    encrypted = crypto.encrypt(message)
    assert crypto.verify_and_decrypt(crypto.sign(timestamp, nonce, encrypted), timestamp, nonce, encrypted) == message


def test_one_instance_decrypts_message_after_message() -> None:
    # Decryption reuses one ECB object per key; CBC chaining must restart at the IV every time.
    crypto = WXBizMsgCrypt("t", "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR", "wwcorp")
    messages = [f"<xml><N>{n}</N></xml>" * (n % 7 + 1) for n in range(50)]
    encrypted = [crypto.encrypt(m) for m in messages]
    assert [crypto.decrypt(e) for e in encrypted] == messages
    assert [crypto.decrypt(e) for e in reversed(encrypted)] == messages[::-1]


def test_decryption_follows_a_key_swapped_on_the_instance() -> None:
    crypto = WXBizMsgCrypt("t", "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR", "wwcorp")
    other = WXBizMsgCrypt("t", "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C", "wwcorp")
    assert crypto.decrypt(crypto.encrypt("a")) == "a"
    crypto._key = other._key  # noqa: SLF001 - as the integration tests forge a sender
    assert crypto.decrypt(other.encrypt("b")) == "b"


@settings(max_examples=200, deadline=None)
@given(plain=st.binary(min_size=16, max_size=400).map(lambda b: b[: len(b) // 16 * 16]))
def test_cbc_decryption_matches_pycryptodome_cbc(plain: bytes) -> None:
    from Crypto.Cipher import AES

    key = WECHATPY._key  # noqa: SLF001
    data = AES.new(key, AES.MODE_CBC, key[:16]).encrypt(plain)
    assert _cbc_decrypt(AES.new(key, AES.MODE_ECB), key[:16], data) == plain


@pytest.mark.parametrize("ciphertext", ["中文", "QUJD\nREVG", "QUJD REVG", "QUJDREVG====", "=QUJDREVG", "QUJDREV"])
def test_malformed_base64_is_bad_base64(ciphertext: str) -> None:
    with pytest.raises(CryptoError) as info:
        WECHATPY.decrypt(ciphertext)
    assert info.value.reason == "bad_base64"


def test_empty_ciphertext_is_bad_ciphertext() -> None:
    with pytest.raises(CryptoError) as info:
        WECHATPY.decrypt("")
    assert info.value.reason == "bad_ciphertext"
