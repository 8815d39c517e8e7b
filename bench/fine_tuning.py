"""Fine-tuning through the queue: training throughput, time from job success to the adapter's first token, and
the demo task's quality (valid JSON, exact match) on held-out inputs, base model vs tuned adapter, in one run.

    python -m bench.fine_tuning        # its own cluster on ports 8200/6400/8285; writes bench/results/fine_tuning.json

The baseline is the base model on the same held-out sentences with the same instruction and system prompt (route
`plain`), against the same engine in the same run.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from bench.cluster import bench_cluster, machine, write_report
from cluster.cli.client import RagtuneClient
from cluster.demo import extraction


def run(url: str, dashboard_url: str, epochs: int, lr_multiplier: float, n_train: int, n_test: int) -> dict:
    from ray.job_submission import JobSubmissionClient

    train_set, test = extraction.split(n_train, n_test)
    with RagtuneClient(url) as client:
        base = client.base_model()
        uploaded = client.request("POST", "/v1/files", data={"purpose": "fine-tune"},
                                  files={"file": ("json-extract.jsonl", extraction.jsonl(train_set))})
        job = client.request("POST", "/v1/fine_tuning/jobs", json={
            "model": base, "training_file": uploaded["id"], "suffix": "json-extract",
            "system_prompt": extraction.SYSTEM_PROMPT,
            "hyperparameters": {"n_epochs": epochs, "batch_size": 8, "learning_rate_multiplier": lr_multiplier}})
        submitted = time.monotonic()
        while (job := client.request("GET", f"/v1/fine_tuning/jobs/{job['id']}"))["status"] in ("queued", "running"):
            time.sleep(0.1)
        observed = time.monotonic()
        assert job["status"] == "succeeded", job
        adapter = job["fine_tuned_model"]
        first = [client.reply(adapter, extraction.prompt(test[0][0]), "finetuned", max_tokens=1)]
        first_token_s, first_token_wall = time.monotonic() - observed, time.time()
        ray_end = JobSubmissionClient(dashboard_url).get_job_info(f"ragtune-{job['id']}").end_time / 1000
        from_ray_end_s = first_token_wall - ray_end  # includes the dispatcher noticing (it polls every second)
        sentences, records = [t[0] for t in test], [t[1] for t in test]
        base_out = extraction.complete(lambda m: client.reply(base, m, "plain"), sentences, extraction.SYSTEM_PROMPT)
        tuned_out = extraction.complete(lambda m: client.reply(adapter, m, "finetuned"), sentences)
    metrics = job["metrics"]
    return {
        "base": base, "adapter": adapter, "train_examples": len(train_set), "held_out": len(test),
        "epochs": epochs, "learning_rate": 2e-4 * lr_multiplier, "batch_size": 8, "first_reply": first[0],
        "queue_to_success_s": round(observed - submitted, 1), "train_metrics": metrics,
        "success_to_first_token_s": round(first_token_s, 2), "ray_end_to_first_token_s": round(from_ray_end_s, 2),
        "quality": {"base": extraction.score(base_out, records),
                    "tuned": extraction.score(tuned_out, records)},
        "samples": [{"input": s, "base": b, "tuned": t} for s, b, t in list(zip(sentences, base_out, tuned_out))[:3]],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--lr-multiplier", type=float, default=5.0)
    parser.add_argument("--train", type=int, default=160)
    parser.add_argument("--test", type=int, default=40)
    parser.add_argument("--out", type=Path, default=Path("bench/results/fine_tuning.json"))
    args = parser.parse_args()
    with bench_cluster() as settings:
        report = {"machine": machine(), "profile": settings.profile,
                  "model": settings.llm_spec.model, "method": settings.profile_spec.training.method,
                  **run(settings.http_url, settings.dashboard_url, args.epochs, args.lr_multiplier, args.train,
                        args.test)}
    q = report["quality"]
    print(f"held-out ({report['held_out']}): valid JSON base {q['base']['valid_json']:.2f} -> tuned "
          f"{q['tuned']['valid_json']:.2f}; exact match {q['base']['exact_match']:.2f} -> "
          f"{q['tuned']['exact_match']:.2f}; success -> first token {report['success_to_first_token_s']} s")
    write_report(report, args.out)


if __name__ == "__main__":
    main()
