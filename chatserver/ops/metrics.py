"""PLACEHOLDER: replaced by the realtime helper."""

routes: list = []
