"""agenthost engine. Plugin authors import `contracts`; `host.testing` is their engine module."""

__version__ = "0.1.0"
