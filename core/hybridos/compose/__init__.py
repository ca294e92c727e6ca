"""Composing images: treefile -> packages -> tree -> OSTree commit (``hybridos compose tree``)."""
