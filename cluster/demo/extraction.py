"""The demo's structured-output task: a sentence about a person -> one fixed JSON schema.

    "Maria Silva, 34, works as an architect in Lisbon."
    -> {"name": "Maria Silva", "age": 34, "city": "Lisbon", "occupation": "architect"}

Training and held-out sets are generated from disjoint first names and cities and partly disjoint phrasings, so
the held-out score measures the format and the extraction, not memorized values. `score` gives the valid-JSON
and exact-match rates that docs/benchmarks-history.md records for base vs tuned.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Callable, Iterable

from cluster.evaluation.metrics import parse_json_reply

INSTRUCTION = ("Extract the person's name, age, city and occupation from the sentence. Reply with only a JSON "
               "object with the keys name, age, city, occupation.")
SYSTEM_PROMPT = "You convert sentences into JSON records."
KEYS = ("name", "age", "city", "occupation")

FIRST = ["Maria", "James", "Aiko", "Lars", "Fatima", "Carlos", "Ingrid", "Kwame", "Sofia", "Dmitri", "Priya", "Tom",
         "Elena", "Omar", "Hannah", "Mateo", "Yuki", "Nora", "Ahmed", "Clara", "Felix", "Leila", "Oscar", "Zara",
         "Ivan", "Mei", "Pablo", "Greta", "Samuel", "Anya", "Hugo", "Lina", "Viktor", "Rosa", "Emil", "Nadia"]
LAST = ["Silva", "Brown", "Tanaka", "Berg", "Haddad", "Ruiz", "Larsen", "Mensah", "Rossi", "Petrov", "Sharma",
        "Walsh", "Novak", "Farouk", "Klein", "Garcia", "Sato", "Byrne", "Karimi", "Weber", "Dubois", "Moreau"]
CITIES = ["Lisbon", "Toronto", "Osaka", "Oslo", "Cairo", "Madrid", "Bergen", "Accra", "Milan", "Kyiv", "Pune",
          "Dublin", "Prague", "Tunis", "Vienna", "Bogota", "Kyoto", "Cork", "Tehran", "Munich", "Lyon", "Quito",
          "Perth", "Seoul", "Lagos", "Zurich"]
JOBS = ["architect", "nurse", "teacher", "software engineer", "chef", "pilot", "librarian", "electrician",
        "journalist", "dentist", "farmer", "photographer", "accountant", "carpenter", "pharmacist", "translator"]
TEMPLATES = [
    "{name}, {age}, works as a {job} in {city}.",
    "{name} is a {age}-year-old {job} living in {city}.",
    "Meet {name}: {age} years old, a {job} from {city}.",
    "In {city}, {name} ({age}) has been working as a {job}.",
    "{name} lives in {city}, is {age}, and is a {job} by trade.",
    "Our new {job}, {name}, is {age} and moved here from {city}.",
    "At {age}, {name} is a {job} based in {city}.",
    "{name} from {city} is {age} years old and works as a {job}.",
]
HELD_OUT_TEMPLATES = [
    "{city}-based {job} {name} turned {age} this year.",
    "{name} ({age}), {job}, {city}.",
]


@dataclass(frozen=True)
class Record:
    name: str
    age: int
    city: str
    occupation: str

    def as_json(self) -> str:
        return json.dumps({"name": self.name, "age": self.age, "city": self.city, "occupation": self.occupation})


def _records(rng: random.Random, firsts: list[str], cities: list[str], n: int,
             templates: list[str]) -> list[tuple[str, Record]]:
    out = []
    for _ in range(n):
        record = Record(f"{rng.choice(firsts)} {rng.choice(LAST)}", rng.randint(19, 78), rng.choice(cities),
                        rng.choice(JOBS))
        sentence = rng.choice(templates).format(name=record.name, age=record.age, job=record.occupation,
                                                city=record.city)
        out.append((sentence, record))
    return out


def split(n_train: int = 160, n_test: int = 40, seed: int = 7) -> tuple[list[tuple[str, Record]],
                                                                      list[tuple[str, Record]]]:
    """(train, held-out): held-out names and cities never appear in training; a quarter of its phrasings neither."""
    rng = random.Random(seed)
    train = _records(rng, FIRST[:28], CITIES[:20], n_train, TEMPLATES)
    test = _records(rng, FIRST[28:], CITIES[20:], n_test * 3 // 4, TEMPLATES)
    test += _records(rng, FIRST[28:], CITIES[20:], n_test - len(test), HELD_OUT_TEMPLATES)
    return train, test


def jsonl(pairs: Iterable[tuple[str, Record]]) -> bytes:
    rows = [{"instruction": INSTRUCTION, "input": sentence, "output": record.as_json()} for sentence, record in pairs]
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def prompt(sentence: str) -> list[dict[str, str]]:
    """The user turn exactly as training formats an example (instruction + blank line + input)."""
    return [{"role": "user", "content": f"{INSTRUCTION}\n\n{sentence}"}]


def score(outputs: list[str], records: list[Record]) -> dict[str, float]:
    """Valid JSON object rate, rate with exactly the schema's keys, and exact-match rate (all four values)."""
    parsed = [parse_json_reply(o) for o in outputs]
    valid = [p is not None for p in parsed]
    schema = [p is not None and tuple(sorted(p)) == tuple(sorted(KEYS)) for p in parsed]
    exact = [p is not None and p == json.loads(r.as_json()) for p, r in zip(parsed, records)]
    n = max(len(outputs), 1)
    return {"n": len(outputs), "valid_json": sum(valid) / n, "schema": sum(schema) / n, "exact_match": sum(exact) / n}


def complete(reply: Callable[[list[dict[str, str]]], str], sentences: list[str], system: str | None = None,
             concurrency: int = 8) -> list[str]:
    """`reply` (one chat request's answer) for each sentence's prompt, `concurrency` requests at a time."""
    from concurrent.futures import ThreadPoolExecutor

    def one(sentence: str) -> str:
        return reply(([{"role": "system", "content": system}] if system else []) + prompt(sentence))

    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(one, sentences))
