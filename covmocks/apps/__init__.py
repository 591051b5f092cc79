"""Parsl apps: the code that runs on workers. ``box`` generates and validates one box."""
