"""Citations for a streamed answer: `[Source N]` markers the model wrote, or ones ragtune adds.

Large models follow "cite as [Source N]"; small ones (cpu-dev's 135M model) do not. So the tracker reads the
answer sentence by sentence as it streams: a sentence that carries markers keeps them (markers naming no
source are ignored); a sentence without one is attributed to the source it overlaps most (at least half of
its content words, at least two of them, and a run of three words in a row), and a ` [Source N]` marker is
streamed right after it. Code blocks are never attributed (inline `code` in a sentence is). Each citation quotes the span of its chunk that best
matches the citing sentences, so the quote is always text of that chunk.
"""

from __future__ import annotations

from dataclasses import dataclass

from cluster.content.overlap import MARKER, MIN_OVERLAP, SENTENCE_END, best_span, content_words

MIN_RUN = 3


@dataclass(frozen=True)
class SourceText:
    number: int
    text: str


@dataclass
class Cited:
    number: int
    quote: str


class CitationTracker:
    def __init__(self, sources: list[SourceText]) -> None:
        self.sources = {s.number: s for s in sources}
        self._source_words = {s.number: content_words(s.text) for s in sources}
        self._pending = ""
        self._in_code = False  # inside a ``` block: code is never attributed
        self.cited: dict[int, Cited] = {}

    def feed(self, delta: str) -> str:
        """Text to emit for `delta`: the delta itself, with a marker after each sentence it completes."""
        text, cursor = self._pending + delta, len(self._pending)  # text[:cursor] was emitted before
        out, sentence_start = [], 0
        for end in SENTENCE_END.finditer(text, cursor):
            out.append(text[cursor:end.start()] + self._attribute(text[sentence_start:end.start()]))
            cursor, sentence_start = end.start(), end.end()
        out.append(text[cursor:])
        self._pending = text[sentence_start:]
        return "".join(out)

    def finish(self) -> str:
        """The marker for the last sentence, if it gets one."""
        sentence, self._pending = self._pending, ""
        return self._attribute(sentence) if sentence.strip() else ""

    def _attribute(self, sentence: str) -> str:
        was_code = self._in_code
        self._in_code ^= sentence.count("```") % 2 == 1
        if not sentence.strip() or was_code or self._in_code or "```" in sentence:
            return ""  # a code block; inline `code` in a sentence is prose (technical docs are full of it)
        numbers = [int(n) for n in MARKER.findall(sentence) if int(n) in self.sources]
        if numbers:
            plain = MARKER.sub("", sentence)
            for n in numbers:
                self._cite(n, plain)
            return ""
        content = content_words(sentence)
        if not content:
            return ""
        best: tuple[float, int, int] | None = None
        for number, source in self.sources.items():
            shared = len(content & self._source_words[number])
            overlap = shared / len(content)
            run, _ = best_span(sentence, source.text)
            good = shared >= 2 and overlap >= MIN_OVERLAP and run >= MIN_RUN
            if good and (best is None or (overlap, run) > best[:2]):
                best = (overlap, run, number)
        if best is None:
            return ""
        self._cite(best[2], sentence)
        return f" [Source {best[2]}]"

    def _cite(self, number: int, sentence: str) -> None:
        run, quote = best_span(sentence, self.sources[number].text)
        previous = self.cited.get(number)
        if previous is None:
            self.cited[number] = Cited(number, quote)
        elif len(quote) > len(previous.quote):
            previous.quote = quote
