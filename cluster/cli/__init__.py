"""The `ragtune` command (`cluster.cli:main`): commands in `commands`, the one HTTP client in `client`, the demo's
flow in `demo`."""

from __future__ import annotations

import sys


def main() -> None:
    from cluster.cli.client import ClientError
    from cluster.cli.commands import app, say_error

    try:
        app()
    except ClientError as exc:  # a refused or failed API call: the server's message, no traceback
        say_error(str(exc))
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
