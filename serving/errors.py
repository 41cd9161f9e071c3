"""Errors with TF Serving's status codes (command-line mistakes: `core.cli.UserError`)."""

import grpc


class ServingError(Exception):
    """A request that cannot be served; `code` is the gRPC status the client receives."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


# gRPC carries a status message in a header, and clients refuse headers over 16 KB: a message that echoes what a
# client sent (a model name of 100 KB) would reach it as RESOURCE_EXHAUSTED instead of its own code.
MAX_MESSAGE_CHARS = 2000
MAX_ECHOED_CHARS = 200


def echoed(text: str) -> str:
    """What a client sent, as a message repeats it: cut to MAX_ECHOED_CHARS."""
    return text if len(text) <= MAX_ECHOED_CHARS else text[:MAX_ECHOED_CHARS] + f"… ({len(text)} characters)"


def not_found(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.NOT_FOUND, message)


def invalid_argument(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


def deadline_exceeded(what: str = "the request") -> ServingError:
    return ServingError(grpc.StatusCode.DEADLINE_EXCEEDED, f"Deadline exceeded: {what} was stopped when its "
                        "deadline passed (the client's, or the server's --max_request_seconds)")


def describe(error: Exception, limit: int = 500) -> str:
    """One line saying what went wrong: TensorFlow's "Graph execution error:" header and blank lines skipped."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    lines = [line for line in lines if not line.endswith("execution error:")] or [type(error).__name__]
    return lines[0][:limit]
