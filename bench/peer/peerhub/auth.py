"""JWT authentication for WebSocket connections, the way Django shops usually add it to Channels: a
middleware that reads `?token=` and puts who the caller is into the scope.

The peer has no user table, so the "user" is the verified token's claims (`sub`, `orgs`) rather than a
row fetched with `database_sync_to_async`; that only changes the cost of connecting, not of fan-out.
"""
from urllib.parse import parse_qs

import jwt
from channels.middleware import BaseMiddleware
from django.conf import settings


def verify(token):
    """The claims of a valid HS256 JWT signed with the hub's secret, or None."""
    try:
        return jwt.decode(token, settings.JWT_SECRET, algorithms=["HS256"], options={"require": ["sub", "exp"]})
    except jwt.PyJWTError:
        return None


class JWTAuthMiddleware(BaseMiddleware):
    """Sets `scope["claims"]` from the `token` query parameter (None when missing or invalid)."""

    async def __call__(self, scope, receive, send):
        scope = dict(scope)
        query = parse_qs(scope.get("query_string", b"").decode())
        token = query.get("token", [None])[0]
        scope["claims"] = verify(token) if token else None
        return await super().__call__(scope, receive, send)
