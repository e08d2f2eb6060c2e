"""A tiny reader for the protocol buffers wire format, enough to read Caffe files without Caffe.

Wire format (https://protobuf.dev/programming-guides/encoding/): a message is a sequence of fields, each
a varint key ``(field_number << 3) | wire_type`` followed by its value: wire type 0 a varint, 1 eight
bytes, 2 a varint length and that many bytes (strings, nested messages, packed repeated numbers), 5 four
bytes. Groups (3, 4) are obsolete and not accepted.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


class WireError(ValueError):
    """The bytes are not a valid protocol buffer message."""


def read_varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise WireError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise WireError("varint longer than 10 bytes")


def iter_fields(buf: bytes | memoryview) -> Iterator[tuple[int, int, int | memoryview]]:
    """``(field_number, wire_type, value)`` of each field; length-delimited values are memoryviews
    (zero-copy), fixed32/fixed64 values are their raw bytes, varints are ints."""
    buf = memoryview(buf)
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise WireError("field number 0")
        if wire == 0:
            value, pos = read_varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == 2:
            n, pos = read_varint(buf, pos)
            value, pos = buf[pos:pos + n], pos + n
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        else:
            raise WireError(f"unsupported wire type {wire} (field {number})")
        if pos > end:
            raise WireError(f"field {number} runs past the end of the message")
        yield number, wire, value


def fields(buf: bytes | memoryview) -> dict[int, list]:
    """Every field of a message grouped by number, in order (repeated fields keep every value)."""
    out: dict[int, list] = {}
    for number, wire, value in iter_fields(buf):
        out.setdefault(number, []).append((wire, value))
    return out


def as_string(values: list) -> str | None:
    return bytes(values[-1][1]).decode("utf-8", "replace") if values else None


def as_floats(values: list) -> np.ndarray:
    """A ``repeated float`` field, packed (wire 2) or not (wire 5, one float per field), as float32."""
    parts = [np.frombuffer(v, dtype="<f4") for w, v in values if w in (2, 5)]
    return np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)


def as_doubles(values: list) -> np.ndarray:
    parts = [np.frombuffer(v, dtype="<f8") for w, v in values if w in (1, 2)]
    return np.concatenate(parts) if parts else np.zeros(0, np.float64)


def as_varints(values: list) -> list[int]:
    """A ``repeated int`` field, packed or not (two's complement for negative int64)."""
    out = []
    for wire, v in values:
        if wire == 0:
            out.append(v)
        elif wire == 2:
            pos, buf = 0, memoryview(v)
            while pos < len(buf):
                x, pos = read_varint(buf, pos)
                out.append(x)
    return [x - (1 << 64) if x >= 1 << 63 else x for x in out]
