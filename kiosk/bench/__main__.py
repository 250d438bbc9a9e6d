"""``python -m kiosk.bench`` (what ``scripts/bench`` runs)."""

import sys

from kiosk.bench.cli import main

sys.exit(main())
