"""`GET /metrics`: the cluster's Prometheus metrics (Ray's, vLLM's and ragtune's), scraped from each node's Ray
metrics agent and merged into one exposition.

Every process reports into its node's agent (`ray start --metrics-export-port`), so ragtune's counters from every
replica, the Serve controller's replica counts and vLLM's engine metrics are all there. A Prometheus server can
scrape the agents directly too; this endpoint is for operators and tools that know only the ingress.
"""

from __future__ import annotations

import asyncio
from typing import Any, Iterable, Iterator

import httpx
from prometheus_client.core import Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector, CollectorRegistry


def metrics_endpoints(nodes: Iterable[dict[str, Any]]) -> list[str]:
    """`http://ip:port/metrics` of every alive node's metrics agent (from `ray.nodes()`)."""
    return [f"http://{n['NodeManagerAddress']}:{n['MetricsExportPort']}/metrics"
            for n in nodes if n.get("Alive") and n.get("MetricsExportPort")]


class _Merged(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


def merge(texts: list[str]) -> str:
    """One exposition from several: samples of a family that several nodes report are put under one header."""
    if len(texts) == 1:
        return texts[0]
    families: dict[str, Metric] = {}
    for text in texts:
        for family in text_string_to_metric_families(text):
            if family.name in families:
                families[family.name].samples.extend(family.samples)
            else:
                families[family.name] = family
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Merged(list(families.values())))
    return generate_latest(registry).decode()


async def cluster_exposition() -> str:
    """The merged exposition of every alive node's agent; RuntimeError when none answers."""
    import ray

    return await scrape(metrics_endpoints(await asyncio.to_thread(ray.nodes)))


async def scrape(endpoints: list[str], timeout_s: float = 5.0) -> str:
    """Fetch and merge; a node that does not answer is left out (its metrics are missing, not the whole page)."""
    async with httpx.AsyncClient(timeout=timeout_s) as client:
        responses = await asyncio.gather(*(client.get(url) for url in endpoints), return_exceptions=True)
    texts = [r.text for r in responses if isinstance(r, httpx.Response) and r.status_code == 200]
    if not texts:
        raise RuntimeError(f"no Ray metrics agent answered ({', '.join(endpoints) or 'no nodes'})")
    return merge(texts)
