"""Reading QR codes back in tests: PNG pixels and SVG paths -> zxing-cpp -> the encoded text.

zxing-cpp is an independent decoder (not segno, which renders them), so a passing decode means
a phone camera would read the same thing.
"""

from __future__ import annotations

import io
import re

QUIET = 4  # modules of white added around a matrix before decoding


def decode_gray(pixels: bytes, width: int, height: int) -> list[str]:
    """Decode every QR code in an 8-bit grayscale image given row by row."""
    import zxingcpp

    image = memoryview(pixels).cast("B", (height, width))
    return [result.text for result in zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode)]


def png_to_gray(data: bytes) -> tuple[bytes, int, int]:
    """Any PNG (segno's 1-bit, Chromium's RGBA screenshots) -> 8-bit grayscale pixels."""
    import png

    width, height, rows, info = png.Reader(file=io.BytesIO(data)).asRGBA8()
    out = bytearray()
    for row in rows:
        for x in range(0, width * 4, 4):
            r, g, b, a = row[x], row[x + 1], row[x + 2], row[x + 3]
            lum = (r * 299 + g * 587 + b * 114) // 1000
            out.append((lum * a + 255 * (255 - a)) // 255)  # transparent = white paper
    return bytes(out), width, height


def decode_png(data: bytes) -> list[str]:
    return decode_gray(*png_to_gray(data))


_SVG_PATH = re.compile(r'<path[^>]*stroke="#000"[^>]*\sd="([^"]+)"')
_SVG_VIEWBOX = re.compile(r'viewBox="0 0 (\d+) (\d+)"')
_PATH_TOKEN = re.compile(r"([MmHh])\s*(-?[\d.]+)(?:[ ,](-?[\d.]+))?")


def svg_matrix(svg: str) -> list[list[int]]:
    """The module matrix of an SVG QR code drawn as horizontal strokes (segno's style), border included."""
    size = _SVG_VIEWBOX.search(svg)
    path = _SVG_PATH.search(svg)
    if size is None or path is None:
        raise ValueError("not a segno-style SVG QR code")
    width, height = int(size.group(1)), int(size.group(2))
    matrix = [[0] * width for _ in range(height)]
    x = y = 0.0
    for op, a, b in _PATH_TOKEN.findall(path.group(1)):
        if op == "M":
            x, y = float(a), float(b)
        elif op == "m":
            x, y = x + float(a), y + float(b)
        else:  # h: a dark run along the row whose centre line is y
            length = float(a) if op == "h" else float(a) - x
            row = int(y)
            for col in range(int(x), int(x + length)):
                matrix[row][col] = 1
            x += length
    return matrix


def matrix_to_gray(matrix: list[list[int]], scale: int = 4) -> tuple[bytes, int, int]:
    rows = [[0] * QUIET + list(r) + [0] * QUIET for r in matrix]
    blank = [0] * len(rows[0])
    rows = [blank] * QUIET + rows + [blank] * QUIET
    out = bytearray()
    for row in rows:
        line = bytes(0 if dark else 255 for dark in row for _ in range(scale))
        out.extend(line * scale)
    return bytes(out), len(rows[0]) * scale, len(rows) * scale


def decode_svg(svg: str) -> list[str]:
    return decode_gray(*matrix_to_gray(svg_matrix(svg)))
