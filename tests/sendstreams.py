"""zfs send streams built record by record, in the layout of OpenZFS's
include/sys/zfs_ioctl.h (the guard's reader is checked against real streams in
tests/test_zfs_guard_stream.py; these are for the cases real zfs will not write:
forged, cut, byte-swapped)."""

from __future__ import annotations

import struct

from executors.guard import send_stream as ss


def _record(kind: int, body: bytes, payload_len: int = 0, order: str = "<") -> bytes:
    head = struct.pack(order + "II", kind, payload_len)
    return (head + body).ljust(ss.RECORD, b"\0")


def begin(
    toname: str,
    *,
    toguid: int = 5005,
    fromguid: int = 0,
    flags: int = 0,
    features: int = 0,
    header: int = ss.SUBSTREAM,
    payload: bytes = b"",
    order: str = "<",
) -> bytes:
    info = header | (features << 2)
    body = struct.pack(order + "QQQIIQQ", ss.MAGIC, info, 0, 2, flags, toguid, fromguid)
    body += toname.encode().ljust(256, b"\0")[:256]
    return _record(ss.BEGIN, body, len(payload), order)[: ss.RECORD] + payload


def write(data: bytes, order: str = "<", size: int = -1) -> bytes:
    """A DRR_WRITE of `data` (uncompressed: its payload is drr_logical_size, which
    `size` can make say otherwise)."""
    body = struct.pack(order + "QIIQQQ", 5, 19, 0, 0, len(data) if size < 0 else size, 1001)
    return _record(ss.WRITE, body, order=order) + data


def object_record(bonus: bytes, order: str = "<") -> bytes:
    """A DRR_OBJECT with a bonus buffer (its payload, padded to 8 bytes)."""
    body = struct.pack(order + "QIIII", 5, 19, 44, 131072, len(bonus))
    padded = bonus.ljust((len(bonus) + 7) & ~7, b"\0")
    return _record(ss.OBJECT, body, order=order) + padded


def free(order: str = "<") -> bytes:
    return _record(ss.FREE, struct.pack(order + "QQQQ", 5, 0, 1 << 20, 1001), order=order)


def end(order: str = "<") -> bytes:
    return _record(ss.END, b"", order=order)


def xdr_string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack(">I", len(raw)) + raw.ljust((len(raw) + 3) & ~3, b"\0")


def nvlist(*booleans: str, strings: tuple[tuple[str, str], ...] = ()) -> bytes:
    """An XDR nvlist of boolean (name only) and string pairs."""
    pairs = b""
    for name in booleans:
        body = xdr_string(name) + struct.pack(">ii", ss.NV_BOOLEAN, 0)
        pairs += struct.pack(">ii", 8 + len(body), 64) + body
    for name, value in strings:
        body = xdr_string(name) + struct.pack(">ii", 9, 1) + xdr_string(value)
        pairs += struct.pack(">ii", 8 + len(body), 64) + body
    return bytes([1, 1, 0, 0]) + struct.pack(">iI", 0, 1) + pairs + b"\0" * 8


def substream(toname: str, data: bytes = b"x" * 4096, order: str = "<", **fields: int) -> bytes:
    return (
        begin(toname, order=order, **fields)
        + object_record(b"bonus", order)
        + write(data, order)
        + free(order)
        + end(order)
    )


def package(
    *substreams: bytes,
    recursive: bool = False,
    toname: str = "",
    props: bool = True,
    strings: tuple[tuple[str, str], ...] = (),
    features: int = 0,
    header: bytes = b"",
) -> bytes:
    """`zfs send -p` (or -R, `recursive`; or -I alone, not `props`) around substreams;
    `header`: another package header nvlist."""
    first = substreams[0]
    name = toname or first[56 : ss.RECORD].split(b"\0", 1)[0].decode()
    pairs = (("tosnap", name), *strings)
    header = header or nvlist(*(() if recursive else ("not_recursive",)), strings=pairs)
    header = header if props else b""
    head = begin(name, header=ss.COMPOUND, payload=header, features=features)
    return head + end() + b"".join(substreams) + end()
