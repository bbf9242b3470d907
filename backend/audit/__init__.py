"""The audit log: who did what to which object, for admin and researcher actions."""
