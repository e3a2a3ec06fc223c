# Kept minimal on purpose: anything that fails here runs before the safe-mode window in main.py.
