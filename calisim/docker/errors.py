"""How the emulated dockerd says no, in a leaf module that every layer of it can raise from: an
Engine API status with Docker's message (APIError: the store's and the routes' refusals), and
libnetwork's refusal (DockerError: the CNM flow's and its namespace set-up's), which the routes
answer as dockerd does (404 for what is not found, else 500)."""


class APIError(Exception):
    """An Engine API answer other than success: its HTTP status and Docker's message."""

    def __init__(self, status: int, message: str = ""):
        super().__init__(message)
        self.status = status


def not_modified() -> APIError:
    return APIError(304)  # start of a running container, stop of a stopped one: success, nothing done


class DockerError(RuntimeError):
    """What dockerd answers ("Error response from daemon: ...")."""
