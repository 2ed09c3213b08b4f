"""Tests of the steering service."""
