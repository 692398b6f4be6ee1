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


class TooLarge(StreamerError):
    status = 413


class UnsupportedMedia(StreamerError):
    status = 415


class Busy(StreamerError):
    """A limit is reached (sessions, queued speech); try again later."""

    status = 429


class Cancelled(StreamerError):
    """A render job dropped before it ran (its session was interrupted or closed)."""

    status = 409


class NotReady(StreamerError):
    """The service is starting (templates preparing, models loading)."""

    status = 503


class WorkerDied(StreamerError):
    """The render worker holding a job exited or stopped answering."""

    status = 503


class ModelError(StreamerError):
    """Model files are missing or do not match what the renderer expects."""

    status = 500
