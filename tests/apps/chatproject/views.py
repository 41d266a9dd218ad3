import os

from django.http import JsonResponse
from django.shortcuts import render


def index(request):
    return render(request, "index.html")


def pid(request):
    return JsonResponse({"pid": os.getpid()})
