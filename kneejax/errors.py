"""The error every command reports in one line (`cli`): bad input, named by its path."""


class InputError(ValueError):
  """Bad input (file or dataset): names the offending path and the reason."""

  def __init__(self, path: str, reason: str):
    super().__init__(f'{path}: {reason}')
    self.path = str(path)
    self.reason = reason
