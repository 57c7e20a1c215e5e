"""Preview images slicers embed in G-code comments (`; thumbnail begin 220x124 10676` ... `; thumbnail end`, and
the `thumbnail_JPG` / `thumbnail_QOI` variants), decoded to bytes with their real size and format.

Browsers show PNG and JPEG but not QOI, so a small QOI image is re-encoded as PNG with the standard library
(a QOI decoder and a PNG writer over zlib, both bounded in pixels). Everything here is pure and never trusts
the sizes a file declares: they come from the image's own header, and every size is capped.
"""

from __future__ import annotations

import base64
import binascii
import re
import struct
import zlib
from dataclasses import dataclass

MAX_THUMBNAILS = 16
MAX_ENCODED = 4 * 1024 * 1024  # base64 characters per image
MAX_SIDE = 4096
MAX_QOI_PIXELS = 512 * 512  # a pure-Python decode of this many pixels takes a fraction of a second
PNG_MAGIC = b'\x89PNG\r\n\x1a\n'
_BEGIN = re.compile(
    rb'^;[ \t]*(thumbnail(?:_(?:PNG|JPG|QOI))?)[ \t]+begin[ \t]+(\d{1,5})x(\d{1,5})[ \t]+(\d{1,9})', re.M
)
_NOT_BASE64 = re.compile(rb'[^A-Za-z0-9+/=]')


class ThumbnailError(ValueError):
    """An embedded image that cannot be read (bad base64, unknown format, truncated, too large)."""


@dataclass(kw_only=True, slots=True, frozen=True)
class Thumbnail:
    width: int
    height: int
    format: str  # 'png', 'jpg' or 'qoi' (from the image's own magic bytes)
    data: bytes

    @property
    def mime(self) -> str:
        return {'png': 'image/png', 'jpg': 'image/jpeg'}.get(self.format, 'image/qoi')


def extract_thumbnails(text: bytes) -> tuple[list[Thumbnail], int]:
    """All readable thumbnail blocks in `text` (a G-code head), and how many blocks were unreadable."""
    found: list[Thumbnail] = []
    bad = 0
    for begin in _BEGIN.finditer(text):
        if len(found) + bad >= MAX_THUMBNAILS:
            break
        tag, declared = begin.group(1), int(begin.group(4))
        end = text.find(b'; ' + tag + b' end', begin.end(), begin.end() + min(declared, MAX_ENCODED) * 2 + 4096)
        if end < 0 or declared > MAX_ENCODED:
            bad += 1
            continue
        payload = _NOT_BASE64.sub(b'', text[text.find(b'\n', begin.end()) + 1 : end])
        try:
            found.append(decode_image(base64.b64decode(payload, validate=True)))
        except (ThumbnailError, binascii.Error, ValueError):
            bad += 1
    return found, bad


def decode_image(data: bytes) -> Thumbnail:
    """Format and size of a PNG, JPEG or QOI image, from its own header."""
    if data.startswith(PNG_MAGIC) and len(data) >= 24 and data[12:16] == b'IHDR':
        width, height = struct.unpack('>II', data[16:24])
        fmt = 'png'
    elif data.startswith(b'\xff\xd8'):
        width, height = _jpeg_size(data)
        fmt = 'jpg'
    elif data.startswith(b'qoif') and len(data) >= 14:
        width, height = struct.unpack('>II', data[4:12])
        fmt = 'qoi'
    else:
        raise ThumbnailError('not a PNG, JPEG or QOI image')
    if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE):
        raise ThumbnailError(f'image size {width}x{height} out of bounds')
    return Thumbnail(width=width, height=height, format=fmt, data=data)


def _jpeg_size(data: bytes) -> tuple[int, int]:
    at = 2
    for _ in range(512):  # markers before the frame header; real files have a handful
        if at + 4 > len(data) or data[at] != 0xFF:
            break
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        length = struct.unpack('>H', data[at + 2 : at + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC) and at + 9 <= len(data):
            height, width = struct.unpack('>HH', data[at + 5 : at + 9])
            return width, height
        at += 2 + length
    raise ThumbnailError('JPEG without a frame header')


def browser_image(thumb: Thumbnail) -> Thumbnail | None:
    """The thumbnail in a format a browser shows: PNG/JPEG as they are, a small QOI as PNG, else None."""
    if thumb.format != 'qoi':
        return thumb
    if thumb.width * thumb.height > MAX_QOI_PIXELS:
        return None
    try:
        width, height, channels, pixels = decode_qoi(thumb.data)
    except ThumbnailError:
        return None
    return Thumbnail(width=width, height=height, format='png', data=encode_png(width, height, channels, pixels))


def best_thumbnail(thumbs: list[Thumbnail]) -> Thumbnail | None:
    """The largest thumbnail a browser can show (QOI converted when small enough)."""
    for thumb in sorted(thumbs, key=lambda t: (t.width * t.height, t.format != 'qoi'), reverse=True):
        shown = browser_image(thumb)
        if shown is not None:
            return shown
    return None


def decode_qoi(data: bytes) -> tuple[int, int, int, bytes]:
    """QOI (qoiformat.org) -> (width, height, channels, RGB or RGBA rows). Raises ThumbnailError."""
    if len(data) < 22 or not data.startswith(b'qoif'):
        raise ThumbnailError('not a QOI image')
    width, height, channels = struct.unpack('>IIB', data[4:13])
    if channels not in (3, 4) or not (0 < width * height <= MAX_QOI_PIXELS):
        raise ThumbnailError('QOI image too large or malformed')
    try:
        rgba = _qoi_pixels(data, width * height)
    except IndexError as error:
        raise ThumbnailError('truncated QOI image') from error
    if channels == 3:
        del rgba[3::4]
    return width, height, channels, bytes(rgba)


def _qoi_pixels(data: bytes, count: int) -> bytearray:
    out = bytearray(count * 4)
    index = [(0, 0, 0, 0)] * 64
    r, g, b, a = 0, 0, 0, 255
    at, end, pixel = 14, len(data) - 8, 0
    while pixel < count:
        if at >= end:
            raise IndexError('QOI data ends early')
        op = data[at]
        at += 1
        if op == 0xFE:
            r, g, b = data[at], data[at + 1], data[at + 2]
            at += 3
        elif op == 0xFF:
            r, g, b, a = data[at], data[at + 1], data[at + 2], data[at + 3]
            at += 4
        elif op < 0x40:
            r, g, b, a = index[op]
        elif op < 0x80:
            r = (r + ((op >> 4) & 3) - 2) & 0xFF
            g = (g + ((op >> 2) & 3) - 2) & 0xFF
            b = (b + (op & 3) - 2) & 0xFF
        elif op < 0xC0:
            second = data[at]
            at += 1
            green = (op & 0x3F) - 32
            r = (r + green + (second >> 4) - 8) & 0xFF
            g = (g + green) & 0xFF
            b = (b + green + (second & 0x0F) - 8) & 0xFF
        else:  # run of the previous pixel
            run = min((op & 0x3F) + 1, count - pixel)
            out[pixel * 4 : (pixel + run) * 4] = bytes((r, g, b, a)) * run
            pixel += run
            index[(r * 3 + g * 5 + b * 7 + a * 11) & 63] = (r, g, b, a)  # as the reference decoder does
            continue
        index[(r * 3 + g * 5 + b * 7 + a * 11) & 63] = (r, g, b, a)
        out[pixel * 4 : pixel * 4 + 4] = bytes((r, g, b, a))
        pixel += 1
    return out


def encode_png(width: int, height: int, channels: int, pixels: bytes) -> bytes:
    """Rows of 8-bit RGB (3 channels) or RGBA (4) as a PNG file, no filtering, zlib-compressed."""
    stride = width * channels
    if len(pixels) != stride * height:
        raise ThumbnailError('pixel data does not match the size')
    raw = b''.join(b'\x00' + pixels[row * stride : (row + 1) * stride] for row in range(height))
    header = struct.pack('>IIBBBBB', width, height, 8, 6 if channels == 4 else 2, 0, 0, 0)
    return PNG_MAGIC + _png_chunk(b'IHDR', header) + _png_chunk(b'IDAT', zlib.compress(raw, 6)) + _png_chunk(b'IEND')


def _png_chunk(tag: bytes, body: bytes = b'') -> bytes:
    return struct.pack('>I', len(body)) + tag + body + struct.pack('>I', zlib.crc32(tag + body))
