"""A tiny, independent PDF text reader for the report tests (stdlib only; pypdf is not a dependency).

It reads what matplotlib writes with ``pdf.fonttype`` 42: Flate-compressed content streams, Type 0 fonts with
Identity-H 2-byte codes and a ToUnicode CMap each (the map is what turns codes back into text, ligatures such as
"ff" and symbols such as Δ included). Each BT..ET block, one drawn text, becomes one string.
"""

from __future__ import annotations

import re
import zlib
from pathlib import Path

_OBJECT = re.compile(rb"(\d+) 0 obj\s*(.*?)\s*endobj", re.S)
_STREAM = re.compile(rb"^(.*?)stream\r?\n(.*)\r?\nendstream$", re.S)
_ESCAPES = {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"b": b"\b", b"f": b"\f"}


def _objects(data: bytes) -> dict[int, tuple[bytes, bytes | None]]:
    """Object number -> (dictionary text, decoded stream or None)."""
    objects = {}
    for match in _OBJECT.finditer(data):
        body = match.group(2)
        stream = _STREAM.match(body)
        if stream is None:
            objects[int(match.group(1))] = (body, None)
            continue
        head, raw = stream.groups()
        if b"/FlateDecode" in head:
            raw = zlib.decompress(raw)
        objects[int(match.group(1))] = (head, raw)
    return objects


def _hex(text: bytes) -> str:
    digits = text.decode("ascii")
    return bytes.fromhex(digits).decode("utf-16-be")


def _cmap(stream: bytes) -> dict[int, str]:
    """Code -> text of a ToUnicode CMap (bfchar and both bfrange forms)."""
    table: dict[int, str] = {}
    for block in re.findall(rb"beginbfchar(.*?)endbfchar", stream, re.S):
        for code, text in re.findall(rb"<([0-9a-fA-F]+)>\s*<([0-9a-fA-F]+)>", block):
            table[int(code, 16)] = _hex(text)
    for block in re.findall(rb"beginbfrange(.*?)endbfrange", stream, re.S):
        for lo, hi, target in re.findall(rb"<([0-9a-fA-F]+)>\s*<([0-9a-fA-F]+)>\s*(\[[^\]]*\]|<[0-9a-fA-F]+>)", block):
            lo, hi = int(lo, 16), int(hi, 16)
            if target.startswith(b"["):
                for k, text in enumerate(re.findall(rb"<([0-9a-fA-F]+)>", target)):
                    table[lo + k] = _hex(text)
            else:
                first = _hex(target[1:-1])
                for k in range(hi - lo + 1):
                    table[lo + k] = first[:-1] + chr(ord(first[-1]) + k)
    return table


def _unescape(raw: bytes) -> bytes:
    out, i = bytearray(), 0
    while i < len(raw):
        if raw[i:i + 1] == b"\\":
            octal = re.match(rb"[0-7]{1,3}", raw[i + 1:i + 4])
            if octal:
                out.append(int(octal.group(), 8) & 0xFF)
                i += 1 + len(octal.group())
                continue
            nxt = raw[i + 1:i + 2]
            out += _ESCAPES.get(nxt, nxt)
            i += 2
            continue
        out += raw[i:i + 1]
        i += 1
    return bytes(out)


def pdf_texts(path: str | Path) -> list[str]:
    """Every drawn text of the PDF, in drawing order."""
    objects = _objects(Path(path).read_bytes())
    fonts: dict[bytes, dict[int, str]] = {}
    for head, _ in objects.values():
        for name, number in re.findall(rb"/(F\d+) (\d+) 0 R", head):
            font = objects.get(int(number), (b"", None))[0]
            to_unicode = re.search(rb"/ToUnicode (\d+) 0 R", font)
            if to_unicode:
                fonts[name] = _cmap(objects[int(to_unicode.group(1))][1] or b"")
    texts = []
    for head, stream in objects.values():
        if stream is None or b"/Type /XObject" in head or b"BT" not in stream:
            continue
        for block in re.findall(rb"\bBT\b(.*?)\bET\b", stream, re.S):
            table: dict[int, str] = {}
            parts = []
            for font, string in re.findall(rb"/(F\d+) [\d.]+ Tf|\(((?:\\.|[^\\)])*)\)", block, re.S):
                if font:
                    table = fonts.get(font, {})
                    continue
                raw = _unescape(string)
                parts += [table.get(int.from_bytes(raw[k:k + 2], "big"), "\ufffd") for k in range(0, len(raw), 2)]
            texts.append("".join(parts))
    return texts


def pdf_pages(path: str | Path) -> int:
    """Number of page objects (``/Type /Page``, not ``/Pages``)."""
    return len(re.findall(rb"/Type\s*/Page(?![a-zA-Z])", Path(path).read_bytes()))
