from iasf_search.cli import main

raise SystemExit(main())
