"""PLACEHOLDER: replaced by the pages helper."""

routes: list = []
