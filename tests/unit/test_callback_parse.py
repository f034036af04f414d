"""The callback's parsing of untrusted input: kefu.xmlsafe.parse_flat (expat with DTDs and entities
refused) and kefu.callback.CallbackEvent (the decrypted event's fields)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kefu.callback import BadEvent, CallbackEvent, CallbackRejected, read_event
from kefu.crypto import WXBizMsgCrypt
from kefu.xmlsafe import XmlRejected, parse_flat

# --------------------------------------------------------------------------- the event

GOOD_FIELDS = {
    "ToUserName": "ww0123456789abcdef",
    "CreateTime": "1348831860",
    "MsgType": "event",
    "Event": "kf_msg_or_event",
    "Token": "ENCApHxnGDNAVNY4AaSJKj4Tb5mwsEMzxhFmHVGcra996NR",
    "OpenKfId": "wkxxxxxxx",
}


def test_callback_event_from_xml_fields() -> None:
    event = CallbackEvent.from_xml_fields(dict(GOOD_FIELDS))
    assert event.to_user_name == "ww0123456789abcdef"
    assert event.create_time == 1348831860
    assert event.msg_type == "event"
    assert event.event == "kf_msg_or_event"
    assert event.is_kf_msg_or_event
    assert event.token == "ENCApHxnGDNAVNY4AaSJKj4Tb5mwsEMzxhFmHVGcra996NR"
    assert event.open_kfid == "wkxxxxxxx"
    assert event.extra == {}


def test_callback_event_optional_and_extra_tags() -> None:
    fields = {
        "ToUserName": "ww1",
        "CreateTime": " 1348831860\n",
        "MsgType": "event",
        "Event": "kf_account_auth_change",
        "FromUserName": "sys",
        "AuthAddOpenKfId": "wkNEW",
        "AuthDelOpenKfId": None,
        "Token": None,
    }
    event = CallbackEvent.from_xml_fields(fields)
    assert event.create_time == 1348831860
    assert event.token is None and event.open_kfid is None
    assert not event.is_kf_msg_or_event
    assert event.event == CallbackEvent.KF_ACCOUNT_AUTH_CHANGE
    assert event.extra == {"FromUserName": "sys", "AuthAddOpenKfId": "wkNEW", "AuthDelOpenKfId": ""}


@pytest.mark.parametrize("create_time", ["soon", "", "  ", "1348831860.5", "0x10", "1e3", "1 000", "1.", "1__0",
                                         "١٢٣", "+-1"])
def test_callback_event_bad_create_time(create_time: str) -> None:
    with pytest.raises(BadEvent) as info:
        CallbackEvent.from_xml_fields({**GOOD_FIELDS, "CreateTime": create_time})
    assert info.value.tags == ("CreateTime",)


@pytest.mark.parametrize(("create_time", "value"), [("+5", 5), ("-5", -5), ("007", 7), ("1_000", 1000), ("1.0", 1),
                                                    ("1700000000.00", 1700000000), ("\u00a012\u2003", 12)])
def test_callback_event_integer_forms_accepted_as_before(create_time: str, value: int) -> None:
    # the forms the pydantic model accepted, so no callback WeCom sends is refused now
    assert CallbackEvent.from_xml_fields({**GOOD_FIELDS, "CreateTime": create_time}).create_time == value


@pytest.mark.parametrize("missing", ["ToUserName", "CreateTime", "MsgType", "Event"])
def test_callback_event_missing_required(missing: str) -> None:
    fields = {k: v for k, v in GOOD_FIELDS.items() if k != missing}
    with pytest.raises(BadEvent) as info:
        CallbackEvent.from_xml_fields(fields)
    assert info.value.tags == (missing,)


def test_callback_event_names_every_bad_tag_sorted() -> None:
    with pytest.raises(BadEvent) as info:
        CallbackEvent.from_xml_fields({"CreateTime": "x", "MsgType": "event", "ToUserName": None})
    assert info.value.tags == ("CreateTime", "Event", "ToUserName")
    assert str(info.value) == "payload has missing or invalid CreateTime, Event, ToUserName"


def test_callback_event_empty_text_is_a_value() -> None:
    event = CallbackEvent.from_xml_fields({**GOOD_FIELDS, "ToUserName": "", "Token": "", "OpenKfId": ""})
    assert (event.to_user_name, event.token, event.open_kfid) == ("", "", "")


def test_callback_event_snake_case_names_are_not_tags() -> None:
    # only the PascalCase XML tags are recognised; anything else lands in extra
    fields = {**GOOD_FIELDS, "open_kfid": "other"}
    event = CallbackEvent.from_xml_fields(fields)
    assert event.open_kfid == "wkxxxxxxx"
    assert event.extra == {"open_kfid": "other"}


def test_callback_event_is_frozen_and_checks_direct_construction() -> None:
    event = CallbackEvent("ww", 1, "event", "kf_msg_or_event")
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.event = "other"  # type: ignore[misc]
    with pytest.raises(BadEvent) as info:
        CallbackEvent("ww", "1", "event", None)  # type: ignore[arg-type]
    assert info.value.tags == ("CreateTime", "Event")
    with pytest.raises(BadEvent):
        CallbackEvent("ww", True, "event", "e")  # a bool is not a time


TOKEN, AES_KEY, CORP = "QDG6eK", "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C", "wwcorp"
CRYPT = WXBizMsgCrypt(TOKEN, AES_KEY, CORP)


def _post(payload: str) -> tuple[dict[str, str], bytes]:
    encrypted = CRYPT.encrypt(payload)
    query = {"msg_signature": CRYPT.sign("1800000000", "7", encrypted), "timestamp": "1800000000", "nonce": "7"}
    return query, f"<xml><ToUserName><![CDATA[{CORP}]]></ToUserName><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>".encode()


def test_read_event_names_the_bad_tags_in_its_400() -> None:
    query, body = _post("<xml><ToUserName>ww</ToUserName><CreateTime>soon</CreateTime><MsgType>event</MsgType></xml>")
    with pytest.raises(CallbackRejected) as info:
        read_event(CRYPT, query, body, 65536)
    assert (info.value.status, info.value.error) == (400, "bad_payload")
    assert info.value.message == "payload has missing or invalid CreateTime, Event"


def test_read_event_returns_the_event() -> None:
    payload = "".join(f"<{tag}><![CDATA[{text}]]></{tag}>" for tag, text in GOOD_FIELDS.items())
    query, body = _post(f"<xml>{payload}</xml>")
    event = read_event(CRYPT, query, body, 65536)
    assert event == CallbackEvent.from_xml_fields(GOOD_FIELDS)


@pytest.mark.parametrize(("payload", "error"), [
    ("<xml><MsgType>text</MsgType></xml>", "bad_payload"),
    ('<!DOCTYPE xml [<!ENTITY x "boom">]><xml><Event>&x;</Event></xml>', "xml_forbidden"),
    ("<xml><Event>kf_msg_or_event", "xml_malformed"),
])
def test_read_event_refuses_bad_payloads(payload: str, error: str) -> None:
    query, body = _post(payload)
    with pytest.raises(CallbackRejected) as info:
        read_event(CRYPT, query, body, 65536)
    assert (info.value.status, info.value.error) == (400, error)


# --------------------------------------------------------------------------- parse_flat

ENVELOPE = (b"<xml><ToUserName><![CDATA[ww1]]></ToUserName><Encrypt><![CDATA[abc+/=]]></Encrypt>"
            b"<AgentID><![CDATA[1000002]]></AgentID></xml>")


def _reason(document: str | bytes) -> str:
    with pytest.raises(XmlRejected) as info:
        parse_flat(document)
    return info.value.reason


def test_flat_document_to_fields() -> None:
    assert parse_flat(ENVELOPE) == {"ToUserName": "ww1", "Encrypt": "abc+/=", "AgentID": "1000002"}


def test_text_forms() -> None:
    doc = ('<?xml version="1.0" encoding="UTF-8"?>\n<xml>\n  <A> x &amp; &lt;y&gt; &#20013; </A>\n  <B/>\n'
           "  <C>one<![CDATA[ two ]]>three</C><D a='1'>attr ignored</D>text at the root ignored<!-- c --><?pi x?></xml>\n")
    assert parse_flat(doc) == {"A": "x & <y> 中", "B": "", "C": "one two three", "D": "attr ignored"}
    assert parse_flat(doc.encode()) == parse_flat(doc)


def test_a_repeated_tag_keeps_its_last_text() -> None:
    assert parse_flat("<xml><A>1</A><A>2</A></xml>") == {"A": "2"}


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be"])
def test_bytes_in_other_encodings(encoding: str) -> None:
    decl = '<?xml version="1.0" encoding="UTF-16"?>' if encoding.startswith("utf-16-") else ""
    data = (decl + "<xml><A>中文</A></xml>").encode(encoding)
    if encoding in ("utf-16-le", "utf-16-be"):
        data = ("\ufeff" + decl + "<xml><A>中文</A></xml>").encode(encoding)
    assert parse_flat(data) == {"A": "中文"}


def test_latin1_declared() -> None:
    assert parse_flat('<?xml version="1.0" encoding="ISO-8859-1"?><xml><A>é</A></xml>'.encode("latin-1")) == {"A": "é"}


@pytest.mark.parametrize("document", [
    b'<!DOCTYPE xml [<!ENTITY x "boom">]><xml><A>&x;</A></xml>',
    b'<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY e SYSTEM "file:///etc/passwd">]><xml><Encrypt>&e;</Encrypt></xml>',
    b'<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]><xml><A>&lol2;</A></xml>',
    b'<!DOCTYPE xml SYSTEM "http://example.com/x.dtd"><xml><A>1</A></xml>',
    b'<!DOCTYPE xml [<!ENTITY % p SYSTEM "http://example.com/p">%p;]><xml/>',
    b"<!DOCTYPE xml><xml><A>1</A></xml>",
    b'<!DOCTYPE xml [<!ENTITY x "boom">]><xml><A>&x;</A>',  # broken as well: still called forbidden
    ' <!doctype xml [<!ENTITY x "y">]><xml><A>&x;</A></xml>',
])
def test_dtds_and_entities_are_forbidden(document: str | bytes) -> None:
    assert _reason(document) == "xml_forbidden"


def test_the_doctype_handler_fires_wherever_the_declaration_sits() -> None:
    padding = "<!-- " + "x" * 4096 + " -->"
    assert _reason(f'{padding}<!DOCTYPE xml [<!ENTITY x "boom">]><xml><A>&x;</A></xml>') == "xml_forbidden"


def test_doctype_words_inside_text_are_only_text() -> None:
    assert parse_flat("<xml><A><![CDATA[<!DOCTYPE x><!ENTITY y>]]></A></xml>") == {"A": "<!DOCTYPE x><!ENTITY y>"}


@pytest.mark.parametrize("document", [
    b"", b"   ", b"<xml>", b"<xml><Encrypt>", b"not xml", b"<xml></xmk>", b"<xml/><xml/>", b"<xml>&undefined;</xml>",
    b"<xml><A>&undefined;</A></xml>", b"<xml><p:A>1</p:A></xml>", b"\xff\xfe\x00junk", b"<xml><A>\xff</A></xml>",
    b'<?xml version="1.0" encoding="no-such-encoding"?><xml/>', b'<?xml version="1.0" encoding="utf-32"?><xml/>',
    b"<root><A>1</A></root>", b"<xml xmlns='urn:x'><A>1</A></xml>", b"<xml><A><B>1</B></A></xml>",
    b"<xml><A>1<B/></A></xml>",
])
def test_malformed(document: bytes) -> None:
    assert _reason(document) == "xml_malformed"


def test_nesting_is_refused_at_the_first_child_however_deep() -> None:
    deep = b"<xml>" + b"<a>" * 200_000 + b"</a>" * 200_000 + b"</xml>"
    started = time.perf_counter()
    with pytest.raises(XmlRejected) as info:
        parse_flat(deep)
    assert info.value.reason == "xml_malformed" and "<a> must not have children" in str(info.value)
    assert time.perf_counter() - started < 0.5


def test_a_declared_namespace_names_the_field_as_elementtree_did() -> None:
    assert parse_flat("<xml xmlns:p='urn:x'><p:A>1</p:A></xml>") == {"{urn:x}A": "1"}


# The parse before this one: defusedxml's ElementTree with DTDs, entities and external references
# forbidden. The expat parser must agree with it on every document (same fields, or a refusal
# with the same reason) except one case: a well-formed document that merely mentions a DOCTYPE
# or an ENTITY in its text, which that parse refused on sight and this one reads.

def _old_parse(document: str | bytes) -> dict[str, str]:
    defused = pytest.importorskip("defusedxml.ElementTree")
    from defusedxml import DefusedXmlException

    if isinstance(document, str):
        document = document.encode("utf-8")
    head = document[:1024].lower()
    if b"<!doctype" in head or b"<!entity" in head:
        raise XmlRejected("xml_forbidden", "")
    try:
        root = defused.fromstring(document, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException:
        raise XmlRejected("xml_forbidden", "") from None
    except (SyntaxError, ValueError, LookupError):  # ParseError is a SyntaxError
        raise XmlRejected("xml_malformed", "") from None
    if root.tag != "xml":
        raise XmlRejected("xml_malformed", "")
    fields = {}
    for child in root:
        if len(child):
            raise XmlRejected("xml_malformed", "")
        fields[child.tag] = (child.text or "").strip()
    return fields


def _outcome(parse: Callable[[str | bytes], dict[str, str]], document: str | bytes) -> tuple[str, object]:
    try:
        return "ok", parse(document)
    except XmlRejected as exc:
        return "refused", exc.reason


TAGS = st.sampled_from(["ToUserName", "Encrypt", "CreateTime", "Event", "A", "p:B", "xml"])
TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12).filter(
    lambda t: "<!doctype" not in t.lower() and "<!entity" not in t.lower())
PIECES = st.one_of(
    st.builds(lambda t, x: f"<{t}>{x}</{t}>", TAGS, TEXT),
    st.builds(lambda t, x: f"<{t}><![CDATA[{x}]]></{t}>", TAGS, TEXT.filter(lambda t: "]]>" not in t)),
    st.builds(lambda t: f"<{t}/>", TAGS),
    st.builds(lambda t, u: f"<{t}><{u}>x</{u}></{t}>", TAGS, TAGS),
    TEXT, st.sampled_from(["<!-- c -->", "&amp;", "&#20013;", "&bad;", "<?pi x?>", "<", "]]>", "<!DOCTYPE xml>"]),
)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(decl=st.sampled_from(["", '<?xml version="1.0"?>', '<?xml version="1.0" encoding="UTF-8"?>\n', "\ufeff"]),
       root=st.sampled_from(["xml", "XML", "xml a='1'", "xml xmlns='urn:x'", "root"]),
       pieces=st.lists(PIECES, max_size=6), encoding=st.sampled_from([None, "utf-8", "utf-16"]))
def test_same_answers_as_the_defusedxml_parse(decl: str, root: str, pieces: list[str], encoding: str | None) -> None:
    document: str | bytes = f"{decl}<{root}>{''.join(pieces)}</{root.split()[0]}>"
    if encoding is not None:
        assert isinstance(document, str)
        document = document.replace("UTF-8", "UTF-16") if encoding == "utf-16" else document
        document = document.encode(encoding)
    assert _outcome(parse_flat, document) == _outcome(_old_parse, document)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.binary(max_size=300))
def test_random_bytes_are_refused_or_read_never_raise_otherwise(data: bytes) -> None:
    try:
        fields = parse_flat(data)
    except XmlRejected as exc:
        assert exc.reason in ("xml_malformed", "xml_forbidden")
    else:
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in fields.items())
