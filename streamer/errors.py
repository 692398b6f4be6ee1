"""One error hierarchy; `server/` maps each class to an HTTP status in one place."""


class StreamerError(Exception):
    """Base of every error the service reports to a caller."""

    status = 500


class BadInput(StreamerError):
    status = 400


class Unauthorized(StreamerError):
    status = 401


class Forbidden(StreamerError):
    status = 403


class NotFound(StreamerError):
    status = 404


class MethodNotAllowed(StreamerError):
    status = 405


class TooLarge(StreamerError):
    status = 413


class UnsupportedMedia(StreamerError):
    status = 415


class Busy(StreamerError):
    """A limit is reached (sessions, queued speech, render capacity); try again later."""

    status = 429

    def __init__(self, message: str = "", retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        """Seconds after which a retry may succeed (the `Retry-After` header), when known."""


class Conflict(StreamerError):
    """The request does not fit how the server is set up (e.g. `/chat` without `llm_url`)."""

    status = 409


class Cancelled(StreamerError):
    """A render job dropped before it ran (its session was interrupted or closed)."""

    status = 409


class NotReady(StreamerError):
    """The service is starting (templates preparing, models loading)."""

    status = 503


class WorkerDied(NotReady):
    """No render worker is running or the one holding a job died; they are being restarted."""


class RenderTimeout(StreamerError):
    """A render job's compute took longer than `render_timeout_s`; it is failed, not retried."""

    status = 504


class ModelError(StreamerError):
    """Model files are missing or do not match what the renderer expects."""

    status = 500


def error_class(name: str) -> type[StreamerError]:
    """The `StreamerError` subclass called `name` (errors crossing a worker pipe by name)."""
    found = globals().get(name)
    if isinstance(found, type) and issubclass(found, StreamerError):
        return found
    return StreamerError
