"""The one exception type that launch.py turns into a single clear error line."""


class UserError(Exception):
  """Bad input from the user: a config, a file, a flag. Printed as one line."""


class NonFiniteError(UserError):
  """The loss or the gradients became NaN or inf."""
