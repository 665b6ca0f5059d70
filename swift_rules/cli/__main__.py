import sys

from swift_rules.cli import main

sys.exit(main())
