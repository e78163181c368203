import sys

from hotline_api.cli import main

sys.exit(main())
