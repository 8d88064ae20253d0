"""The data-server agent `dms-update` (no Django here)."""
