"""`manage.py issue_token --user U --role R [--dataset D] [--labels a,b] [--server S]`: print a new API key."""

from __future__ import annotations

import getpass

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from accounts.models import ApiToken, Role
from audit.services import record
from publications.models import Dataset
from servers.models import Server


class Command(BaseCommand):
    help = (
        "Issue an API token and print its key (shown only this once). "
        "The user must exist unless --create-user is given; a created user has no "
        "password, so it can use the API but not log in to the dashboard."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--user", required=True, help="username the token acts as")
        parser.add_argument("--role", required=True, choices=[r.value for r in Role])
        parser.add_argument(
            "--dataset", action="append", default=[], help="publisher: limit to this dataset (repeatable)"
        )
        parser.add_argument("--labels", default="", help="publisher: comma-separated labels it may use")
        parser.add_argument("--server", help="agent: the one server it reports for (required for agents)")
        parser.add_argument("--name", default="", help="a name to recognise the token by")
        parser.add_argument("--create-user", action="store_true", help="create the user if it is missing")

    def handle(self, *args, **opts) -> None:
        role = opts["role"]
        labels = [label.strip() for label in opts["labels"].split(",") if label.strip()]
        if (opts["dataset"] or labels) and role != Role.PUBLISHER:
            raise CommandError("--dataset and --labels limit publisher tokens only")
        if role == Role.AGENT and not opts["server"]:
            raise CommandError("an agent token needs --server (the server it reports for)")
        if opts["server"] and role != Role.AGENT:
            raise CommandError("--server is only for agent tokens")
        datasets = []
        for name in opts["dataset"]:
            dataset = Dataset.objects.filter(name=name).first()
            if dataset is None:
                raise CommandError(f"no dataset named {name!r}")
            datasets.append(dataset)
        server = None
        if opts["server"]:
            server = Server.objects.filter(name=opts["server"]).first()
            if server is None:
                raise CommandError(f"no server named {opts['server']!r}")
        users = get_user_model().objects
        with transaction.atomic():
            user = users.filter(username=opts["user"]).first()
            created = False
            if user is None:
                if not opts["create_user"]:
                    raise CommandError(f"no user {opts['user']!r}; pass --create-user to create one")
                user = users.create_user(username=opts["user"], password=None)
                created = True
            token, key = ApiToken.issue(
                user, role, name=opts["name"], server=server, labels=labels, datasets=datasets
            )
            record(
                f"{getpass.getuser()} (manage.py)",
                "token.issued",
                user.get_username(),
                {
                    "token": token.name,
                    "prefix": token.prefix,
                    "role": role,
                    "datasets": [d.name for d in datasets],
                    "labels": labels,
                    "server": server.name if server else None,
                    "user_created": created,
                },
            )
        if created:
            self.stderr.write(f"created user {user.get_username()!r} (API only, no password)")
        self.stderr.write(f"issued {role} token {token.name!r} for {user.get_username()!r}; the key:")
        self.stdout.write(key)
