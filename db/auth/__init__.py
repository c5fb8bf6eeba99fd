"""People: users and passwords (`users`, `user_admin`), refresh-token rotation and
access-token issue (`tokens`), and their queries (`repository`, `token_repository`)."""
