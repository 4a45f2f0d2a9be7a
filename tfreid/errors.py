"""The error type of a user's mistake, as opposed to a bug.

`UserError` is raised where the message alone tells the user what to fix (a flag value, a
folder, a name, a file): the tools print it as one line, `Error: <message>`, without a
traceback (see `tfreid.cli`). It is a ValueError, so code that catches ValueError keeps working.

Besides it, the tools treat as user errors the ValueError / KeyError / TypeError / OSError
(FileNotFoundError, ...) that tfreid's own code raises with a message, and the zoo's errors
(`tfreid.zoo.ZooError`); an error raised inside TensorFlow, Keras or NumPy is a bug or an
unchecked input and keeps its traceback.
"""


class UserError(ValueError):
    """A problem with what the user gave; the message names it and what was expected."""
