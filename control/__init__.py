"""The control plane: appliances register and heartbeat; steering pulls the fleet snapshot."""
