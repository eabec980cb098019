"""The publish API a backend calls: `POST /api/v1/orgs/{org_id}/events` with `X-API-Key`, answered 202
once the event is handed to the channel layer (live only, as in rtctl)."""
import hmac
import json
from datetime import datetime, timezone

from channels.layers import get_channel_layer
from django.conf import settings
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from .consumers import group_name


def error(status, code, message):
    """An error in the body shape rtctl answers with."""
    return JsonResponse({"error": {"code": code, "message": message}}, status=status)


def now():
    """RFC 3339 UTC with milliseconds, as the hub writes timestamps."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@csrf_exempt
@require_POST
async def org_events(request, org_id):
    key = request.headers.get("X-API-Key", "")
    if not hmac.compare_digest(key.encode(), settings.API_KEY.encode()):
        return error(401, "unauthorized", "invalid API key")
    try:
        body = json.loads(request.body)
    except ValueError as e:
        return error(400, "invalid_json", f"invalid JSON: {e}")
    event_type = body.get("event_type") if isinstance(body, dict) else None
    if not isinstance(event_type, str) or not event_type:
        return error(400, "invalid_request", "missing field `event_type`")
    timestamp = now()
    await get_channel_layer().group_send(
        group_name(org_id),
        {"type": "org.event", "event_type": event_type, "data": body.get("data", {}), "timestamp": timestamp},
    )
    return JsonResponse({"org_id": org_id, "event_type": event_type, "timestamp": timestamp}, status=202)
