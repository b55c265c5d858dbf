"""Modal dialogs: forms, confirmations, the welcome offer."""
