"""Signals of the servers app, for apps above it (notifications) to follow servers without servers knowing them."""

from django.dispatch import Signal

# Sent after servers' recorded status may have changed (reports, a failed contact): `server_ids`.
server_changed = Signal()
