from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "API tokens and roles"

    def ready(self) -> None:
        from accounts import schema  # noqa: F401 - the API schema's token authentication
