"""`python -m eventing.cli`: the `victor` command line (how `victor dev` starts each process)."""

from eventing.cli.main import main

raise SystemExit(main())
