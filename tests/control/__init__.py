"""Tests of the control plane (control/)."""
