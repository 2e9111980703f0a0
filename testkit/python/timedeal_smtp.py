"""The test SMTP server's handler: aiosmtpd's Maildir handler, except that it refuses for good
(550) every recipient whose mailbox name starts with "refused", as a server does for a mailbox
that does not exist."""

from aiosmtpd.handlers import Mailbox


class RefusingMailbox(Mailbox):
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower().startswith("refused"):
            return "550 5.1.1 no such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 OK"
