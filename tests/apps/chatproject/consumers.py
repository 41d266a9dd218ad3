import json
import os

from channels.generic.websocket import AsyncWebsocketConsumer


class IndexConsumer(AsyncWebsocketConsumer):
    """The seed's consumer: echo {"message": ...} back to the same client."""

    async def connect(self):
        await self.accept()

    async def disconnect(self, close_code):
        pass

    async def receive(self, text_data=None, bytes_data=None):
        message = json.loads(text_data)["message"]
        user = self.scope["user"]
        await self.send(text_data=json.dumps({"message": message, "user": str(user)}, ensure_ascii=False))


class ChatConsumer(AsyncWebsocketConsumer):
    """The Channels tutorial's room chat: every message goes to everyone in the room's group."""

    async def connect(self):
        self.room_group_name = "chat_" + self.scope["url_route"]["kwargs"]["room_name"]
        await self.channel_layer.group_add(self.room_group_name, self.channel_name)
        await self.accept()

    async def disconnect(self, close_code):
        await self.channel_layer.group_discard(self.room_group_name, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None):
        message = json.loads(text_data)["message"]
        await self.channel_layer.group_send(
            self.room_group_name, {"type": "chat.message", "message": message, "sender_pid": os.getpid()}
        )

    async def chat_message(self, event):
        await self.send(
            text_data=json.dumps(
                {"message": event["message"], "sender_pid": event["sender_pid"], "receiver_pid": os.getpid()},
                ensure_ascii=False,
            )
        )
