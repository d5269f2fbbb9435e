"""heatsync.agents: the Policy protocol, baseline controllers and adapters (issue 5)."""
