from django.http import JsonResponse
from django.shortcuts import render

from .models import Message


def index(request):
    return render(request, 'chat/index.html', {'greeting': 'version 1'})


def messages(request):
    return JsonResponse({'messages': list(Message.objects.values_list('text', flat=True))})
