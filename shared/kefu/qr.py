"""QR codes of contact links (GET /links?format=svg|png). segno is imported on the first QR
request only, so a cold start serving JSON never pays for it."""

from __future__ import annotations

import functools

QR_MIN_SIZE = 64
QR_MAX_SIZE = 1024
QR_BORDER = 4  # the quiet zone the QR standard asks for, in modules
QR_ERROR = "m"  # ~15% of the symbol may be damaged (posters get scuffed); segno raises it when it fits


# A page's QR code is asked for again and again: render it once per (url, format, size). Bounded:
# 128 renders of at most ~12 KB each (the longest URL as a 1024-pixel SVG), ~1.5 MB a container.
@functools.lru_cache(maxsize=128)
def render_qr(url: str, fmt: str, size: int) -> bytes:
    """The QR code of ``url`` as SVG (exactly size x size, scalable) or PNG (the largest whole
    number of pixels per module that fits in size, at least one). segno is imported here only:
    JSON requests never pay for it."""
    import io

    import segno

    qr = segno.make(url, error=QR_ERROR, micro=False)
    buffer = io.BytesIO()
    if fmt == "svg":
        qr.save(buffer, kind="svg", border=QR_BORDER, xmldecl=False, omitsize=True, light="#fff",
                svgclass=None, lineclass=None)
        # segno gives a viewBox in modules; fix the display size so <img> and CSS agree.
        return buffer.getvalue().replace(
            b"<svg ", f'<svg width="{size}" height="{size}" shape-rendering="crispEdges" '.encode(), 1)
    modules = qr.symbol_size(scale=1, border=QR_BORDER)[0]
    qr.save(buffer, kind="png", scale=max(1, size // modules), border=QR_BORDER)
    return buffer.getvalue()


