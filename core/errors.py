"""One exception type per kind of user error, each with a message a user can act on.

`code` is stable and machine-readable (the API puts it in its JSON errors); the message is
one line and never contains a path, a token or a traceback.
"""


class StudioError(Exception):
    """Base of every error a user can be shown as-is."""

    code = "error"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class BadImageError(StudioError):
    code = "bad_image"


class BadMaskError(StudioError):
    code = "bad_mask"


class BadParameterError(StudioError):
    code = "bad_parameter"


class UnknownModelError(StudioError):
    code = "unknown_model"


class ModelUnavailableError(StudioError):
    """The model is in the catalogue but cannot run on this machine now; says how to get it."""

    code = "model_unavailable"


class BusyError(StudioError):
    code = "busy"


class CancelledError(StudioError):
    code = "cancelled"


class OutOfMemoryError(StudioError):
    code = "out_of_memory"


class EngineError(StudioError):
    """A model failed while running (not the user's input); the message is still user-facing."""

    code = "engine_error"
