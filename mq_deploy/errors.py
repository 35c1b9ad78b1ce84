"""The one exception type users see: a message that names the problem and the fix."""


class MQDeployError(Exception):
    """A user-facing error. The CLI prints `error: <message>` and exits with status 2."""
