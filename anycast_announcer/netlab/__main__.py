"""``python -m anycast_announcer.netlab`` runs the ``anycast-netlab`` CLI."""

import sys

from anycast_announcer.netlab.cli import main

sys.exit(main())
