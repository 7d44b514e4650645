"""Who is asking: the signed-in person as the domain sees them."""

from __future__ import annotations

from dataclasses import dataclass

from chatserver.chat.policy import Role


@dataclass(frozen=True)
class Viewer:
    """A staff user of one organisation, or a candidate.

    A candidate's `application_ids` are the applications whose links they
    opened in this session: the only conversations they can see;
    `application_orgs` holds the organisation of each, in the same order
    (where their bell's events are published), when it was read with them.
    """

    kind: Role
    id: str
    name: str
    timezone: str
    org_id: str | None = None
    application_ids: tuple[str, ...] = ()
    application_orgs: tuple[str, ...] = ()

    @property
    def is_staff(self) -> bool:
        return self.kind is Role.STAFF

    def held_applications(self) -> tuple[tuple[str, str], ...]:
        """(organisation, application) of each application whose
        organisation is known."""
        return tuple(zip(self.application_orgs, self.application_ids, strict=False))

    def person(self) -> dict[str, str]:
        """The spec's PERSON object."""
        return {"kind": self.kind.value, "id": self.id, "name": self.name}
