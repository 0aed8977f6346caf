"""Staff: who may see and do what in the workspace (roles), and the audit log of every
state-changing action taken there or through the CLI."""
