"""Hostile documents at the size limit: each is the worst case of one parser path (or was slow once)."""

from __future__ import annotations

from cluster.settings import Settings

LIMIT = Settings().ingest.max_document_bytes

# The first three were slow before: the ATX-heading regex backtracked cubically (5.6 s at 2 KB of spaces) and the
# HTML-comment one was quadratic in `<!--`. They run in 0.002-2.2 s each on a 2-core machine (parse and chunk;
# `python -m bench.parsing`); a quadratic path takes minutes at this size.
WORST_CASES = {
    "atx heading, a run of spaces": ("text/markdown", "# a" + " " * (LIMIT - 5) + "b"),
    "atx heading, spaces and hashes": ("text/markdown", "# a" + " #" * (LIMIT // 2 - 4) + "b"),
    "unclosed html comments": ("text/markdown", "<!--" * (LIMIT // 4)),
    "an unclosed tag": ("text/markdown", "<a" + " " * (LIMIT - 2)),
    "half-open tags": ("text/markdown", "<a " * (LIMIT // 3)),
    "one heading per line": ("text/markdown", "# a\n" * (LIMIT // 4)),
    "one paragraph per line": ("text/markdown", "a\n\n" * (LIMIT // 3)),
    "code fences": ("text/markdown", "```\n" * (LIMIT // 4)),
    "rst titles": ("text/x-rst", "x\n===\n" * (LIMIT // 6)),
    "an rst underline": ("text/x-rst", "x\n" + "=" * (LIMIT - 3) + "y"),
    "plain words": ("text/plain", "word " * (LIMIT // 5)),
    "parentheses": ("text/plain", "(" * LIMIT),
    "acronym definitions": ("text/plain", "Alpha Beta (AB) " * (LIMIT // 16)),
    "html paragraphs": ("text/html", "<html><body>" + "<p>hello world text</p>\n" * (LIMIT // 26) + "</body></html>"),
    "nested html": ("text/html", "<div>" * (LIMIT // 5)),
    "nested html blocks": ("text/html", "<p><b>" * (LIMIT // 6) + "x"),
    "html of angle brackets": ("text/html", "<" * LIMIT),
}
