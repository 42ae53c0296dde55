"""Errors a policy backend raises; the HTTP layer maps them to 503."""


class PolicyUnavailable(RuntimeError):
    """The policy backend cannot serve requests (not started, dead, unreachable)."""
