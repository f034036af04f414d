"""Parsing of untrusted callback XML: flat <xml> documents only, no DTDs or entities.

The parser is expat (pyexpat, which boto3 loads anyway) driven directly: a handler that refuses
fires on any DOCTYPE, entity declaration or external entity reference, so no DTD is ever read and
no entity is ever expanded. References to entities that were never declared are expat errors.
An element below a field stops the parse at once, however deep the nesting goes.
"""

from __future__ import annotations

from pyexpat import ExpatError, ParserCreate  # nosec B410 - DTDs and entities are refused below
from typing import NoReturn


class XmlRejected(ValueError):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _forbidden(*_: object) -> NoReturn:
    raise XmlRejected("xml_forbidden", "XML with a DOCTYPE or entity declaration is refused")


def parse_flat(document: str | bytes) -> dict[str, str]:
    """Parse ``<xml><Tag>text</Tag>...</xml>`` into {Tag: text}; refuse DTDs, entities, nesting.

    Text is stripped of surrounding whitespace; text directly inside <xml> (between the fields)
    and attributes are ignored; a repeated tag keeps its last text. Bytes are decoded as their
    XML declaration or byte order mark says (UTF-8 when neither does); str is parsed as it is.
    """
    fields: dict[str, str] = {}
    text: list[str] = []
    depth = 0
    tag = ""

    def start(name: str, _attrs: object) -> None:
        nonlocal depth, tag
        if depth == 1:
            tag = name if "}" not in name else "{" + name
            text.clear()
        elif depth == 0:
            if name != "xml":
                raise XmlRejected("xml_malformed", "root element must be <xml>")
        else:
            raise XmlRejected("xml_malformed", f"element <{tag}> must not have children")
        depth += 1

    def end(_name: str) -> None:
        nonlocal depth
        depth -= 1
        if depth == 1:
            fields[tag] = "".join(text).strip()

    def data(chunk: str) -> None:
        if depth == 2:
            text.append(chunk)

    # The namespace separator makes expat check prefixes as ElementTree did ("a:b" with no
    # declared prefix is malformed); a namespaced name comes back as "uri}local".
    parser = ParserCreate(None, "}")
    parser.buffer_text = True
    parser.StartDoctypeDeclHandler = _forbidden
    parser.EntityDeclHandler = _forbidden
    parser.UnparsedEntityDeclHandler = _forbidden
    parser.ExternalEntityRefHandler = _forbidden
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = data
    try:
        parser.Parse(document, True)
    except XmlRejected as exc:
        if exc.reason == "xml_forbidden":
            raise
        raise _malformed(document, str(exc)) from None
    except (ExpatError, ValueError, LookupError):  # ValueError, LookupError: a declared encoding Python lacks
        raise _malformed(document, "body is not well-formed XML") from None
    return fields


def _malformed(document: str | bytes, message: str) -> XmlRejected:
    """Broken XML; called forbidden when it tries a DOCTYPE or an entity declaration early on,
    even one expat stopped before reaching."""
    head = document[:1024].lower()
    if isinstance(head, str):
        head = head.encode("utf-8", "replace")
    if b"<!doctype" in head or b"<!entity" in head:
        return XmlRejected("xml_forbidden", "XML with a DOCTYPE or entity declaration is refused")
    return XmlRejected("xml_malformed", message)
