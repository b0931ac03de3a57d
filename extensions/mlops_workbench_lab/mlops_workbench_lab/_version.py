# Keep in step with "version" in package.json (tests/test_extension.py checks they agree).
__version__ = "0.1.0"
