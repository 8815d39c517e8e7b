"""The errors services raise for the HTTP layer to answer: a status and OpenAI's type, param and code."""

from __future__ import annotations


class ApiError(Exception):
    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code


def invalid(message: str, param: str | None = None, code: str = "invalid_value") -> ApiError:
    return ApiError(400, message, param=param, code=code)


def not_found(message: str, param: str | None = None) -> ApiError:
    return ApiError(404, message, param=param, code="not_found")


def bounded(value: int | None, default: int, maximum: int, param: str) -> int:
    """`value` (or the default when absent), refused with a 400 above `maximum`."""
    value = default if value is None else value
    if value > maximum:
        raise invalid(f"{param} must be between 1 and {maximum}, got {value}", param=param)
    return value
