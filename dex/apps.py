"""The market app's configuration."""

from django.apps import AppConfig


class DexConfig(AppConfig):
    name = "dex"
    verbose_name = "Market (tokens, pools, venues, simulated chain)"
    default_auto_field = "django.db.models.BigAutoField"
