import logging

import pytest


@pytest.fixture(autouse=True)
def _quiet_openleadr():
    # openleadr logs every message at INFO; keep test output readable.
    logging.getLogger("openleadr").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
