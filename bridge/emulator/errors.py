"""The one error the emulator's domain raises; the Litestar layer renders it as ``{"error", "message"}``."""

from __future__ import annotations

from http import HTTPStatus


class ApiError(Exception):
    """An API error answer: ``status`` with ``{"error": <reason phrase>, "message": message}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    @property
    def error(self) -> str:
        return reason_phrase(self.status)

    def body(self) -> dict[str, str]:
        return {"error": self.error, "message": self.message}


def reason_phrase(status: int) -> str:
    """The standard reason phrase ("Not Found"), or "Error" for a status without one."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def bad_request(message: str) -> ApiError:
    return ApiError(400, message)


def not_found(message: str) -> ApiError:
    return ApiError(404, message)
