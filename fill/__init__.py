"""Nightly fill: the planner (fill/planner/, run centrally) and the agent (fill/agent/, run on
each appliance); fill/cli.py is `edgefleet fill` for both."""
