"""Options shared by every test folder."""

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="rewrite tests/golden/rendered/* from the current code (review the diff before committing)",
    )
