"""An LLM replica killed mid-answer: the ingress hands the answer to the replica Serve starts in its place, which
goes on from the text already streamed; the client sees one whole answer, not an error event.

Disruptive (the only LLM replica of the test cluster is gone for ~40 s), so it runs with the other disruptive tests,
last. The test cluster's LLM is float32 (RAGTUNE_LLM_VARIANT=test): greedy answers do not depend on batching, so the
resumed answer must read exactly like an uninterrupted one.
"""

from __future__ import annotations

import httpx
import pytest
from openai import OpenAI

from cluster.settings import Settings
from tests.support.helpers import ActorKiller, wait_for

pytestmark = pytest.mark.disruptive


def test_an_answer_cut_by_a_dead_llm_replica_is_finished_by_its_replacement(client: OpenAI, base: str, live: Settings,
                                                                           api: httpx.Client) -> None:
    ask = dict(model=base, messages=[{"role": "user", "content": "Explain what a hash map is."}], temperature=0,
               max_tokens=160, extra_body={"route": "plain", "ignore_eos": True, "cache": False})  # long: cut
    reference = client.chat.completions.create(**ask)
    pieces: list[str] = []
    usage = None
    with ActorKiller(live.ray_port, "LLMServer") as killer:
        stream = client.chat.completions.create(**ask, stream=True, stream_options={"include_usage": True})
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                pieces.append(chunk.choices[0].delta.content)
                if len(pieces) == 5:
                    killer.kill()
                    cut_at = "".join(pieces)
            usage = chunk.usage or usage
    answer = "".join(pieces)
    assert len(answer) > len(cut_at) + 40, "the answer went on after the kill"
    assert answer == reference.choices[0].message.content
    assert usage is not None and usage.completion_tokens == reference.usage.completion_tokens == 160
    # it was resumed (not finished before the kill landed): the ingress counts it
    wait_for(lambda: "ray_ragtune_generation_resumes_total{" in api.get("/metrics").text, 60,
             "the resume to show in /metrics")
