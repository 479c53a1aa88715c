"""What an error answer must be: the status expected, as an RFC 9457 problem."""

from __future__ import annotations

import httpx

from platform_runtime.http.problems import PROBLEM_MEDIA_TYPE


def problem_faults(response: httpx.Response, status: int) -> list[str]:
    """Why ``response`` is not a ``status`` problem (nothing when it is one)."""
    if response.status_code != status:
        return [f"answered {response.status_code}, not {status}: {response.text[:300]}"]
    faults = []
    content_type = response.headers.get("content-type", "")
    if content_type.split(";")[0].strip() != PROBLEM_MEDIA_TYPE:
        faults.append(f"content type {content_type!r}, not {PROBLEM_MEDIA_TYPE}")
    try:
        body = response.json()
    except ValueError:
        return [*faults, f"body is not JSON: {response.text[:300]}"]
    if not isinstance(body, dict):
        return [*faults, f"body is not an object: {body!r}"]
    if body.get("status") != status:
        faults.append(f"body status {body.get('status')!r}, not {status}")
    if not isinstance(body.get("title"), str) or not body["title"]:
        faults.append(f"body has no title: {body!r}")
    if not isinstance(body.get("detail"), str) or not body["detail"]:
        faults.append(f"body has no detail: {body!r}")
    return faults
