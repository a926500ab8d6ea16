"""Desired child objects, one module per kind of child; each a pure function to a plain dict."""
