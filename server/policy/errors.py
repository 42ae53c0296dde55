"""Errors a policy backend raises; the HTTP layer maps them to 503 (or 400 if rejected)."""


class PolicyUnavailable(RuntimeError):
    """The policy backend cannot serve requests (not started, dead, unreachable)."""


class PolicyRejected(ValueError):
    """The backend refused a request as invalid (e.g. a prompt longer than its context).

    The client can fix that, so it is a 400, not a 503 or a 500.
    """

    @property
    def context_too_long(self) -> bool:
        """Whether the prompt did not fit the context (in-process or vLLM's wording)."""
        text = str(self)
        return "maximum model length" in text or "maximum context length" in text
