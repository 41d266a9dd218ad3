from django.urls import path

from .consumers import ChatConsumer, IndexConsumer

websocket_urlpatterns = [
    path("ws/index/", IndexConsumer.as_asgi()),
    path("ws/chat/<str:room_name>/", ChatConsumer.as_asgi()),
]
