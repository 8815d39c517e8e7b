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
    if b"\x00" in raw:  # anywhere: Postgres text cannot hold a NUL
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


_HTML_TAG = re.compile(r"</?[a-zA-Z][a-zA-Z0-9-]*(\s[^<>]*)?/?>")


def _atx_heading(line: str) -> str | None:
    """The text of an ATX heading line ("## Title ##"), or None. String operations, not a regex: the obvious
    pattern (spaces, lazy text, spaces, closing hashes, spaces) backtracks cubically on a long run of spaces."""
    level = len(line) - len(line.lstrip("#"))
    if not 1 <= level <= 6 or level == len(line) or not line[level].isspace():
        return None
    text = line[level:].strip()
    unclosed = text.rstrip("#")
    if unclosed != text and (not unclosed or unclosed[-1].isspace()):  # a closing sequence needs a space before it
        text = unclosed.rstrip()
    return text


def _strip_html_comments(text: str) -> str:
    """Drop `<!-- ... -->` in one forward scan (a lazy `<!--.*?-->` is quadratic on repeated `<!--`); an
    unclosed comment is left as text."""
    pieces, pos = [], 0
    while (start := text.find("<!--", pos)) != -1:
        end = text.find("-->", start + 4)
        if end == -1:
            break
        pieces.append(text[pos:start])
        pos = end + 3
    pieces.append(text[pos:])
    return "".join(pieces)


def _split_markdown(text: str) -> list[tuple[str, list[str]]]:
    """ATX-heading sections; inline HTML (badges, layout) is dropped outside code fences: it is noise to search."""
    blocks: list[tuple[str, list[str]]] = [("", [])]
    in_fence = False
    for line in _strip_html_comments(text).splitlines():  # the cheap `in` tests first: 2 MB can be 500k lines
        if ("`" in line or "~" in line) and _FENCE.match(line):
            in_fence = not in_fence
        elif not in_fence:
            if "<" in line:
                line = _HTML_TAG.sub("", line)
            if line.startswith("#") and (heading := _atx_heading(line)) is not None:
                blocks.append((heading, []))
                continue
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


_HTML_DROP = ("script", "style", "nav", "noscript", "template")
_HTML_HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
_HTML_BLOCKS = frozenset({"p", "li", "pre", "td", "blockquote", "dd", "dt"})


def _split_html(text: str) -> tuple[str, list[tuple[str, list[str]]]]:
    """Headings and text blocks in document order. lxml (libxml2) builds the tree in C and caps its depth, and
    the walk below visits each element once: both linear, unlike a Python tree builder with ancestor lookups."""
    import lxml.html
    from lxml import etree

    try:
        root = lxml.html.document_fromstring(text, parser=lxml.html.HTMLParser(huge_tree=True))
    except (etree.ParserError, ValueError):
        return "", [("", [])]
    etree.strip_elements(root, etree.Comment, etree.ProcessingInstruction, *_HTML_DROP, with_tail=False)
    title = " ".join((root.findtext(".//title") or "").split())
    blocks: list[tuple[str, list[str]]] = [("", [])]

    def add(text: str) -> None:
        if text.strip():
            blocks[-1][1].extend([text, ""])

    body = root.find("body")
    stack: list[Any] = [body if body is not None else root]  # elements, and the loose text between them
    while stack:
        el = stack.pop()
        if isinstance(el, str):
            add(" ".join(el.split()))
        elif el.tag in _HTML_HEADINGS:
            blocks.append((" ".join(" ".join(el.itertext()).split()), []))
        elif el.tag == "pre":
            add("".join(el.itertext()).strip("\n"))
        elif el.tag in _HTML_BLOCKS:  # its text, nested elements included, is one block
            add(" ".join(" ".join(el.itertext()).split()))
        elif el.tag != "title":
            for child in reversed(el):
                stack.extend([child.tail or "", child])
            add(" ".join((el.text or "").split()))
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
