"""Errors shared by every model's serving code, each with the reason label the adapter counts it
under in sentinel_request_errors_total (monitor.types.SENTINEL_ERROR_REASONS lists the same)."""


class InvalidRequest(ValueError):
    """A request the model cannot serve; the message is sent back to the client."""


class UpstreamError(RuntimeError):
    """A model a pipeline calls (BLS) answered with an error."""
