from hidemo.cli import main

raise SystemExit(main())
