from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "API tokens and roles"

    def ready(self) -> None:
        from accounts import schema, signals  # noqa: F401 - schema extension and login-failure receiver
