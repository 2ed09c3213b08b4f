"""The fill agent (`edgefleet fill run`), run on each appliance: fetch, verify, install, delete."""
