"""The feedback loop through the live cluster: answers (streamed or not) are recorded under their response id,
rated with POST /v1/feedback, counted in /v1/feedback/stats, exported by `ragtune feedback export` into files the
cluster's own eval and fine-tuning uploads accept, and a downvoted cached answer leaves the cache."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.support.helpers import api_error, ragtune, wait_for

BASE = "smollm2-135m-instruct"


def _chat(api: httpx.Client, question: str, **extra: object) -> dict:
    response = api.post("/v1/chat/completions", json={
        "model": BASE, "route": "plain", "messages": [{"role": "user", "content": question}], "max_tokens": 16,
        "temperature": 0, **extra})
    assert response.status_code == 200, response.text
    return response.json()


def test_answers_are_rated_counted_and_exported_into_files_eval_and_training_accept(api: httpx.Client,
                                                                                    tmp_path: Path) -> None:
    before = {(r["route"], r["adapter"]): r for r in api.get("/v1/feedback/stats").json()["data"]}.get(
        ("plain", None), {"responses": 0, "up": 0, "down": 0})
    liked = _chat(api, "Name a primary colour.", cache=False)
    fixed = _chat(api, "What is two plus two?", cache=False)
    with api.stream("POST", "/v1/chat/completions", json={
            "model": BASE, "route": "plain", "messages": [{"role": "user", "content": "Say hello."}],
            "max_tokens": 8, "temperature": 0, "stream": True, "cache": False}) as response:
        lines = list(response.iter_lines())  # to the end: the answer is recorded before [DONE]
    streamed_id = json.loads(next(line for line in lines if line.startswith("data: {"))[6:])["id"]
    assert [line for line in lines if line][-1] == "data: [DONE]"
    up = api.post("/v1/feedback", json={"response_id": liked["id"], "rating": "up"})
    assert up.status_code == 200 and up.json()["rating"] == "up" and up.json()["route"] == "plain", up.text
    down = api.post("/v1/feedback", json={"response_id": fixed["id"], "rating": "down", "comment": "wrong",
                                          "correction": "Four."})
    assert down.status_code == 200 and down.json()["correction"] == "Four."
    assert api.post("/v1/feedback", json={"response_id": streamed_id, "rating": "down"}).status_code == 200

    error = api_error(api.post("/v1/feedback", json={"response_id": "chatcmpl-nope", "rating": "up"}), 404)
    assert error["param"] == "response_id"
    error = api_error(api.post("/v1/feedback", json={"response_id": liked["id"], "rating": "meh"}), 400)
    assert error["param"] == "rating"

    now = {(r["route"], r["adapter"]): r for r in api.get("/v1/feedback/stats").json()["data"]}[("plain", None)]
    assert now["responses"] >= before["responses"] + 3
    assert (now["up"], now["down"]) == (before["up"] + 1, before["down"] + 2)

    eval_file, train_file = tmp_path / "eval.jsonl", tmp_path / "train.jsonl"
    for as_, path in (("eval", eval_file), ("train", train_file)):
        done = ragtune("feedback", "export", "--as", as_, "--out", str(path))
        assert done.returncode == 0, done.stderr
    cases = {c["id"]: c for c in map(json.loads, eval_file.read_text().splitlines())}
    assert cases[fixed["id"]]["expected"] == "Four." and "expected" not in cases[streamed_id]
    examples = [json.loads(line) for line in train_file.read_text().splitlines()]
    assert {"role": "assistant", "content": "Four."} in [e["messages"][-1] for e in examples]
    # the cluster's own upload validators (what `ragtune eval FILE` and `ragtune train FILE` go through)
    for purpose, path in (("evals", eval_file), ("fine-tune", train_file)):
        uploaded = api.post("/v1/files", files={"file": (path.name, path.read_bytes())}, data={"purpose": purpose})
        assert uploaded.status_code == 200, uploaded.text

    assert ragtune("feedback", "export", "--as", "csv", "--out", str(tmp_path / "x")).returncode == 2


def test_a_downvoted_cached_answer_leaves_the_cache(api: httpx.Client) -> None:
    question = "Name the largest planet."
    entries = api.get("/v1/cache").json()["entries"]
    assert _chat(api, question)["cache"]["status"] == "miss"
    wait_for(lambda: api.get("/v1/cache").json()["entries"] > entries, 30, "the answer to be cached")
    hit = _chat(api, question)
    assert hit["cache"]["status"] == "hit"
    down = api.post("/v1/feedback", json={"response_id": hit["id"], "rating": "down"}).json()
    assert down["cache_invalidated"] == 1
    assert _chat(api, question)["cache"]["status"] == "miss"
