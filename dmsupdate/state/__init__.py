"""Framework-free core shared by the agent and the control plane (no Django here)."""
