"""The core: settings, accounts and roles, the audit log, batches, the checkpoint registry, errors and jobs."""
