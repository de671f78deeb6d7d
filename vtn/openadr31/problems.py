"""RFC 7807 problem bodies for every error the 3.1 edge returns.

The YAML declares its error responses as application/json with the `problem` schema, so
that is the content type sent (not application/problem+json). A 400 about the body or
the query names each field in `errors` (an RFC 7807 extension member).
"""
from __future__ import annotations

import logging
from typing import Iterable

from aiohttp import web
from pydantic import ValidationError

log = logging.getLogger(__name__)

TITLES = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
          405: "Method Not Allowed", 409: "Conflict", 413: "Payload Too Large",
          500: "Internal Server Error"}


MAX_URI = 8000      # the problem schema's maxLength of `instance`


class Problem(Exception):
    """Raised by a handler; the middleware turns it into the response."""

    def __init__(self, status: int, detail: str, errors: Iterable[dict] = (),
                 headers: dict | None = None, **extra):
        super().__init__(detail)
        self.status, self.detail = status, detail
        self.errors, self.headers, self.extra = list(errors), headers or {}, extra


def bad_request(field: str, message: str) -> Problem:
    return Problem(400, f"{field}: {message}", [{"field": field, "message": message}])


def from_validation(err: ValidationError, prefix: str = "") -> Problem:
    errors = [{"field": prefix + ".".join(str(part) for part in e["loc"]) or "body",
               "message": e["msg"]} for e in err.errors(include_url=False)]
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
    return Problem(400, detail, errors)


def respond(request: web.Request, problem: Problem) -> web.Response:
    body = {"type": "about:blank", "title": TITLES.get(problem.status, "Error"),
            "status": problem.status, "detail": problem.detail}
    instance = str(request.url.with_query(None))
    if len(instance) <= MAX_URI:
        body["instance"] = instance
    if problem.errors:
        body["errors"] = problem.errors
    body.update(problem.extra)
    return web.json_response(body, status=problem.status, headers=problem.headers)


@web.middleware
async def problem_middleware(request: web.Request, handler):
    try:
        return await handler(request)
    except Problem as problem:
        return respond(request, problem)
    except web.HTTPException as err:
        if err.status < 400:
            raise
        headers = {"Allow": err.headers["Allow"]} if "Allow" in err.headers else None
        return respond(request, Problem(err.status, err.reason, headers=headers))
    except Exception:
        # A bug of ours: logged with its traceback, the client gets a problem body.
        log.exception("OpenADR 3.1 %s %s failed", request.method, request.path)
        return respond(request, Problem(500, "the VTN failed to handle this request"))
