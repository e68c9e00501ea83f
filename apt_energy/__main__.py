from apt_energy.cli import main

raise SystemExit(main())
