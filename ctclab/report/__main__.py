"""``python -m ctclab.report --profile quick``: run every notebook and write report/index.html."""

from ctclab.report.runner import main

raise SystemExit(main())
