"""Deterministic, realistic support mail for the benchmarks.

`seed_mails(k)` are k new requests that open the tickets VTM-<year>-000001.. in order;
`batch_mails(n, k)` are the n measured mails: about 70% new requests and 30% replies to
a seed ticket ("Re: [VTM-...] <subject>", In-Reply-To the seed mail). Formats: plain
text (~60%), text + HTML (~25%), text + HTML + a small attachment (~15%); ~10% with a
Cc, ~10% with non-ASCII names or subjects. Only reserved example domains are used.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP

SUBJECTS = [
    "Storing glasvezelverbinding {place}",
    "Geen internet op locatie {place}",
    "VPN-tunnel naar {place} valt steeds weg",
    "Vraag over factuur {month}",
    "Wijziging contactpersoon",
    "Extra IP-adressen aanvragen",
    "Simkaarten M2M activeren",
    "Trage verbinding sinds {month}",
    "Telefonie: doorschakeling werkt niet",
    "Verhuizing kantoor {place}",
    "Router vervangen",
    "Status storing {place}?",
    "Überprüfung Anschluss {place}",
    "Nummerbehoud aanvraag",
    "Offerte 1 Gbit/s lijn",
]
PLACES = ["Leiden", "Naaldwijk", "Delft", "Den Haag", "Zoetermeer", "Monster", "Poeldijk"]
MONTHS = ["januari", "februari", "maart", "april", "mei", "juni", "juli"]
NAMES = [
    "Jan de Vries",
    "Petra Jansen",
    "Ahmed Bakker",
    "Sanne Visser",
    "Kees Smit",
    "Jörg Müller",
    "Anouk van Dijk",
    "Fatma Yılmaz",
    "Ruud de Boer",
    "Eva Mulder",
]
DOMAINS = ["kweker-a.example", "transport-b.example", "zorg-c.example", "bouw-d.example"]
TEAMS = ["noc@vtm.example", "business@vtm.example", "iot@vtm.example"]
BODY = (
    "Goedemorgen,\n\n{problem}\n\nKunnen jullie hier zo snel mogelijk naar kijken?\n"
    "Ons klantnummer is {customer}.\n\nMet vriendelijke groet,\n{name}\n{company}\n"
)
PROBLEMS = [
    "Sinds vanochtend 8:15 hebben we op locatie {place} geen verbinding meer.",
    "De verbinding is erg traag; een speedtest geeft 3 Mbit/s in plaats van 500.",
    "Wij willen graag 20 extra simkaarten voor onze meetkasten.",
    "Op de factuur van {month} staat een regel die wij niet herkennen.",
    "De telefooncentrale schakelt niet meer door naar de mobiele nummers.",
]


@dataclass(frozen=True)
class GeneratedMail:
    raw: bytes
    message_id: str
    kind: str  # new | reply
    seed_index: int | None  # for replies: which seed ticket (0-based)
    sender: str = ""


def _mail(
    rng: random.Random,
    index: int,
    *,
    subject: str | None = None,
    in_reply_to: str | None = None,
    prefix: str = "b",
    sender: str | None = None,
) -> tuple[bytes, str, str, str]:
    name = rng.choice(NAMES)
    domain = rng.choice(DOMAINS)
    if sender is None:
        sender = f"{name.split()[0].lower()}.{index % 97}@{domain}"
    domain = sender.rpartition("@")[2]
    place, month = rng.choice(PLACES), rng.choice(MONTHS)
    subject = subject or rng.choice(SUBJECTS).format(place=place, month=month)
    message_id = f"{prefix}{index}.{rng.getrandbits(40):x}@{domain}"
    msg = EmailMessage(policy=SMTP)
    msg["From"] = f"{name} <{sender}>"
    msg["To"] = rng.choice(TEAMS)
    if rng.random() < 0.10:
        msg["Cc"] = f"collega.{index % 13}@{domain}"
    msg["Subject"] = subject
    msg["Date"] = "Mon, 02 Mar 2026 09:00:00 +0100"
    msg["Message-ID"] = f"<{message_id}>"
    if in_reply_to:
        msg["In-Reply-To"] = f"<{in_reply_to}>"
        msg["References"] = f"<{in_reply_to}>"
    body = BODY.format(
        problem=rng.choice(PROBLEMS).format(place=place, month=month),
        customer=f"K{rng.randrange(10000, 99999)}",
        name=name,
        company=domain.split(".")[0],
    )
    msg.set_content(body)
    shape = rng.random()
    if shape >= 0.60:
        html = (
            "<html><body>" + "".join(f"<p>{p}</p>" for p in body.split("\n\n")) + "</body></html>"
        )
        msg.add_alternative(html, subtype="html")
    if shape >= 0.85:
        size = rng.randrange(2048, 16384)
        msg.add_attachment(
            rng.randbytes(size),
            maintype="application",
            subtype="pdf",
            filename=f"bijlage-{index}.pdf",
        )
    return msg.as_bytes(), message_id, subject, sender


def seed_mails(count: int, seed: int = 42) -> list[GeneratedMail]:
    rng = random.Random(seed)
    out = []
    for i in range(count):
        raw, mid, _, sender = _mail(rng, i, prefix="s")
        out.append(GeneratedMail(raw, mid, "new", None, sender))
    return out


def seed_subjects(count: int, seed: int = 42) -> list[str]:
    rng = random.Random(seed)
    return [_mail(rng, i, prefix="s")[2] for i in range(count)]


def batch_mails(
    n: int, seeds: list[GeneratedMail], year: int, seed: int = 7
) -> list[GeneratedMail]:
    rng = random.Random(seed)
    subjects = seed_subjects(len(seeds))
    out = []
    for i in range(n):
        if seeds and rng.random() < 0.30:
            k = rng.randrange(len(seeds))
            tag = f"[VTM-{year}-{k + 1:06d}]"
            raw, mid, _, sender = _mail(
                rng,
                i,
                subject=f"Re: {tag} {subjects[k]}",
                in_reply_to=seeds[k].message_id,
                sender=seeds[k].sender,
            )
            out.append(GeneratedMail(raw, mid, "reply", k, sender))
        else:
            raw, mid, _, sender = _mail(rng, i)
            out.append(GeneratedMail(raw, mid, "new", None, sender))
    return out
