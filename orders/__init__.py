"""The faces of the engine: the Order and OrderEvent models, the REST API, WebSocket consumers and
the admin."""
