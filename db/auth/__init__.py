"""People: users and passwords (`users`), refresh-token rotation and access-token issue
(`tokens`), and their queries (`repository`, `token_repository`)."""
