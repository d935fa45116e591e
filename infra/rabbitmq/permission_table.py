"""The table of RabbitMQ users and permissions in docs/security.md, rendered from the roles
`taskproc rabbitmq setup` applies (infra.rabbitmq.layout) so that the two cannot drift:
`taskproc rabbitmq permissions` prints it, `python -m devtools.permission_table` writes it into
docs/security.md, and a test compares that copy with it. Pure.

The cells are the regexes RabbitMQ is given, exactly (a reader who wants the names can read the
alternatives); only `^$`, which matches no resource, is written as "nothing".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from infra.rabbitmq.layout import (
    NOTHING,
    USER_PREFIX,
    Publisher,
    Role,
    publisher_role,
    service_roles,
)

# The outside publisher of the setup example in docs/security.md (RabbitMQ users and tenants).
EXAMPLE_PUBLISHER = Publisher("billing-svc", "billing", ("send_email", "webhook"))


def layout_roles(task_types: Sequence[str], prefix: str = USER_PREFIX,
                 publishers: Iterable[Publisher] = (EXAMPLE_PUBLISHER,)) -> tuple[Role, ...]:
    """Every role setup makes, in its order: the service's own, then each publisher's."""
    return (*service_roles(task_types, prefix), *(publisher_role(p) for p in publishers))


def permission_table(task_types: Sequence[str], prefix: str = USER_PREFIX,
                     publishers: Iterable[Publisher] = (EXAMPLE_PUBLISHER,)) -> str:
    """A markdown table: one row per role setup makes, one column per kind of permission."""
    return render({role.user: granted(role)
                   for role in layout_roles(task_types, prefix, publishers)})


def granted(role: Role) -> dict[str, str]:
    """What `role` is given, by kind: configure, write, read, and its topic permissions'
    routing keys as `topic write` when it has any."""
    kinds = role.permissions.as_dict()
    if role.topic_permissions:
        kinds[TOPIC_WRITE] = topic_cell((topic.exchange, topic.write)
                                        for topic in role.topic_permissions)
    return kinds


TOPIC_WRITE = "topic write (exchange: routing keys)"


def topic_cell(writes: Iterable[tuple[str, str]]) -> str:
    """(exchange, routing-key regex) pairs as one cell, by exchange."""
    return "; ".join(f"{exchange}: {keys}" for exchange, keys in sorted(writes))


def render(permissions: Mapping[str, Mapping[str, str]]) -> str:
    """A markdown table of user -> {kind: regex}, in the mapping's order, one column per kind
    any user has; a kind a user lacks reads "nothing"."""
    kinds = list(dict.fromkeys(kind for row in permissions.values() for kind in row))
    lines = ["| user | " + " | ".join(kinds) + " |", "|---" * (len(kinds) + 1) + "|"]
    for user, row in permissions.items():
        cells = [f"`{user}`", *(_cell(row.get(kind, NOTHING)) for kind in kinds)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _cell(pattern: str) -> str:
    if pattern == NOTHING:
        return "nothing"
    # A `|` ends a table cell even inside a code span unless escaped (GitHub's tables).
    return "`" + pattern.replace("|", "\\|") + "`"
