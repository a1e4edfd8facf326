import pytest

from cds_service import create_app
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
