"""Fixtures: one real local cluster (Ray head, embedded Postgres+pgvector, the Serve app with the real models) per
test session, on its own ports and state directory so it never touches a running demo. Only tests that ask for
`live` (or a fixture built on it) start it."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import httpx
import pytest

from cluster.settings import Settings
from tests.support.helpers import package_text

if TYPE_CHECKING:
    from openai import OpenAI

    from cluster.store.adapters import AdapterStore

TEST_ENV = {
    "RAGTUNE_PORT": "8100",
    "RAGTUNE_RAY_PORT": "6390",
    "RAGTUNE_DASHBOARD_PORT": "8275",
    "RAGTUNE_DASHBOARD_AGENT_PORT": "52375",
    "RAGTUNE_METRICS_PORT": "8190",
    "RAGTUNE_APP_NAME": "ragtune-test",
    "RAGTUNE_LLM_VARIANT": "test",  # float32 SmolLM2: exact outputs do not depend on batching
    "HF_HUB_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


INTEGRATION = Path(__file__).parent / "integration"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/integration/ is marked `integration` (real models, engines or the live cluster);
    tests marked `fuzz` (generated requests that write what they generate) after all the others, and `disruptive`
    ones (they stop a shared component for a moment) last."""
    for item in items:
        if INTEGRATION in Path(item.path).parents:
            item.add_marker(pytest.mark.integration)
    # stable: order kept otherwise
    items.sort(key=lambda item: (item.get_closest_marker("disruptive") is not None,
                                 item.get_closest_marker("fuzz") is not None))


@pytest.fixture(scope="session")
def test_settings() -> Iterator[Settings]:
    # A short path: Ray and Postgres put unix sockets under the state dir (108-byte limit).
    state_dir = Path(tempfile.mkdtemp(prefix="rt-", dir="/tmp"))
    saved = dict(os.environ)
    os.environ.update(TEST_ENV | {"RAGTUNE_STATE_DIR": str(state_dir)})
    os.environ.pop("DATABASE_URL", None)
    os.environ.pop("RAGTUNE_DATABASE_URL", None)
    try:
        yield Settings()
    finally:
        os.environ.clear()
        os.environ.update(saved)
        shutil.rmtree(state_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def live(test_settings: Settings) -> Iterator[Settings]:
    """The running cluster; torn down (Ray head, database) at the end of the session."""
    from cluster.ops import local

    try:
        local.up(test_settings, echo=lambda line: print(f"[up] {line}", flush=True))
        yield test_settings
    finally:
        local.down(test_settings, echo=lambda line: print(f"[down] {line}", flush=True))


@pytest.fixture(scope="session")
def client(live: Settings) -> Iterator["OpenAI"]:
    """The official openai client against the live ingress."""
    from openai import OpenAI

    with OpenAI(base_url=f"{live.http_url}/v1", api_key="unused", max_retries=0, timeout=180) as c:
        yield c


@pytest.fixture(scope="session")
def base(live: Settings) -> str:
    """The served base model's id."""
    return live.llm_spec.served_name


@pytest.fixture(scope="session")
def api(live: Settings) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live.http_url, timeout=120) as client:
        yield client


@pytest.fixture(scope="session")
def store(live: Settings) -> "AdapterStore":
    from cluster.store.adapters import AdapterStore

    return AdapterStore.from_settings(live)


@pytest.fixture(scope="session")
def adapters(live: Settings, store: "AdapterStore") -> list[str]:
    """Three adapters with random weights: one more than the test profile's LoRA slots, so mixing them fills
    every slot."""
    from cluster.models.random_adapters import random_adapters
    from cluster.models.cache import resolve

    names = ["alpha", "beta", "gamma"]
    with tempfile.TemporaryDirectory() as tmp:
        paths = random_adapters(resolve(live.llm_spec.model, live.models_dir), Path(tmp), seeds=[11, 12, 13])
        for name, path in zip(names, paths):
            store.put(name, path, {"base_model": live.llm_spec.served_name})
    return names


@pytest.fixture(scope="session")
def seeded(api: httpx.Client) -> dict[str, str]:
    """A small real corpus (docs of a few installed packages), ingested once: source -> document id."""
    docs = [{"source": f"pkg/{name}.md", "content": package_text(name), "content_type": "text/markdown",
             "metadata": {"package": name, "kind": "readme"}}
            for name in ("pgvector", "peft", "typer", "httpx")]
    response = api.post("/v1/documents", json={"documents": docs})
    assert response.status_code == 200, response.text
    return {r["document"]["source"]: r["document"]["id"] for r in response.json()["data"]}
