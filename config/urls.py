"""HTTP URLs (the WebSocket ones are in orders/routing.py)."""

from django.contrib import admin
from django.urls import path
from django.views.generic import TemplateView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from orders import views

urlpatterns = [
    path("", TemplateView.as_view(template_name="dashboard.html"), name="dashboard"),
    path("health", views.HealthView.as_view(), name="health"),
    path("api/orders/execute", views.OrderExecuteView.as_view(), name="order-execute"),
    path("api/orders", views.OrderListView.as_view(), name="order-list"),
    path("api/orders/<str:order_id>", views.OrderDetailView.as_view(), name="order-detail"),
    path("api/orders/<str:order_id>/cancel", views.OrderCancelView.as_view(), name="order-cancel"),
    path(
        "api/orders/<str:order_id>/requeue",
        views.OrderRequeueView.as_view(),
        name="order-requeue",
    ),
    path("api/quote", views.QuoteView.as_view(), name="quote"),
    path("api/schema", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("admin/", admin.site.urls),
]

handler400 = "orders.errors.bad_request_view"
handler404 = "orders.errors.not_found_view"
handler500 = "orders.errors.server_error_view"
