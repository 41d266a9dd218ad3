from django.urls import path

from .consumers import IndexConsumer

websocket_urlpatterns = [
    path('ws/index/', IndexConsumer.as_asgi()),
]
