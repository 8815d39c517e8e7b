"""The semantic cache's meaning guard: two questions near each other in embedding space share an answer only if
they ask the same thing.

Embeddings put "how do I enable X" next to "how do I disable X", "what is X" next to "what is not X", and
"install numpy" next to "install pandas" (the false hits RedisVL's and GPTCache's caches are known for). So a near
match must also agree in words: after normalising (case, contractions, stems, a few synonym groups and stock
question phrasings), the words one question has and the other lacks may only be generic ones ("way", "explain",
"exactly"). Anything else is a different question, reported by the first class it falls in: negation, number,
quantifier, comparison, antonym, entity, identifier, question (what vs why), order (from A to B vs from B to A), or
wording. It trades hit rate on loose paraphrases for never answering a different question; `docs/cache.md` has
both rates on the labelled pairs (`cluster/evaluation/sets/cache_pairs.jsonl`).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

import snowballstemmer

_STEMMER = snowballstemmer.stemmer("english")

NEGATIONS = frozenset("not no never none nobody nothing nowhere neither nor cannot".split())
NUMBER_WORDS = frozenset((
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety hundred thousand million "
    "billion trillion first second third fourth fifth sixth seventh eighth ninth tenth half twice double triple "
    "quarter once dozen").split())
QUANTIFIERS = frozenset(("all every each some any most many much few several both either only least majority "
                         "always sometimes usually often rarely seldom ever whole entire single multiple").split())
COMPARISONS = frozenset((
    "more less fewer greater larger smaller bigger higher lower better worse best worst faster slower cheaper "
    "costlier older newer earlier later before after than versus vs above below over under max min maximum minimum "
    "largest smallest biggest highest lowest fastest slowest cheapest newest oldest latest prefer preferred "
    "instead rather compare comparison difference differ between").split())
# Words that make a relation one-way: with one of them, the same words in another order ask something else.
DIRECTIONAL = frozenset(("to into onto from than before after over under on by depend depends depending is are was "
                         "were vs versus instead rather").split())
QUESTION_WORDS = frozenset("what why when where who whom whose which how".split())
ANTONYM_PAIRS = (
    ("enable", "disable"), ("start", "stop"), ("open", "close"), ("add", "remove"), ("increase", "decrease"),
    ("allow", "deny"), ("allow", "block"), ("accept", "reject"), ("include", "exclude"), ("import", "export"),
    ("upload", "download"), ("push", "pull"), ("encrypt", "decrypt"), ("encode", "decode"), ("lock", "unlock"),
    ("connect", "disconnect"), ("mount", "unmount"), ("install", "uninstall"), ("create", "destroy"),
    ("create", "delete"), ("insert", "delete"), ("show", "hide"), ("true", "false"), ("success", "failure"),
    ("succeed", "fail"), ("pass", "fail"), ("valid", "invalid"), ("safe", "unsafe"), ("public", "private"),
    ("input", "output"), ("read", "write"), ("send", "receive"), ("client", "server"), ("min", "max"),
    ("first", "last"), ("begin", "end"), ("before", "after"), ("up", "down"), ("in", "out"), ("on", "off"),
    ("sync", "async"), ("synchronous", "asynchronous"), ("static", "dynamic"), ("local", "remote"),
    ("upper", "lower"), ("uppercase", "lowercase"), ("left", "right"), ("inner", "outer"), ("horizontal", "vertical"),
    ("ascending", "descending"), ("old", "new"), ("slow", "fast"), ("small", "large"), ("short", "long"),
    ("cheap", "expensive"), ("easy", "hard"), ("simple", "complex"), ("same", "different"), ("like", "unlike"),
    ("with", "without"), ("inside", "outside"), ("above", "below"), ("forward", "backward"), ("win", "lose"),
    ("buy", "sell"), ("import", "export"), ("join", "leave"), ("grant", "revoke"), ("attach", "detach"),
    ("freeze", "unfreeze"), ("mute", "unmute"), ("follow", "unfollow"), ("subscribe", "unsubscribe"),
)
NEGATING_PREFIXES = ("un", "dis", "in", "im", "il", "ir", "non", "de", "anti", "mis")
# Words two phrasings of one question swap freely; a difference in anything else means another question.
GENERIC = frozenset((
    "way ways step steps explain describe tell mean meaning definition define purpose role exactly actually "
    "basically really possible please briefly simply know want wonder help able try trying going need like "
    "correct proper properly right go about thing things use using used work working works").split())
# Kept as words (not dropped with the function words): relations whose change changes the question.
RELATIONS = frozenset("from into onto with without except unless between per via against through".split())
STOPWORDS = frozenset((
    "a an the is are was were be been being am do does did doing done have has had having i me my mine myself we "
    "us our ours you your yours it its itself he she they them their this that these those there here of for "
    "about and or but so if then also just can could would should will shall may might must get got obtain s let lets "
    "on at by in to").split())
SYNONYMS = (
    ("remove", "delete", "erase"), ("install", "setup"), ("start", "launch", "begin"), ("error", "issue", "problem"),
    ("fix", "solve", "resolve", "repair"), ("create", "make"), ("show", "display"), ("change", "modify", "edit"),
    ("big", "large", "huge"), ("small", "little", "tiny"), ("fast", "quick", "rapid"), ("utilize", "use"),
    ("need", "require"), ("reduce", "decrease"), ("raise", "increase"),
    ("documentation", "docs", "doc", "manual"), ("configure", "config", "configuration"), ("app", "application"),
    ("repo", "repository"), ("db", "database"), ("dir", "directory", "folder"), ("file", "files"),
    ("stop", "halt"), ("kill", "terminate"), ("show", "view", "see"),
    # abbreviations and aliases
    ("maximum", "max"), ("minimum", "min"), ("environment", "env"), ("variable", "var"), ("dictionary", "dict"),
    ("integer", "int"), ("string", "str"), ("information", "info"), ("statistics", "stats"),
    ("production", "prod"), ("postgres", "postgresql"), ("kubernetes", "k8s"), ("javascript", "js"),
)
# Stock phrasings of one question, folded into one form before comparing (longest first).
PHRASES = (
    (r"\bwhat(?: is|'s| are) the (?:best |right |correct |proper )?(?:way|steps|procedure) (?:to|for)\b", "how to"),
    (r"\bwhat do i do to\b", "how to"), (r"\bhow (?:do|can|should|would|could) (?:i|we|you|one)\b", "how to"),
    (r"\bhow (?:is|are) (?:it|one) (?:possible|able) to\b", "how to"), (r"\bis there (?:a|any) way to\b", "how to"),
    (r"\bis it possible to\b", ""), (r"\bam i able to\b", ""),
    (r"\bsteps to\b", "how to"), (r"\bset up\b", "setup"), (r"\bturn on\b", "enable"), (r"\bturn off\b", "disable"),
    (r"\bget rid of\b", "remove"), (r"\bcan you\b", ""), (r"\btell me\b", ""), (r"\bi want to know\b", ""),
    (r"\bi(?:'d| would) like to know\b", ""), (r"\bdo you know\b", ""), (r"\bwhat does (\w+) mean\b", r"what is \1"),
    (r"\bwhat is meant by\b", "what is"), (r"\bwhat's\b", "what is"), (r"\bhow's\b", "how is"),
    (r"\bshut down\b", "stop"), (r"\busing\b", "with"), (r"\b(?:into|onto)\b", "to"), (r"\bthe number of\b", ""),
    (r"\b(?:every|each)\b", "all"), (r"\bwhole\b", "entire"),
)
# Number words as digits, so that "two" and "2" agree.
NUMERALS = {w: str(i) for i, w in enumerate("zero one two three four five six seven eight nine ten eleven twelve "
                                             "thirteen fourteen fifteen sixteen seventeen eighteen nineteen twenty"
                                             .split())} | {w: f"{i + 1}th" for i, w in enumerate(
                                                 "first second third fourth fifth sixth seventh eighth ninth tenth"
                                                 .split())}
_PHRASES = [(re.compile(p, re.I), r) for p, r in PHRASES]
_CONTRACTIONS = [(re.compile(p, re.I), r) for p, r in (
    (r"\bcan't\b", "can not"), (r"\bwon't\b", "will not"), (r"\bshan't\b", "shall not"), (r"n't\b", " not"),
    (r"'re\b", " are"), (r"'ve\b", " have"), (r"'ll\b", " will"), (r"'d\b", " would"), (r"'m\b", " am"))]
# Code: dotted or scoped names, snake_case, camelCase, flags, paths, calls, versions, anything in backticks.
_IDENTIFIER = re.compile(r"`[^`]+`|(?<![\w-])--?[A-Za-z][\w-]*|[A-Za-z_][\w]*(?:(?:\.|::|/)[\w]+)+(?:\(\))?|\w+\(\)|"
                         r"\b[a-z]+[A-Z]\w*\b|\b\w*_\w+\b|\b[A-Za-z]+\d[\w.]*\b|\bv?\d+(?:\.\d+){1,3}\b")
_WORD = re.compile(r"\d+(?:[.,]\d+)*|[A-Za-z]+")
_SENTENCE_START = re.compile(r"(?:^|[.!?]\s+)([A-Z][a-z]+)")


@dataclass(frozen=True)
class Verdict:
    same: bool
    reason: str | None = None  # the class of the first difference found
    detail: str = ""  # the words that differ


def _stem(word: str) -> str:
    return _STEMMER.stemWord(word)


@dataclass(frozen=True)
class _Tables:
    canonical: dict[str, str]  # stem -> its synonym group's stem
    antonyms: dict[str, set[str]]
    kinds: dict[str, str]  # stem -> quantifier | comparison | generic | relation


@lru_cache(maxsize=1)
def _tables() -> _Tables:
    canonical = {_stem(w): _stem(group[0]) for group in SYNONYMS for w in group}
    antonyms: dict[str, set[str]] = {}
    for a, b in ANTONYM_PAIRS:
        antonyms.setdefault(_stem(a), set()).add(_stem(b))
        antonyms.setdefault(_stem(b), set()).add(_stem(a))
    kinds = {_stem(w): kind for kind, words in (("relation", RELATIONS), ("generic", GENERIC),
                                                ("comparison", COMPARISONS), ("quantifier", QUANTIFIERS))
             for w in words}  # later kinds win: "most" is a quantifier, not a comparison
    return _Tables(canonical, antonyms, kinds)


@dataclass(frozen=True)
class Parsed:
    identifiers: tuple[str, ...]
    negations: int
    numbers: Counter
    questions: frozenset[str]
    words: frozenset[str]  # canonical stems of the meaningful words
    entities: tuple[str, ...]  # names (lowercased)
    raw_words: frozenset[str]  # every word, lowercased, unstemmed
    ordered: tuple[str, ...] = ()  # names and identifiers (lowercased) as they appear

    def names(self) -> list[str]:
        return list(dict.fromkeys(self.ordered))


def parse(text: str) -> Parsed:
    canonical = _tables().canonical
    found = [(m.start(), m.group(0).strip("`")) for m in _IDENTIFIER.finditer(text)]
    identifiers = tuple(i for _, i in found)
    rest = _IDENTIFIER.sub(lambda m: " " * len(m.group(0)), text)  # same length: positions stay comparable
    for pattern, repl in _CONTRACTIONS:
        rest = pattern.sub(repl, rest)
    sentence_starts = {m.start(1) for m in _SENTENCE_START.finditer(rest)}
    entities = []
    for m in re.finditer(r"[A-Za-z]+", rest):
        w = m.group(0)
        lower = w.lower()
        if lower in STOPWORDS or len(w) == 1:
            continue
        if w.isupper() or w[0].isupper() and m.start() not in sentence_starts:
            entities.append((m.start(), lower))
        elif w[0].isupper() and lower not in STOPWORDS | QUESTION_WORDS | GENERIC | NEGATIONS | QUANTIFIERS \
                | COMPARISONS | RELATIONS | NUMBER_WORDS and len(w) > 2 and not _common_verb(lower):
            entities.append((m.start(), lower))  # a capitalised word opening a sentence, not a common word: a name
    folded = rest.lower()
    for pattern, repl in _PHRASES:
        folded = pattern.sub(repl, folded)
    tokens = _WORD.findall(folded)
    numbers = Counter(NUMERALS.get(t, t).replace(",", "") for t in tokens if t[0].isdigit() or t in NUMBER_WORDS)
    negations = sum(t in NEGATIONS for t in tokens)
    questions = frozenset("what" if t == "which" else t for t in tokens if t in QUESTION_WORDS)
    words = frozenset(canonical.get(s, s) for t in tokens
                      if not (t[0].isdigit() or t in NUMBER_WORDS or t in NEGATIONS or t in QUESTION_WORDS
                              or t in STOPWORDS) for s in (_stem(t),)) | {i.lower() for i in identifiers}
    ordered = tuple(name.lower() for _, name in sorted(found + entities))
    return Parsed(identifiers, negations, numbers, questions, words, tuple(e for _, e in entities),
                  frozenset(tokens), ordered)


def _in_order(text: str) -> list[str]:
    """Identifiers (lowercased) and words (canonical stems; directional words as themselves), in order."""
    canonical = _tables().canonical
    found = [(m.start(), m.group(0).strip("`").lower()) for m in _IDENTIFIER.finditer(text)]
    rest = _IDENTIFIER.sub(lambda m: " " * len(m.group(0)), text).lower()
    found += [(m.start(), w if w in DIRECTIONAL else canonical.get(st, st))
              for m in _WORD.finditer(rest) for w in (m.group(0),) for st in (_stem(w),)]
    return [w for _, w in sorted(found)]


def _swapped(a: str, b: str, shared: frozenset[str]) -> tuple[str, str] | None:
    """Two shared words in the opposite order, on either side of a one-way word (to, from, than, before, on, ...)
    in both questions; or the first two things a yes/no question relates ("is a square a rectangle")."""
    seq_a, seq_b = _in_order(a), _in_order(b)
    first_a = {w: i for i, w in reversed(list(enumerate(seq_a)))}
    first_b = {w: i for i, w in reversed(list(enumerate(seq_b)))}
    words = [w for w in dict.fromkeys(seq_a) if w in shared and w in first_b]
    polar = seq_a[:1] == seq_b[:1] and seq_a[:1] and seq_a[0] in {"is", "are", "was", "were", "doe", "do", "did"}
    for i, u in enumerate(words):
        for v in words[i + 1:]:
            if first_b[u] < first_b[v]:
                continue  # the same order in both
            between_a = set(seq_a[first_a[u] + 1:first_a[v]])
            between_b = set(seq_b[first_b[v] + 1:first_b[u]])
            if between_a & between_b & DIRECTIONAL or polar and i == 0:
                return u, v
    return None


def _common_verb(word: str) -> bool:
    """Imperatives that open questions ("List the ...", "Give me ..."): not names."""
    return word in {"list", "give", "show", "name", "find", "explain", "describe", "compare", "define", "write",
                    "summarize", "summarise", "tell", "help", "make", "create", "delete", "remove", "install",
                    "configure", "set", "use", "run", "start", "stop", "should", "could", "would", "will", "shall",
                    "does", "do", "did", "can", "is", "are", "was", "were", "has", "have", "why", "when"}


def compare(a: str, b: str) -> Verdict:
    """Whether `b` asks what `a` asks (symmetric)."""
    pa, pb = parse(a), parse(b)
    ia, ib = {i.lower() for i in pa.identifiers}, {i.lower() for i in pb.identifiers}
    missing = {i for i in ia - ib if i not in pb.raw_words} | {i for i in ib - ia if i not in pa.raw_words}
    if missing:  # `vLLM` and "vllm" are one name; `top_k` and `top_n` are not
        return Verdict(False, "identifier", ", ".join(sorted(missing)))
    if pa.negations != pb.negations:
        return Verdict(False, "negation", f"{pa.negations} vs {pb.negations} negations")
    if pa.numbers != pb.numbers:
        return Verdict(False, "number", _sym(set(pa.numbers), set(pb.numbers)))
    if pa.questions and pb.questions and pa.questions != pb.questions:
        return Verdict(False, "question", _sym(pa.questions, pb.questions))
    ea, eb = set(pa.entities), set(pb.entities)
    missing = {e for e in ea if e not in pb.raw_words | ib} | {e for e in eb if e not in pa.raw_words | ia}
    if missing:
        return Verdict(False, "entity", ", ".join(sorted(missing)))
    order_a, order_b = pa.names(), pb.names()
    shared = [n for n in order_a if n in order_b]
    if len(set(shared)) > 1 and shared != [n for n in order_b if n in order_a]:  # from A to B, not from B to A
        return Verdict(False, "order", " / ".join(shared))
    swapped = _swapped(a, b, pa.words & pb.words)
    if swapped:  # "convert a list to a dict" is not "convert a dict to a list"
        return Verdict(False, "order", " / ".join(swapped))
    only_a, only_b = pa.words - pb.words, pb.words - pa.words
    for word in sorted(only_a | only_b):
        reason = _classify(word, only_b if word in only_a else only_a)
        if reason is not None:
            return Verdict(False, reason, _sym(only_a, only_b))
    return Verdict(True)


def _classify(word: str, other_side: set[str]) -> str | None:
    """Why a word only one question has makes them different (None: a generic word)."""
    t = _tables()
    if t.antonyms.get(word, set()) & other_side or any(
            word == p + o or o == p + word for o in other_side for p in NEGATING_PREFIXES):
        return "antonym"
    kind = t.kinds.get(word, "wording")
    return None if kind == "generic" else kind


def _sym(a: set, b: set) -> str:
    return f"{sorted(a - b)} vs {sorted(b - a)}"


@dataclass(frozen=True)
class PairRates:
    """How the cache treats a labelled set of question pairs (cluster/evaluation/sets/cache_pairs*.jsonl)."""

    paraphrases: int
    paraphrase_hits: int  # above the similarity threshold and passed by the guard: would be served
    near_misses: int
    false_hits: int  # near misses that would be served: must be 0
    near_misses_above_threshold: int  # what the threshold alone would have served
    false_hit_pairs: tuple[tuple[str, str], ...] = ()

    @property
    def hit_rate(self) -> float:
        return self.paraphrase_hits / self.paraphrases if self.paraphrases else 0.0


def score_pairs(pairs: list[dict], similarities: list[float], threshold: float) -> PairRates:
    """`pairs`: {"a", "b", "label": paraphrase | near_miss}; `similarities`: the embedder's cosine for each pair."""
    similarities = [float(s) for s in similarities]
    served = [s >= threshold and compare(p["a"], p["b"]).same for p, s in zip(pairs, similarities)]
    para = [ok for p, ok in zip(pairs, served) if p["label"] == "paraphrase"]
    near = [(p, ok, s) for p, ok, s in zip(pairs, served, similarities) if p["label"] == "near_miss"]
    return PairRates(len(para), sum(para), len(near), sum(ok for _, ok, _ in near),
                     sum(s >= threshold for _, _, s in near),
                     tuple((p["a"], p["b"]) for p, ok, _ in near if ok))
