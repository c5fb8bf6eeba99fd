"""/api/docs renders without internet: the page and every asset it references come
from this server, and its Content-Security-Policy allows nothing else."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from urllib.parse import urljoin, urlparse

from api.apidocs.routes import CONTENT_SECURITY_POLICY


class _References(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("src", "href") and value:
                self.urls.append(value)


def _references(html: str) -> list[str]:
    parser = _References()
    parser.feed(html)
    return parser.urls


def _is_external(url: str) -> bool:
    parsed = urlparse(url)
    return bool(parsed.scheme or parsed.netloc) and parsed.netloc not in ("", "localhost")


def test_docs_page_and_every_asset_are_served_locally(client):
    page = client.get("/api/docs")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    references = _references(html)
    assert len(references) >= 3, html  # css, bundle, initializer
    assert [url for url in references if _is_external(url)] == []
    fetched = {}
    for url in references:
        response = client.get(urljoin("/api/docs", url))
        assert response.status_code == 200, url
        assert response.data, url
        fetched[url] = response
    scripts = [url for url in references if url.endswith(".js")]
    assert any(url.endswith("swagger-ui-bundle.js") for url in scripts)
    assert all(fetched[url].mimetype in ("text/javascript", "application/javascript") for url in scripts)
    # The initializer points Swagger UI at our own document and turns the public
    # validator off (it would call validator.swagger.io).
    init = next(fetched[url] for url in scripts if url.endswith("init.js")).get_data(as_text=True)
    assert "validatorUrl: null" in init
    assert not re.search(r"https?://", init)
    spec_url = re.search(r'data-spec-url="([^"]+)"', html).group(1)
    assert not _is_external(spec_url)
    assert client.get(spec_url).status_code == 200


def test_docs_page_has_a_strict_content_security_policy(client):
    response = client.get("/api/docs")
    policy = response.headers["Content-Security-Policy"]
    assert policy == CONTENT_SECURITY_POLICY
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self'"  # no inline script, no CDN
    assert directives["connect-src"] == "'self'"
    assert "http" not in policy
    # The page itself has no inline script for the policy to block.
    html = response.get_data(as_text=True)
    assert re.findall(r"<script>(.*?)</script>", html, re.S) == []


def test_only_the_pages_assets_are_served(client):
    assert client.get("/api/docs/assets/index.html").status_code == 404
    assert client.get("/api/docs/assets/../__init__.py").status_code == 404
