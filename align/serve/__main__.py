"""`python -m align.serve CHECKPOINT`: see align/serve/server.py."""
import sys

from .server import main

sys.exit(main())
