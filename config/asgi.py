"""ASGI entry point: HTTP through Django, WebSocket through Channels (served by daphne)."""

import os
import sys

import django

from config.handler import OneHopASGIHandler, daphne_bodies_to_django

# daphne's access log goes to stdout, which Python buffers in 8 KB blocks when it is a pipe or a
# file (honcho under `make run`, a service manager): a request's line showed up minutes later, or
# at shutdown. daphne took this stream before importing us, so it is reconfigured in place.
sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup(set_prefix=False)  # as django.core.asgi.get_asgi_application does
# Not get_asgi_application()'s handler: this one runs a request in one worker-thread call.
django_asgi_app = OneHopASGIHandler()
daphne_bodies_to_django()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import OriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402
from django.urls import get_resolver  # noqa: E402

from config.heap import heap_freeze  # noqa: E402
from config.warmup import web_warm  # noqa: E402
from orders.routing import websocket_urlpatterns  # noqa: E402


class BrowserOriginValidator(OriginValidator):
    """Browsers always send Origin, so a cross-site page is refused when its origin is not ours.
    Programs (trading bots, the benchmark) send none and authenticate otherwise: let them in."""

    def valid_origin(self, parsed_origin):  # type: ignore[no-untyped-def]
        if parsed_origin is None:
            return True
        return super().valid_origin(parsed_origin)


allowed_origins = settings.WEBSOCKET_ALLOWED_ORIGINS or settings.ALLOWED_HOSTS

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": BrowserOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns)), allowed_origins
        ),
    }
)

# The loop thread hands requests to the HTTP threads and delivers every update: it must not wait
# long for the interpreter lock while one of them runs a view (settings.WEB_SWITCH_INTERVAL_MS).
sys.setswitchinterval(settings.WEB_SWITCH_INTERVAL_MS / 1000)

# Every view imported now (Django imports them on the first request), connections opened and
# threads started (config.warmup), and then what the process holds from here on kept out of the
# garbage collector's full passes (config.heap).
get_resolver().url_patterns  # noqa: B018
web_warm(django_asgi_app)
heap_freeze("web")
