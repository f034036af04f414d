"""Parsing of untrusted callback XML: flat <xml> documents only, no DTDs or entities."""

from __future__ import annotations

from xml.etree.ElementTree import ParseError  # nosec B405 - the exception type only; parsing is defusedxml

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring


class XmlRejected(ValueError):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def parse_flat(document: str | bytes) -> dict[str, str]:
    """Parse ``<xml><Tag>text</Tag>...</xml>`` into {Tag: text}; refuse DTDs, entities, nesting."""
    if isinstance(document, str):
        document = document.encode("utf-8")
    head = document[:1024].lower()
    # Cheap early refusal; defusedxml below is the real guard wherever the declaration sits.
    if b"<!doctype" in head or b"<!entity" in head:
        raise XmlRejected("xml_forbidden", "XML with a DOCTYPE or entity declaration is refused")
    try:
        root = fromstring(document, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException:
        raise XmlRejected("xml_forbidden", "XML with a DOCTYPE or entity declaration is refused") from None
    except (ParseError, ValueError):
        raise XmlRejected("xml_malformed", "body is not well-formed XML") from None
    if root.tag != "xml":
        raise XmlRejected("xml_malformed", "root element must be <xml>")
    fields: dict[str, str] = {}
    for child in root:
        if len(child):
            raise XmlRejected("xml_malformed", f"element <{child.tag}> must not have children")
        fields[child.tag] = (child.text or "").strip()
    return fields
