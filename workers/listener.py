"""Process entry point of the WebSocket listener: `python -m workers.listener [OPTIONS]`.

Thin (STYLE §3): the same as `kalshi-data listener OPTIONS`; `--config` comes from
`KD_CONFIG`. All logic lives in `app/listener/`.
"""

from __future__ import annotations

import sys

from app.cli import main as cli_main


def main(argv: list[str] | None = None) -> None:
    cli_main(["listener", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    main()
