"""Static files come from the project itself, with DEBUG off as in production: the dashboard's
script and styles, the admin's and the API docs' assets (WhiteNoise; daphne serves none)."""

from __future__ import annotations

import re

import pytest
from django.conf import settings


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/static/dashboard.js", "text/javascript"),
        ("/static/dashboard.css", "text/css"),
        ("/static/oe/admin.css", "text/css"),
        ("/static/admin/css/base.css", "text/css"),
    ],
)
def test_the_project_serves_its_static_files_with_debug_off(client, path, content_type) -> None:
    assert settings.DEBUG is False
    response = client.get(path)
    assert response.status_code == 200
    assert response["Content-Type"].startswith(content_type)


@pytest.mark.django_db
def test_the_dashboard_and_the_api_docs_load_nothing_from_elsewhere(client) -> None:
    for page in ("/", "/api/docs"):
        html = client.get(page).content.decode()
        urls = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert urls, page
        outside = [u for u in urls if re.match(r"^(https?:)?//", u)]
        assert outside == [], (page, outside)
        for url in urls:
            if url.startswith("/static/"):
                assert client.get(url).status_code == 200, url
