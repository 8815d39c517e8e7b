"""Query rewriting (conversation, decomposition, acronyms), the glossary it reads, and the fusion of a
decomposed question's rankings."""

from __future__ import annotations

import time
import uuid
from typing import Sequence

import pytest

from cluster.content.glossary import acronyms, is_acronym
from cluster.store.knowledge import Candidate, Fusion
from serve.services import rewriting
from serve.services.knowledge import fuse_rankings


@pytest.mark.parametrize("text,expected", [
    ("Linux logins go through Pluggable Authentication Modules (PAM).", [("PAM", "Pluggable Authentication Modules")]),
    ("PAM (Pluggable Authentication Modules) reads /etc/pam.d.", [("PAM", "Pluggable Authentication Modules")]),
    ("JavaScript Object Notation (JSON) over Transport Layer Security (TLS)",
     [("JSON", "JavaScript Object Notation"), ("TLS", "Transport Layer Security")]),
    ("the Internet Protocol version 6 (IPv6) stack", []),  # "version" breaks the initials: not taken
    ("Low-Rank Adaptation (LoRA) adapters", [("LoRA", "Low-Rank Adaptation")]),
    ("the Network File System (NFS) and the Domain Name System (DNS)",
     [("NFS", "Network File System"), ("DNS", "Domain Name System")]),
    ("see the default (PAM) and the note (NOTE)", []),
    ("TokenInfo (TokenInfo) and SetBase(self, base, /)", []),
    ("Certificate Authority (CA) ... Certificate Authority (CA)", [("CA", "Certificate Authority")]),
])
def test_glossary_takes_only_definitions_whose_initials_spell_the_acronym(text: str, expected: list) -> None:
    assert acronyms(text) == expected


def test_acronym_shapes() -> None:
    assert all(map(is_acronym, ["PAM", "TLS", "IPv6", "gRPC", "PMCs", "LoRA"]))
    assert not any(map(is_acronym, ["Linux", "TokenInfo", "pam", "A", "ABCDEFGHIJKL"]))


@pytest.mark.parametrize("text", ["(" * 2_000_000, "A (" * 500_000, "(" + "Word " * 400_000 + ")",
                                  ("Long Words Here " * 20 + "(LWH) ") * 20_000])
def test_glossary_mining_is_linear_at_the_document_limit(text: str) -> None:
    started = time.perf_counter()
    acronyms(text[:2_000_000])
    assert time.perf_counter() - started < 3.0


@pytest.mark.parametrize("message,follow_up", [
    ("and its default?", True), ("What about the second one?", True), ("How do I install it?", True),
    ("default?", True), ("What does pgvector's HNSW index do?", False), ("What arguments does it take?", True),
    ("Which function in the standard library does this: parse a date string into a datetime object?", False),
    ("Which package validates settings from the environment?", False),
])
def test_follow_ups(message: str, follow_up: bool) -> None:
    assert rewriting.is_follow_up(message) is follow_up


def test_a_follow_up_is_searched_with_the_question_it_follows() -> None:
    assert rewriting.from_conversation(["What is the hnsw.ef_search setting?", "and its default?"]) == \
        ("What is the hnsw.ef_search setting? and its default?", True)
    # a chain: each follow-up carries the referent forward
    query, changed = rewriting.from_conversation(["How do I create an HNSW index?", "and its default?",
                                                 "what about ivfflat?"])
    assert changed and query.startswith("How do I create an HNSW index?") and query.endswith("what about ivfflat?")
    # a new, self-contained question is searched alone
    assert rewriting.from_conversation(["What is pgvector?", "Which package builds command line apps?"]) == \
        ("Which package builds command line apps?", False)
    assert rewriting.from_conversation(["and its default?"]) == ("and its default?", False)


@pytest.mark.parametrize("query,parts", [
    ("What does re.findall do, and what does base64.b64decode do?",
     ["What does re.findall do", "what does base64.b64decode do?"]),
    ("What is pgvector and how do I install it?", ["What is pgvector", "What is pgvector how do I install it?"]),
    ("What is typer? What is httpx?", ["What is typer?", "What is httpx?"]),
    ("How do I read and write JSON files?", ["How do I read and write JSON files?"]),  # one question, not two
    ("Which command lists directory contents?", ["Which command lists directory contents?"]),
])
def test_decomposition(query: str, parts: list[str]) -> None:
    assert rewriting.decompose(query) == parts


def test_decomposition_is_bounded() -> None:
    query = " ".join(f"What is package{i}?" for i in range(10))
    parts = rewriting.decompose(query)
    assert len(parts) == rewriting.MAX_PARTS and "package9" in parts[-1]


def test_acronyms_expand_both_ways_once() -> None:
    glossary = {"PAM": "pluggable authentication modules", "TLS": "transport layer security"}
    assert rewriting.expand_acronyms("How is PAM configured?", glossary) == \
        "How is PAM configured? (pluggable authentication modules)"
    assert rewriting.expand_acronyms("Turn on transport layer security", glossary) == \
        "Turn on transport layer security (TLS)"
    assert rewriting.expand_acronyms("PAM (pluggable authentication modules) setup", glossary) == \
        "PAM (pluggable authentication modules) setup"
    assert rewriting.expand_acronyms("What is SPAM?", glossary) == "What is SPAM?"  # whole tokens only


async def test_rewrite_runs_every_step_and_says_which_changed_something() -> None:
    asked: list[tuple[list[str], str]] = []

    async def lookup(candidates: Sequence[str], text: str) -> dict[str, str]:
        asked.append((list(candidates), text))
        return {"PAM": "pluggable authentication modules"} if "PAM" in candidates else {}

    out = await rewriting.rewrite(["How do I configure PAM?", "and what about its logging, and how do I test it?"],
                                  lookup, 2000)
    assert out.rewrites == ("conversation", "decomposition", "acronyms")
    assert len(out.queries) == 2 and all("pluggable authentication modules" in q for q in out.queries)
    assert asked[0][0] == ["PAM"]
    plain = await rewriting.rewrite(["Which package builds command line apps?"], lookup, 2000)
    assert plain == rewriting.Rewritten(("Which package builds command line apps?",), ())
    long = await rewriting.rewrite(["x " * 900 + "about lru_cache", "and its maxsize?"], lookup, 100)
    assert len(long.queries[0]) == 100 and long.queries[0].endswith("and its maxsize?")


def _candidate(chunk_id: int, doc: uuid.UUID) -> Candidate:
    return Candidate(chunk_id=chunk_id, document_id=doc, source=str(doc), title="", ordinal=chunk_id, text="",
                     metadata={}, vector_score=None, keyword_score=None, fused_score=0.0)


def test_parts_rankings_fuse_by_reciprocal_rank_with_the_document_cap() -> None:
    a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    first = [_candidate(1, a), _candidate(2, a), _candidate(3, a), _candidate(4, b)]
    second = [_candidate(5, c), _candidate(4, b), _candidate(6, c)]
    fused = fuse_rankings([first, second], Fusion(rrf_k=60, max_per_document=2), top_k=10)
    ids = [x.chunk_id for x in fused]
    assert ids[0] == 4  # found by both parts
    assert ids[-1] == 3 and set(ids[:-1]) == {1, 2, 4, 5, 6}  # a's third chunk waits behind the cap
    assert fused[0].fused_score == pytest.approx(1 / 64 + 1 / 62)
    assert [x.chunk_id for x in fuse_rankings([first, second], Fusion(max_per_document=2), top_k=2)] == [4, 1]
