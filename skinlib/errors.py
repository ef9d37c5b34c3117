"""User-facing errors: bad input that deserves one clear line, not a traceback."""


class SkinlibError(Exception):
    """An error in the user's input (file, folder, profile key, CSV, ...).

    The message names the file or key and says what is wrong; the command line prints
    it on one line to stderr and exits with code 2.
    """
