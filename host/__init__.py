"""agenthost engine. Plugin authors import `contracts`; `host.testing` is the one engine module for them."""

__version__ = "0.1.0"
