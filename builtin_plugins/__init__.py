"""Plugins shipped with agenthost, registered through the same `agenthost.plugins` entry points as anyone's."""
