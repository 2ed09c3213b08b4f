"""The nightly planner (`edgefleet fill plan`), run centrally: forecast, placement, manifests."""
