"""``python -m ip_pyro.cli``: the same entry point as the ``ip-pyro`` script (used under ``torchrun``)."""
import sys

from ip_pyro.cli import main

sys.exit(main())
