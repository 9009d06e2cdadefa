"""Port links through this server's own HTTP endpoint, for deployments with a `--public-url`.

A local port link listens on the server host's loopback, which a remote user cannot open. With a
public URL, get_link answers `<public url>/links/<token>/` instead, and the HTTP app forwards what
arrives there to the loopback link (transport/http_links.py). The token (128 random bits) is a
capability: it is minted only for the session's owner, after the same authentication and ownership
checks as every tool call, and whoever holds the URL reaches that one port of that one session
(a browser cannot send the bearer token). It stops working when the session ends: every request
checks that the session is still live. The server's own bearer token is never needed, nor passed on.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass

#: Links kept at most (oldest forgotten first): a bound on what a busy server remembers.
MAX_LINKS = 4096


@dataclass(frozen=True)
class PublicLink:
    """Where a token leads: a session's port, through the backend's loopback link `target`."""

    session_id: str
    port: int
    target: str


class PublicLinks:
    """The tokens of the links published under the server's public URL."""

    def __init__(self, public_url: str, alive: Callable[[str], bool]) -> None:
        self.base = public_url.rstrip("/") + "/links/"
        self._alive = alive
        self._links: dict[str, PublicLink] = {}
        self._by_target: dict[str, str] = {}

    def publish(self, session_id: str, port: int, target: str) -> str:
        """The public URL of a loopback link (the same one each time for the same link)."""
        token = self._by_target.get(target)
        if token is None or token not in self._links:
            token = secrets.token_urlsafe(16)
            self._links[token] = PublicLink(session_id, port, target)
            self._by_target[target] = token
            while len(self._links) > MAX_LINKS:
                oldest = next(iter(self._links))
                self._by_target.pop(self._links.pop(oldest).target, None)
        return f"{self.base}{token}/"

    def resolve(self, token: str) -> PublicLink | None:
        """The link behind `token`, if its session is still live (else it is forgotten)."""
        link = self._links.get(token)
        if link is None:
            return None
        if not self._alive(link.session_id):
            del self._links[token]
            self._by_target.pop(link.target, None)
            return None
        return link
