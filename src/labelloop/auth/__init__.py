"""Users, roles, hashed passwords, API tokens and browser sessions."""

from labelloop.auth.passwords import hash_password, verify_password
from labelloop.auth.users import (
    ROLES,
    AuthError,
    User,
    authenticate,
    create_token,
    create_user,
    end_session,
    list_users,
    start_session,
    user_for_session,
    user_for_token,
)

__all__ = [
    "ROLES",
    "AuthError",
    "User",
    "authenticate",
    "create_token",
    "create_user",
    "end_session",
    "hash_password",
    "list_users",
    "start_session",
    "user_for_session",
    "user_for_token",
    "verify_password",
]
