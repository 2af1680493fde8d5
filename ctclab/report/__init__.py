"""The report: runs every notebook (papermill), exports them and writes report/index.html."""
