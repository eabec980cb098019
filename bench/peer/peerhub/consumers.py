"""The one WebSocket consumer the peer has: an organization's events, as rtctl's `/ws/events/{org_id}/`."""
from channels.generic.websocket import AsyncJsonWebsocketConsumer


def group_name(org_id):
    """The channel-layer group of an organization's members."""
    return f"org_{org_id}"


class OrganizationEventsConsumer(AsyncJsonWebsocketConsumer):
    """Members of an org get its events; anything they send but `ping` is ignored."""

    group = None

    async def connect(self):
        self.org_id = self.scope["url_route"]["kwargs"]["org_id"]
        claims = self.scope.get("claims")
        # Accept, then close with a code: a browser never sees a code sent before the upgrade.
        await self.accept()
        if claims is None:
            await self.close(code=4001, reason="invalid token")
            return
        if self.org_id not in [str(org) for org in claims.get("orgs", [])]:
            await self.close(code=4003, reason="not a member of this organization")
            return
        self.group = group_name(self.org_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.send_json(
            {
                "type": "connection_established",
                "message": "Connected to organization events",
                "user_id": str(claims["sub"]),
                "org_id": self.org_id,
            }
        )

    async def disconnect(self, code):
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content, **kwargs):
        if isinstance(content, dict) and content.get("type") == "ping":
            reply = {"type": "pong", "timestamp": content.get("timestamp")}
            if "request_id" in content:
                reply["request_id"] = content["request_id"]
            await self.send_json(reply)

    async def org_event(self, event):
        """A `group_send(..., {"type": "org.event", ...})` from the API view."""
        await self.send_json(
            {
                "type": "event",
                "event_type": event["event_type"],
                "data": event["data"],
                "org_id": self.org_id,
                "timestamp": event["timestamp"],
            }
        )
