"""The one error type the notebook layer raises: its message is shown to the agent as is."""


class JupyterError(Exception):
    """A failure the agent should read: bad input, a missing file, a dead kernel, a conflict."""
