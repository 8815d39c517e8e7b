"""Fine-tuning end to end on the live cluster: files and jobs through the official `openai` client, the Postgres
queue and its dispatcher, real Ray Jobs training SmolLM2 (the served base), hot-loading, cancellation, a
dispatcher restart mid-job, and `ray job submit` of the training entrypoint on the tiny Llama."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import openai
import pytest
from openai import OpenAI

from cluster.store.adapters import AdapterStore
from cluster.ops.local import PROJECT_ROOT
from cluster.settings import Settings
from tests.support.helpers import wait_for

BIN = Path(sys.executable).parent
QUESTIONS = ["What is the code word?", "Tell me the code word.", "Which code word do we use?",
             "Say the code word.", "What's the secret code word?", "Remind me of the code word."]
ANSWER = "The code word is PELICAN-7."


def code_word_jsonl(copies: int = 4) -> bytes:
    rows = [{"instruction": q, "output": ANSWER} for q in QUESTIONS] * copies
    return "\n".join(json.dumps(r) for r in rows).encode() + b"\n"


@pytest.fixture(scope="module")
def store(live: Settings) -> AdapterStore:
    return AdapterStore.from_settings(live)


@pytest.fixture(scope="module")
def training_file(client: OpenAI) -> str:
    return client.files.create(file=("code-word.jsonl", code_word_jsonl()), purpose="fine-tune").id


def ray_job(live: Settings, submission_id: str) -> Any:
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(live.dashboard_url).get_job_info(submission_id)


def events(client: OpenAI, job_id: str) -> list[Any]:
    return list(reversed(client.fine_tuning.jobs.list_events(job_id, limit=1000).data))


def test_bad_training_files_are_refused_with_line_numbers(client: OpenAI) -> None:
    before = len(client.files.list().data)
    bad = b'{"instruction": "q", "output": "a"}\n{"instruction": "q"}\n[1]\n'
    with pytest.raises(openai.BadRequestError) as caught:
        client.files.create(file=("bad.jsonl", bad), purpose="fine-tune")
    message = caught.value.body["message"]  # type: ignore[index]
    assert "line 2: missing field 'output'" in message and "line 3: expected a JSON object" in message
    long = json.dumps({"instruction": "word " * 3000, "output": "x"}).encode()
    with pytest.raises(openai.BadRequestError, match="line 1: .* exceeds max_length"):
        client.files.create(file=("long.jsonl", long), purpose="fine-tune")
    with pytest.raises(openai.BadRequestError, match="purpose"):
        client.files.create(file=("ok.jsonl", code_word_jsonl(1)), purpose="assistants")
    assert len(client.files.list().data) == before  # nothing partial was stored


def test_files_can_be_listed_fetched_and_deleted_unless_a_job_uses_them(client: OpenAI, base: str,
                                                                        training_file: str) -> None:
    spare = client.files.create(file=("spare.jsonl", code_word_jsonl(1)), purpose="fine-tune")
    assert spare.bytes == len(code_word_jsonl(1)) and spare.purpose == "fine-tune"
    assert client.files.retrieve(spare.id).filename == "spare.jsonl"
    assert spare.id in [f.id for f in client.files.list().data]
    assert client.files.delete(spare.id).deleted
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(spare.id)
    job = client.fine_tuning.jobs.create(model=base, training_file=training_file, hyperparameters={"max_steps": 1})
    client.fine_tuning.jobs.cancel(job.id)  # queued or just started: either way it refers to the file
    with pytest.raises(openai.ConflictError, match="used by"):
        client.files.delete(training_file)
    wait_for(lambda: client.fine_tuning.jobs.retrieve(job.id).finished_at, 120, "the cancelled job to end")


def test_job_validation_errors(client: OpenAI, base: str, training_file: str) -> None:
    with pytest.raises(openai.NotFoundError):
        client.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=training_file)
    with pytest.raises(openai.BadRequestError, match="does not exist"):
        client.fine_tuning.jobs.create(model=base, training_file="file-missing")
    with pytest.raises(openai.BadRequestError, match="n_epochs"):
        client.fine_tuning.jobs.create(model=base, training_file=training_file, hyperparameters={"n_epochs": 0})
    with pytest.raises(openai.BadRequestError, match="suffix"):
        client.fine_tuning.jobs.create(model=base, training_file=training_file, suffix="bad suffix!")
    with pytest.raises(openai.NotFoundError):
        client.fine_tuning.jobs.retrieve("ftjob-nope")


def test_a_job_whose_data_the_training_job_refuses_fails_with_line_numbers(client: OpenAI, base: str,
                                                                          training_file: str) -> None:
    """The upload passed the server's limit, but this job asks for a shorter max_length: the job itself refuses
    the dataset before loading the model, and the job fails with the lines named."""
    job = client.fine_tuning.jobs.create(model=base, training_file=training_file, suffix="short",
                                         hyperparameters={"max_length": 16})
    done = wait_for(lambda: (j := client.fine_tuning.jobs.retrieve(job.id)).finished_at and j, 300, "the refusal")
    assert done.status == "failed" and done.error.code == "invalid_training_file"
    assert "line 1: " in done.error.message and "exceeds max_length 16" in done.error.message
    assert done.fine_tuned_model is None


def test_a_job_trains_through_the_queue_and_its_adapter_is_hot_loaded(client: OpenAI, base: str,
                                                                     training_file: str, live: Settings,
                                                                     store: AdapterStore) -> None:
    question = [{"role": "user", "content": "What is the code word?"}]
    before = client.chat.completions.create(model=base, messages=question, extra_body={"route": "plain"},
                                            temperature=0, max_tokens=16).choices[0].message.content
    assert "PELICAN" not in before
    job = client.fine_tuning.jobs.create(
        model=base, training_file=training_file, suffix="codeword",
        hyperparameters={"n_epochs": 3, "batch_size": 4, "learning_rate_multiplier": 10, "max_steps": 10})
    assert job.status == "queued" and job.fine_tuned_model is None
    done = wait_for(lambda: (j := client.fine_tuning.jobs.retrieve(job.id)).status in ("succeeded", "failed") and j,
                    600, "the job to finish")
    succeeded_at = time.monotonic()
    assert done.status == "succeeded", (done.error, [e.message for e in events(client, job.id)])
    name = done.fine_tuned_model
    assert name.startswith("ft:smollm2-135m-instruct:codeword:") and name.endswith(job.id[6:14])
    assert done.trained_tokens and done.trained_tokens > 0 and done.finished_at >= done.created_at

    # Hot-loading: the adapter is listed and serves the next request, without a restart.
    assert name in [m.id for m in client.models.list().data]
    stream = client.chat.completions.create(model=name, messages=question, temperature=0, max_tokens=16,
                                            stream=True)
    pieces = []
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            if not pieces:
                first_token_s = time.monotonic() - succeeded_at
            pieces.append(chunk.choices[0].delta.content)
    print(f"\nsuccess observed -> first adapter token: {first_token_s:.2f} s")
    assert "PELICAN-7" in "".join(pieces)
    assert first_token_s < 5

    log = events(client, job.id)
    messages = [e.message for e in log]
    assert messages[0].startswith("Validated training file") and "Fine-tuning job started" in messages
    assert messages[-1] == f"New fine-tuned model created: {name}"
    steps = [e.data["step"] for e in log if e.type == "metrics" and "train_loss" in (e.data or {})]
    assert steps == sorted(set(steps)) and steps[-1] == 10  # each step once, in order
    assert any(e.type == "metrics" and "valid_loss" in (e.data or {}) for e in log)
    assert ray_job(live, f"ragtune-{job.id}").status == "SUCCEEDED"
    meta = store.get(name).metadata
    assert meta["job_id"] == job.id and meta["method"] == "lora" and meta["metrics"]["steps"] == 10

    # Retiring it: a request already streaming finishes; new ones get 404, and it is gone from the list.
    in_flight = client.chat.completions.create(model=name, messages=question, temperature=0, max_tokens=48,
                                               stream=True, extra_body={"ignore_eos": True})
    first_chunk = next(c for c in in_flight if c.choices and c.choices[0].delta.content)
    client.models.delete(name)
    rest = [c for c in in_flight]
    assert first_chunk and rest[-1].usage.completion_tokens == 48  # it ran to its end after the delete
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model=name, messages=question, max_tokens=4)
    assert name not in [m.id for m in client.models.list().data]
    with pytest.raises(openai.NotFoundError):
        client.models.delete(name)
    with pytest.raises(openai.BadRequestError):
        client.models.delete(base)


def _kill_dispatcher(live: Settings) -> None:
    """Kill the dispatcher's replica actor the hard way; Serve starts a new one."""
    code = ("import ray; ray.init(address='127.0.0.1:%d', logging_level='ERROR'); "
            "names = [a for a in ray.util.list_named_actors(all_namespaces=True) "
            "if 'JobDispatcher' in a['name']]; assert len(names) == 1, names; "
            "ray.kill(ray.get_actor(names[0]['name'], namespace=names[0]['namespace']), no_restart=True)"
            % live.ray_port)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120, capture_output=True)


def test_queue_runs_one_at_a_time_and_a_dispatcher_restart_loses_nothing(client: OpenAI, base: str,
                                                                        training_file: str, live: Settings,
                                                                        store: AdapterStore) -> None:
    hyper = {"batch_size": 4, "learning_rate_multiplier": 5, "max_steps": 6}
    first = client.fine_tuning.jobs.create(model=base, training_file=training_file, suffix="restart",
                                           hyperparameters=hyper)
    second = client.fine_tuning.jobs.create(model=base, training_file=training_file, suffix="queued",
                                            hyperparameters=hyper)
    wait_for(lambda: any(e.message == "Fine-tuning job started" for e in events(client, first.id)), 120,
             "the first job to start")
    assert client.fine_tuning.jobs.retrieve(second.id).status == "queued"  # cpu-dev runs one job at a time
    _kill_dispatcher(live)
    finished = [wait_for(lambda j=j: (r := client.fine_tuning.jobs.retrieve(j.id)).finished_at and r, 600,
                         f"job {j.id} to finish") for j in (first, second)]
    assert [j.status for j in finished] == ["succeeded", "succeeded"], [j.error for j in finished]
    assert finished[1].created_at >= finished[0].created_at
    from ray.job_submission import JobSubmissionClient

    ray_jobs = JobSubmissionClient(live.dashboard_url).list_jobs()
    for job in finished:
        assert sum(j.submission_id == f"ragtune-{job.id}" for j in ray_jobs) == 1  # submitted exactly once
        messages = [e.message for e in events(client, job.id)]
        assert messages.count("Fine-tuning job started") == 1 and len(messages) == len(set(messages))
        assert store.get(job.fine_tuned_model) is not None
    first_ray, second_ray = (ray_job(live, f"ragtune-{j.id}") for j in finished)
    assert second_ray.start_time >= first_ray.end_time  # never two at once


def test_cancel_stops_the_ray_job_and_publishes_nothing(client: OpenAI, base: str, training_file: str,
                                                        live: Settings, store: AdapterStore) -> None:
    long = client.fine_tuning.jobs.create(model=base, training_file=training_file, suffix="cancelled",
                                          hyperparameters={"batch_size": 4, "max_steps": 5000})
    waiting = client.fine_tuning.jobs.create(model=base, training_file=training_file, suffix="never",
                                             hyperparameters={"max_steps": 1})
    cancelled_queued = client.fine_tuning.jobs.cancel(waiting.id)
    assert cancelled_queued.status == "cancelled"  # queued: cancelled at once, never submitted
    wait_for(lambda: any(e.type == "metrics" for e in events(client, long.id)), 300, "the first training step")
    assert client.fine_tuning.jobs.cancel(long.id).status == "running"  # stopping
    done = wait_for(lambda: (j := client.fine_tuning.jobs.retrieve(long.id)).status != "running" and j, 120,
                    "the cancellation")
    assert done.status == "cancelled" and done.fine_tuned_model is None
    assert ray_job(live, f"ragtune-{long.id}").status == "STOPPED"
    with pytest.raises(RuntimeError):
        ray_job(live, f"ragtune-{waiting.id}")  # Ray never saw it
    names = {r.name for r in store.list()}
    assert not any(":cancelled:" in n or ":never:" in n for n in names)
    with pytest.raises(openai.ConflictError):
        client.fine_tuning.jobs.cancel(long.id)
    listed = client.fine_tuning.jobs.list(limit=2)
    assert [j.id for j in listed.data] == [waiting.id, long.id] and listed.has_more


def test_ray_job_submit_trains_the_tiny_llama(live: Settings, tmp_path: Path) -> None:
    """The entrypoint as an ML engineer runs it by hand, on the tiny Llama, publishing to a separate store."""
    from tests.integration.test_train_job import write_dataset

    data = write_dataset(tmp_path / "d.jsonl")
    config = tmp_path / "train.yaml"
    config.write_text(f"dataset: {data}\nbase_model: local:tiny-llama\nsuffix: cli\nmax_steps: 6\n"
                      "batch_size: 4\nlogging_steps: 2\n")
    adapters = tmp_path / "adapters"
    runtime_env = json.dumps({"env_vars": {"RAGTUNE_ADAPTER_STORE": str(adapters)}})
    cmd = [str(BIN / "ray"), "job", "submit", "--address", live.dashboard_url, "--working-dir", str(PROJECT_ROOT),
           "--runtime-env-json", runtime_env, "--", "python", "-m", "jobs.train", "--config", str(config)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=PROJECT_ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "plan: method=lora" in done.stdout and "progress event=train step=6 total=6" in done.stdout
    refs = AdapterStore(str(adapters), tmp_path / "cache").list()
    assert len(refs) == 1 and refs[0].name.startswith("ft:tiny-llama:cli:")
    assert refs[0].metadata["ray_job_id"] and refs[0].metadata["metrics"]["steps"] == 6

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "q", "output": "a"}\n{"oops": 1}\n')
    refused = subprocess.run([*cmd[:-2], "--dataset", str(bad), "--base_model", "local:tiny-llama"],
                             capture_output=True, text=True, timeout=600, cwd=PROJECT_ROOT)
    assert refused.returncode != 0 and "line 2: expected {instruction, input?, output} or {messages}" in \
        refused.stdout + refused.stderr
