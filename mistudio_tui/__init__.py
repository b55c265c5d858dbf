"""miStudio: a terminal studio for mechanistic interpretability with sparse autoencoders."""

from __future__ import annotations

__version__ = "0.1.0"
