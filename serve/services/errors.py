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


def page_cursor(after: str | None, prefix: str, what: str) -> int | None:
    """A list endpoint's `after` (an object id, `<prefix>-N`) as the row id N it names; 400 for anything else."""
    if not after:
        return None
    try:
        return int(after.removeprefix(f"{prefix}-"))
    except ValueError:
        raise invalid(f"after must be {what} ({prefix}-N), got {after!r}", param="after") from None


def bounded(value: int | None, default: int, maximum: int, param: str) -> int:
    """`value` (or the default when absent), refused with a 400 above `maximum`."""
    value = default if value is None else value
    if value > maximum:
        raise invalid(f"{param} must be between 1 and {maximum}, got {value}", param=param)
    return value
