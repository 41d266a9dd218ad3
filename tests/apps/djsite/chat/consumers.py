import json

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from .models import Message


class IndexConsumer(AsyncWebsocketConsumer):
    """The seed's consumer: echo {"message": ...} back to the same client, and keep it."""

    async def connect(self):
        await self.accept()

    async def disconnect(self, close_code):
        pass

    async def receive(self, text_data=None, bytes_data=None):
        message = json.loads(text_data)['message']
        count = await database_sync_to_async(self.store)(message)
        user = str(self.scope['user'])
        await self.send(text_data=json.dumps({'message': message, 'user': user, 'stored': count}, ensure_ascii=False))

    def store(self, message):
        Message.objects.create(text=message)
        return Message.objects.count()
