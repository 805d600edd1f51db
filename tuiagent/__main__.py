from tuiagent.entry import main

raise SystemExit(main())
