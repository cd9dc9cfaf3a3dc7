import sys

from snoop.cli.main import main

sys.exit(main())
