"""The one HTTP client of ragtune's own tools (the CLI, the demo, the benchmarks) for a running ingress.

An error answer becomes a `ClientError` carrying the server's message (OpenAI's error shape) and the exit code a
command should end with: 2 for a refused request (4xx), 1 for an unreachable or failing server.
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable, Iterator

import httpx


class ClientError(RuntimeError):
    def __init__(self, message: str, exit_code: int = 1, status: int | None = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.status = status  # the HTTP status; None when the server was not reached

    @property
    def transient(self) -> bool:
        """Unreachable, or the server said it is overloaded or restarting: the same request may succeed later."""
        return self.status is None or self.status in (502, 503, 504)


def _message(response: httpx.Response) -> str:
    try:
        return response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return response.text


class RagtuneClient:
    def __init__(self, url: str, timeout_s: float = 600, api_key: str | None = None) -> None:
        """`api_key`: sent as `Authorization: Bearer`; default `RAGTUNE_API_KEY` (none is needed on loopback
        while the cluster has no keys)."""
        self.url = url
        key = api_key or os.environ.get("RAGTUNE_API_KEY")
        self.http = httpx.Client(base_url=url, timeout=timeout_s,
                                 headers={"Authorization": f"Bearer {key}"} if key else None)

    def __enter__(self) -> "RagtuneClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ClientError(f"cannot reach {self.url}: {exc} (is `ragtune up` running?)") from None

    def raw(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A successful response whatever its body (an export); an error status raises like `request`."""
        response = self._send(method, path, **kwargs)
        if response.status_code >= 400:
            raise ClientError(_message(response), 2 if response.status_code < 500 else 1, response.status_code)
        return response

    def request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """One API call's JSON body; an error status raises ClientError with the server's message."""
        return self.raw(method, path, **kwargs).json()

    def base_model(self) -> str:
        return next(m["id"] for m in self.request("GET", "/v1/models")["data"] if not m.get("parent"))

    def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.request("POST", "/v1/chat/completions", json={**body, "stream": False})

    def reply(self, model: str, messages: list[dict[str, str]], route: str, max_tokens: int = 64) -> str:
        """The greedy answer text of one chat request."""
        payload = self.chat({"model": model, "messages": messages, "route": route, "temperature": 0,
                             "max_tokens": max_tokens})
        return payload["choices"][0]["message"]["content"]

    def chat_stream(self, body: dict[str, Any], on_text: Callable[[str], None]) -> tuple[str, dict[str, Any]]:
        """A streamed chat request: `on_text` gets each piece; returns (answer, the final summary event)."""
        parts: list[str] = []
        final: dict[str, Any] = {}
        try:
            with self.http.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as response:
                if response.status_code != 200:
                    response.read()
                    raise ClientError(_message(response), 2 if response.status_code < 500 else 1,
                                      response.status_code)
                for event in _events(response.iter_lines()):
                    if event["choices"]:
                        piece = event["choices"][0]["delta"].get("content") or ""
                        parts.append(piece)
                        on_text(piece)
                    else:
                        final = event
        except httpx.HTTPError as exc:
            raise ClientError(f"request failed: {exc}") from None
        return "".join(parts), final


def _events(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    for line in lines:
        if line.startswith("data: ") and line != "data: [DONE]":
            yield json.loads(line.removeprefix("data: "))
