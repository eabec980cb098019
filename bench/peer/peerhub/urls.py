"""HTTP routes of the peer."""
from django.urls import path

from . import views

urlpatterns = [path("api/v1/orgs/<str:org_id>/events", views.org_events)]
