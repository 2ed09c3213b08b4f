"""Nightly fill: the popularity forecast and placement planner (pure), later the fill agent."""
