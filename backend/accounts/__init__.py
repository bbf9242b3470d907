"""Users and roles: annotator, admin, researcher (Django groups) and superuser."""
