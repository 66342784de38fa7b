"""How the emulated dockerd says no, in a leaf module that every layer of it can raise from:
libnetwork's refusal (DockerError: the CNM flow's and its namespace set-up's)."""


class DockerError(RuntimeError):
    """What dockerd answers ("Error response from daemon: ...")."""
