"""calicoctl's one error: a leaf module, so that every command module can raise it without
importing the package that dispatches to them."""


class CommandError(RuntimeError):
    """A calicoctl failure: printed as is, exit code 1."""
