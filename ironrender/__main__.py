from ironrender.cli import main

raise SystemExit(main())
