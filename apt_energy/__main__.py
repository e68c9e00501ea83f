from apt_energy.app.cli import main

raise SystemExit(main())
