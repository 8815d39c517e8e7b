"""The `ragtune` command (`cluster.cli:main`); its commands are in `commands`."""

from __future__ import annotations


def main() -> None:
    from cluster.cli.commands import main as run

    run()
