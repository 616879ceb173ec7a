"""The status page the admin server serves at / (its HTML, script and style: no build step,
nothing from another origin). Read once, then served as the same bytes to every client."""

from __future__ import annotations

from functools import cache
from importlib import resources

TYPES = {"html": "text/html; charset=utf-8", "js": "text/javascript; charset=utf-8",
         "css": "text/css; charset=utf-8"}


@cache
def page_file(name: str) -> tuple[int, str, bytes, list[tuple[str, str]]]:
    """(status, content type, body, headers) of one of the page's files."""
    body = resources.files(__name__).joinpath(name).read_bytes()
    return 200, TYPES[name.rsplit(".", 1)[1]], body, []
