"""The soak run uses the chaos suite's isolated, supervised pipeline (tests/chaos/conftest.py)."""

from tests.chaos.conftest import chaos, slack

__all__ = ["chaos", "slack"]
