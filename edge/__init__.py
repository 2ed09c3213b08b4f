"""The edge appliance: an LMDB content index and a byte-range HTTP server."""
