"""Retrieval development sets built from real documentation on this machine, unlike the demo corpus in kind
and size: what search changes are judged on (besides the demo's knowledge QA), so they are not tuned to one set.

- `manpages`: the system's manual pages (sections 1 and 8), rendered to text. Two question kinds, as a user of a
  manual asks them: "Which command can I use to <NAME line's description>?" (meaning; tag `which-command`) and
  "What does the <option> option of <command> do?" (an identifier; tag `option`), answered by the page.
- `pydoc`: the Python standard library's module documentation (`pydoc` text). "What does <module.function>
  do?" (identifier; tag `function`) and "Which function in the standard library <docstring summary>?"
  (meaning; tag `which-function`), answered by the module's page.

    python -m bench.devsets manpages OUT_DIR [--documents 300] [--questions 60] [--seed 13]
    python -m bench.devsets pydoc OUT_DIR ...

Writes OUT_DIR/corpus/*.txt, OUT_DIR/testset.jsonl (the eval's format; expected_sources are the corpus file
names) and OUT_DIR/rewriting.jsonl (cases that need query rewriting: follow-ups, two-part questions, acronyms;
`rewriting_cases`). Then: `ragtune ingest OUT_DIR/corpus` and `ragtune eval OUT_DIR/testset.jsonl --routes search`.
Deterministic for a given machine and seed; which pages exist depends on the machine, so the numbers recorded in
docs/eval.md name it.
"""

from __future__ import annotations

import argparse
import io
import json
import pydoc
import random
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

MAN_DIRS = (Path("/usr/share/man/man1"), Path("/usr/share/man/man8"))
MAX_PAGE_BYTES = 120_000  # bash(1) and friends: one page would be a tenth of the corpus
SKIP_PREFIXES = ("gcloud", "bq", "gsutil")  # thousands of generated cloud-SDK pages: not a manual collection
_NAME_LINE = re.compile(r"^\s+(\S[^\n]*?)\s+-+\s+(\S[^\n]*)$")
_OPTION_LINE = re.compile(r"^ {7}(--?[A-Za-z0-9][\w-]*)(?:[ =,\[][^\n]*)?$")


@dataclass(frozen=True)
class Page:
    name: str
    filename: str
    text: str


def _lower_first(text: str) -> str:
    """"Show metadata" -> "show metadata" as the question's continuation; "PKCS#8 ..." stays."""
    return text if text[1:2].isupper() else text[0].lower() + text[1:]


def _render(path: Path) -> str | None:
    try:
        out = subprocess.run(["man", "-P", "cat", "-l", str(path)], capture_output=True, timeout=20,
                             env={"MANWIDTH": "80", "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = re.sub(r".\x08", "", out.stdout.decode("utf-8", "replace")).expandtabs()
    text = text.replace("\u2010", "-").replace("\u2212", "-")
    return text if out.returncode == 0 and len(text) > 400 else None


def _name_description(text: str) -> str | None:
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.strip() == "NAME":
            block = []
            for nxt in lines[i + 1:]:
                if not nxt.strip():
                    break
                block.append(nxt.strip())
            joined = "        " + re.sub(r"-\s(?=[a-z])", "", " ".join(block))  # "mate- rialized" -> "materialized"
            m = _NAME_LINE.match(joined)
            return m.group(2).strip().rstrip(".") if m else None
    return None


def _options(text: str) -> list[tuple[str, str]]:
    """(option, its description's first line) for options documented on their own line."""
    lines, found = text.splitlines(), []
    for i, line in enumerate(lines[:-1]):
        m = _OPTION_LINE.match(line)
        nxt = lines[i + 1]
        if m and nxt.startswith(" " * 14) and len(nxt.split()) >= 4:
            found.append((m.group(1), " ".join(nxt.split())))
    return found


def manpages(documents: int, questions: int, seed: int) -> tuple[list[Page], list[dict]]:
    rng = random.Random(seed)
    paths = sorted(p for d in MAN_DIRS if d.is_dir() for p in d.iterdir() if p.name.endswith(".gz"))
    rng.shuffle(paths)
    pages: list[Page] = []
    seen: set[str] = set()
    for path in paths:
        if len(pages) >= documents:
            break
        name = path.name.removesuffix(".gz").rsplit(".", 1)[0]
        if name in seen or name.startswith(SKIP_PREFIXES) or path.stat().st_size > MAX_PAGE_BYTES // 3:
            continue
        text = _render(path)
        if text is None or len(text.encode()) > MAX_PAGE_BYTES or _name_description(text) is None:
            continue
        seen.add(name)
        pages.append(Page(name, f"{name}.txt", text))
    descriptions: dict[str, list[str]] = {}
    for page in pages:
        descriptions.setdefault(_name_description(page.text).lower(), []).append(page.name)
    cases: list[dict] = []
    for page in rng.sample(pages, len(pages)):
        description = _name_description(page.text)
        kinds = ["which-command", "option"] if len([c for c in cases if "option" in c["tags"]]) * 2 < questions \
            else ["which-command"]
        rng.shuffle(kinds)
        for kind in kinds:
            if kind == "which-command" and len(descriptions[description.lower()]) == 1:
                text = _lower_first(description)
                cases.append({"id": f"{page.name}-which", "question": f"Which command can I use to {text}?",
                              "expected": page.name, "expected_sources": [page.filename],
                              "key_terms": [page.name], "tags": ["which-command", "meaning"]})
                break
            options = [o for o in _options(page.text) if len(o[0]) > 2]
            if kind == "option" and options:
                option, what = rng.choice(options)
                cases.append({"id": f"{page.name}-{option.strip('-')}",
                              "question": f"What does the {option} option of {page.name} do?",
                              "expected": what, "expected_sources": [page.filename], "key_terms": [option],
                              "tags": ["option", "identifier"]})
                break
        if len(cases) >= questions:
            break
    return pages, cases


def _summary(doc: str | None) -> str | None:
    first = " ".join((doc or "").strip().split("\n\n")[0].split()).rstrip(".")
    words = first.split()
    return first if 5 <= len(words) <= 25 and first[0].isalpha() and ">>>" not in first \
        and not first.startswith("Deprecated") else None


def pydoc_pages(documents: int, questions: int, seed: int) -> tuple[list[Page], list[dict]]:
    import importlib
    import inspect
    import warnings

    rng = random.Random(seed)
    names = sorted(n for n in sys.stdlib_module_names if not n.startswith("_") and n not in {"antigravity", "this",
                                                                                            "idlelib", "turtledemo"})
    rng.shuffle(names)
    pages, functions = [], []
    for name in names:
        if len(pages) >= documents:
            break
        try:
            with warnings.catch_warnings(), io.StringIO() as sink:
                warnings.simplefilter("ignore")
                stdout, sys.stdout = sys.stdout, sink
                try:
                    module = importlib.import_module(name)
                finally:
                    sys.stdout = stdout
            text = pydoc.plain(pydoc.render_doc(module, renderer=pydoc.plaintext))
        except Exception:  # noqa: BLE001 - a module that does not import on this platform is skipped
            continue
        if not 1_000 < len(text.encode()) <= MAX_PAGE_BYTES:
            continue
        pages.append(Page(name, f"{name}.txt", text))
        for fname, fn in inspect.getmembers(module, inspect.isfunction):
            if fname.startswith("_") or getattr(fn, "__module__", None) != name:
                continue
            summary = _summary(fn.__doc__)
            if summary:
                functions.append((name, fname, summary))
    rng.shuffle(functions)
    cases, used = [], set()
    for i, (module, fname, summary) in enumerate(functions):
        if module in used:
            continue
        used.add(module)
        if i % 2:
            cases.append({"id": f"{module}.{fname}", "question": f"What does {module}.{fname} do?", "expected": summary,
                          "expected_sources": [f"{module}.txt"], "key_terms": [fname],
                          "tags": ["function", "identifier"]})
        else:
            text = _lower_first(summary)
            cases.append({"id": f"{module}.{fname}-which",
                          "question": f"Which function in the Python standard library does this: {text}?",
                          "expected": f"{module}.{fname}", "expected_sources": [f"{module}.txt"],
                          "key_terms": [fname], "tags": ["which-function", "meaning"]})
        if len(cases) >= questions:
            break
    return pages, cases


FOLLOW_UPS = ("What arguments does it take?", "And what does it return?", "Is there an example of using it?",
              "What errors can it raise?", "and its default behaviour?")


def rewriting_cases(pages: list[Page], cases: list[dict], seed: int) -> list[dict]:
    """Cases that need query rewriting, over the same corpus: follow-ups whose referent is in the previous
    turn, two questions asked as one (both documents expected), and questions that use an acronym a document
    defines (acronyms.py's glossary) while naming nothing else."""
    from cluster.content.glossary import acronyms

    rng = random.Random(seed)
    answerable = [c for c in cases if c.get("expected_sources")]
    out = []
    for i, case in enumerate(answerable[:20]):
        out.append({"id": f"{case['id']}-follow-up", "tags": ["follow-up"], "expected_sources": case["expected_sources"],
                    "messages": [{"role": "user", "content": case["question"]},
                                 {"role": "assistant", "content": str(case["expected"])},
                                 {"role": "user", "content": FOLLOW_UPS[i % len(FOLLOW_UPS)]}]})
    pairs = [(a, b) for a, b in zip(answerable[20::2], answerable[21::2])
             if a["expected_sources"] != b["expected_sources"]][:20]
    for a, b in pairs:
        second = b["question"][0].lower() + b["question"][1:]
        out.append({"id": f"{a['id']}+{b['id']}", "tags": ["multi-part"], "question":
                    f"{a['question'].rstrip('?')}, and {second}",
                    "expected_sources": sorted(set(a["expected_sources"] + b["expected_sources"]))})
    defined: dict[str, set[str]] = {}
    for page in pages:
        for acronym, _ in acronyms(page.text):
            defined.setdefault(acronym, set()).add(page.filename)
    few = sorted(a for a, files in defined.items() if len(files) <= 2)
    for acronym in rng.sample(few, min(20, len(few))):
        out.append({"id": f"acronym-{acronym}", "tags": ["acronym"], "question": f"What is {acronym} and where is "
                    "it used?", "expected_sources": sorted(defined[acronym])})
    return out


BUILDERS = {"manpages": manpages, "pydoc": pydoc_pages}


def write(out: Path, pages: list[Page], cases: list[dict]) -> None:
    corpus = out / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    for page in pages:
        (corpus / page.filename).write_text(page.text)
    (out / "testset.jsonl").write_text("".join(json.dumps(c) + "\n" for c in cases))
    extra = rewriting_cases(pages, cases, 7)
    (out / "rewriting.jsonl").write_text("".join(json.dumps(c) + "\n" for c in extra))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("set", choices=sorted(BUILDERS))
    parser.add_argument("out", type=Path)
    parser.add_argument("--documents", type=int, default=300)
    parser.add_argument("--questions", type=int, default=60)
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args(argv)
    pages, cases = BUILDERS[args.set](args.documents, args.questions, args.seed)
    shutil.rmtree(args.out / "corpus", ignore_errors=True)  # a stale corpus would mix two sets' documents
    write(args.out, pages, cases)
    kinds: dict[str, int] = {}
    for c in cases:
        kinds[c["tags"][0]] = kinds.get(c["tags"][0], 0) + 1
    print(f"{args.set}: {len(pages)} documents ({sum(len(p.text) for p in pages) / 1e6:.1f} MB), {len(cases)} "
          f"questions {kinds} -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
