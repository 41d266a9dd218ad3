"""The one view. It is ``async`` so the request stays on the event loop: a sync view would add a
hop to Django's worker thread per request, which on one pinned core measures GIL hand-offs more
than the server."""

from django.http import JsonResponse


async def hello(request):
    return JsonResponse({"message": "Hello, world!", "method": request.method})
