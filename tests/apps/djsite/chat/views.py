from django.http import FileResponse, JsonResponse
from django.shortcuts import render

from .models import Message


def index(request):
    return render(request, 'chat/index.html', {'greeting': 'version 1'})


def messages(request):
    return JsonResponse({'messages': list(Message.objects.values_list('text', flat=True))})


def download(request):
    """A real file as a download (this module's source: the tests know its bytes)."""
    return FileResponse(open(__file__, 'rb'), as_attachment=True)
