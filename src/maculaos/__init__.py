"""MaculaOS."""
