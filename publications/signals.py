"""Signals other apps listen to, so publications never has to know them."""

from django.dispatch import Signal

# Sent after a publication of an update committed: `dataset`, `user`, `actor`.
# The servers app starts (or joins) the debounced update of the dataset's servers.
update_published = Signal()
