"""WebSocket routes of the peer."""
from django.urls import re_path

from . import consumers

websocket_urlpatterns = [
    re_path(r"^ws/events/(?P<org_id>[A-Za-z0-9_.-]{1,64})/$", consumers.OrganizationEventsConsumer.as_asgi()),
]
