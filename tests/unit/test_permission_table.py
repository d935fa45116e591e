"""The permission table of docs/security.md, rendered from the roles setup applies."""

from __future__ import annotations

from click.testing import CliRunner

from cli.main import cli
from contracts.registry import task_type_names
from infra.rabbitmq.permission_table import TOPIC_WRITE, layout_roles, permission_table, render


def test_a_cell_is_the_regex_in_code_with_its_bars_escaped_and_nothing_for_no_resource() -> None:
    table = render({"u": {"configure": "^$", "write": "^(a|b)$"}})

    assert table.splitlines() == ["| user | configure | write |", "|---|---|---|",
                                  "| `u` | nothing | `^(a\\|b)$` |"]


def test_a_kind_only_some_users_have_reads_nothing_for_the_others() -> None:
    table = render({"a": {"write": "^x$"}, "b": {"write": "^y$", TOPIC_WRITE: "e: ^k$"}})

    assert table.splitlines()[2:] == ["| `a` | `^x$` | nothing |",
                                      "| `b` | `^y$` | `e: ^k$` |"]


def test_one_row_per_role_setup_makes_under_the_prefix() -> None:
    table = permission_table(task_type_names(), "acme-")
    users = [line.split("|")[1].strip(" `") for line in table.splitlines()[2:]]

    assert users == [role.user for role in layout_roles(task_type_names(), "acme-")]
    assert all(user.startswith("acme-") for user in users[:-1])  # the last: the publisher


def test_the_verb_prints_the_table_for_its_prefix_and_publishers() -> None:
    ran = CliRunner().invoke(cli, ["rabbitmq", "permissions", "--user-prefix", "acme-",
                                   "--publisher", "billing-svc=billing:send_email,webhook"])

    assert ran.exit_code == 0, ran.output
    assert ran.output == permission_table(task_type_names(), "acme-")
