"""Textual front end: screens, widgets and modals. Never imports torch."""
