"""What may leave the cluster in a message: no host path and no network address. Errors from libraries (vLLM
refusing an adapter, fsspec, a dataset reader) name the files and hosts they failed on; responses and stored job
errors say what went wrong without them (the full text goes to the logs)."""

from __future__ import annotations

import re
from typing import Any

# An absolute path of two or more parts (/root/.cache/x, /tmp/a/b.jsonl), not an API route (/v1/files).
_PATH = re.compile(r"(?<![\w.:/])/(?!v1/)(?:[\w.@+~-]+/)+[\w.@+~-]*")
_FILE_URI = re.compile(r"\bfile://[^\s:]+")
_IPV4 = re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}(?::\d{1,5})?\b")
_IPV6 = re.compile(r"\[[0-9A-Fa-f:]{2,}\](?::\d{1,5})?")


def redact(text: str) -> str:
    """`text` with paths, file URIs and IP addresses replaced by placeholders."""
    text = _FILE_URI.sub("<path>", text)
    text = _PATH.sub("<path>", text)
    text = _IPV6.sub("<address>", text)
    return _IPV4.sub("<address>", text)


def redact_values(value: Any) -> Any:
    """`redact` applied to every string in a JSON-like value (an adapter's metadata names its dataset's path)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_values(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_values(v) for v in value]
    return value
