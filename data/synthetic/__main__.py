from tools.synthetic import main

raise SystemExit(main())
