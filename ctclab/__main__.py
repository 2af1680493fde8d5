"""``python -m ctclab COMMAND [arguments]``: the package's commands in one place.

Each command is a module's ``main(argv)``, also reachable as ``python -m <module>``:

    transcribe   ctclab.transcribe    audio files -> text with the final speech model
    ingest       ctclab.data.ingest   LibriSpeech / LJSpeech folders -> descriptor files
    corpus       ctclab.data.corpus   build the embedded speech corpus
    report       ctclab.report        run every notebook and write report/index.html
    export       ctclab.export        a trained run -> SavedModel + .keras usable without the project
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

COMMANDS = {
    "transcribe": "ctclab.transcribe",
    "ingest": "ctclab.data.ingest",
    "corpus": "ctclab.data.corpus",
    "report": "ctclab.report.runner",
    "export": "ctclab.export",
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``argv[0]``'s module's ``main`` with the other arguments; its exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        names = ", ".join(COMMANDS)
        print(f"usage: python -m ctclab COMMAND [arguments]; commands: {names}", file=sys.stderr)
        return 0 if argv[:1] in (["-h"], ["--help"]) else 2
    status = importlib.import_module(COMMANDS[argv[0]]).main(argv[1:])
    return int(status or 0)


if __name__ == "__main__":
    raise SystemExit(main())
