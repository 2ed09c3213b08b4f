"""Steering: ranked signed URLs to the nearest healthy appliance that holds the file."""
