"""(being written: see the owning issue)."""

from __future__ import annotations

__all__: list[str] = []
