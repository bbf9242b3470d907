"""Errors that services raise; the API turns each into its HTTP status with the message intact."""


class ServiceError(Exception):
    """A refusal a user can act on. `field` names the input at fault, when one is."""

    status_code = 400

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidInput(ServiceError):
    status_code = 400


class NotFound(ServiceError):
    status_code = 404


class Conflict(ServiceError):
    """The request is well-formed but the object's state refuses it (closed batch, done assignment)."""

    status_code = 409


class Busy(ServiceError):
    """A race that the client should simply retry (every lease attempt lost to a concurrent one)."""

    status_code = 503
