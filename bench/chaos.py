"""An LLM replica killed under streaming load: what clients see, and how long until the cluster is ready again.

    python -m bench.chaos [--target replica|engine] [--clients 4] [--seconds 60] [--kill-after 15]

Starts its own local cluster (bench ports, temporary state dir). `--clients` threads stream chat completions
(plain route, 48 tokens) in a loop; after `--kill-after` seconds the LLM replica's actor is killed the hard way
(`ray.kill`, as a crashed node would); Serve starts a new one. Every request is classified: completed, ended with
an error event (the stream was cut and said so), refused with a 503 (retry later), a 500, or a connection that
closed silently (the failure this guards against). The baseline is the same load in the same run before the kill;
greedy answers completed from the kill on are compared with the same prompt's answer before it (a stream the
ingress resumed on the new replica should read the same).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

from bench.cluster import bench_cluster, machine, write_report

PROMPTS = ["Name three uses of a hash map.", "What does a load balancer do?", "Explain what a queue is.",
           "Why cache results?"]


def classify(client: httpx.Client, prompt: str) -> tuple[str, str]:
    """The request's outcome and the answer's text."""
    body = {"model": "smollm2-135m-instruct", "route": "plain", "stream": True, "max_tokens": 48,
            "temperature": 0, "cache": False, "messages": [{"role": "user", "content": prompt}]}
    text: list[str] = []
    try:
        with client.stream("POST", "/v1/chat/completions", json=body) as response:
            if response.status_code != 200:
                response.read()
                return f"http {response.status_code}", ""
            saw_done, saw_error = False, False
            for line in response.iter_lines():
                if line == "data: [DONE]":
                    saw_done = True
                elif line.startswith("data: ") and '"error"' in line[:20]:
                    saw_error = True
                elif line.startswith("data: "):
                    choices = json.loads(line[6:]).get("choices") or [{}]
                    text.append(choices[0].get("delta", {}).get("content") or "")
            return "error event" if saw_error else "completed" if saw_done else "silent close", "".join(text)
    except httpx.HTTPError as exc:
        return f"connection: {type(exc).__name__}", ""


def resumes_counted(base_url: str) -> float | None:
    """`ragtune_generation_resumes` from /metrics (Ray exports it every few seconds; None if not there yet)."""
    try:
        text = httpx.get(f"{base_url}/metrics", timeout=30).text
    except httpx.HTTPError:
        return None
    values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
              if line.startswith("ray_ragtune_generation_resumes_total")]
    return sum(values) if values else None


def kill_llm_replica(ray_port: int) -> str:
    code = ("import ray; ray.init(address='127.0.0.1:%d', logging_level='ERROR'); "
            "names = [a for a in ray.util.list_named_actors(all_namespaces=True) if 'LLMServer' in a['name']]; "
            "ray.kill(ray.get_actor(names[0]['name'], namespace=names[0]['namespace']), no_restart=True); "
            "print(names[0]['name'])" % ray_port)
    return subprocess.run([sys.executable, "-c", code], check=True, timeout=120, capture_output=True,
                          text=True).stdout.strip()


def kill_engine_process() -> str:
    """SIGKILL the vLLM engine-core process (the replica actor itself stays): what an OOM kill looks like."""
    import psutil

    for proc in psutil.process_iter(["pid", "name", "cmdline"]):
        title = " ".join(proc.info["cmdline"] or []) + " " + (proc.info["name"] or "")
        if "EngineCore" in title:
            proc.kill()
            return f"EngineCore pid {proc.info['pid']}"
    raise RuntimeError("no vLLM EngineCore process found")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--kill-after", type=float, default=15)
    parser.add_argument("--target", choices=["replica", "engine"], default="replica",
                        help="replica: ray.kill the LLM replica actor; engine: SIGKILL its vLLM engine process")
    parser.add_argument("--out", type=Path, default=None, help="default bench/results/chaos-<target>.json")
    args = parser.parse_args()
    with bench_cluster() as settings:
        # before: ended before the kill; in flight: started before it, ended after; after: started after it
        outcomes: dict[str, Counter] = {"before": Counter(), "in flight": Counter(), "after": Counter()}
        reference: dict[str, str] = {}  # prompt -> the greedy answer before the kill
        same_text = Counter()  # completed after the kill: the same answer as before it, or not
        killed_at: list[float] = []
        recovered: list[float] = []  # seconds from the kill to the first request started after it that completed
        stop = threading.Event()

        def client_loop(i: int) -> None:
            with httpx.Client(base_url=settings.http_url, timeout=180) as client:
                n = 0
                while not stop.is_set():
                    prompt = PROMPTS[(i + n) % len(PROMPTS)]
                    began_after = bool(killed_at)
                    outcome, text = classify(client, prompt)
                    phase = "after" if began_after else "in flight" if killed_at else "before"
                    outcomes[phase][outcome] += 1
                    if phase == "before" and outcome == "completed":
                        reference.setdefault(prompt, text)
                    elif outcome == "completed" and prompt in reference:
                        same_text[phase + (": same answer" if text == reference[prompt] else ": other answer")] += 1
                    if phase == "after" and outcome == "completed" and not recovered:
                        recovered.append(time.monotonic() - killed_at[0])
                    n += 1

        threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(args.clients)]
        started = time.monotonic()
        for t in threads:
            t.start()
        time.sleep(args.kill_after)  # a benchmark's load schedule, not synchronisation
        name = kill_llm_replica(settings.ray_port) if args.target == "replica" else kill_engine_process()
        killed_at.append(time.monotonic())
        print(f"killed {name} at {killed_at[0] - started:.1f} s", flush=True)
        ready_after, went_down = None, False
        with httpx.Client(base_url=settings.http_url, timeout=90) as probe:
            while time.monotonic() - killed_at[0] < 600:  # /readyz: first not 200 (the replica is gone), then 200
                try:
                    ok = probe.get("/readyz").status_code == 200
                except httpx.HTTPError:
                    ok = False
                went_down = went_down or not ok
                if ok and (went_down or recovered):
                    ready_after = time.monotonic() - killed_at[0]
                    break
                time.sleep(0.5)
        remaining = args.seconds - (time.monotonic() - started)
        if remaining > 0:
            time.sleep(remaining)
        stop.set()
        for t in threads:
            t.join()
        after = outcomes["in flight"] + outcomes["after"]
        resumes = resumes_counted(settings.http_url)
        total_after = sum(after.values())
        lost = sum(v for k, v in after.items() if k not in ("completed",))
        report = {"machine": machine(), "clients": args.clients, "target": args.target, "killed": name,
                  "before": dict(outcomes["before"]), "in_flight": dict(outcomes["in flight"]),
                  "after": dict(outcomes["after"]), "greedy_answers_vs_before_the_kill": dict(same_text),
                  "answers_resumed_on_the_new_replica": resumes,
                  "lost_fraction_from_the_kill_on": round(lost / total_after, 4) if total_after else None,
                  "after_500s": after.get("http 500", 0), "silent_closes": after.get("silent close", 0),
                  "readyz_down_then_200_after_s": round(ready_after, 1) if ready_after else None,
                  "readyz_went_down": went_down,
                  "first_completed_after_kill_s": round(recovered[0], 1) if recovered else None}
        print(json.dumps(report, indent=2))
        write_report(report, args.out or Path(f"bench/results/chaos-{args.target}.json"))


if __name__ == "__main__":
    main()
