"""Assertions shared by the HTTP tests."""

from __future__ import annotations

import httpx


def api_error(response: httpx.Response, status: int) -> dict:
    """Assert an error response in OpenAI's shape with this status; return its `error` object."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"]
    return body["error"]
