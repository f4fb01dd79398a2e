"""What a router module needs of the app without importing it (``app.py`` includes the routers, so
they must not import ``app.py`` back): the services it calls and the error responses it documents."""

from typing import Any, Protocol

from conclave.config import Settings
from conclave.controller.service import RunService

from .errors import ErrorResponse

__all__ = ["ERRORS", "ServicesLike"]

ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorResponse} for code in (401, 403, 404, 409, 422, 503)}


class ServicesLike(Protocol):
    """``app.Services``: the lazily opened ``RunService`` and the settings."""

    settings: Settings

    @property
    def service(self) -> RunService: ...
