"""Signals of the servers app, for apps above it (notifications) to follow servers without servers knowing them."""

from django.dispatch import Signal

# Sent after a server's recorded status may have changed (a report, a failed contact): `server_id`.
server_changed = Signal()
