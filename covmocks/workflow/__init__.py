"""The driver and what it needs: plan, metadata, estimate, run state, retry policy, notifications,
dry run, the Parsl configuration of the pilot jobs, and the notebook's session."""
