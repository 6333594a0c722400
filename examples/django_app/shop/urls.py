"""The example API's routes and views (one module keeps the example short)."""

from __future__ import annotations

import json
import os
import time

from django.http import HttpRequest, JsonResponse
from django.urls import include, path


def item(request: HttpRequest, id: int) -> JsonResponse:  # noqa: A002 - the route names it id
    time.sleep(0.01)  # a database read, say
    response = JsonResponse({"id": id, "name": f"item {id}", "worker": os.getpid()})
    response["Cache-Control"] = "public, max-age=60"  # cacheable by the agent
    return response


def search(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"q": request.GET.get("q", ""), "hits": 3, "worker": os.getpid()})


def order(request: HttpRequest) -> JsonResponse:
    items = json.loads(request.body or b"[]")
    return JsonResponse({"order": 1, "items": items}, status=201)


api = [path("orders", order)]

urlpatterns = [
    path("items/<int:id>", item),
    path("search", search),
    path("api/", include(api)),
]
