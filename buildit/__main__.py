from __future__ import annotations

from buildit.cli import main

main()
