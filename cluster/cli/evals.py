"""`ragtune eval` and `ragtune evals`: submit a test set to POST /v1/evals, follow the run (a bar from its
progress), then draw the report (Markdown, JSON, PNG) locally from the run's summary and output items.

The run itself is a Ray Job on the cluster (jobs/eval.py), recorded in Postgres: interrupting the CLI does not
stop it, and `ragtune evals show ID` reads a finished one again.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Sequence

from cluster.cli.client import ClientError, RagtuneClient
from cluster.evaluation.rules import Declared
from cluster.evaluation.runner import CaseResult
from cluster.evaluation.testset import Case

POLL_S = 1.0
MAX_MISSED = 120  # polls in a row without an answer before following gives up (about two minutes)
TERMINAL = ("completed", "failed", "canceled")


def create_body(cases: Sequence[Case], routes: Sequence[str] | None, adapter: str | None, declared: Declared, *,
                concurrency: int, max_tokens: int, queries_per_day: float, name: str,
                judge: bool | None = None, structured_output: bool = False,
                search_mode: str = "hybrid", rewrite: bool | None = None,
                grounded: bool | None = None) -> dict[str, Any]:
    from cluster.evaluation.testset import as_item

    return {"name": name, "data_source": {"type": "jsonl", "source": {
                "type": "file_content", "content": [{"item": as_item(c)} for c in cases]}},
            "routes": list(routes) if routes else None, "adapter": adapter, "concurrency": concurrency,
            "max_tokens": max_tokens, "queries_per_day": queries_per_day, "declared": asdict(declared),
            "judge": judge, "structured_output": structured_output, "search_mode": search_mode,
            "rewrite": rewrite, "grounded": grounded}


def follow(client: RagtuneClient, run: dict[str, Any], quiet: bool = False) -> dict[str, Any]:
    """Poll the run until it ends, with a progress bar of answers recorded. An ingress that is away for a while
    (restarting) is waited for, up to MAX_MISSED polls in a row: the run itself goes on on the cluster."""
    from tqdm import tqdm

    missed = 0
    with tqdm(total=run["progress"]["total"], unit="answer", dynamic_ncols=True, disable=quiet,
              desc=run["id"]) as bar:
        while True:
            bar.n = run["progress"]["completed"]
            bar.set_postfix_str(f"{run['status']}, {run['result_counts']['errored']} errors", refresh=True)
            if run["status"] in TERMINAL:
                return run
            time.sleep(POLL_S)
            try:
                run, missed = client.request("GET", f"/v1/evals/{run['id']}"), 0
            except ClientError as exc:
                missed += 1
                if not exc.transient or missed >= MAX_MISSED:
                    raise


def output_items(client: RagtuneClient, eval_id: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    after: str | None = None
    while True:
        page = client.request("GET", f"/v1/evals/{eval_id}/results",
                              params={"limit": 1000, **({"after": after} if after else {})})
        items += page["data"]
        if not page["has_more"]:
            return items
        after = page["last_id"]


def write_report(client: RagtuneClient, run: dict[str, Any], out_dir: Path,
                 echo: Callable[[str], None] | None = print) -> dict[str, Any]:
    """The report files of a completed run; its summary (the `report` field)."""
    from cluster.evaluation import report as reports
    from cluster.evaluation.records import case_result

    items = sorted(output_items(client, run["id"]),
                   key=lambda i: (run["routes"].index(i["sample"]["route"]), i["datasource_item_id"]))
    results: list[CaseResult] = [case_result(item) for item in items]
    paths = reports.write(run["report"], results, out_dir)
    if echo is not None:
        echo(reports.markdown(run["report"]).split("\n## Latency")[0])
        echo(f"report: {', '.join(str(p) for p in paths)}")
    return run["report"]


def run_testset(url: str, cases: Sequence[Case], routes: Sequence[str] | None, adapter: str | None,
                declared: Declared, *, concurrency: int, max_tokens: int, queries_per_day: float, name: str,
                out_dir: Path, judge: bool | None = None, structured_output: bool = False,
                search_mode: str = "hybrid", rewrite: bool | None = None, grounded: bool | None = None,
                quiet: bool = False) -> dict[str, Any]:
    """Submit, follow and report; ClientError for a refused submission or a run that did not complete."""
    with RagtuneClient(url) as client:
        run = client.request("POST", "/v1/evals", json=create_body(
            cases, routes, adapter, declared, concurrency=concurrency, max_tokens=max_tokens,
            queries_per_day=queries_per_day, name=name, judge=judge, structured_output=structured_output,
            search_mode=search_mode, rewrite=rewrite, grounded=grounded))
        if not quiet:
            print(f"eval run {run['id']}: {len(cases)} cases x {len(run['routes'])} routes "
                  f"({', '.join(run['routes'])}), queued")
        try:
            run = follow(client, run, quiet)
        except KeyboardInterrupt:
            raise ClientError(f"stopped following; the run goes on. `ragtune evals show {run['id']}` reads it, "
                              f"`ragtune evals cancel {run['id']}` stops it", 130) from None
        if run["status"] != "completed":
            reason = (run.get("error") or {}).get("message") or run["status"]
            raise ClientError(f"eval run {run['id']} {run['status']}: {reason}")
        return write_report(client, run, out_dir, echo=None if quiet else print)
