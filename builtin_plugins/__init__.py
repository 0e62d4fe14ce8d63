"""Plugins shipped with agenthost, registered through the same entry points as anyone's."""
