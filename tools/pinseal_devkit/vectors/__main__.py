"""`python -m pinseal_devkit.vectors OUTDIR` (make vectors): regenerate the normative vectors."""

from pinseal_devkit.vectors.writer import main

raise SystemExit(main())
