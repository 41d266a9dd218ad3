"""Process supervisors: --reload (a watcher restarting one child) and --workers N (pre-fork)."""
