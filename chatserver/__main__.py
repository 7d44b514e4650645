import sys

from chatserver.cli import main

sys.exit(main())
