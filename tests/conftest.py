import io
import json
import logging

import pytest

from cds_service import create_app
from cds_service.observability import JsonFormatter
from cds_service.knowledge import load
from builders import TODAY
from browser import browser, browser_page  # noqa: F401  (one Playwright session for every browser test)


@pytest.fixture
def app(tmp_path):
    app = create_app({"database_url": f"sqlite:///{tmp_path / 'cds.db'}"})
    app.extensions["cds"].handler.today = lambda: TODAY
    return app


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(scope="session")
def k():
    """The project's knowledge base, loaded once."""
    return load()


@pytest.fixture
def make_client(tmp_path):
    """A test client for an app built with Settings overrides (lower-case field names)."""
    def make(**overrides):
        app = create_app({"database_url": f"sqlite:///{tmp_path / 'cds.db'}", **overrides})
        app.extensions["cds"].handler.today = lambda: TODAY
        return app.test_client()
    return make


@pytest.fixture
def log_lines():
    """The service's JSON log lines written during the test, parsed."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("cds_service")
    logger.addHandler(handler)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    logger.removeHandler(handler)
