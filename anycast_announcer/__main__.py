from anycast_announcer.cli import main

raise SystemExit(main())
