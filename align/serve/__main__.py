import sys

from align.serving.server import main

sys.exit(main())
