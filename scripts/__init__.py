"""Scripts of the project; `scripts.load` is importable by the tests."""
