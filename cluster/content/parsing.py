"""Turning a document (text, Markdown, reStructuredText, HTML) into a title and sections of paragraphs."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal, Sequence

ContentType = Literal["text/plain", "text/markdown", "text/x-rst", "text/html"]
CONTENT_TYPES: tuple[str, ...] = ("text/plain", "text/markdown", "text/x-rst", "text/html")
SUFFIX_TYPES: dict[str, ContentType] = {
    ".txt": "text/plain", ".text": "text/plain", ".md": "text/markdown", ".markdown": "text/markdown",
    ".rst": "text/x-rst", ".html": "text/html", ".htm": "text/html",
}


class DocumentError(ValueError):
    """A document that cannot be ingested; the message says why."""


class NotText(DocumentError):
    """Bytes that are not UTF-8 text (binary, or another encoding)."""


class DocumentTooLarge(DocumentError):
    """Over the configured size of one document."""


@dataclass(frozen=True)
class Section:
    heading: str
    paragraphs: tuple[str, ...]


@dataclass(frozen=True)
class NewDocument:
    """A validated document ready to be embedded and written."""

    source: str
    title: str
    content_type: str
    content: str
    content_hash: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class ParsedDocument:
    title: str
    sections: list[Section] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "\n\n".join("\n\n".join(([s.heading] if s.heading else []) + list(s.paragraphs))
                           for s in self.sections)


def content_hash(content: str, content_type: str = "", title: str | None = None,
                 metadata: dict[str, Any] | None = None) -> str:
    """Identity of a document as submitted: same content, type, title and metadata means unchanged."""
    canonical = json.dumps([content, content_type, title, metadata or {}], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def decode_text(raw: bytes, name: str = "document") -> str:
    """Bytes to text, refusing what is not text: NUL bytes or invalid UTF-8 mean a binary or mis-encoded file."""
    if b"\x00" in raw[:8192]:
        raise NotText(f"{name}: looks binary (contains NUL bytes); only text, Markdown, reST and HTML "
                            "are accepted")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise NotText(f"{name}: not valid UTF-8 (byte {exc.start}: {exc.reason})") from None


def guess_content_type(name: str, text: str) -> ContentType:
    for suffix, kind in SUFFIX_TYPES.items():
        if name.lower().endswith(suffix):
            return kind
    head = text.lstrip()[:200].lower()
    if head.startswith("<!doctype html") or head.startswith("<html"):
        return "text/html"
    return "text/markdown" if re.search(r"^#{1,6} \S", text, re.M) else "text/plain"


# ---------------------------------------------------------------------------------------------- parsing

_FENCE = re.compile(r"^\s*(```|~~~)")
_ATX = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_RST_UNDERLINE = re.compile(r"^([=\-~^\"'`#*+.:_])\1{2,}\s*$")


def _paragraphs(lines: Sequence[str]) -> list[str]:
    """Blank-line separated paragraphs; a fenced code block stays one paragraph."""
    paragraphs: list[str] = []
    current: list[str] = []
    in_fence = False
    for line in lines:
        if _FENCE.match(line):
            in_fence = not in_fence
        if not line.strip() and not in_fence:
            if current:
                paragraphs.append("\n".join(current).strip())
                current = []
            continue
        current.append(line.rstrip())
    if current:
        paragraphs.append("\n".join(current).strip())
    return [p for p in paragraphs if p]


_HTML_COMMENT = re.compile(r"<!--.*?-->", re.S)
_HTML_TAG = re.compile(r"</?[a-zA-Z][a-zA-Z0-9-]*(\s[^<>]*)?/?>")


def _split_markdown(text: str) -> list[tuple[str, list[str]]]:
    """ATX-heading sections; inline HTML (badges, layout) is dropped outside code fences: it is noise to search."""
    blocks: list[tuple[str, list[str]]] = [("", [])]
    in_fence = False
    for line in _HTML_COMMENT.sub("", text).splitlines():
        if _FENCE.match(line):
            in_fence = not in_fence
        elif not in_fence:
            line = _HTML_TAG.sub("", line)
        match = None if in_fence else _ATX.match(line)
        if match:
            blocks.append((match.group(2).strip(), []))
        else:
            blocks[-1][1].append(line)
    return blocks


def _split_rst(text: str) -> list[tuple[str, list[str]]]:
    lines = text.splitlines()
    blocks: list[tuple[str, list[str]]] = [("", [])]
    i = 0
    while i < len(lines):
        line = lines[i]
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if line.strip() and _RST_UNDERLINE.match(nxt) and len(nxt.strip()) >= len(line.strip()) \
                and not _RST_UNDERLINE.match(line):
            blocks.append((line.strip(), []))
            i += 2
            continue
        if _RST_UNDERLINE.match(line) and i + 2 < len(lines) and _RST_UNDERLINE.match(lines[i + 2]):
            blocks.append((nxt.strip(), []))  # over- and underlined title
            i += 3
            continue
        blocks[-1][1].append(line)
        i += 1
    return blocks


def _split_html(text: str) -> tuple[str, list[tuple[str, list[str]]]]:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(text, "html.parser")
    for tag in soup(["script", "style", "nav", "noscript", "template"]):
        tag.decompose()
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    blocks: list[tuple[str, list[str]]] = [("", [])]
    body = soup.body or soup
    for el in body.find_all(["h1", "h2", "h3", "h4", "h5", "h6", "p", "li", "pre", "td", "blockquote", "dd", "dt"]):
        if el.find_parent(["p", "li", "pre", "td", "blockquote"]) is not None:
            continue  # its text is already part of the enclosing block
        if el.name.startswith("h"):
            blocks.append((el.get_text(" ", strip=True), []))
        else:
            txt = el.get_text("\n" if el.name == "pre" else " ", strip=el.name != "pre")
            if txt.strip():
                blocks[-1][1].extend([txt, ""])
    return title, blocks


def parse_document(content: str, content_type: str, title: str | None = None) -> ParsedDocument:
    if content_type not in CONTENT_TYPES:
        raise DocumentError(f"unsupported content_type {content_type!r}; use one of {', '.join(CONTENT_TYPES)}")
    html_title = ""
    if content_type == "text/html":
        html_title, blocks = _split_html(content)
    elif content_type == "text/markdown":
        blocks = _split_markdown(content)
    elif content_type == "text/x-rst":
        blocks = _split_rst(content)
    else:
        blocks = [("", content.splitlines())]
    sections = [Section(h, tuple(_paragraphs(lines))) for h, lines in blocks]
    sections = [s for s in sections if s.paragraphs or s.heading]
    if not any(s.paragraphs for s in sections):
        raise DocumentError("document has no text content")
    first_heading = next((s.heading for s in sections if s.heading), "")
    first_line = next(p for s in sections for p in s.paragraphs).splitlines()[0]
    return ParsedDocument(title=(title or html_title or first_heading or first_line)[:300].strip(), sections=sections)
