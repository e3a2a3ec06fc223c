"""Every benchmark behind `make bench`, each writing its figures in one report format (report.py)."""
