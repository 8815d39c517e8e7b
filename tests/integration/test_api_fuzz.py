"""Schemathesis over the live cluster's OpenAPI document: bounded, derandomized examples per operation (valid and
invalid), and for every response: no 5xx, none of this deployment's paths (`/metrics` aside: admin-only
Prometheus text whose labels name Ray's session directories), no traceback; in error responses no host path or
IP address at all (a success may carry documents' own text, which can name an address). Runs after
the other tests (it writes what it generates); the documents and runs it created are removed afterwards."""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation import GenerationMode

from cluster.ops.local import PROJECT_ROOT
from cluster.settings import Settings

pytestmark = pytest.mark.fuzz

EXAMPLES = 6  # per operation; ~40 operations
LEAKS = re.compile(r"Traceback \(most recent call last\)|File \"/|(?<![\w.])/(?:root|home|tmp|usr|opt|work)/"
                   r"|\b(?:\d{1,3}\.){3}\d{1,3}\b")

def _operations() -> dict[str, Any]:
    """The ingress's own OpenAPI document (the same app the cluster serves), loaded at collection: one test per
    operation and generation mode, named by the operation."""
    from serve.api.ingress import app

    schema = schemathesis.openapi.from_dict(app.openapi())
    return {op.ok().label: op.ok() for op in schema.get_all_operations()}


OPERATIONS = _operations()
TALLY: Counter[str] = Counter()  # status codes of every generated request, for docs/reliability.md


@pytest.fixture(scope="session", autouse=True)
def report_tally() -> Iterator[None]:
    """With RAGTUNE_FUZZ_REPORT=<file>, the run's status counts are written there (what the docs quote)."""
    yield
    if TALLY and (out := os.environ.get("RAGTUNE_FUZZ_REPORT")):
        Path(out).write_text(json.dumps({"requests": sum(TALLY.values()), "by_status": dict(TALLY)}, indent=2))


@pytest.fixture(scope="session")
def cleanup(live: Settings) -> Iterator[None]:
    """What the fuzzer managed to create is removed: documents, eval runs and fine-tuning jobs it queued."""
    with httpx.Client(base_url=live.http_url, timeout=60) as api:
        before = {d["id"] for d in api.get("/v1/documents", params={"limit": 500}).json()["data"]}
        yield
        for doc in api.get("/v1/documents", params={"limit": 500}).json()["data"]:
            if doc["id"] not in before:
                api.delete(f"/v1/documents/{doc['id']}")
        for run in api.get("/v1/evals", params={"limit": 100}).json().get("data", []):
            if run["status"] in ("queued", "in_progress"):
                api.post(f"/v1/evals/{run['id']}/cancel")
        for job in api.get("/v1/fine_tuning/jobs", params={"limit": 100}).json().get("data", []):
            if job["status"] in ("queued", "running"):
                api.post(f"/v1/fine_tuning/jobs/{job['id']}/cancel")


def _cheap(case: Any) -> None:
    """Generation is seconds per token budget on CPU: cap what a generated request may ask for."""
    if isinstance(case.body, dict):
        for field in ("max_tokens", "max_completion_tokens"):
            if isinstance(case.body.get(field), int) and case.body[field] > 4:
                case.body[field] = 4
        if case.body.get("ignore_eos") is True:
            case.body["ignore_eos"] = False


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
@pytest.mark.parametrize("label", sorted(OPERATIONS))
def test_no_server_errors_and_no_internals_in_responses(label: str, mode: GenerationMode, live: Settings,
                                                        cleanup: None) -> None:
    seen: list[str] = []
    # This deployment's own paths must appear in no response (but `/metrics`: Prometheus text for operators,
    # admin-only, whose labels name Ray's session directories and nodes).
    secrets = [str(live.state_dir), str(live.models_dir), str(PROJECT_ROOT)]

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
    @given(OPERATIONS[label].as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        _cheap(case)
        response = case.call(base_url=live.http_url, timeout=120)
        seen.append(str(response.status_code))
        TALLY[str(response.status_code)] += 1
        assert response.status_code < 500, f"{case.method} {case.path}: {response.status_code} {response.text[:500]}"
        if case.path != "/metrics":
            assert not any(secret in response.text for secret in secrets), f"{case.method} {case.path}: a host path"
        if response.status_code >= 400:  # a success may carry documents' own text (a README names 127.0.0.1)
            leak = LEAKS.search(response.text)
            assert leak is None, f"{case.method} {case.path}: {leak.group()!r} in {response.text[:500]}"
        else:
            assert "Traceback (most recent call last)" not in response.text, f"{case.method} {case.path}"

    try:
        run()
    except Unsatisfiable:
        pytest.skip(f"no {mode.value} input exists for {label} (every value of its parameters is valid)")
    assert seen, label  # something was sent
