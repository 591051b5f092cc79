"""Parsl apps: the code that runs on workers. ``box_task`` generates, validates and measures one
box; ``lifeline`` keeps their helper processes from outliving them."""
