"""The web console: chat, agents, plugins, memories, timeline and metrics in the browser.

Served by the host on its HTTP port (``/``), behind the same API key; server-rendered Jinja2
templates and htmx (vendored in ``static/``), no build step, installed at its first request
(`host.console.mount`). See docs/console.md.
"""

from __future__ import annotations

from .mount import mount_console

__all__ = ["mount_console"]
