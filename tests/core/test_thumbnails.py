"""Embedded thumbnails: the sample's PNG blocks, JPEG and QOI blocks, the QOI decoder against a reference encoder
written here from the specification, and the PNG writer read back with zlib."""

from __future__ import annotations

import base64
import struct
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fabpanel.core.thumbnails import (
    ThumbnailError,
    best_thumbnail,
    browser_image,
    decode_image,
    decode_qoi,
    encode_png,
    extract_thumbnails,
)

SAMPLES = Path(__file__).resolve().parents[3] / 'shared' / 'samples' / 'gcode'


def qoi_encode(width: int, height: int, channels: int, pixels: bytes) -> bytes:
    """The reference QOI encoder (qoiformat.org), uses every op."""
    out = bytearray(b'qoif' + struct.pack('>IIBB', width, height, channels, 0))
    index = [(0, 0, 0, 0)] * 64
    prev, run = (0, 0, 0, 255), 0
    count = width * height
    for i in range(count):
        at = i * channels
        px = tuple(pixels[at : at + 3]) + ((pixels[at + 3],) if channels == 4 else (255,))
        if px == prev:
            run += 1
            if run == 62 or i == count - 1:
                out.append(0xC0 | (run - 1))
                run = 0
            continue
        if run:
            out.append(0xC0 | (run - 1))
            run = 0
        h = (px[0] * 3 + px[1] * 5 + px[2] * 7 + px[3] * 11) % 64
        if index[h] == px:
            out.append(h)
        else:
            index[h] = px
            if px[3] == prev[3]:
                dr, dg, db = ((px[k] - prev[k] + 128) % 256 - 128 for k in range(3))
                if -2 <= dr <= 1 and -2 <= dg <= 1 and -2 <= db <= 1:
                    out.append(0x40 | (dr + 2) << 4 | (dg + 2) << 2 | (db + 2))
                elif -32 <= dg <= 31 and -8 <= dr - dg <= 7 and -8 <= db - dg <= 7:
                    out += bytes((0x80 | (dg + 32), (dr - dg + 8) << 4 | (db - dg + 8)))
                else:
                    out += bytes((0xFE, *px[:3]))
            else:
                out += bytes((0xFF, *px))
        prev = px
    return bytes(out + b'\x00' * 7 + b'\x01')


def png_pixels(data: bytes) -> tuple[int, int, int, bytes]:
    """Read back what encode_png wrote (filter 0 rows), independently of the module."""
    assert data.startswith(b'\x89PNG\r\n\x1a\n')
    at, idat, header = 8, b'', b''
    while at < len(data):
        length, tag = struct.unpack('>I4s', data[at : at + 8])
        body = data[at + 8 : at + 8 + length]
        assert struct.unpack('>I', data[at + 8 + length : at + 12 + length])[0] == zlib.crc32(tag + body)
        header, idat = (body, idat) if tag == b'IHDR' else (header, idat + body if tag == b'IDAT' else idat)
        at += 12 + length
    width, height, _, colour = struct.unpack('>IIBB', header[:10])
    channels = 4 if colour == 6 else 3
    raw = zlib.decompress(idat)
    stride = width * channels + 1
    assert all(raw[row * stride] == 0 for row in range(height))
    return width, height, channels, b''.join(raw[row * stride + 1 : (row + 1) * stride] for row in range(height))


def block(tag: str, width: int, height: int, image: bytes) -> bytes:
    encoded = base64.b64encode(image).decode()
    lines = [encoded[i : i + 78] for i in range(0, len(encoded), 78)]
    body = ''.join(f'; {line}\n' for line in lines)
    return f';\n; {tag} begin {width}x{height} {len(encoded)}\n{body}; {tag} end\n;\n'.encode()


def test_prusaslicer_sample_thumbnails() -> None:
    head = (SAMPLES / 'prusaslicer-2.2.0_messschieber-boden.gcode').read_bytes()[:200_000]
    thumbs, bad = extract_thumbnails(head)
    assert bad == 0
    assert [(t.width, t.height, t.format, t.mime, len(t.data)) for t in thumbs] == [
        (16, 16, 'png', 'image/png', 732),
        (220, 124, 'png', 'image/png', 8007),
    ]
    assert best_thumbnail(thumbs) is thumbs[1]


@settings(max_examples=60, deadline=5000)
@given(
    width=st.integers(1, 24),
    height=st.integers(1, 24),
    channels=st.sampled_from([3, 4]),
    palette=st.lists(st.binary(min_size=4, max_size=4), min_size=1, max_size=6),
    data=st.data(),
)
def test_qoi_decodes_what_the_reference_encoder_wrote(
    width: int, height: int, channels: int, palette: list[bytes], data: st.DataObject
) -> None:
    # few colours and small steps so that runs, index, diff and luma ops all occur
    picks = data.draw(st.lists(st.integers(0, len(palette) - 1), min_size=width * height, max_size=width * height))
    nudges = data.draw(st.lists(st.integers(-3, 3), min_size=width * height, max_size=width * height))
    pixels = b''.join(bytes((c + n) % 256 for c in palette[p][:channels]) for p, n in zip(picks, nudges, strict=True))
    decoded = decode_qoi(qoi_encode(width, height, channels, pixels))
    assert decoded == (width, height, channels, pixels)
    assert png_pixels(encode_png(*decoded)) == decoded


def test_qoi_block_is_shown_as_png_and_jpeg_block_as_is() -> None:
    pixels = bytes(range(48))  # 4x4 RGB
    qoi = qoi_encode(4, 4, 3, pixels)
    jpeg = b'\xff\xd8' + b'\xff\xe0\x00\x10' + b'JFIF\x00' + b'\x00' * 9 + b'\xff\xc0\x00\x11\x08\x00\x07\x00\x09'
    head = (
        b'; generated by PrusaSlicer 2.9.0\n' + block('thumbnail_QOI', 4, 4, qoi) + block('thumbnail_JPG', 9, 7, jpeg)
    )
    thumbs, bad = extract_thumbnails(head)
    assert bad == 0
    assert [(t.width, t.height, t.format) for t in thumbs] == [(4, 4, 'qoi'), (9, 7, 'jpg')]
    shown = browser_image(thumbs[0])
    assert shown is not None and shown.format == 'png' and shown.mime == 'image/png'
    assert png_pixels(shown.data) == (4, 4, 3, pixels)
    assert browser_image(thumbs[1]) is thumbs[1]


def test_a_large_qoi_is_not_decoded() -> None:
    huge = b'qoif' + struct.pack('>IIBB', 4000, 4000, 4, 0) + b'\xc0' * 64 + b'\x00' * 7 + b'\x01'
    thumb = decode_image(huge)
    assert browser_image(thumb) is None
    with pytest.raises(ThumbnailError):
        decode_qoi(huge)


def test_unreadable_blocks_are_counted_not_raised() -> None:
    png_as_declared = block('thumbnail', 2, 2, b'not an image at all')
    broken = b'; thumbnail begin 2x2 8\n; ####====\n; thumbnail end\n'
    unterminated = b'; thumbnail begin 2x2 100\n; iVBORw0KGgo\n'
    lying = block('thumbnail', 2, 2, b'\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR' + struct.pack('>II', 0, 99999))
    thumbs, bad = extract_thumbnails(png_as_declared + broken + unterminated + lying)
    assert thumbs == [] and bad == 4


@settings(max_examples=300, deadline=2000)
@given(st.binary(max_size=600))
def test_decoders_raise_only_thumbnail_error(data: bytes) -> None:
    for candidate in (data, b'qoif' + data, b'\xff\xd8' + data, b'\x89PNG\r\n\x1a\n' + data):
        try:
            thumb = decode_image(candidate)
            browser_image(thumb)
            decode_qoi(candidate)
        except ThumbnailError:
            pass
