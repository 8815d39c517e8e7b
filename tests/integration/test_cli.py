"""The CLI against the running test cluster, and its refusals."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.support.helpers import ragtune as run


def test_status_reports_deployments_and_database(live) -> None:  # noqa: ANN001
    result = run("status", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["database"]["status"] == "up" and report["ray"]["status"] == "up"
    deployments = report["serve"]["deployments"]
    assert {"Ingress", "Embedder", "Reranker", "LLMServer"} <= set(deployments)
    assert all(d["replicas"].get("RUNNING", 0) >= 1 for d in deployments.values())


def test_search_command_prints_ranked_hits(live, seeded) -> None:  # noqa: ANN001
    result = run("search", "pgvector approximate nearest neighbour index", "--top-n", "2")
    assert result.returncode == 0, result.stderr
    assert "1. [" in result.stdout and "pkg/pgvector.md" in result.stdout and "timings:" in result.stdout


def test_ask_prints_the_answer_citations_and_timings(live, seeded) -> None:  # noqa: ANN001
    result = run("ask", "What is HTTPX?", "--max-tokens", "48", "--stream")
    assert result.returncode == 0, result.stderr
    assert "[Source 1]" in result.stdout and "pkg/httpx.md" in result.stdout
    assert "route rag" in result.stdout and "generate" in result.stdout and "tokens" in result.stdout


def test_ask_with_an_unknown_adapter_fails_with_the_servers_message(live) -> None:  # noqa: ANN001
    result = run("ask", "hi", "--adapter", "no-such-adapter")
    assert result.returncode == 2 and "does not exist" in result.stderr  # refused (404): exit 2


def test_train_refuses_a_bad_dataset_with_line_numbers(live, tmp_path: Path) -> None:  # noqa: ANN001
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "q", "output": "a"}\n{"messages": []}\n')
    result = run("train", str(bad))
    assert result.returncode == 2 and "line 2: field 'messages' must be a non-empty list" in result.stderr
    assert run("train", str(tmp_path / "missing.jsonl")).returncode == 2


def test_train_follow_shows_progress_and_ends_with_the_served_adapter(live, tmp_path: Path) -> None:  # noqa: ANN001
    data = tmp_path / "tiny.jsonl"
    data.write_text("".join(json.dumps({"instruction": f"Count to {i}.", "output": " ".join(map(str, range(1, i + 2)))})
                            + "\n" for i in range(12)))
    result = run("train", str(data), "--suffix", "cli", "--max-steps", "2", "--batch-size", "4", "--follow")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "uploaded" in result.stdout and "queued fine-tuning job ftjob-" in result.stdout
    assert "Fine-tuning job started" in result.stdout and "2/2" in result.stderr  # the tqdm bar reached the end
    name = next(w for w in result.stdout.split() if w.startswith("ft:smollm2-135m-instruct:cli:"))
    listed = run("jobs")
    assert listed.returncode == 0 and name in listed.stdout and "succeeded" in listed.stdout
    assert run("jobs", "--cancel", "ftjob-missing").returncode == 2


def test_invalid_settings_are_a_clear_error() -> None:
    result = run("status", env=os.environ | {"RAGTUNE_PROFILE": "tpu"})
    assert result.returncode == 2 and "invalid settings" in result.stderr and "profile" in result.stderr


def test_models_list_shows_prepared_models() -> None:
    result = run("models", "list")
    assert result.returncode == 0 and "NOT PREPARED" not in result.stdout
    assert "local:minilm-cross-encoder" in result.stdout
    assert "rag answers" in result.stdout and "local:grounded-answering" in result.stdout
    # and why: the measurement models prepare took
    assert "rerank: OFF by default on every endpoint (off: at models prepare the reranker's held-out MRR@10 " \
        in result.stdout


def test_up_refuses_to_start_without_prepared_models(tmp_path: Path) -> None:
    env = os.environ | {"RAGTUNE_MODELS_DIR": str(tmp_path / "empty"), "RAGTUNE_STATE_DIR": str(tmp_path / "state"),
                        "RAGTUNE_PORT": "8199", "RAGTUNE_RAY_PORT": "6499"}
    result = run("up", env=env)
    assert result.returncode == 1 and "ragtune models prepare" in result.stderr
    assert not (tmp_path / "state" / "local.json").exists()  # nothing was started
