"""WebSocket URL routing."""

from django.urls import path, re_path

from orders import consumers

websocket_urlpatterns = [
    path("api/orders/execute", consumers.OrderExecuteConsumer.as_asgi()),
    re_path(r"^ws/orders/(?P<order_id>[^/]+)/?$", consumers.OrderStreamConsumer.as_asgi()),
    path("ws", consumers.FirehoseConsumer.as_asgi()),
    path("ws/", consumers.FirehoseConsumer.as_asgi()),
]
