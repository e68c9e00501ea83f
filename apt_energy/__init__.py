"""apt-energy: the command line that wires the pipeline's packages together, and their shared contract."""

from __future__ import annotations

__all__ = ["__version__"]
__version__ = "0.1.0"
