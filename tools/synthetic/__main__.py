"""``python -m tools.synthetic``: the command line of :mod:`tools.synthetic.command`."""

from tools.synthetic.command import main

raise SystemExit(main())
