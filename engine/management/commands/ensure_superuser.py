"""Create the first staff user from DJANGO_SUPERUSER_USERNAME / DJANGO_SUPERUSER_PASSWORD when
both are set and the user does not exist; otherwise say how to create one."""

from __future__ import annotations

import os

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create a superuser from the environment if asked to (used by `make run`)."

    def handle(self, *args: object, **options: object) -> None:
        username = os.environ.get("DJANGO_SUPERUSER_USERNAME")
        password = os.environ.get("DJANGO_SUPERUSER_PASSWORD")
        users = get_user_model().objects
        if not username or not password:
            if not users.filter(is_staff=True).exists():
                self.stdout.write(
                    "  No staff user yet: `uv run python manage.py createsuperuser` creates one."
                )
            return
        if users.filter(username=username).exists():
            return
        users.create_superuser(
            username=username,
            email=os.environ.get("DJANGO_SUPERUSER_EMAIL", ""),
            password=password,
        )
        self.stdout.write(self.style.SUCCESS(f"  created staff user {username}"))
