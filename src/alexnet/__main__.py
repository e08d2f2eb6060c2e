from alexnet.cli.main import main

raise SystemExit(main())
