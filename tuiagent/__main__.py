from tuiagent.cli import main

raise SystemExit(main())
