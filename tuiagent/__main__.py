from tuiagent.cli.main import main

raise SystemExit(main())
