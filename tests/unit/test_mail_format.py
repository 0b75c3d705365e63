"""The MIME writer: what the standard `email` parser reads back is what was sent, with no defects."""

import email
import email.policy
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from service.messaging.delivery import Envelope, build_mail

lines = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=300
)


@given(
    from_name=st.one_of(st.none(), lines),
    to_name=st.one_of(st.none(), lines),
    subject=lines.map(lambda s: " ".join(s.split())).filter(bool),
    text=lines,
    html=lines,
)
def test_what_the_parser_reads_back_is_what_was_sent(
    from_name: str | None, to_name: str | None, subject: str, text: str, html: str
) -> None:
    envelope = Envelope(
        message_db_id=7,
        from_email="hello@shop.example",
        from_name=from_name,
        reply_to="care@shop.example",
        to_email="ada@example.com",
        to_name=to_name,
        subject=subject,
        text=text,
        html=html,
        locale="cy_GB",
        unsubscribe_url="https://encore.example/v1/unsubscribe/abc.def",
        date=datetime(2026, 3, 2, 12, tzinfo=UTC),
    )
    mail = build_mail(envelope)
    assert all(len(line) <= 998 for line in mail.data.split(b"\r\n"))
    assert b"\n" not in mail.data.replace(b"\r\n", b"")
    msg = email.message_from_bytes(mail.data, policy=email.policy.default)
    assert all(not part.defects for part in msg.walk())
    assert msg["Subject"] == subject
    assert msg["To"].addresses[0].addr_spec == "ada@example.com"
    for header, name in (("To", to_name), ("From", from_name)):
        assert msg[header].addresses[0].display_name.replace(" ", "") == "".join((name or "").split())
        if len((name or "").encode()) <= 45:  # one encoded word: read back exactly (the parser puts a space
            # between the words of a longer name, which RFC 2047 readers drop)
            assert msg[header].addresses[0].display_name == " ".join((name or "").split())
    assert msg["Reply-To"] == "care@shop.example" and msg["Message-ID"] == "<encore.7@shop.example>"
    assert msg["Content-Language"] == "cy-GB" and msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["Date"].datetime == envelope.date
    assert msg.get_content_type() == "multipart/alternative"
    plain, rich = msg.get_body(("plain",)), msg.get_body(("html",))
    assert plain is not None and rich is not None
    assert plain.get_content().replace("\r\n", "\n") == text.replace("\r\n", "\n")
    assert rich.get_content().replace("\r\n", "\n") == html.replace("\r\n", "\n")
